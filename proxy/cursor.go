package proxy

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// SQL cursors (DECLARE, FETCH, MOVE, CLOSE), in both protocols, and the
// extended protocol's row-limited Execute of a SELECT across shards.
//
// A cursor lives on a shard, but FETCH, MOVE, CLOSE and WHERE CURRENT OF
// name no table: the session remembers where each cursor of the open
// transaction was declared (txn.cursors) and sends them there. Without
// that, a FETCH in a transaction spanning shards went to whichever shard
// the transaction used last, and found no cursor there.
//
// A cursor whose query spans shards (psql's FETCH_COUNT, psycopg's named
// cursors, any batch export) is a merged cursor: the same cursor is
// declared on every shard of the query, over the plan's shard query, and
// the proxy runs the plan's merge (router.Rows) as FETCH asks for rows,
// reading each shard's cursor a batch at a time. Between statements every
// shard's backend is idle in the transaction, so the client may run
// anything else in it while the cursor is open. Memory is the batches
// (bounded per leg by cursorBatchBytes) plus what the merge itself holds
// (merge_memory), whatever the size of the result.
//
// Postgres' rules kept: a cursor ends with its transaction, or at ROLLBACK
// TO a savepoint taken before it; a FETCH that failed leaves the cursor
// unusable (55000) even if a ROLLBACK TO saves the transaction. A merged
// cursor reads forward only: a backward FETCH or MOVE is refused (55000
// for a NO SCROLL cursor, as Postgres; 0A000 otherwise), and DECLARE ...
// SCROLL across shards is refused. Its rows are read ahead of the client,
// so a SET that changes how values are written is refused while it holds
// some (setWhileCursorsRead).
//
// A row-limited Execute of a SELECT portal across shards (JDBC's fetch
// size) runs the same way, through an internal cursor (executeRowLimited).

// cursorRef is what the session knows of one cursor of the transaction.
type cursorRef struct {
	shard  string        // a one-shard cursor's shard
	merged *mergedCursor // a cursor across shards; nil for one shard
	depth  int           // savepoints open when it was declared
}

// mergedCursor is a cursor whose query spans shards.
type mergedCursor struct {
	name     string
	plan     *router.ScatterPlan
	in       planInputs
	legs     []*cursorLeg
	binary   bool // DECLARE ... BINARY: rows go to the client in binary
	noScroll bool // declared NO SCROLL
	// rows is the running merge, opened at the first FETCH or MOVE (a
	// query's runtime errors surface there, as on Postgres).
	rows   *router.Rows
	fields []pgproto3.FieldDescription // the shards' row description
	enums  map[uint32]uint32
	done   bool // the merge returned its last row
	failed bool // a FETCH failed: the cursor cannot run any more
}

// Batches a merged cursor reads from each shard: it starts small (a FETCH
// of a few rows should not read thousands) and doubles while batches stay
// small in bytes, up to cursorMaxBatch rows; a batch over
// cursorBatchBytes halves the next.
const (
	cursorFirstBatch = 64
	cursorMaxBatch   = 4096
	cursorBatchBytes = 1 << 20
)

// emptyValue is a zero-length value that is not NULL.
var emptyValue = []byte{}

// cursorLeg is one shard's cursor; it is the merge's router.Source for
// that shard. Its backend is the transaction's leg on the shard.
type cursorLeg struct {
	scatterLeg
	ctx    context.Context
	shard  string
	quoted string // the cursor's name as SQL
	batch  int
	// lastBytes is the size of the last batch's values: the next one's
	// first allocation.
	lastBytes int
	buf       [][][]byte
	pos       int
	drained   bool // the shard's cursor has no more rows
}

// Next implements router.Source.
func (l *cursorLeg) Next() ([][]byte, error) {
	for l.pos >= len(l.buf) {
		if l.drained {
			if l.err != nil {
				return nil, &shardError{l.err}
			}
			return nil, nil
		}
		if err := l.fetch(); err != nil {
			return nil, err
		}
	}
	row := l.buf[l.pos]
	l.buf[l.pos] = nil
	l.pos++
	return row, nil
}

// fetch reads the next batch of the shard's cursor into buf. The reply is
// read to ReadyForQuery, so that the backend is free for the rest of the
// transaction between the client's statements.
func (l *cursorLeg) fetch() error {
	s := l.s
	c, err := s.txConn(l.ctx, l.shard)
	if err != nil {
		return err
	}
	if c != l.c {
		return pgError("08006", "shardproxy: the backend of cursor %s on shard %s was lost", l.quoted, l.shard)
	}
	l.buf, l.pos = l.buf[:0], 0
	s.sendQuery(c, "FETCH FORWARD "+strconv.Itoa(l.batch)+" FROM "+l.quoted)
	if err := c.Flush(); err != nil {
		s.dropLeg(c)
		return backendLost(l.shard, err)
	}
	l.ready, l.ended = false, false
	got, size := int64(-1), 0
	var vals [][]byte // the values of the batch's rows
	var slab []byte   // their bytes
	for !l.ready {
		msg, err := l.receive()
		if err != nil {
			if !errors.Is(err, errClientGone) {
				s.dropLeg(c)
				err = backendLost(l.shard, err)
			}
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.RowDescription:
			if l.fields == nil {
				l.fields = copyRowDescription(m).Fields
			}
		case *pgproto3.DataRow:
			// The batch's values share a few large arrays (a full one is
			// left to the rows already cut from it, and a new one begun).
			if len(vals)+len(m.Values) > cap(vals) {
				vals = make([][]byte, 0, max(len(m.Values)*l.batch, len(m.Values)))
			}
			start := len(vals)
			for _, v := range m.Values {
				if v != nil && len(slab)+len(v) > cap(slab) {
					slab = make([]byte, 0, max(l.lastBytes, 4096, len(v)))
				}
				switch {
				case len(v) > 0:
					from := len(slab)
					slab = append(slab, v...)
					v = slab[from:len(slab):len(slab)]
					size += len(v)
				case v != nil:
					v = emptyValue // '' is not NULL
				}
				vals = append(vals, v)
			}
			l.buf = append(l.buf, vals[start:len(vals):len(vals)])
			l.rows++
		case *pgproto3.CommandComplete:
			if _, n, ok := splitTag(string(m.CommandTag)); ok {
				got = n
			}
		}
	}
	l.bytes += int64(size)
	l.lastBytes = size
	s.settle(l.status)
	if l.err != nil {
		l.drained = true
		return &shardError{l.err}
	}
	if got < int64(l.batch) {
		l.drained = true
	}
	switch {
	case size > cursorBatchBytes:
		l.batch = max(1, l.batch/2)
	case size < cursorBatchBytes/4 && l.batch < cursorMaxBatch:
		l.batch *= 2
	}
	return nil
}

// cursorDecl is a DECLARE whose query spans shards, planned.
type cursorDecl struct {
	cs    *router.CursorStmt
	st    *router.Statement // the query's
	route router.Route      // the query's
	plan  *router.ScatterPlan
	sql   string // the query every shard's cursor runs
	in    planInputs
	// send writes the shards' DECLARE (text) to one backend, as the
	// client's protocol needs: a Query, or Parse/Bind/Execute/Sync with
	// the client's parameters.
	send func(c *pool.Conn, text string)
}

// planCursor plans a DECLARE whose own route came back as
// router.CursorAcrossShards: its query, st, routed with args. lits are
// the query's literal tokens. It returns nil when the query is not one
// the proxy merges (the DECLARE's route then refuses it), and shard when
// the query needs that one shard only (a view read as its query may tell
// where its rows are).
func (s *session) planCursor(ctx context.Context, cs *router.CursorStmt, st *router.Statement, args router.Args, lits []string) (d *cursorDecl, shard string, err error) {
	if st.Kind != router.KindSelect || st.MayWrite {
		return nil, "", nil
	}
	route, err := s.runtime().Router.Route(ctx, st, args)
	if err != nil {
		return nil, "", err
	}
	switch {
	case len(route.Shards) == 1:
		return nil, route.Shards[0], nil
	case len(route.Shards) < 2:
		return nil, "", nil
	}
	d = &cursorDecl{cs: cs, st: st, route: route}
	if d.plan, d.sql = shardQuery(route, cs.Query, lits); d.plan == nil {
		return nil, "", nil
	}
	return d, "", nil
}

// shardQuery is the plan of a SELECT (query, with literal tokens lits)
// routed across shards, and the text every shard runs for it: the plan's
// own shard query, or the SELECT itself when its rows concatenate. nil
// for a route that is neither.
func shardQuery(route router.Route, query string, lits []string) (*router.ScatterPlan, string) {
	switch route.Merge {
	case router.MergePlan:
		return route.Plan, renderLiterals(route.Plan.Scatter().SQL, lits)
	case router.MergeConcat:
		sql := trimStatement(strings.TrimSpace(query))
		return router.ConcatPlan(sql), sql
	}
	return nil, ""
}

// extDeclare is how a cursor declared for an extended-protocol portal
// reaches a shard (cursorDecl.send): with the portal's parameters.
func extDeclare(ps *prepared, mb *multiBind) func(c *pool.Conn, text string) {
	return func(c *pool.Conn, text string) {
		c.Send(&pgproto3.Parse{Query: text, ParameterOIDs: ps.paramOIDs})
		c.Send(&pgproto3.Bind{ParameterFormatCodes: mb.formats, Parameters: mb.params})
		c.Send(&pgproto3.Execute{})
		c.Send(&pgproto3.Sync{})
	}
}

// cursorStatement serves, in the simple protocol, DECLARE, FETCH, MOVE
// and CLOSE where the session must: a cursor across shards, or a cursor it
// knows the shard of. done is false for what goes the usual way (a
// one-shard DECLARE, noted after it ran by noteCursor; a cursor the
// session does not know, such as one a function opened).
func (s *session) cursorStatement(ctx context.Context, st *router.Statement, text string, args [][]byte) (done, failed bool, err error) {
	cs, perr := router.ParseCursor(text)
	if perr != nil {
		return false, false, nil // the shard reports it
	}
	if cs.Op == 'D' {
		if s.portalTaken(cs.Name) {
			return true, true, s.sendError(errCursorExists(cs.Name))
		}
		rargs := s.routeArgs(args)
		if _, rerr := s.runtime().Router.Route(ctx, st, rargs); !router.CursorAcrossShards(rerr) {
			return false, false, nil
		}
		parts, perr := s.runtime().Router.ParseQuery(cs.Query)
		if perr != nil || len(parts) != 1 {
			return false, false, nil
		}
		p := parts[0]
		d, shard, err := s.planCursor(ctx, cs, p.Stmt, s.routeArgs(p.Args), p.Lits)
		switch {
		case err != nil:
			return true, true, s.sendError(err)
		case shard != "":
			failed, err := s.execRoute(ctx, st, text, router.Route{Kind: router.RouteSingle, Shards: []string{shard}})
			if !failed {
				s.noteCursor(text)
			}
			return true, failed, err
		case d == nil:
			return false, false, nil
		}
		d.in = planInputs{param: literalParams(p.Args), lits: p.Lits}
		d.send = func(c *pool.Conn, text string) { s.sendQuery(c, text) }
		failed, err := s.declare(ctx, d)
		return true, failed, err
	}
	if cs.Op == 'C' && cs.Name == "" {
		failed, err := s.closeAll(st, text)
		return s.multiLeg(), failed, err
	}
	ref := s.tx.cursors[cs.Name]
	switch {
	case ref == nil:
		return false, false, nil
	case ref.merged == nil:
		failed, err := s.execRoute(ctx, st, text, router.Route{Kind: router.RouteSingle, Shards: []string{ref.shard}})
		if cs.Op == 'C' && !failed {
			delete(s.tx.cursors, cs.Name)
		}
		return true, failed, err
	case cs.Op == 'C':
		failed, err := s.closeMerged(ctx, cs.Name, ref.merged)
		return true, failed, err
	}
	var formats []int16
	if ref.merged.binary {
		formats = []int16{1}
	}
	failed, err = s.fetchMerged(ctx, ref.merged, cs, formats, !cs.Move, false)
	return true, failed, err
}

// closeAll serves CLOSE ALL: the session forgets its cursors, and in a
// transaction that spans shards every shard closes its own (one reply;
// failed and err as onAllLegs). Otherwise the transaction's one shard
// runs it the usual way.
func (s *session) closeAll(st *router.Statement, text string) (bool, error) {
	s.tx.cursors = nil
	if !s.multiLeg() {
		return false, nil
	}
	return s.onAllLegs(st, text)
}

// declare declares a merged cursor on every shard of its query and
// answers the client. failed reports a statement error.
func (s *session) declare(ctx context.Context, d *cursorDecl) (failed bool, err error) {
	cs := d.cs
	switch {
	case s.txStatus == 'I':
		return true, s.sendError(pgError("25P01", "DECLARE CURSOR can only be used in transaction blocks"))
	case cs.Options&router.CursorScroll != 0:
		return true, s.sendError(errNotSupported("declare it NO SCROLL (forward only), or add a condition on the shard key so that the query targets one shard",
			"SCROLL cursors across shards are not supported"))
	}
	if s.portalTaken(cs.Name) {
		return true, s.sendError(errCursorExists(cs.Name))
	}
	mc, failed, err := s.openCursor(ctx, d)
	if failed || err != nil {
		return true, err
	}
	s.noteCursorRef(cs.Name, &cursorRef{merged: mc})
	return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte("DECLARE CURSOR")})
}

// openCursor declares d's cursor on every shard of its query and returns
// it; failed reports an error sent to the client.
func (s *session) openCursor(ctx context.Context, d *cursorDecl) (mc *mergedCursor, failed bool, err error) {
	cs, route := d.cs, d.route
	if err := s.checkMulti(d.st, route); err != nil {
		return nil, true, s.sendError(err)
	}
	if err := s.holdIfPaused(ctx, route.Shards...); err != nil { // before any leg holds a backend
		return nil, true, s.sendError(err)
	}
	mc = &mergedCursor{name: cs.Name, plan: d.plan, in: d.in,
		binary: cs.Options&router.CursorBinary != 0, noScroll: cs.Options&router.CursorNoScroll != 0}
	quoted := quoteIdent(cs.Name)
	s.stmtTouches, s.stmtSnapshot, s.stmtWrites = true, true, false // it reads tables (txn.touch, snapshot.go)
	for _, sh := range route.Shards {
		c, err := s.txConn(ctx, sh)
		if err != nil {
			return nil, true, s.sendError(err)
		}
		mc.legs = append(mc.legs, &cursorLeg{scatterLeg: scatterLeg{s: s, c: c}, ctx: ctx, shard: sh,
			quoted: quoted, batch: cursorFirstBatch})
	}
	declare := "DECLARE " + quoted + " NO SCROLL CURSOR FOR " + d.sql
	closeSQL := "CLOSE " + quoted
	fail := func(failure *pgproto3.ErrorResponse, lost error) (*mergedCursor, bool, error) {
		switch {
		case errors.Is(lost, errClientGone):
			return nil, true, lost
		case lost != nil:
			return nil, true, s.sendError(lost)
		}
		s.failTransaction()
		return nil, true, s.send(failure)
	}
	// The shards take the cursor's snapshots now: inside a read window,
	// so that a cross-shard commit is seen on all of them or none
	// (visibility.go), taken again if one overlapped.
	gate := &s.srv.commits
	for retakes := 0; ; retakes++ {
		w, err := gate.open(ctx, route.Shards)
		if err != nil {
			return nil, true, s.sendError(err)
		}
		failure, lost := s.onLegs(mc.legs, func(c *pool.Conn) { d.send(c, declare) })
		tainted := gate.close(w)
		switch {
		case lost != nil || failure != nil:
			return fail(failure, lost)
		case !tainted:
			return mc, false, nil
		}
		gate.retakes.Add(1)
		if failure, lost := s.onLegs(mc.legs, func(c *pool.Conn) { s.sendQuery(c, closeSQL) }); lost != nil || failure != nil {
			return fail(failure, lost)
		}
		if retakes == maxRetakes {
			return nil, true, s.sendError(pgError("40001", "could not serialize access: cross-shard commits kept overlapping the cursor's snapshots on shards %s", strings.Join(route.Shards, ", ")))
		}
		if err := gate.await(ctx, route.Shards...); err != nil {
			return nil, true, s.sendError(err)
		}
	}
}

// onLegs sends a statement to every leg of a merged cursor at once and
// reads each reply to ReadyForQuery. failure is the first shard's error;
// lost a broken backend (its leg is dropped) or errClientGone.
func (s *session) onLegs(legs []*cursorLeg, send func(c *pool.Conn)) (failure *pgproto3.ErrorResponse, lost error) {
	for _, l := range legs {
		send(l.c)
		if err := l.c.Flush(); err != nil {
			s.dropLeg(l.c)
			return nil, backendLost(l.shard, err)
		}
	}
	for _, l := range legs {
		l.ready, l.ended, l.err = false, false, nil
		for !l.ready {
			if _, err := l.receive(); err != nil {
				if errors.Is(err, errClientGone) {
					return nil, err
				}
				s.dropLeg(l.c)
				if lost == nil {
					lost = backendLost(l.shard, err)
				}
				break
			}
		}
		if l.ready {
			s.settle(l.status)
		}
		if failure == nil && l.err != nil {
			failure = l.err
		}
		l.err = nil
	}
	return failure, lost
}

// noteCursorRef records a cursor declared in the open transaction.
func (s *session) noteCursorRef(name string, ref *cursorRef) {
	if s.tx.cursors == nil {
		s.tx.cursors = make(map[string]*cursorRef)
	}
	ref.depth = len(s.tx.savepoints)
	s.tx.cursors[name] = ref
}

// noteCursor follows a one-shard DECLARE that succeeded on the attached
// backend: its FETCH, MOVE and CLOSE go to that shard.
func (s *session) noteCursor(text string) {
	if s.attached != nil {
		s.noteCursorText(s.attached.Shard, text)
	}
}

// cursorsRolledBack follows ROLLBACK TO (release false) or RELEASE of the
// savepoint at index i of txn.savepoints: a rollback closes the cursors
// declared after it, a release makes them its parent's.
func (s *session) cursorsRolledBack(i int, release bool) {
	for name, ref := range s.tx.cursors {
		switch {
		case ref.depth <= i:
		case release:
			ref.depth = i
		default:
			delete(s.tx.cursors, name)
		}
	}
}

// fetchMerged serves FETCH or MOVE on a merged cursor: rows in the
// result formats formats, with a RowDescription first if describe. For a
// portal's row-limited Execute (portal), the reply ends as Postgres ends
// it: PortalSuspended when the limit was reached, else "SELECT n".
func (s *session) fetchMerged(ctx context.Context, mc *mergedCursor, cs *router.CursorStmt, formats []int16, describe, portal bool) (bool, error) {
	verb := "FETCH"
	if cs.Move {
		verb = "MOVE"
	}
	if portal {
		verb = "SELECT"
	}
	switch {
	case mc.failed:
		return true, s.sendError(pgError("55000", "portal %q cannot be run", mc.name))
	case (cs.Backward || cs.Forward && cs.Count < 0) && mc.noScroll:
		return true, s.sendError(&pgconn.PgError{Severity: "ERROR", Code: "55000", Message: "cursor can only scan forward",
			Hint: "Declare it with SCROLL option to enable backward scan."})
	case !cs.Forward || cs.Count < 0:
		return true, s.sendError(errNotSupported("read it forward (FETCH FORWARD n, FETCH ALL), or declare it over a query that targets one shard",
			"a cursor across shards can only be read forward, a number of rows at a time"))
	case cs.Count == 0:
		return true, s.sendError(errNotSupported("read the cursor forward (FETCH FORWARD n, FETCH ALL)",
			"%s 0 (the current row again) is not supported for a cursor across shards", verb))
	}
	s.watch.start()
	defer s.watch.stop()
	fail := func(err error) (bool, error) {
		mc.failed = true
		var se *shardError
		switch {
		case errors.Is(err, errClientGone):
			return true, err
		case errors.As(err, &se):
			s.failTransaction()
			return true, s.send(se.msg)
		}
		return true, s.sendError(err)
	}
	if mc.rows == nil {
		if err := s.openMerged(ctx, mc); err != nil {
			return fail(err)
		}
	}
	out, binaryCols, failure := s.outputFields(mc.plan, mc.fields, formats)
	if failure != nil {
		return true, s.sendError(pgErrorOf(failure))
	}
	if describe && !cs.Move {
		if err := s.send(&pgproto3.RowDescription{Fields: out}); err != nil {
			return true, errClientGone
		}
	}
	var n int64
	var row pgproto3.DataRow
	for n < cs.Count && !mc.done {
		values, err := mc.rows.Next()
		if err == nil && values == nil {
			mc.done = true
			break
		}
		if err == nil && !cs.Move && binaryCols {
			values, err = s.toResultFormats(out, values, mc.enums)
		}
		if err != nil {
			return fail(err)
		}
		n++
		if cs.Move {
			continue
		}
		row.Values = values
		if err := s.send(&row); err != nil {
			return true, errClientGone
		}
	}
	if portal && n == cs.Count {
		return false, s.send(&pgproto3.PortalSuspended{})
	}
	return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(verb + " " + strconv.FormatInt(n, 10))})
}

// openMerged reads every leg's first batch, with its row description, and
// starts the merge. A shard's error comes back as a *shardError.
func (s *session) openMerged(ctx context.Context, mc *mergedCursor) error {
	var fields []pgproto3.FieldDescription
	for _, l := range mc.legs {
		if err := l.fetch(); err != nil {
			return err
		}
		switch {
		case fields == nil:
			fields, mc.enums = l.fields, l.c.Enums
		default:
			if err := router.CheckFields(fields, l.fields); err != nil {
				return err
			}
		}
	}
	conns := make([]*pool.Conn, len(mc.legs))
	srcs := make([]router.Source, len(mc.legs))
	descs := make([][]pgproto3.FieldDescription, len(mc.legs))
	for i, l := range mc.legs {
		conns[i], srcs[i], descs[i] = l.c, l, l.fields
	}
	if _, _, failure := s.outputFields(mc.plan, fields, nil); failure != nil {
		return pgErrorOf(failure)
	}
	rows, err := mc.plan.Open(ctx, fields, srcs, mc.in.param, s.execOptions(conns, descs, &mc.legs[0].scatterLeg, mc.in))
	if err != nil {
		return err
	}
	mc.rows, mc.fields = rows, fields
	return nil
}

// closeMerged closes a merged cursor on its shards.
func (s *session) closeMerged(ctx context.Context, name string, mc *mergedCursor) (bool, error) {
	for _, l := range mc.legs {
		if _, err := s.txConn(ctx, l.shard); err != nil {
			return true, s.sendError(err)
		}
	}
	closeSQL := "CLOSE " + quoteIdent(mc.name)
	failure, lost := s.onLegs(mc.legs, func(c *pool.Conn) { s.sendQuery(c, closeSQL) })
	switch {
	case errors.Is(lost, errClientGone):
		return true, lost
	case lost != nil:
		return true, s.sendError(lost)
	case failure != nil:
		s.failTransaction()
		return true, s.send(failure)
	}
	delete(s.tx.cursors, name)
	return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte("CLOSE CURSOR")})
}

// The extended protocol: a DECLARE across shards, and FETCH, MOVE and
// CLOSE of a merged cursor, are bound in the proxy (a cursor portal) and
// run at Execute, after the replies queued before them are delivered; a
// FETCH of a one-shard cursor is bound on that cursor's shard.

// cursorPortal is a portal the proxy runs for a cursor statement.
type cursorPortal struct {
	cs            *router.CursorStmt
	decl          *cursorDecl // DECLARE across shards
	resultFormats []int16     // FETCH: the client's result formats
}

// bindCursor binds ps, a cursor statement, inside a transaction block
// (and a DECLARE anywhere: its error is the cursor's). It returns the
// portal the proxy runs, or the shard of the one-shard cursor the
// statement names; neither: bound the usual way.
func (s *session) bindCursor(ctx context.Context, m *pgproto3.Bind, ps *prepared) (*portal, string, error) {
	cs, err := router.ParseCursor(ps.query)
	if err != nil {
		return nil, "", nil
	}
	switch {
	case cs.Op == 'D':
		if s.tx.cursors[cs.Name] != nil {
			return nil, "", errCursorExists(cs.Name)
		}
		rt := s.runtime().Router
		args := s.bindArgs(ps, m)
		if _, rerr := rt.Route(ctx, ps.st, args); !router.CursorAcrossShards(rerr) {
			return nil, "", nil
		}
		st, err := rt.Prepare(cs.Query)
		if err != nil {
			return nil, "", nil
		}
		lits := rt.Literals(cs.Query)
		d, shard, err := s.planCursor(ctx, cs, st, args, lits)
		if err != nil || d == nil {
			return nil, shard, err
		}
		mb := copyBind(m, d.route)
		oids, err := s.mergedParamOIDs(ctx, ps, mb)
		if err != nil {
			return nil, "", err
		}
		d.in = planInputs{param: bindParams(mb, oids, lits), lits: lits, bind: mb, oids: ps.paramOIDs}
		d.send = extDeclare(ps, mb)
		return &portal{stmt: ps, cursor: &cursorPortal{cs: cs, decl: d}}, "", nil
	case s.txStatus == 'I':
		return nil, "", nil
	case cs.Op == 'C' && cs.Name == "":
		if !s.multiLeg() {
			s.tx.cursors = nil
			return nil, "", nil
		}
		return &portal{stmt: ps, cursor: &cursorPortal{cs: cs}}, "", nil
	}
	switch ref := s.tx.cursors[cs.Name]; {
	case ref == nil:
		return nil, "", nil
	case ref.merged == nil:
		return nil, ref.shard, nil
	}
	return &portal{stmt: ps, cursor: &cursorPortal{cs: cs, resultFormats: slices.Clone(m.ResultFormatCodes)}}, "", nil
}

// extCursorReady delivers what is queued before a cursor portal runs, as
// executeMulti does: the attached backend's batch is synced (a transaction
// block survives Sync). ok is false when an earlier error skips it.
func (s *session) extCursorReady() (ok bool, err error) {
	if s.txStatus != 'I' {
		if err := s.extSyncAttached(); err != nil {
			return false, err
		}
	}
	if err := s.drain(); err != nil {
		return false, err
	}
	if s.ext.clientFailed {
		s.ext.skip = true
		return false, nil
	}
	return true, nil
}

// mergedNamed returns the merged cursor a portal's FETCH, MOVE or CLOSE
// names, or the error Postgres gives when there is none.
func (s *session) mergedNamed(cs *router.CursorStmt) (*mergedCursor, error) {
	if ref := s.tx.cursors[cs.Name]; ref != nil && ref.merged != nil {
		return ref.merged, nil
	}
	return nil, pgError("34000", "cursor %q does not exist", cs.Name)
}

// executeCursor runs cursor portal p.
func (s *session) executeCursor(ctx context.Context, p *portal, maxRows uint32) error {
	describe := s.ext.describeInExecute
	s.ext.describeInExecute = false
	cs := p.cursor.cs
	if maxRows != 0 && cs.Op == 'F' && !cs.Move {
		return s.extFail(errNotSupported("give the number of rows in FETCH itself, and execute it without a row limit",
			"row limits (Execute with max rows) are not supported for FETCH from a cursor across shards"))
	}
	if ok, err := s.extCursorReady(); !ok {
		return err
	}
	var failed bool
	var err error
	switch {
	case p.cursor.decl != nil:
		failed, err = s.declare(ctx, p.cursor.decl)
	case cs.Op == 'C' && cs.Name == "":
		if !s.multiLeg() {
			s.tx.cursors = nil
			return s.send(&pgproto3.CommandComplete{CommandTag: []byte("CLOSE CURSOR ALL")})
		}
		failed, err = s.closeAll(p.stmt.st, p.stmt.query)
	default:
		mc, merr := s.mergedNamed(cs)
		switch {
		case merr != nil:
			failed, err = true, s.sendError(merr)
		case cs.Op == 'C':
			failed, err = s.closeMerged(ctx, cs.Name, mc)
		default:
			failed, err = s.fetchMerged(ctx, mc, cs, p.cursor.resultFormats, describe, false)
		}
	}
	if failed {
		s.ext.skip, s.ext.clientFailed = true, true
	}
	return err
}

// returnsRows: the portal is a FETCH (its Describe waits for its Execute,
// deferDescribe); the others are described at once (NoData).
func (cp *cursorPortal) returnsRows() bool {
	return cp.decl == nil && cp.cs.Op == 'F' && !cp.cs.Move
}

// describeCursor answers a deferred Describe of cursor portal p, a FETCH,
// when its Execute does not follow.
func (s *session) describeCursor(ctx context.Context, p *portal) error {
	rd, err := s.cursorRows(ctx, p.cursor.cs, p.cursor.resultFormats)
	if err != nil || rd == nil {
		return err
	}
	s.pushLocal(rd)
	return nil
}

// cursorRows is the row description of FETCH from a merged cursor, in
// result formats formats, opening the merge if it has not run yet. nil
// when it failed (the client has the error).
func (s *session) cursorRows(ctx context.Context, cs *router.CursorStmt, formats []int16) (*pgproto3.RowDescription, error) {
	if ok, err := s.extCursorReady(); !ok {
		return nil, err
	}
	mc, err := s.mergedNamed(cs)
	if err == nil && mc.rows == nil {
		if err = s.openMerged(ctx, mc); err != nil {
			mc.failed = true
			var se *shardError
			if errors.As(err, &se) {
				err = pgErrorOf(se.msg)
			}
		}
	}
	if err != nil {
		if isConnErr(err) {
			return nil, err
		}
		return nil, s.extFail(err)
	}
	out, _, failure := s.outputFields(mc.plan, mc.fields, formats)
	if failure != nil {
		return nil, s.extFail(pgErrorOf(failure))
	}
	return &pgproto3.RowDescription{Fields: out}, nil
}

// describeCursorStatement answers Describe of a prepared FETCH (or MOVE,
// CLOSE) that names a cursor the session knows: a merged cursor's rows, or
// the description by the shard of a one-shard cursor. done is false for
// any other statement.
func (s *session) describeCursorStatement(ctx context.Context, ps *prepared) (done bool, err error) {
	if ps.st.Cursor() != 'F' || len(s.tx.cursors) == 0 {
		return false, nil
	}
	cs, perr := router.ParseCursor(ps.query)
	if perr != nil || cs.Move {
		return false, nil
	}
	ref := s.tx.cursors[cs.Name]
	switch {
	case ref == nil:
		return false, nil
	case ref.merged == nil:
		c, err := s.extAttach(ctx, ref.shard, true)
		if err != nil {
			return true, s.extFail(err)
		}
		name := s.ensurePrepared(c, ps)
		s.sendDescribe(c, 'S', name)
		s.pushRemote('D', c)
		return true, nil
	}
	rd, err := s.cursorRows(ctx, cs, nil)
	if err != nil || rd == nil {
		return true, err
	}
	s.pushLocal(&pgproto3.ParameterDescription{}, rd)
	return true, nil
}

// executeRowLimited runs a multi-shard SELECT portal Execute by Execute,
// as a row limit asks (JDBC's setFetchSize, a pipeline reading a portal
// in steps): the first such Execute declares an internal cursor over the
// portal's query on its shards, inside the transaction block (a
// pipeline's implicit one outside BEGIN, ended at Sync as Postgres ends
// the portal), and every Execute reads as many rows as it asks for.
func (s *session) executeRowLimited(ctx context.Context, p *portal, maxRows uint32, describe bool) error {
	ps, mb := p.stmt, p.multi
	if p.rowCursor == nil {
		if ps.st.Kind != router.KindSelect || ps.st.MayWrite || !s.runtime().Config.TwoPhaseCommit ||
			mb.route.Merge != router.MergePlan && mb.route.Merge != router.MergeConcat {
			return s.extFail(errNotSupported("set two_phase_commit: true to read a SELECT across shards a number of rows at a time, or fetch all rows at once (no row limit)",
				"row limits (Execute with max rows) are not supported for this statement across shards"))
		}
		if s.txStatus == 'I' {
			// The portal lives until Sync, in the pipeline's implicit
			// transaction (implicit.go), which holds its shards' cursors.
			s.pendingBegin, s.txStatus, s.implicit = "BEGIN", 'T', true
		}
		d := &cursorDecl{cs: &router.CursorStmt{Op: 'D', Name: "_shardproxy_portal_" + strconv.Itoa(s.ext.cursorSeq)},
			st: ps.st, route: mb.route}
		s.ext.cursorSeq++
		if !ps.litsDone {
			ps.lits, ps.litsDone = s.runtime().Router.Literals(ps.query), true
		}
		d.plan, d.sql = shardQuery(mb.route, ps.query, ps.lits)
		oids, err := s.mergedParamOIDs(ctx, ps, mb)
		if err != nil {
			return s.extFail(err)
		}
		d.in = planInputs{param: bindParams(mb, oids, ps.lits), lits: ps.lits, bind: mb, oids: ps.paramOIDs}
		d.send = extDeclare(ps, mb)
		mc, failed, err := s.openCursor(ctx, d)
		if failed || err != nil {
			s.ext.skip, s.ext.clientFailed = true, true
			return err
		}
		p.rowCursor = mc
	}
	count := int64(maxRows)
	if count == 0 {
		count = router.FetchAll
	}
	failed, err := s.fetchMerged(ctx, p.rowCursor, &router.CursorStmt{Op: 'F', Forward: true, Count: count}, mb.resultFormats, describe, true)
	if failed {
		s.ext.skip, s.ext.clientFailed = true, true
	}
	return err
}

// portalTaken reports whether name is a portal or a SQL cursor of the
// session: Postgres keeps both in one namespace, where a name is taken
// until it is closed or its transaction (or subtransaction) ends.
func (s *session) portalTaken(name string) bool {
	return s.ext.portals[name] != nil || s.tx.cursors[name] != nil
}

// errCursorExists: the cursor name is taken in the transaction, on
// whichever shard; Postgres' 42P03.
func errCursorExists(name string) error {
	return pgError("42P03", "cursor %q already exists", name)
}

// noteCursorText follows a cursor statement that succeeded on shard
// outside the proxy's own handling (in a multi-statement Query sent whole,
// or a portal): a DECLARE is noted, a CLOSE forgets.
func (s *session) noteCursorText(shard, text string) {
	if s.txStatus == 'I' {
		return
	}
	cs, err := router.ParseCursor(text)
	switch {
	case err != nil:
	case cs.Op == 'D':
		s.noteCursorRef(cs.Name, &cursorRef{shard: shard})
	case cs.Op == 'C' && cs.Name == "":
		s.tx.cursors = nil
	case cs.Op == 'C':
		delete(s.tx.cursors, cs.Name)
	}
}

// currentOfShard finds where an UPDATE or DELETE ... WHERE CURRENT OF
// must run: the shard of the one-shard cursor it names ("" for a cursor
// the session does not know: routed as usual). A cursor across shards
// has read ahead on its shards; its current row is not theirs.
func (s *session) currentOfShard(st *router.Statement) (string, error) {
	name := st.CurrentOf()
	if name == "" || s.txStatus == 'I' {
		return "", nil
	}
	switch ref := s.tx.cursors[name]; {
	case ref == nil:
		return "", nil
	case ref.merged != nil:
		return "", errNotSupported("update or delete the row by its key (the cursor's query can select it)",
			"WHERE CURRENT OF cursor %q, which spans shards, is not supported", name)
	default:
		return ref.shard, nil
	}
}

// outputSettings change how Postgres writes values as text: a merged
// cursor holds rows its shards wrote under the old value.
var outputSettings = map[string]bool{"timezone": true, "datestyle": true, "intervalstyle": true,
	"extra_float_digits": true, "bytea_output": true, "lc_monetary": true, "lc_numeric": true,
	"lc_time": true, "xmlbinary": true, "xmloption": true, "": true} // "": RESET ALL

// setWhileCursorsRead refuses a SET or RESET that changes how values are
// written while a cursor across shards has rows in hand: Postgres writes
// each row as FETCH returns it, but the proxy read those rows ahead, and
// its merge compares them as written.
func (s *session) setWhileCursorsRead(st *router.Statement) error {
	if st.Kind != router.KindSet || !outputSettings[st.SetName] {
		return nil
	}
	for name, ref := range s.tx.cursors {
		if mc := ref.merged; mc != nil && mc.rows != nil && !mc.done {
			return errNotSupported("CLOSE the cursor first, or change the setting before DECLARE",
				"cannot change %s while cursor %q, which spans shards, has rows read ahead in the old format", setLabel(st), name)
		}
	}
	return nil
}

func setLabel(st *router.Statement) string {
	if st.SetName == "" {
		return "settings"
	}
	return st.SetName
}
