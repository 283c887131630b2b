package proxy

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// Merged multi-shard SELECTs (router.MergePlan): every shard runs the
// plan's rewritten query at once, in text format, and the router's
// executor merges the rows (k-way merge, aggregation, distinct, limit) as
// they are read. The session goroutine pulls rows from the shards itself —
// no goroutine per shard — so a shard whose rows are not needed yet simply
// waits in its socket buffer, and memory stays bounded by the executor's
// budget (merge_memory).

// scatterLeg is one shard's reply to the plan's query; it is the
// executor's router.Source for that shard.
type scatterLeg struct {
	s       *session
	c       *pool.Conn
	prelude int  // replies to session-setting statements to swallow first
	ended   bool // no more rows: CommandComplete, an error or ReadyForQuery read
	ready   bool // ReadyForQuery read: the connection is idle again
	status  byte // its transaction status
	fields  []pgproto3.FieldDescription
	err     *pgproto3.ErrorResponse // the shard's error, if any
	head    *legHead                // header's result, once read
	bound   bool                    // the shard answered its Bind (noteBindFailed)
	rows    int64
	bytes   int64
}

// shardError carries a shard's ErrorResponse through the executor, so the
// client gets it unchanged (SQLSTATE, detail, position).
type shardError struct{ msg *pgproto3.ErrorResponse }

func (e *shardError) Error() string { return e.msg.Message }

// receive reads the leg's next message, handling the ones that are never
// part of the result: prelude replies, notices (forwarded to the client)
// and ReadyForQuery.
func (l *scatterLeg) receive() (pgproto3.BackendMessage, error) {
	if l.prelude > 0 {
		n := l.prelude
		l.prelude = 0
		if err := l.s.skipPrelude(l.c, n); err != nil {
			l.ended = true
			return nil, err
		}
	}
	for {
		msg, err := l.c.Receive()
		if err != nil {
			l.ended = true
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			l.ready, l.ended, l.status = true, true, m.TxStatus
			return m, nil
		case *pgproto3.NoticeResponse:
			if err := l.s.send(m); err != nil {
				return nil, errClientGone
			}
			continue
		case *pgproto3.ErrorResponse:
			l.ended = true
			if l.err == nil {
				e := *m
				demoteFatal(&e)
				l.err = &e
				l.s.noteBindFailed(l.bound)
			}
			return m, nil
		case *pgproto3.BindComplete:
			l.bound = true
		}
		return msg, nil
	}
}

// legHead is what header read.
type legHead struct {
	ok  bool
	err error
}

// header reads up to the leg's RowDescription. ok is false when the shard
// answered with an error (l.err) or without rows (NoData). It reads once;
// later calls return the same.
func (l *scatterLeg) header() (ok bool, err error) {
	if l.head == nil {
		ok, err := l.readHeader()
		l.head = &legHead{ok, err}
	}
	return l.head.ok, l.head.err
}

func (l *scatterLeg) readHeader() (ok bool, err error) {
	for !l.ended {
		msg, err := l.receive()
		if err != nil {
			return false, err
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			// Never nil, even for no columns (SELECT FROM t): nil fields
			// mean that the leg described no rows (mergeLegs).
			l.fields = append(make([]pgproto3.FieldDescription, 0, len(m.Fields)), m.Fields...)
			for i := range l.fields {
				l.fields[i].Name = append([]byte(nil), m.Fields[i].Name...)
			}
			return true, nil
		case *pgproto3.NoData, *pgproto3.CommandComplete:
			return false, nil
		}
	}
	return false, nil
}

// Next implements router.Source.
func (l *scatterLeg) Next() ([][]byte, error) {
	for !l.ended {
		msg, err := l.receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			l.rows++
			for _, v := range m.Values {
				l.bytes += int64(len(v))
			}
			return m.Values, nil
		case *pgproto3.CommandComplete:
			l.ended = true
		case *pgproto3.ErrorResponse:
			return nil, &shardError{l.err}
		}
	}
	if l.err != nil {
		return nil, &shardError{l.err}
	}
	return nil, nil
}

// finish reads the leg to ReadyForQuery.
func (l *scatterLeg) finish() error {
	for !l.ready {
		if _, err := l.receive(); err != nil {
			return err
		}
	}
	return nil
}

// planSend is how runPlan writes the plan's query to one backend: bind
// sends Parse, Bind and Describe of the unnamed portal (Execute and Sync
// follow, see startLegs); query, when set, is the same as one simple
// Query, which Postgres runs for less (the simple protocol).
type planSend struct {
	bind  func(c *pool.Conn)
	query string
}

// executeSync ends what planSend.bind started.
func executeSync(c *pool.Conn) {
	c.Send(&pgproto3.Execute{})
	c.Send(&pgproto3.Sync{})
}

// runPlan runs a merged multi-shard SELECT. send writes the plan's query
// to one backend; in resolves the plan's $n constants (LIMIT, HAVING);
// formats are the client's result format codes (nil: all text); describe
// says whether the client gets a RowDescription (the simple protocol) or
// asked for it separately (Describe in the extended protocol).
func (s *session) runPlan(ctx context.Context, st *router.Statement, route router.Route, send planSend,
	in planInputs, formats []int16, describe bool) (failed bool, err error) {
	if err := s.checkMulti(st, route); err != nil {
		return true, s.sendError(err)
	}
	in.cancels, in.marked = s.cancels.Load(), true // before any leg runs
	rt := s.runtime()
	mark := s.statStart()
	if err := s.holdIfPaused(ctx, route.Shards...); err != nil { // before any leg holds a backend
		return true, s.sendError(err)
	}
	legs := make([]*scatterLeg, 0, len(route.Shards))
	// Inside a transaction block (two_phase_commit) the plan runs on the
	// transaction's backends (txConn), so that it sees the transaction's
	// own writes; they stay attached, and any failure fails the transaction.
	inTx := s.txStatus != 'I'
	release := func(discardAll bool) {
		if inTx {
			for _, l := range legs {
				if discardAll || !l.ready {
					s.dropLeg(l.c)
				} else if l.status != 'T' {
					s.tx.failed = true
				}
			}
			if s.multiLeg() {
				s.settle('T') // recomputes the status from txn.failed
			}
			return
		}
		for _, l := range legs {
			s.setActive(l.c, false)
			if !discardAll && l.ready && l.status == 'I' {
				rt.Pools.Get(l.c.Shard).Release(l.c)
			} else {
				rt.Pools.Get(l.c.Shard).Discard(l.c)
			}
		}
	}
	for _, sh := range route.Shards {
		var c *pool.Conn
		var n int
		var err error
		if inTx {
			c, err = s.txConn(ctx, sh)
		} else {
			c, n, err = s.acquire(ctx, sh)
		}
		if err != nil {
			if !inTx {
				release(true)
			}
			// (In a transaction nothing was sent yet: its backends, and
			// what they hold, stay; the error fails it, as on Postgres.)
			return true, s.sendError(err)
		}
		legs = append(legs, &scatterLeg{s: s, c: c, prelude: n})
	}
	for _, l := range legs {
		// After DDL, what the merge may assume of the shard's collations
		// is read again first (behind any session settings queued).
		if !l.c.CollationsStale() {
			continue
		}
		err := l.c.Flush()
		if err == nil && l.prelude > 0 {
			err = s.skipPrelude(l.c, l.prelude)
			l.prelude = 0
		}
		if err == nil {
			err = l.c.RefreshCollations()
		}
		if err != nil {
			release(true)
			return true, s.sendError(backendLost(l.c.Shard, err))
		}
	}
	s.watch.start()
	if err := s.startLegs(ctx, st, route, legs, send); err != nil {
		s.watch.stop()
		release(true)
		if errors.Is(err, errClientGone) {
			return true, err
		}
		return true, s.sendError(err)
	}
	failure, lost := s.mergeLegs(ctx, route.Plan, legs, in, formats, describe)
	s.watch.stop()
	if errors.Is(lost, errClientGone) {
		release(true)
		return true, errClientGone
	}
	// Every leg is read to ReadyForQuery before its backend is reused. A
	// leg the merge did not need to the end (LIMIT reached, another shard
	// failed) is cancelled first rather than read to its last row.
	if failure != nil || lost != nil {
		for _, l := range legs {
			if !l.ended {
				cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = l.c.Cancel(cctx)
				cancel()
			}
		}
	}
	for _, l := range legs {
		if err := l.finish(); err != nil {
			if errors.Is(err, errClientGone) {
				release(true)
				return true, errClientGone
			}
			if lost == nil {
				lost = backendLost(l.c.Shard, err)
			}
		}
	}
	d := time.Since(mark.start)
	for _, l := range legs {
		s.srv.stats.leg(l.c.Shard, route.Kind, d, l.rows, l.bytes, failure != nil || lost != nil)
	}
	s.srv.stats.statement(route.Kind, d)
	if route.Plan != nil && route.Plan.Gathers() {
		s.srv.stats.gathered.Add(1)
	}
	if inTx && (failure != nil || lost != nil) {
		s.tx.failed = true
	}
	release(false)
	switch {
	case lost != nil:
		return true, s.sendError(lost)
	case failure != nil:
		return true, s.send(failure)
	}
	return false, nil
}

// maxRetakes bounds how often a multi-shard SELECT takes its snapshots
// again after a commit phase overlapped them.
const maxRetakes = 3

// whole writes the statement and its Execute.
func (p planSend) whole(c *pool.Conn) {
	if p.query != "" {
		c.Send(&pgproto3.Query{String: p.query})
		return
	}
	p.bind(c)
	executeSync(c)
}

// startLegs sends the statement to every leg. A SELECT opens a read window
// (visibility.go) around taking its snapshots, which closes once every
// shard has described the rows (Postgres takes a SELECT's snapshot before
// that). If a cross-shard commit started meanwhile, the snapshots may
// disagree about it, and the statement runs again once that commit has
// ended: outside a transaction the legs are cancelled; inside one, where a
// cancel would fail the transaction, Execute waits for the window to close
// and the legs are synced instead.
//
// To keep the window short (a commit waits for it), Parse, Bind and
// Describe go with a Flush, so that each shard describes the rows at once.
// That costs a packet, and the extended protocol costs Postgres more than
// one Query; while no commit has started for a second, a statement outside
// a transaction goes as the client sent it, its description arriving with
// its first rows.
func (s *session) startLegs(ctx context.Context, st *router.Statement, route router.Route, legs []*scatterLeg, send planSend) error {
	sendAll := func(write func(c *pool.Conn)) error {
		for _, l := range legs {
			write(l.c)
			if err := l.c.Flush(); err != nil {
				return backendLost(l.c.Shard, err)
			}
		}
		return nil
	}
	if st.Kind != router.KindSelect || st.Explain {
		return sendAll(send.whole)
	}
	gate := &s.srv.commits
	pipelined := s.txStatus == 'I'
	for retakes := 0; ; retakes++ {
		w, err := gate.open(ctx, route.Shards)
		if err != nil {
			return err
		}
		if pipelined && retakes == 0 && gate.quiet() {
			err = sendAll(send.whole)
		} else {
			err = sendAll(func(c *pool.Conn) {
				send.bind(c)
				c.Send(&pgproto3.Flush{})
				if pipelined {
					executeSync(c)
				}
			})
		}
		failed := false
		for _, l := range legs {
			if err != nil {
				break
			}
			if _, err = l.header(); err != nil && !errors.Is(err, errClientGone) {
				err = backendLost(l.c.Shard, err)
			}
			failed = failed || l.err != nil
		}
		tainted := gate.close(w)
		switch {
		case err != nil:
			return err
		case failed || !tainted:
			// (A shard's error fails the statement whatever the snapshots.)
			if pipelined {
				return nil
			}
			return sendAll(executeSync)
		}
		gate.retakes.Add(1)
		if err := s.abandonLegs(legs, pipelined); err != nil {
			return err
		}
		if retakes == maxRetakes {
			return pgError("40001", "could not serialize access: cross-shard commits kept overlapping the statement's snapshots on shards %s", strings.Join(route.Shards, ", "))
		}
		if err := gate.await(ctx, route.Shards...); err != nil {
			return err
		}
	}
}

// abandonLegs ends the statement on every leg, to be sent again: a
// running one is cancelled (cancel) or its portal synced before Execute,
// and each is read to ReadyForQuery.
func (s *session) abandonLegs(legs []*scatterLeg, cancel bool) error {
	for _, l := range legs {
		if cancel {
			if !l.ended {
				cctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
				_ = l.c.Cancel(cctx)
				stop()
			}
			continue
		}
		l.c.Send(&pgproto3.Sync{})
		if err := l.c.Flush(); err != nil {
			return backendLost(l.c.Shard, err)
		}
	}
	for _, l := range legs {
		if err := l.finish(); err != nil {
			if errors.Is(err, errClientGone) {
				return err
			}
			return backendLost(l.c.Shard, err)
		}
		l.ended, l.ready, l.head, l.fields, l.err = false, false, nil, nil, nil
	}
	return nil
}

// mergeLegs reads the legs' headers, sends the RowDescription, runs the
// executor and sends the rows and the command tag. failure is the error
// the client gets for the statement (already shaped as an ErrorResponse);
// lost is a broken backend or errClientGone.
func (s *session) mergeLegs(ctx context.Context, plan *router.ScatterPlan, legs []*scatterLeg,
	in planInputs, formats []int16, describe bool) (failure *pgproto3.ErrorResponse, lost error) {
	var fields []pgproto3.FieldDescription
	var enums map[uint32]uint32 // the enum types of the shard that described the rows
	for _, l := range legs {
		ok, err := l.header()
		if err != nil {
			if errors.Is(err, errClientGone) {
				return nil, err
			}
			return nil, backendLost(l.c.Shard, err)
		}
		switch {
		case l.err != nil:
			return l.err, nil
		case !ok:
			continue
		case fields == nil:
			fields, enums = l.fields, l.c.Enums
		default:
			if err := router.CheckFields(fields, l.fields); err != nil {
				return errorResponse(s.log, err), nil
			}
		}
	}
	if fields == nil {
		return errorResponse(s.log, pgError("XX000", "shardproxy: no shard returned a result description for a merged SELECT")), nil
	}
	out, binaryCols, failure := s.outputFields(plan, fields, formats)
	if failure != nil {
		return failure, nil
	}
	s.noteShape(in.shapeOf, true, out, s.srv.ddlGen.Load())
	switch {
	case in.sink != nil:
		if err := in.sink.begin(out); err != nil {
			return nil, errClientGone
		}
	case describe:
		if err := s.send(&pgproto3.RowDescription{Fields: out}); err != nil {
			return nil, errClientGone
		}
	}
	srcs := make([]router.Source, len(legs))
	conns := make([]*pool.Conn, len(legs))
	for i, l := range legs {
		srcs[i], conns[i] = l, l.c
	}
	var row pgproto3.DataRow
	eval := legs[0]
	if plan.Gathers() {
		// The whole statement runs there: spread the evaluations over
		// the statement's shards rather than load the first one.
		eval = legs[s.srv.stats.gathered.Load()%int64(len(legs))]
	}
	descs := make([][]pgproto3.FieldDescription, len(legs))
	for i, l := range legs {
		if l.err == nil {
			descs[i] = l.fields
		}
	}
	opts := s.execOptions(conns, descs, eval, in)
	n, err := plan.Execute(ctx, fields, srcs, in.param, opts,
		func(values [][]byte) error {
			if in.sink != nil {
				if err := in.sink.row(values); err != nil {
					return errClientGone
				}
				return nil
			}
			row.Values = values
			if binaryCols {
				converted, err := s.toResultFormats(out, values, enums)
				if err != nil {
					return err
				}
				row.Values = converted
			}
			if err := s.send(&row); err != nil {
				return errClientGone
			}
			return nil
		})
	var se *shardError
	switch {
	case err == nil:
	case errors.Is(err, errClientGone):
		return nil, err
	case errors.As(err, &se):
		return se.msg, nil
	default:
		var pe *pgconn.PgError
		if !errors.As(err, &pe) {
			for _, l := range legs {
				if l.ended && !l.ready && l.err == nil && err != nil {
					// A connection error surfaced through a leg's Next.
					return nil, backendLost(l.c.Shard, err)
				}
			}
		}
		return errorResponse(s.log, err), nil
	}
	if in.sink != nil {
		if err := in.sink.end(n); err != nil {
			return nil, errClientGone
		}
		return nil, nil
	}
	if err := s.send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT " + strconv.FormatInt(n, 10))}); err != nil {
		return nil, errClientGone
	}
	return nil, nil
}

// rowSink takes a merged SELECT's result in place of the client's rows:
// COPY (query) TO STDOUT writes it as COPY data (copymerge.go). Its
// errors are the client's connection failing.
type rowSink interface {
	begin(out []pgproto3.FieldDescription) error
	row(values [][]byte) error
	end(n int64) error
}

// outputFields is the client's row description of a merged SELECT whose
// shards described their rows as fields, in the result formats the
// client asked for; binaryCols reports a binary column. failure refuses
// what the merge cannot send.
func (s *session) outputFields(plan *router.ScatterPlan, fields []pgproto3.FieldDescription, formats []int16) (out []pgproto3.FieldDescription, binaryCols bool, failure *pgproto3.ErrorResponse) {
	out, err := plan.OutputFields(fields)
	if err != nil {
		return nil, false, errorResponse(s.log, err)
	}
	out = append([]pgproto3.FieldDescription(nil), out...)
	rounded := s.roundedFloats()
	for i := range out {
		out[i].Format = formatCode(formats, i)
		binaryCols = binaryCols || out[i].Format == pgtype.BinaryFormatCode
		if name, float := router.FloatType(out[i].DataTypeOID); rounded && float && out[i].Format == pgtype.BinaryFormatCode {
			// Postgres sends floats exactly in binary whatever
			// extra_float_digits says; the shards' text is rounded.
			return nil, false, errorResponse(s.log, errNotSupported(
				"the shards print them rounded; SET extra_float_digits = 1 (the default), or request text results",
				"cannot send merged values of type %s in binary format while extra_float_digits is below 1", name))
		}
	}
	return out, binaryCols, nil
}

// execOptions are the merge's options for a plan over the backends legs;
// its Evaluate queries run on eval's backend.
func (s *session) execOptions(legs []*pool.Conn, fields [][]pgproto3.FieldDescription, eval *scatterLeg, in planInputs) router.ExecOptions {
	opts := router.ExecOptions{Budget: s.runtime().Config.MergeMemory, Evaluate: s.evaluator(eval, in), RoundedFloats: s.roundedFloats(),
		PlainColumns: plainColumns(legs, fields)}
	for _, c := range legs {
		opts.CollatedText = opts.CollatedText || !c.BytewiseText
		opts.CollatedColumns = opts.CollatedColumns || c.CollatedColumns
		opts.NondeterministicColumns = opts.NondeterministicColumns || c.NondeterministicColumns
		opts.Nondeterministic = opts.Nondeterministic || c.Nondeterministic
	}
	if in.bind != nil {
		opts.BoundParams = len(in.bind.params)
	}
	return opts
}

// plainColumns tells, per column of the shards' rows, whether it is on
// every shard that described it a table column without a collation of
// its own: its RowDescription names the table and attribute (Postgres
// does for a plain column reference, also through views, subqueries and
// CTEs, and never for an expression or a set operation), and the leg's
// connection read that column's collation (pool.Conn.OwnCollation).
// fields[i] is legs[i]'s description, nil when it sent none.
func plainColumns(legs []*pool.Conn, fields [][]pgproto3.FieldDescription) []bool {
	var plain []bool
	for i, fs := range fields {
		if fs == nil {
			continue
		}
		if plain == nil {
			plain = make([]bool, len(fs))
			for k := range plain {
				plain[k] = true
			}
		}
		for k := range plain {
			if k >= len(fs) {
				plain[k] = false // CheckFields refuses that anyway
				continue
			}
			f := &fs[k]
			plain[k] = plain[k] && f.TableOID != 0 && f.TableAttributeNumber > 0 &&
				!legs[i].OwnCollation(f.TableOID, int16(f.TableAttributeNumber))
		}
	}
	return plain
}

// planInputs are what a merged SELECT reads besides the shards' rows.
type planInputs struct {
	param router.ParamFunc // the plan's $n constants (LIMIT, HAVING)
	lits  []string         // the literal tokens the holes of the plan's SQL stand for
	bind  *multiBind       // the client's Bind (extended protocol), nil for a simple Query
	oids  []uint32         // the statement's parameter types (0: inferred)
	sink  rowSink          // where the rows go instead of DataRows (nil: to the client as rows)
	// shapeOf is the client's statement whose rows these are: their
	// description is its result type (noteShape), if none was seen.
	shapeOf *prepared
	// cancels is the session's count of CancelRequests when the
	// statement began (marked: set), for the evaluator's steps.
	cancels int64
	marked  bool
}

// evaluator runs the plan's Evaluate queries (expressions over finished
// aggregates, gathered aggregates, windows, set operations) on leg l,
// whose own result the merge has read to the end by then: the Aggregate
// below an Evaluate, or a whole-mode Evaluate itself, consumes all its
// input first.
// The client's parameters are bound as the client bound them, the
// values after them in text format.
func (s *session) evaluator(l *scatterLeg, in planInputs) router.Evaluator {
	cancels := s.cancels.Load()
	if in.marked {
		cancels = in.cancels
	}
	return func(ctx context.Context, q router.EvalQuery) ([]pgproto3.FieldDescription, [][][]byte, error) {
		if err := l.finish(); err != nil {
			return nil, nil, err
		}
		if s.cancels.Load() != cancels {
			// The client cancelled while l was idle: Postgres ignored it.
			return nil, nil, pgError("57014", "canceling statement due to user request")
		}
		if l.err != nil {
			return nil, nil, &shardError{l.err}
		}
		bound := 0
		if in.bind != nil {
			bound = len(in.bind.params)
		}
		text := renderLiterals(q.Head, in.lits) + q.From(bound+1) + renderLiterals(q.Tail, in.lits)
		used := make(map[int]bool, len(q.Head.Params)+len(q.Tail.Params))
		for _, t := range []router.Template{q.Head, q.Tail} {
			for _, n := range t.Params {
				used[n] = true
			}
		}
		n := bound + len(q.Values)
		types, params, formats := make([]uint32, 0, n), make([][]byte, 0, n), make([]int16, 0, n)
		for i := range bound {
			var oid uint32
			if i < len(in.oids) {
				oid = in.oids[i]
			}
			format := formatCode(in.bind.formats, i)
			if oid == 0 && !used[i+1] {
				// Unreferenced here, its type would be undetermined
				// (42P18); any type that takes the value will do.
				oid = pgtype.TextOID
				if format == pgtype.BinaryFormatCode {
					oid = pgtype.ByteaOID
				}
			}
			types, params, formats = append(types, oid), append(params, in.bind.params[i]), append(formats, format)
		}
		types = append(types, q.OIDs...)
		for _, v := range q.Values {
			params, formats = append(params, v), append(formats, pgtype.TextFormatCode)
		}
		l.c.Send(&pgproto3.Parse{Query: text, ParameterOIDs: types})
		l.c.Send(&pgproto3.Bind{ParameterFormatCodes: formats, Parameters: params})
		l.c.Send(&pgproto3.Describe{ObjectType: 'P'})
		l.c.Send(&pgproto3.Execute{})
		l.c.Send(&pgproto3.Sync{})
		l.ready, l.ended = false, false
		if err := l.c.Flush(); err != nil {
			l.ended = true
			return nil, nil, err
		}
		if s.cancels.Load() != cancels {
			// A cancel that came between the check above and the send
			// may have found l idle: send one for the evaluation.
			go s.cancelRequest(l.c)
		}
		var fields []pgproto3.FieldDescription
		var out [][][]byte
		for !l.ready {
			msg, err := l.receive()
			if err != nil {
				return nil, nil, err
			}
			switch m := msg.(type) {
			case *pgproto3.RowDescription:
				fields = copyRowDescription(m).Fields
			case *pgproto3.DataRow:
				row := make([][]byte, len(m.Values))
				for i, v := range m.Values {
					if v != nil {
						row[i] = append([]byte{}, v...)
					}
				}
				out = append(out, row)
			}
		}
		if l.err != nil {
			return nil, nil, &shardError{l.err}
		}
		return fields, out, nil
	}
}

// literalParams resolves $n of a simple-protocol statement: the literal
// values the normaliser replaced.
func literalParams(args [][]byte) router.ParamFunc {
	return func(n int) ([]byte, bool, error) {
		if n < 1 || n > len(args) {
			return nil, false, pgError("08P01", "there is no parameter $%d", n)
		}
		return args[n-1], false, nil
	}
}

// bindParams resolves $n of an extended-protocol statement: the client's
// bind values (integers and numerics sent in binary are turned into text,
// by oids, the types of mergedParamOIDs), or, for a
// text without parameters of its own, its literal tokens.
func bindParams(mb *multiBind, oids []uint32, lits []string) router.ParamFunc {
	return func(n int) ([]byte, bool, error) {
		if len(mb.params) == 0 && n >= 1 && n <= len(lits) {
			v, ok := literalValue(lits[n-1])
			if !ok {
				return nil, false, errNotSupported("write this constant as a plain literal or a parameter",
					"cannot evaluate constant %s of a merged statement", lits[n-1])
			}
			return v, false, nil
		}
		if n < 1 || n > len(mb.params) {
			return nil, false, pgError("08P01", "there is no parameter $%d", n)
		}
		v := mb.params[n-1]
		if v == nil {
			return nil, true, nil
		}
		if formatCode(mb.formats, n-1) == pgtype.TextFormatCode {
			return v, false, nil
		}
		var oid uint32
		if n-1 < len(oids) {
			oid = oids[n-1]
		}
		t, err := binaryParamText(n, oid, v) // (paramtypes.go)
		return t, false, err
	}
}

// literalValue is the value of a literal token: a number as written, a
// '...' string without its quotes. Other forms (E-strings, dollar quotes) are not needed
// by LIMIT and HAVING constants and are refused by the caller.
func literalValue(tok string) ([]byte, bool) {
	if tok == "" {
		return nil, false
	}
	if tok[0] != '\'' {
		return []byte(tok), true
	}
	if len(tok) < 2 || tok[len(tok)-1] != '\'' {
		return nil, false
	}
	body := tok[1 : len(tok)-1]
	out := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		out = append(out, body[i])
		if body[i] == '\'' && i+1 < len(body) && body[i+1] == '\'' {
			i++
		}
	}
	return out, true
}

// renderLiterals fills a template's holes with the statement's literal
// tokens (exactly as the client wrote them); holes past them stay $n.
func renderLiterals(t router.Template, lits []string) string {
	return t.Render(func(n int) string {
		if n >= 1 && n <= len(lits) {
			return lits[n-1]
		}
		return "$" + strconv.Itoa(n)
	})
}
