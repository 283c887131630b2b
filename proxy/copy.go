package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// COPY on several shards (the protocol docs, "COPY Operations").
//
// COPY FROM STDIN into a sharded table: the client's rows are split by
// copySplitter and each goes to the shard its key names, where a COPY of the
// same table and options (HEADER removed) is started when its first row
// arrives. Rows are batched per shard up to copyBatch bytes, so memory stays
// bounded whatever the input size. Every shard's COPY runs inside BEGIN and
// is committed only when all of them succeeded. Into a reference table,
// every shard gets the client's stream unchanged.
//
// COPY TO STDOUT from several shards: the shards' streams are concatenated,
// one shard after another, under one CopyOutResponse and one CopyDone.

// copyBatch is how many bytes of rows a shard's buffer holds before they
// are sent as one CopyData message.
const copyBatch = 64 << 10

// runCopy runs a COPY whose route names several shards.
func (s *session) runCopy(ctx context.Context, st *router.Statement, text string, route router.Route) (bool, error) {
	if route.Merge == router.MergePlan {
		// Concatenation is all COPY TO does: a query whose rows need
		// merging across shards would come out wrong.
		return true, s.sendError(errNotSupported("COPY the query's rows per shard key, or run the query with SELECT",
			"COPY of a query that needs merging across shards is not supported"))
	}
	sp, err := router.ParseCopy(text)
	if err != nil {
		return true, s.refuseCopy(sp, err)
	}
	if (s.attached != nil || s.txStatus != 'I') && !s.runtime().Config.TwoPhaseCommit {
		return true, s.refuseCopy(sp, errNotSupported(
			"run COPY on a sharded table outside BEGIN ... COMMIT (shardproxy commits it on every shard only if all succeed)",
			"COPY on shards %s inside a transaction needs a cross-shard transaction", joinShards(route.Shards)))
	}
	if !sp.Stdio {
		dir := "TO a server file or PROGRAM"
		if sp.From {
			dir = "FROM a server file or PROGRAM"
		}
		return true, s.sendError(errNotSupported("use COPY ... FROM STDIN / TO STDOUT (psql's \\copy), which shardproxy splits and merges",
			"COPY %s spans shards %s, each with its own files", dir, joinShards(route.Shards)))
	}
	mark := time.Now()
	var failed bool
	if sp.From {
		failed, err = s.copyIn(ctx, st, sp, text, route)
	} else {
		failed, err = s.copyOut(ctx, sp, text, route)
	}
	s.srv.stats.statement(route.Kind, time.Since(mark))
	return failed, err
}

func joinShards(shards []string) string {
	var b bytes.Buffer
	for i, sh := range shards {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(sh)
	}
	return b.String()
}

// copyLeg is one shard's part of a multi-shard COPY.
type copyLeg struct {
	shard  string
	c      *pool.Conn
	buf    []byte // rows not sent yet
	live   bool   // c is idle in a known state: it can end its transaction and be reused
	inCopy bool   // the shard is in COPY IN mode
	err    *pgproto3.ErrorResponse
	count  int64
	given  bool // committed by commitLegs, which gave the backend back
	// lines are the client's line numbers of the rows sent to this shard,
	// in order, while copyRun.mapped allows (clientLine).
	lines []uint32
}

// copyRun holds the legs of one COPY FROM.
type copyRun struct {
	s       *session
	rt      *Runtime // the legs' pools; the session's may be let go of meanwhile (checkMapAfterHold)
	sql     string   // what each shard runs
	prefix  []byte   // binary: the file header every shard's stream starts with
	formats []uint16 // column formats of the first shard's CopyInResponse
	legs    []*copyLeg
	byName  map[string]*copyLeg
	// tx: the COPY runs inside the client's transaction block, on the
	// transaction's backends (txConn): no BEGIN/COMMIT of its own, and a
	// failure fails the client's transaction, as on Postgres.
	tx bool
	// locks: into a reference table, what each copy runs first
	// (refLockQuery), so that the copies take it and concurrent writes in
	// one order.
	locks string
	// line is the client's line number of the row being split (a header
	// line counts, as in Postgres' COPY context); mapped counts the
	// entries of every leg's lines.
	line   int64
	mapped int
}

// maxCopyLines bounds the line numbers a COPY keeps to tell the client
// where a shard's error is in its data (4 bytes each): past it, the
// error says which of the shard's rows it was.
const maxCopyLines = 1 << 20

// clientLine rewrites the line number in the context of a shard's error
// during a split COPY ("COPY t, line 2[, column c | : "data"]"): the
// shard counts the rows it was sent, the client the lines of its data.
func (r *copyRun) clientLine(l *copyLeg, e *pgproto3.ErrorResponse) *pgproto3.ErrorResponse {
	if r.line == 0 || e == nil {
		return e // not split: the shards read the client's data as is
	}
	head, rest, ok := strings.Cut(e.Where, ", line ")
	if !ok || !strings.HasPrefix(head, "COPY ") {
		return e
	}
	digits := len(rest) - len(strings.TrimLeft(rest, "0123456789"))
	n, err := strconv.ParseUint(rest[:digits], 10, 64)
	if err != nil || n == 0 {
		return e
	}
	line := fmt.Sprintf("line %d of the rows sent to shard %s", n, l.shard)
	if n <= uint64(len(l.lines)) {
		line = "line " + strconv.FormatUint(uint64(l.lines[n-1]), 10)
	}
	out := *e
	out.Where = head + ", " + line + rest[digits:]
	return &out
}

// start begins the COPY on one shard: BEGIN, the statement, and its
// CopyInResponse (or error, which fails the whole COPY).
func (r *copyRun) start(ctx context.Context, shard string) (*copyLeg, error) {
	s := r.s
	if err := s.holdIfPaused(ctx, shard); err != nil {
		return nil, err
	}
	var c *pool.Conn
	prelude := 0
	var err error
	if r.tx {
		c, err = s.txConn(ctx, shard)
	} else {
		c, prelude, err = s.acquire(ctx, shard)
	}
	if err != nil {
		return nil, err
	}
	l := &copyLeg{shard: shard, c: c, given: r.tx}
	r.legs = append(r.legs, l)
	r.byName[shard] = l
	if !r.tx {
		c.Send(&pgproto3.Query{String: "BEGIN"})
		prelude++
	}
	lockPending := r.locks != ""
	if lockPending {
		c.Send(&pgproto3.Query{String: r.locks})
	}
	c.Send(&pgproto3.Query{String: r.sql})
	if err := c.Flush(); err != nil {
		return nil, backendLost(shard, err)
	}
	for {
		msg, err := c.Receive()
		if err != nil {
			return nil, backendLost(shard, err)
		}
		switch msg := msg.(type) {
		case *pgproto3.ReadyForQuery:
			if prelude > 0 {
				prelude--
				continue
			}
			if lockPending { // its error, if any, is l.err
				lockPending = false
				continue
			}
			l.live = true // the COPY failed: the error is in l.err
			return l, nil
		case *pgproto3.ErrorResponse:
			if prelude == 0 && l.err == nil {
				e := *msg
				l.err = &e
			}
		case *pgproto3.CopyInResponse:
			l.inCopy = true
			if r.formats == nil {
				r.formats = append([]uint16{}, msg.ColumnFormatCodes...)
			}
			if len(r.prefix) > 0 {
				l.buf = append(l.buf, r.prefix...)
			}
			return l, nil
		}
	}
}

// send flushes a leg's buffered rows to its shard.
func (r *copyRun) send(l *copyLeg) error {
	if len(l.buf) == 0 {
		return nil
	}
	l.c.Send(&pgproto3.CopyData{Data: l.buf})
	l.buf = l.buf[:0]
	if err := l.c.Flush(); err != nil {
		return backendLost(l.shard, err)
	}
	return nil
}

// end finishes every leg's COPY with msg (CopyDone or CopyFail), reads the
// replies, then commits (commit and no error so far) or rolls back. It
// returns the first shard error, or a proxy error when a shard was lost.
func (r *copyRun) end(msg pgproto3.FrontendMessage, commit bool) (*pgproto3.ErrorResponse, error) {
	var lost error
	note := func(l *copyLeg, err error) {
		l.live, l.inCopy = false, false
		if lost == nil {
			lost = err
		}
	}
	for _, l := range r.legs {
		if !l.inCopy {
			continue
		}
		if err := r.send(l); err != nil {
			note(l, err)
			continue
		}
		l.c.Send(msg)
		if err := l.c.Flush(); err != nil {
			note(l, backendLost(l.shard, err))
		}
	}
	for _, l := range r.legs {
		if l.inCopy {
			l.inCopy = false
			if err := l.readReply(); err != nil {
				note(l, err)
			}
		}
	}
	var first *pgproto3.ErrorResponse
	for _, l := range r.legs {
		if l.err != nil && first == nil {
			first = r.clientLine(l, l.err)
		}
	}
	if r.tx {
		// The client's COMMIT or ROLLBACK ends the shards' transactions.
		for _, l := range r.legs {
			if !l.live {
				r.s.dropLeg(l.c)
			}
		}
		if !commit || first != nil || lost != nil {
			r.s.tx.failed = true
			r.s.txStatus = 'E'
		}
		return first, lost
	}
	if commit && first == nil && lost == nil && len(r.legs) > 1 && r.s.runtime().Config.TwoPhaseCommit {
		// Atomic across shards: two-phase commit (txn.go), which gives the
		// backends back to their pools itself.
		conns := make([]*pool.Conn, len(r.legs))
		for i, l := range r.legs {
			conns[i], l.given = l.c, true
		}
		return nil, r.s.commitLegs(context.Background(), conns)
	}
	end := "COMMIT"
	if !commit || first != nil || lost != nil {
		end = "ROLLBACK"
	} else if len(r.legs) > 1 {
		shards := make([]string, len(r.legs))
		for i, l := range r.legs {
			shards[i] = l.shard
		}
		defer r.s.srv.commits.commit(shards)() // visible everywhere at once (visibility.go)
	}
	for _, l := range r.legs {
		if !l.live {
			continue
		}
		l.c.Send(&pgproto3.Query{String: end})
		if err := l.c.Flush(); err != nil {
			note(l, backendLost(l.shard, err))
		}
	}
	for _, l := range r.legs {
		if !l.live {
			continue
		}
		before := l.err
		if err := l.readReply(); err != nil {
			note(l, err)
			continue
		}
		if l.err != before && end == "COMMIT" && lost == nil {
			lost = pgError("40000", "shardproxy: COMMIT of COPY failed on shard %s; the rows may be committed on other shards", l.shard)
		}
	}
	return first, lost
}

// readReply reads a leg's reply up to ReadyForQuery, keeping the COPY row
// count and the first error.
func (l *copyLeg) readReply() error {
	l.live = false
	for {
		m, err := l.c.Receive()
		if err != nil {
			return backendLost(l.shard, err)
		}
		switch m := m.(type) {
		case *pgproto3.CommandComplete:
			if verb, n, ok := splitTag(string(m.CommandTag)); ok && verb == "COPY" {
				l.count = n
			}
		case *pgproto3.ErrorResponse:
			if l.err == nil {
				e := *m
				l.err = &e
			}
		case *pgproto3.ReadyForQuery:
			l.live = true
			return nil
		}
	}
}

// release returns the legs' backends: reusable ones to the pool, the rest
// closed (which rolls back whatever they held).
func (r *copyRun) release() {
	rt := r.rt
	for _, l := range r.legs {
		if l.given {
			continue
		}
		r.s.setActive(l.c, false)
		if l.live {
			rt.Pools.Get(l.shard).Release(l.c)
		} else {
			rt.Pools.Get(l.shard).Discard(l.c)
		}
	}
	r.legs = nil
}

// copyIn runs COPY FROM STDIN on several shards.
func (s *session) copyIn(ctx context.Context, st *router.Statement, sp *router.CopySpec, text string, route router.Route) (bool, error) {
	rt := s.runtime()
	placer, err := rt.Router.CopyPlacer(ctx, sp, router.Args{Columns: s.copyColumns, TimeZone: s.timeZone(), ColumnType: s.colType,
		CustomSearchPath: s.customSearchPath()})
	if err != nil {
		return true, s.refuseCopy(sp, err)
	}
	r := &copyRun{s: s, rt: rt, byName: make(map[string]*copyLeg, len(route.Shards)), tx: s.txStatus != 'I'}
	defer r.release()
	fail := func(err error, msg pgproto3.FrontendMessage) (bool, error) {
		first, lost := r.end(msg, false)
		if first != nil && err == nil {
			return true, s.send(first)
		}
		if err == nil {
			err = lost
		}
		if err == nil {
			err = pgError("XX000", "shardproxy: COPY failed on a shard without an error")
		}
		return true, s.sendError(err)
	}
	copyFail := &pgproto3.CopyFail{Message: "shardproxy: COPY aborted"}

	var split *copySplitter
	var ncols int
	format := int16(0)
	if sp.Format == router.CopyBinary {
		format = 1
	}
	if placer == nil {
		// A reference table: every shard reads the client's stream as is.
		if route.Kind != router.RouteBroadcast {
			return true, s.sendError(pgError("XX000", "shardproxy: COPY of table %s routes to several shards but is not split", sp.Table))
		}
		r.sql, r.locks = text, refLockQuery(st)
		for _, sh := range route.Shards {
			l, err := r.start(ctx, sh)
			if err != nil {
				return fail(err, copyFail)
			}
			if l.err != nil {
				return fail(nil, copyFail)
			}
		}
		ncols = len(r.formats)
	} else {
		r.sql = sp.NoHeaderSQL
		split = newCopySplitter(sp, placer.KeyColumn(), placer.Key())
		ncols = placer.Columns()
	}
	resp := &pgproto3.CopyInResponse{OverallFormat: byte(format), ColumnFormatCodes: make([]uint16, ncols)}
	for i := range resp.ColumnFormatCodes {
		resp.ColumnFormatCodes[i] = uint16(format)
	}
	if err := s.send(resp); err != nil {
		return true, errClientGone
	}
	if err := s.flush(); err != nil {
		return true, errClientGone
	}

	if sp.Header && sp.Format != router.CopyBinary {
		r.line = 1
	}
	row := func(raw, key []byte, null bool) error {
		r.line++
		shard, err := placer.Place(ctx, key, null, sp.Format == router.CopyBinary)
		if err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Where == "" {
				e := *pgErr // (a copy: the error may be shared)
				e.Where = fmt.Sprintf("COPY %s, line %d", sp.Table[strings.LastIndexByte(sp.Table, '.')+1:], r.line)
				return &e
			}
			return err
		}
		l := r.byName[shard]
		if l == nil {
			if split.binHeader != nil {
				r.prefix = split.binHeader
			}
			if l, err = r.start(ctx, shard); err != nil {
				return err
			}
			if l.err != nil {
				return errCopyLegFailed
			}
		}
		l.buf = append(l.buf, raw...)
		if r.mapped < maxCopyLines {
			l.lines = append(l.lines, uint32(r.line))
			r.mapped++
		}
		if len(l.buf) >= copyBatch {
			return r.send(l)
		}
		return nil
	}
	for {
		msg, err := s.receive()
		if err != nil {
			for _, l := range r.legs {
				l.live = false // closing them rolls back
			}
			return true, errClientGone
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if split == nil {
				for _, l := range r.legs {
					l.c.Send(msg)
					if err := l.c.Flush(); err != nil {
						return fail(backendLost(l.shard, err), copyFail)
					}
				}
				continue
			}
			if err := split.feed(msg.Data, row); err != nil {
				return fail(dropLegFailed(err), copyFail)
			}
		case *pgproto3.CopyDone:
			if split != nil {
				if err := split.finish(row); err != nil {
					return fail(dropLegFailed(err), copyFail)
				}
				if sp.Format == router.CopyBinary {
					for _, l := range r.legs {
						l.buf = append(l.buf, binaryTrailer...)
					}
				}
			}
			first, lost := r.end(msg, true)
			if first != nil {
				return true, s.send(first)
			}
			if lost != nil {
				return true, s.sendError(lost)
			}
			var total int64
			for _, l := range r.legs {
				total += l.count
			}
			if placer == nil && len(r.legs) > 0 {
				total = r.legs[0].count // every shard holds every row
			}
			return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte("COPY " + strconv.FormatInt(total, 10))})
		case *pgproto3.CopyFail:
			first, _ := r.end(msg, false)
			if first != nil {
				return true, s.send(first)
			}
			return true, s.sendError(pgError("57014", "COPY from stdin failed: %s", msg.Message))
		case *pgproto3.Flush, *pgproto3.Sync:
			// Ignored during COPY, as Postgres does.
		default:
			return fail(errProtocol("unexpected message type 0x%02X during COPY from stdin", msgType(msg)), copyFail)
		}
	}
}

// refuseCopy reports err, which ends a COPY before it started. What
// Postgres would have started but the proxy refuses (0A000: a column list
// without the shard key, HEADER MATCH) fails as Postgres fails a COPY in
// its data when it comes FROM STDIN: in copy-in mode, with the client's
// data read to its end and dropped. Refused before the CopyInResponse,
// the data lines of a psql script (\copy ... FROM STDIN) would run as SQL.
func (s *session) refuseCopy(sp *router.CopySpec, err error) error {
	var pgErr *pgconn.PgError
	if sp == nil || !sp.From || !sp.Stdio || !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		return s.sendError(err)
	}
	resp := &pgproto3.CopyInResponse{ColumnFormatCodes: make([]uint16, len(sp.Columns))}
	if sp.Format == router.CopyBinary {
		resp.OverallFormat = 1
		for i := range resp.ColumnFormatCodes {
			resp.ColumnFormatCodes[i] = 1
		}
	}
	if s.send(resp) != nil || s.flush() != nil {
		return errClientGone
	}
	for {
		msg, rerr := s.receive()
		if rerr != nil {
			return errClientGone
		}
		switch msg.(type) {
		case *pgproto3.CopyData, *pgproto3.Flush, *pgproto3.Sync:
		case *pgproto3.CopyDone, *pgproto3.CopyFail:
			return s.sendError(err)
		default:
			return s.sendError(errProtocol("unexpected message type 0x%02X during COPY from stdin", msgType(msg)))
		}
	}
}

// copyColumnsSQL lists the columns a COPY without a column list reads, in
// order: unlike INSERT ... VALUES, COPY skips generated columns.
const copyColumnsSQL = `SELECT a.attname FROM pg_catalog.pg_attribute a ` +
	`WHERE a.attrelid = $1::pg_catalog.regclass AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum`

// copyColumns is router.Args.Columns for COPY. It is looked up once per
// COPY statement, so it is not cached.
func (s *session) copyColumns(ctx context.Context, schema, rel string) ([]string, error) {
	name := quoteIdentAlways(rel)
	if schema != "" {
		name = quoteIdentAlways(schema) + "." + name
	}
	return s.queryCatalog(ctx, copyColumnsSQL, name)
}

// errCopyLegFailed: a shard refused to start its COPY; its own error is
// the one the client gets.
var errCopyLegFailed = errors.New("shard refused COPY")

func dropLegFailed(err error) error {
	if errors.Is(err, errCopyLegFailed) {
		return nil
	}
	return err
}

func msgType(msg pgproto3.FrontendMessage) byte {
	b, err := msg.Encode(nil)
	if err != nil || len(b) == 0 {
		return 0
	}
	return b[0]
}

// copyOut runs COPY TO STDOUT on several shards and concatenates their data.
func (s *session) copyOut(ctx context.Context, sp *router.CopySpec, text string, route router.Route) (bool, error) {
	rt := s.runtime()
	type leg struct {
		c       *pool.Conn
		prelude int
		live    bool
	}
	legs := make([]leg, 0, len(route.Shards))
	inTx := s.txStatus != 'I' // on the transaction's backends (txConn), which it keeps
	defer func() {
		for _, l := range legs {
			if inTx {
				if !l.live {
					s.dropLeg(l.c)
				}
				continue
			}
			s.setActive(l.c, false)
			if l.live {
				rt.Pools.Get(l.c.Shard).Release(l.c)
			} else {
				rt.Pools.Get(l.c.Shard).Discard(l.c)
			}
		}
	}()
	if err := s.holdIfPaused(ctx, route.Shards...); err != nil { // before any leg holds a backend
		return true, s.sendError(err)
	}
	for i, sh := range route.Shards {
		var c *pool.Conn
		n := 0
		var err error
		if inTx {
			c, err = s.txConn(ctx, sh)
		} else {
			c, n, err = s.acquire(ctx, sh)
		}
		if err != nil {
			return true, s.sendError(err)
		}
		legs = append(legs, leg{c: c, prelude: n})
		q := text
		if i > 0 && sp.Header {
			q = sp.NoHeaderSQL // one header line, from the first shard
		}
		c.Send(&pgproto3.Query{String: q})
		if err := c.Flush(); err != nil {
			return true, s.sendError(backendLost(sh, err))
		}
	}
	bin := sp.Format == router.CopyBinary
	var first *pgproto3.ErrorResponse
	var lost error
	sentResp := false
	var total int64
	s.watch.start()
	defer s.watch.stop()
	for i := range legs {
		l := &legs[i]
		dataMsgs := 0
	read:
		for {
			msg, err := l.c.Receive()
			if err != nil {
				if lost == nil {
					lost = backendLost(l.c.Shard, err)
				}
				break
			}
			switch msg := msg.(type) {
			case *pgproto3.ReadyForQuery:
				if l.prelude > 0 {
					l.prelude--
					continue
				}
				l.live = msg.TxStatus == 'I' || inTx && msg.TxStatus != 0
				if inTx && msg.TxStatus == 'E' {
					s.tx.failed, s.txStatus = true, 'E'
				}
				break read
			case *pgproto3.ErrorResponse:
				if l.prelude == 0 && first == nil {
					e := *msg
					first = &e
				}
			case *pgproto3.CopyOutResponse:
				if !sentResp && first == nil {
					sentResp = true
					if err := s.sendOrGone(msg); err != nil {
						return true, err
					}
				}
			case *pgproto3.CopyData:
				if first != nil || lost != nil {
					continue
				}
				data := msg.Data
				if bin {
					dataMsgs++
					if dataMsgs == 1 && i > 0 {
						data = stripBinaryHeader(data)
					}
					if bytes.Equal(data, binaryTrailer) {
						continue // one trailer, at the very end
					}
				}
				if len(data) > 0 {
					if err := s.sendOrGone(&pgproto3.CopyData{Data: data}); err != nil {
						return true, err
					}
				}
			case *pgproto3.CommandComplete:
				if _, n, ok := splitTag(string(msg.CommandTag)); ok {
					total += n
				}
			case *pgproto3.NoticeResponse:
				if l.prelude == 0 {
					if err := s.sendOrGone(msg); err != nil {
						return true, err
					}
				}
			}
		}
	}
	if first != nil {
		return true, s.send(first)
	}
	if lost != nil {
		return true, s.sendError(lost)
	}
	if bin {
		if err := s.sendOrGone(&pgproto3.CopyData{Data: binaryTrailer}); err != nil {
			return true, err
		}
	}
	if err := s.sendOrGone(&pgproto3.CopyDone{}); err != nil {
		return true, err
	}
	return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte("COPY " + strconv.FormatInt(total, 10))})
}

// stripBinaryHeader drops the file header from a shard's first binary
// CopyData: the client gets one header, from the first shard.
func stripBinaryHeader(b []byte) []byte {
	n := len(binarySignature) + 8
	if len(b) < n || !bytes.HasPrefix(b, binarySignature) {
		return b
	}
	ext := int(uint32(b[15])<<24 | uint32(b[16])<<16 | uint32(b[17])<<8 | uint32(b[18]))
	if len(b) < n+ext {
		return b
	}
	return b[n+ext:]
}
