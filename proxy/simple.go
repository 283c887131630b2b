package proxy

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// errClientGone ends the session: the client socket failed mid-reply.
var errClientGone = errors.New("client connection lost")

// handleQuery serves one simple-protocol Query message (see the protocol
// docs, "Simple Query"): every statement in it is routed on its own.
func (s *session) handleQuery(ctx context.Context, sql string) error {
	s.ext.discardUnnamed()
	rt := s.runtime()
	parts, err := rt.Router.ParseQuery(sql)
	if err != nil {
		// Let Postgres itself report the syntax error (same message,
		// position and SQLSTATE), from the transaction's shard if any.
		if s.localFailed {
			return s.failedTxError()
		}
		shard := rt.Config.DefaultShard
		if s.attached != nil {
			shard = s.attached.Shard
		}
		if _, err := s.runOn(ctx, shard, sql, nil, nil); err != nil {
			return err
		}
		return s.ready()
	}
	for _, p := range parts {
		s.noteLearning(p.Stmt)
	}
	implicit := false // see implicit.go
	if len(parts) > 1 {
		for _, p := range parts {
			var alone error
			switch {
			case p.Stmt.IsSessionConfig():
				alone = errSessionConfigAlone()
			case p.Stmt.SQLExecute:
				// Its statement is known only when it runs, too late for
				// the Query's implicit transaction (implicit.go).
				alone = errNotSupported("send EXECUTE as a query of its own", "EXECUTE among other statements in one query is not supported by shardproxy")
			}
			if alone != nil {
				if err := s.sendError(alone); err != nil {
					return err
				}
				return s.ready()
			}
		}
		// A failed transaction the proxy holds answers statement by
		// statement: 25P02 until it ends (execPart); what follows its
		// end is an implicit block like any other.
		failedTx := s.localFailed || s.multiLeg() && s.tx.failed
		shard, ok := "", false
		if !failedTx {
			shard, ok = s.commonShard(ctx, parts)
		}
		if ok {
			s.stmtTouches, s.stmtSnapshot, s.stmtWrites = false, false, false // (txn.touch, snapshot.go)
			for _, p := range parts {
				s.stmtTouches = s.stmtTouches || p.Stmt.TouchesTables()
				s.stmtSnapshot = s.stmtSnapshot || takesSnapshot(p.Stmt.Kind)
				s.stmtWrites = s.stmtWrites || mayChange(p.Stmt)
			}
			failed, err := s.runOn(ctx, shard, sql, nil, parts)
			if err != nil {
				return err
			}
			ddl := false
			for _, p := range parts {
				if p.Stmt.Cursor() != 0 && !failed {
					s.noteCursorText(shard, p.Text)
				}
				ddl = ddl || p.Stmt.Kind == router.KindDDL
				if p.Stmt.LocalConfig && s.txStatus != 'I' {
					s.tx.localConfig = true // see noteLocalConfig
				}
			}
			if ddl {
				s.schemaChanged()
			}
			return s.ready()
		}
		if writes(parts) {
			if !rt.Config.TwoPhaseCommit {
				if err := s.sendError(errNotSupported("set two_phase_commit: true in the shardproxy config to run it as one transaction across shards; or send the statements as separate queries, or keep them on one shard key",
					"a multi-statement query that writes runs as one transaction; its statements target different shards")); err != nil {
					return err
				}
				return s.ready()
			}
			implicit = true
		}
	}
	failed := false
	for i, p := range parts {
		done := false
		if implicit {
			done, failed, err = s.implicitStatement(ctx, p.Stmt, p.Text)
		}
		if !done {
			// Postgres commits an implicit block before it reports
			// its last statement complete: a failed commit replaces
			// the tag with its error.
			s.holdTag, s.heldTag = s.implicit && i == len(parts)-1, s.heldTag[:0]
			failed, err = s.execPart(ctx, p)
		}
		if s.txStatus != 'I' && takesSnapshot(p.Stmt.Kind) {
			s.tx.ran = true
		}
		if err != nil {
			return err
		}
		if failed {
			break
		}
	}
	if err := s.endQueryBlock(ctx, failed); err != nil {
		return err
	}
	return s.ready()
}

func (s *session) failedTxError() error {
	if err := s.send(errorResponse(s.log, pgError("25P02",
		"current transaction is aborted, commands ignored until end of transaction block"))); err != nil {
		return err
	}
	return s.ready()
}

// commonShard reports whether every statement of a multi-statement Query
// goes to one and the same shard, so that the text can be sent as it is and
// keep its single implicit transaction.
func (s *session) commonShard(ctx context.Context, parts []router.QueryPart) (string, bool) {
	shard := ""
	if s.attached != nil {
		shard = s.attached.Shard
	}
	for _, p := range parts {
		switch p.Stmt.Kind {
		case router.KindShardHintSet, router.KindShardHintReset, router.KindPrepare, router.KindListen, router.KindCopy:
			return "", false
		case router.KindShow:
			if p.Stmt.SetName == router.HintParameter {
				return "", false // answered by the proxy (local)
			}
		case router.KindPrepareTransaction:
			if reservedGID(p.Stmt) != nil {
				return "", false // refused statement by statement (execPart)
			}
		}
		if p.Stmt.LocalConfig && s.multiLeg() {
			return "", false // refused statement by statement (noteLocalConfig)
		}
		if p.Stmt.Cursor() != 0 && len(s.tx.cursors) > 0 {
			return "", false // goes to its cursor's shard (cursor.go)
		}
		if s.multiLeg() && (s.txWide(p.Stmt.Kind) || s.tx.failed) || s.tx.replay != nil && s.attached == nil {
			return "", false // these concern every shard of the transaction (txn.go)
		}
		r, err := s.runtime().Router.Route(ctx, p.Stmt, s.routeArgs(p.Args))
		if err != nil {
			return "", false
		}
		switch r.Kind {
		case router.RouteAny:
			if !p.Stmt.MayWrite {
				continue
			}
			// What it does lands where it runs: the default shard, as
			// on its own (execRoute).
			r.Shards = []string{s.runtime().Config.DefaultShard}
		case router.RouteSingle, router.RouteDefault, router.RouteHint:
		default:
			if len(r.Shards) != 1 {
				return "", false
			}
		}
		if shard == "" {
			shard = r.Shards[0]
		} else if shard != r.Shards[0] {
			return "", false
		}
	}
	if shard == "" {
		shard = s.runtime().Config.DefaultShard
	}
	return shard, true
}

// writes reports whether a multi-statement Query that is split across
// shards must keep the promise of one implicit transaction (implicit.go):
// it holds a statement other than a read (a SELECT that may write counts:
// router.Statement.MayWrite). Reads alone run one by one, each with its
// own snapshot as under READ COMMITTED.
func writes(parts []router.QueryPart) bool {
	for _, p := range parts {
		switch p.Stmt.Kind {
		case router.KindSelect:
			if !p.Stmt.MayWrite {
				continue
			}
		case router.KindEmpty, router.KindShow, router.KindShardHintSet, router.KindShardHintReset:
			continue
		}
		return true
	}
	return false
}

// execPart runs one statement of a Query. failed reports a statement error
// (the rest of the Query is skipped, as on Postgres); err is fatal.
func (s *session) execPart(ctx context.Context, p router.QueryPart) (failed bool, err error) {
	st := p.Stmt
	if err := st.SetError(); err != nil {
		return true, s.sendError(err)
	}
	s.noteStatement(st) // every path below may attach
	if (s.localFailed || s.multiLeg() && s.tx.failed) && st.Kind != router.KindCommit && st.Kind != router.KindRollback &&
		!isRollbackTo(st, p.Text) {
		// Also BEGIN and SAVEPOINT: only the end of the transaction, or
		// ROLLBACK TO a savepoint, gets out of it (txStatement).
		return true, s.send(errorResponse(s.log, errTxAborted()))
	}
	if done, failed, err := s.txStatement(ctx, st, p.Text); done {
		return failed, err
	}
	if st.Kind == router.KindPrepare && st.Deallocate == "" && !st.DeallocateAll {
		return s.execSQLPrepared(ctx, st, p) // PREPARE, EXECUTE
	}
	if done, failed, err := s.local(st, p.Text); done {
		return failed, err
	}
	if st.IsSessionConfig() {
		return s.execSessionConfig(ctx, st, p)
	}
	if st.CopiesQuery() {
		if done, failed, err := s.copyMerged(ctx, st, p.Text, p.Args); done {
			return failed, err
		}
	}
	if st.Cursor() != 0 && s.txStatus != 'I' || st.Cursor() == 'D' {
		if done, failed, err := s.cursorStatement(ctx, st, p.Text, p.Args); done {
			return failed, err
		}
	}
	if shard, err := s.currentOfShard(st); err != nil || shard != "" {
		if err != nil {
			return true, s.sendError(err)
		}
		return s.execRoute(ctx, st, p.Text, router.Route{Kind: router.RouteSingle, Shards: []string{shard}})
	}
	route, rerr := s.runtime().Router.Route(ctx, st, s.routeArgs(p.Args))
	if rerr == nil {
		rerr = reservedGID(st)
	}
	if rerr == nil && s.lookupPrepared(st, route) {
		route, rerr = s.preparedRoute(ctx, st.GID) // userprepared.go
	}
	if rerr != nil {
		if st.Kind == router.KindPrepareTransaction {
			s.failTransaction() // as Postgres: an error fails the block
		}
		return true, s.sendError(rerr)
	}
	if route.Merge == router.MergeSplitInsert {
		return s.runSplit(ctx, st, route, func(c *pool.Conn, part *router.SplitPart) {
			c.Send(&pgproto3.Query{String: renderLiterals(part.SQL, p.Lits)})
		})
	}
	if route.Merge == router.MergePlan {
		sql := renderLiterals(route.Plan.Scatter().SQL, p.Lits)
		return s.runPlan(ctx, st, route, planSend{query: sql, bind: func(c *pool.Conn) {
			c.Send(&pgproto3.Parse{Query: sql})
			c.Send(&pgproto3.Bind{})
			c.Send(&pgproto3.Describe{ObjectType: 'P'})
		}},
			planInputs{param: literalParams(p.Args), lits: p.Lits}, nil, true)
	}
	failed, err = s.execRoute(ctx, st, p.Text, route)
	if st.Cursor() == 'D' && !failed {
		s.noteCursor(p.Text)
	}
	if st.Kind == router.KindDDL {
		// Even a failed broadcast may have changed some shards.
		s.schemaChanged()
	}
	return failed, err
}

// routeArgs are the router's arguments for a simple-protocol statement
// whose literals are params (router.QueryPart.Args).
func (s *session) routeArgs(params [][]byte) router.Args {
	return router.Args{Params: params, Literals: true, SessionShard: s.hint, Columns: s.columns,
		TimeZone: s.timeZone(), ColumnType: s.colType, CustomSearchPath: s.customSearchPath(), MergeOnly: s.mergeOnly()}
}

// bindArgs are the router's arguments for a statement of the extended
// protocol bound by m.
func (s *session) bindArgs(ps *prepared, m *pgproto3.Bind) router.Args {
	return router.Args{Params: m.Parameters, Formats: m.ParameterFormatCodes, ParamOIDs: ps.paramOIDs, SessionShard: s.hint,
		Columns: s.columns, TimeZone: s.timeZone(), ColumnType: s.colType, CustomSearchPath: s.customSearchPath(), MergeOnly: s.mergeOnly()}
}

// local answers statements the proxy handles itself: shard hints, BEGIN
// (deferred until a statement names a shard), the end of a transaction
// that never reached a shard, and statements transaction pooling cannot
// serve.
func (s *session) local(st *router.Statement, text string) (done, failed bool, err error) {
	complete := func(tag string) (bool, bool, error) {
		return true, false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	}
	switch st.Kind {
	case router.KindEmpty:
		return true, false, s.send(&pgproto3.EmptyQueryResponse{})
	case router.KindShardHintSet:
		if s.runtime().Config.ShardIndex(st.HintShard) < 0 {
			return true, true, s.sendError(pgError("42704", "shard %q does not exist", st.HintShard))
		}
		s.setHint(st.HintShard)
		return complete("SET")
	case router.KindShardHintReset:
		s.setHint("")
		return complete("RESET")
	case router.KindShow:
		if st.SetName != router.HintParameter {
			return false, false, nil
		}
		// Shards do not know the setting; the session holds it.
		if err := s.send(hintRowDescription()); err != nil {
			return true, true, err
		}
		if err := s.send(&pgproto3.DataRow{Values: [][]byte{[]byte(s.hint)}}); err != nil {
			return true, true, err
		}
		return complete("SHOW")
	case router.KindBegin:
		if s.attached == nil {
			if s.txStatus != 'I' {
				if err := s.send(noticeInProgress); err != nil {
					return true, false, err
				}
				if err := s.beginInPendingBlock(text); err != nil {
					return true, true, s.sendError(err)
				}
				return complete(st.Tag)
			}
			s.pendingBegin = text
			s.txStatus = 'T'
			return complete(st.Tag)
		}
	case router.KindCommit, router.KindRollback:
		if s.attached == nil && s.txStatus != 'I' {
			tag := s.endPendingTxn(st.Kind == router.KindRollback, text)
			s.rt = nil
			return complete(tag)
		}
	case router.KindPrepare:
		// Statements prepared through the proxy live in the proxy (their
		// backend copies are shared by name with other clients), so
		// DEALLOCATE acts on the session's statements only, as Close does.
		// PREPARE and EXECUTE: execSQLPrepared.
		if st.DeallocateAll || st.Deallocate != "" {
			tag, err := s.deallocate(st)
			if err != nil {
				return true, true, s.sendError(err)
			}
			return complete(tag)
		}
	case router.KindOther:
		if st.DiscardAll {
			return s.discardAll()
		}
	case router.KindListen:
		if !strings.HasPrefix(strings.ToLower(strings.TrimSpace(text)), "notify") {
			return true, true, s.sendError(errNotSupported(
				"connect to the default shard ("+s.runtime().Config.DefaultShard+") directly to LISTEN: NOTIFY and pg_notify() through shardproxy are sent there",
				"LISTEN is not supported under transaction pooling"))
		}
	}
	return false, false, nil
}

// execRoute sends one routed statement to its shard or shards.
func (s *session) execRoute(ctx context.Context, st *router.Statement, text string, route router.Route) (bool, error) {
	s.noteStatement(st)
	if st.SessionSequence && s.txStatus == 'I' {
		return true, s.sendError(errSessionSequence())
	}
	if err := s.noteLocalConfig(st, true); err != nil {
		return true, s.sendError(err)
	}
	cfg := s.runtime().Config
	var shard string
	switch route.Kind {
	case router.RouteAny:
		switch {
		case s.attached != nil:
			shard = s.attached.Shard
		case s.pendingBegin != "" && st.Kind == router.KindSet:
			// No shard is chosen yet: remember the setting; it is applied
			// before the transaction starts on whichever shard it lands.
			s.recordSet(st, nil)
			s.noteReplay(st, text)
			return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(st.SetTag())})
		case s.pendingBegin != "" && st.Aside:
			// Reads that touch no table and change nothing must not pin
			// the transaction to the default shard before a keyed
			// statement picks the real one (aside.go); what may change
			// something (DO, a user function, txid_current()) runs in the
			// transaction. set_config(..., true) is answered here and
			// replayed, like SET LOCAL, on every shard the transaction
			// then touches.
			mark := s.statStart()
			failed, err := s.runEphemeral(ctx, cfg.DefaultShard, func(c *pool.Conn) { s.sendQuery(c, text) })
			s.statEnd(mark, cfg.DefaultShard, route.Kind, failed)
			switch {
			case err != nil:
			case failed:
				// Its error fails the client's transaction, as any
				// error inside a transaction block does on Postgres.
				s.failTransaction()
			default:
				s.noteReplay(st, text)
			}
			return failed, err
		default:
			shard = cfg.DefaultShard
		}
	case router.RouteNone:
		return s.runNone(ctx, st, text)
	default:
		if len(route.Shards) == 0 {
			return s.runNone(ctx, st, text)
		}
		if len(route.Shards) > 1 {
			return s.runMulti(ctx, st, text, route)
		}
		shard = route.Shards[0]
		if route.AnyCopy && s.attached != nil {
			shard = s.attached.Shard // the transaction's shard has a copy too
		}
	}
	mark := s.statStart()
	failed, err := s.runOn(ctx, shard, text, st, nil)
	s.statEnd(mark, shard, route.Kind, failed)
	return failed, err
}

// runOn sends text to shard on the attached backend (attaching one if
// needed) and relays the reply, except ReadyForQuery. st is the statement
// text holds, or nil; batch, the statements of a multi-statement Query sent
// as one text (recordBatch follows their settings).
func (s *session) runOn(ctx context.Context, shard, text string, st *router.Statement, batch []router.QueryPart) (bool, error) {
	c, err := s.attach(ctx, shard)
	if err != nil {
		return true, s.sendError(err)
	}
	s.sendQuery(c, text)
	if err := c.Flush(); err != nil {
		s.dropAttached()
		return true, s.sendLost(shard, err)
	}
	prelude := s.prelude
	s.prelude = 0
	status, failed, err := s.relay(c, prelude, nil)
	if err != nil {
		s.dropAttached()
		if errors.Is(err, errClientGone) {
			return true, err
		}
		return true, s.sendLost(shard, err)
	}
	if !failed && st != nil && st.Kind == router.KindSet {
		s.recordSet(st, c)
	}
	switch {
	case failed || st == nil:
	case (st.Kind == router.KindCommit || st.Kind == router.KindRollback) && chained(text) && status == 'T':
		// The new transaction starts with nothing of the old one.
		s.settleTxParams(st.Kind == router.KindCommit && s.txStatus == 'T', c)
		s.chainTx()
	case st.Kind == router.KindCommit && s.txStatus == 'T':
		s.tx.committed = true
	}
	if batch != nil {
		s.recordBatch(batch, c, failed, s.relayed)
	}
	s.settle(status)
	if !failed && st != nil {
		s.noteReplay(st, text)
	}
	return failed, nil
}

// sendLost reports a broken backend connection. An open transaction is
// gone with it, so the client's transaction is failed locally.
func (s *session) sendLost(shard string, err error) error {
	if s.txStatus != 'I' {
		s.localFailed, s.txStatus = true, 'E'
	}
	return s.send(errorResponse(s.log, backendLost(shard, err)))
}

// runEphemeral runs a table-less read on a backend outside the
// transaction (router.Statement.Aside), and relays its reply: send writes
// it, as a Query or, for an aside portal (aside.go), as
// Parse/Bind/Execute/Sync. When the transaction has SET LOCAL or SAVEPOINT
// statements to replay, or a BEGIN with options, it runs in a copy of the
// transaction that is rolled back, so that SHOW sees what SET LOCAL and
// BEGIN set, as on Postgres.
func (s *session) runEphemeral(ctx context.Context, shard string, send func(c *pool.Conn)) (bool, error) {
	// Inside the transaction's copy when it has a SET LOCAL or savepoint
	// to replay, or BEGIN options that SHOW transaction_isolation (or
	// transaction_read_only, ...) would show.
	wrapped := len(s.tx.replay) > 0 || s.pendingBegin != "" && !plainBegin(s.pendingBegin)
	want := s.params
	if wrapped {
		want = s.beforeBegin()
	}
	c, n, err := s.acquireWith(ctx, shard, want)
	if err != nil {
		return true, s.send(errorResponse(s.log, err))
	}
	if wrapped {
		c.Send(&pgproto3.Query{String: s.pendingBegin})
		for _, q := range s.tx.replay {
			c.Send(&pgproto3.Query{String: q})
		}
		n += 1 + len(s.tx.replay)
	}
	send(c)
	if wrapped {
		c.Send(&pgproto3.Query{String: "ROLLBACK"})
	}
	p := s.runtime().Pools.Get(shard)
	if err := c.Flush(); err != nil {
		s.setActive(c, false)
		p.Discard(c)
		return true, s.send(errorResponse(s.log, backendLost(shard, err)))
	}
	status, failed, err := s.relay(c, n, nil)
	if wrapped && err == nil {
		status, err = readResult(c)
	}
	s.setActive(c, false)
	if err != nil || status != 'I' {
		p.Discard(c)
		if errors.Is(err, errClientGone) {
			return true, err
		}
		if err != nil {
			return true, s.send(errorResponse(s.log, backendLost(shard, err)))
		}
		return failed, nil
	}
	p.Release(c)
	return failed, nil
}

// runNone answers a statement whose key no shard owns (a directory read of
// a key never inserted): no rows, never a guess.
func (s *session) runNone(ctx context.Context, st *router.Statement, text string) (bool, error) {
	switch st.Kind {
	case router.KindUpdate, router.KindDelete:
		// It changes nothing; its RETURNING columns, if any, are described
		// by the default shard without running it.
		rd, failure, err := s.describeText(ctx, s.runtime().Config.DefaultShard, text, nil)
		switch {
		case err != nil:
			return true, s.sendError(err)
		case failure != nil:
			return true, s.send(failure)
		case rd != nil:
			if err := s.send(rd); err != nil {
				return true, err
			}
		}
		return false, s.send(noRowsTag(st))
	case router.KindSelect:
		// The shard still describes the columns; it just returns no row.
		q := "SELECT * FROM (" + strings.TrimRight(strings.TrimSpace(text), "; \n\t") + ") AS shardproxy_no_owner WHERE false"
		return s.runOn(ctx, s.runtime().Config.DefaultShard, q, nil, nil)
	}
	return true, s.sendError(pgError("0A000", "no shard owns the key of this statement"))
}

// noRowsTag is the command tag of an UPDATE or DELETE that no shard runs
// (its key has no owner): it changed nothing.
func noRowsTag(st *router.Statement) *pgproto3.CommandComplete {
	if st.Kind == router.KindDelete {
		return &pgproto3.CommandComplete{CommandTag: []byte("DELETE 0")}
	}
	return &pgproto3.CommandComplete{CommandTag: []byte("UPDATE 0")}
}

// describeText asks shard, on a borrowed backend, how the rows of
// statement text look, without running it (Parse, Describe): their
// RowDescription, or nil when it returns none; failure is the shard's
// error (the statement is invalid there). oids are its parameter types,
// as a client's Parse gives them.
func (s *session) describeText(ctx context.Context, shard, text string, oids []uint32) (rd *pgproto3.RowDescription, failure *pgproto3.ErrorResponse, err error) {
	rd, _, failure, err = s.describeWithParams(ctx, shard, text, oids)
	return rd, failure, err
}

// describeWithParams is describeText that also returns the statement's
// parameter types (its ParameterDescription).
func (s *session) describeWithParams(ctx context.Context, shard, text string, oids []uint32) (rd *pgproto3.RowDescription, params []uint32, failure *pgproto3.ErrorResponse, err error) {
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		return nil, nil, nil, err
	}
	p := s.runtime().Pools.Get(shard)
	c.Send(&pgproto3.Parse{Query: text, ParameterOIDs: oids})
	c.Send(&pgproto3.Describe{ObjectType: 'S'})
	c.Send(&pgproto3.Sync{})
	if err := c.Flush(); err != nil {
		s.setActive(c, false)
		p.Discard(c)
		return nil, nil, nil, backendLost(shard, err)
	}
	for {
		msg, err := c.Receive()
		if err != nil {
			s.setActive(c, false)
			p.Discard(c)
			return nil, nil, nil, backendLost(shard, err)
		}
		switch m := msg.(type) {
		case *pgproto3.ReadyForQuery:
			if n > 0 {
				n--
				continue
			}
			s.setActive(c, false)
			if m.TxStatus == 'I' {
				p.Release(c)
			} else {
				p.Discard(c)
			}
			return rd, params, failure, nil
		case *pgproto3.RowDescription:
			if n == 0 {
				rd = copyRowDescription(m)
			}
		case *pgproto3.ParameterDescription:
			if n == 0 {
				params = append([]uint32(nil), m.ParameterOIDs...)
			}
		case *pgproto3.ErrorResponse:
			if n == 0 && failure == nil {
				e := *m
				demoteFatal(&e)
				failure = &e
			}
		}
	}
}

// recordSet remembers a successful SET/RESET so that it follows the client
// to the next backend. c, if not nil, ran it: its SessionParams become
// what it now has. RESET returns to the value of the client's startup
// message, as on Postgres; c itself is then at its own default, and the
// next acquire sets the startup value again (within this transaction the
// backend's default shows).
func (s *session) recordSet(st *router.Statement, c *pool.Conn) {
	if st.SetLocal {
		return
	}
	if s.txStatus != 'I' && s.tx.params == nil {
		s.tx.params = maps.Clone(s.params)
	}
	s.applySet(st, c)
}

// applySet is recordSet without the transaction bookkeeping.
func (s *session) applySet(st *router.Statement, c *pool.Conn) {
	name := st.SetName
	switch {
	case name == "": // RESET ALL
		s.resetParams()
		if c != nil {
			knowParams(c, map[string]string{})
		}
		return
	case st.SetValue == "" || strings.EqualFold(st.SetValue, "default"):
		if c != nil {
			p := maps.Clone(s.params)
			delete(p, name)
			knowParams(c, p)
		}
		if v, ok := s.startup[name]; ok {
			s.params[name] = v
		} else {
			delete(s.params, name)
		}
		return
	}
	s.params[name] = st.SetValue
	if c != nil {
		knowParams(c, maps.Clone(s.params))
	}
}

// hintRowDescription describes the result of SHOW shardproxy.shard: one
// text column, as SHOW of any setting.
func hintRowDescription() *pgproto3.RowDescription {
	return &pgproto3.RowDescription{Fields: []pgproto3.FieldDescription{{
		Name: []byte(router.HintParameter), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}}}
}

// setHint sets the session's shard hint (SET shardproxy.shard). Like a
// setting in Postgres, a change made in a transaction that rolls back is
// undone (endTxParams, noteSavepoint).
func (s *session) setHint(shard string) {
	if s.txStatus != 'I' && !s.tx.hintSaved {
		s.tx.hintSaved, s.tx.hintBefore = true, s.hint
	}
	s.hint = shard
}

// recordBatch does recordSet's work for a multi-statement Query that c ran
// as one text (handleQuery): from the statements, in order, since the
// replies do not say which is which. A transaction it began or ended
// inside is followed. When it failed, done statements completed before
// the error (their CommandCompletes; len(parts) when the implicit commit
// at the end failed): what they did stands as far as Postgres keeps it —
// an implicit block that a COMMIT or ROLLBACK in the Query ended, or the
// open transaction (failed now, undone at its ROLLBACK) — and the
// implicit block the error came in is rolled back. c is marked unknown,
// so it is reset when it next serves a client (this covers what the walk
// cannot see, such as ROLLBACK TO SAVEPOINT).
func (s *session) recordBatch(parts []router.QueryPart, c *pool.Conn, failed bool, done int) {
	touches := false
	for _, p := range parts {
		if p.Stmt.HidesSettings {
			c.SessionParams = nil // (forgetSettings)
		}
		switch p.Stmt.Kind {
		case router.KindSet, router.KindBegin, router.KindCommit, router.KindRollback, router.KindSavepoint:
			touches = true
		}
	}
	if !touches {
		return
	}
	c.SessionParams = nil
	if !failed {
		done = len(parts)
	}
	done = min(done, len(parts))
	// Outside a transaction block, Postgres runs the statements in an
	// implicit block, up to a COMMIT or ROLLBACK (each warns and ends
	// it; the next statement begins another) or the end of the Query,
	// where it commits. A ROLLBACK undoes the block's SETs; a BEGIN makes
	// the block, and the SETs before it, the transaction's.
	explicit := s.txStatus != 'I'
	var block map[string]string // settings at the start of the implicit block
	if !explicit {
		block = maps.Clone(s.params)
	}
	// SET LOCALs of the implicit block: a BEGIN makes them the
	// transaction's, to be replayed on shards that join it.
	var blockLocal []router.QueryPart
	// snap: a statement after the transaction's BEGIN took its snapshot
	// on this shard (beforeSnapshot could not see it: the batch began
	// the transaction), so the snapshot is not to be taken everywhere
	// later (snapshot.go).
	snap := false
	endTx := func() {
		snap = false
		s.tx.params, s.tx.hintSaved = nil, false
		s.tx.replay, s.tx.full, s.tx.roundedFloats, s.tx.localSets = nil, false, false, nil
		s.tx.begin, s.tx.savepoints, s.tx.touched, s.tx.base = "", nil, nil, nil
		block, blockLocal = maps.Clone(s.params), nil
	}
	for _, p := range parts[:done] {
		snap = snap || explicit && takesSnapshot(p.Stmt.Kind)
		switch st := p.Stmt; st.Kind {
		case router.KindBegin:
			if !explicit {
				explicit = true
				if s.tx.params == nil && !sameParams(block, s.params) {
					s.tx.params = block
				}
				s.tx.begin = p.Text // replayed, with its options, on shards that join
				for _, l := range blockLocal {
					s.replayLocal(l.Stmt, l.Text)
				}
				blockLocal = nil
			}
		case router.KindSavepoint:
			if explicit {
				// For ROLLBACK TO, and for shards that join later, as for
				// a savepoint statement sent on its own (noteReplay).
				s.noteSavepoint(st, s.ext.portalSeq)
				s.appendReplay(st, p.Text)
			}
		case router.KindSet:
			if st.SetLocal {
				if explicit {
					// For shards that join the transaction later, as
					// for a SET LOCAL sent on its own (noteReplay).
					s.replayLocal(st, p.Text)
				} else {
					blockLocal = append(blockLocal, p)
				}
				continue
			}
			if explicit && s.tx.params == nil {
				s.tx.params = maps.Clone(s.params)
			}
			s.applySet(st, nil)
			if explicit {
				s.replaySessionSet(st)
			}
		case router.KindCommit, router.KindRollback:
			switch {
			case explicit && st.Kind == router.KindRollback:
				s.endTxParams()
			case !explicit && st.Kind == router.KindRollback:
				s.params = block
			}
			explicit = false
			endTx()
		}
	}
	switch {
	case !failed:
	case !explicit:
		s.params = block // the implicit block the error came in rolls back
	case done < len(parts) && parts[done].Stmt.Kind == router.KindCommit:
		// A COMMIT that failed (a deferred constraint) rolled the
		// transaction back and ended it.
		s.endTxParams()
		explicit = false
		endTx()
	}
	if explicit && snap {
		s.tx.snapshotTaken = true
	}
	if explicit && s.stmtTouches && !slices.Contains(s.tx.touched, c.Shard) {
		// The transaction the batch leaves open read or wrote tables here
		// (txn.touch could not tell at attach: BEGIN came with the batch).
		if s.tx.touched == nil {
			s.tx.touched = s.tx.touchedBuf[:0]
		}
		s.tx.touched = append(s.tx.touched, c.Shard)
	}
}

// endLocalTxn ends a transaction that never reached a shard (its COMMIT
// or ROLLBACK is answered by the proxy) and returns the command tag:
// ROLLBACK for a rollback or a failed transaction, else COMMIT.
func (s *session) endLocalTxn(rollback bool) string {
	tag := "COMMIT"
	if rollback || s.localFailed {
		tag = "ROLLBACK"
	}
	s.tx.committed = tag == "COMMIT"
	s.endTxParams()
	s.pendingBegin, s.localFailed, s.txStatus = "", false, 'I'
	s.tx = txn{}
	return tag
}

// endPendingTxn is COMMIT or ROLLBACK (text) of a transaction block no
// shard holds: it ends it, and AND CHAIN opens the next at once, with the
// same BEGIN and SET TRANSACTION (its isolation level and access mode, as
// Postgres keeps them).
func (s *session) endPendingTxn(rollback bool, text string) string {
	begin, chars := s.pendingBegin, s.tx.characteristics
	if begin == "" {
		begin = "BEGIN"
	}
	tag := s.endLocalTxn(rollback)
	if chained(text) {
		s.pendingBegin, s.txStatus = begin, 'T'
		s.tx.replay, s.tx.characteristics = slices.Clone(chars), chars
	}
	return tag
}

// settleTxParams follows the COMMIT or ROLLBACK that ended a transaction:
// the SETs it made stay if it committed and are undone if not.
func (s *session) settleTxParams(committed bool, c *pool.Conn) {
	if committed {
		s.tx.params, s.tx.hintSaved = nil, false
		return
	}
	s.endTxParams(c)
}

// endTxParams is called as a transaction ends: unless it committed, the
// SETs it made are undone, on the session as Postgres undoes them on the
// backend. The backends that ran them (conns) are marked unknown, so the
// next client to get one has it reset (syncParams).
func (s *session) endTxParams(conns ...*pool.Conn) {
	if s.tx.committed {
		return
	}
	if s.tx.hintSaved {
		s.hint, s.tx.hintSaved = s.tx.hintBefore, false
	}
	if s.tx.params == nil {
		return
	}
	s.params = s.tx.params
	s.tx.params = nil
	for _, c := range conns {
		if c != nil {
			c.SessionParams = nil
		}
	}
}

// resetParams returns the session's settings to its startup message's.
func (s *session) resetParams() {
	clear(s.params)
	maps.Copy(s.params, s.startup)
}

// discardAll answers DISCARD ALL without a backend: what it resets lives
// in the proxy (settings, the shard hint, prepared statements, portals)
// or is refused under pooling (temporary tables, advisory locks, LISTEN).
// Sent to a pooled backend, it would also drop the prepared statements
// other clients share there.
// deallocate runs DEALLOCATE name or DEALLOCATE ALL on the session's
// statements, those of Parse and of SQL PREPARE alike (one namespace, as
// in Postgres), and returns its command tag. The unnamed statement is
// not among them.
func (s *session) deallocate(st *router.Statement) (string, error) {
	if st.DeallocateAll {
		maps.DeleteFunc(s.ext.stmts, func(name string, _ *prepared) bool { return name != "" })
		clear(s.ext.sql)
		clear(s.ext.sqlPath)
		return "DEALLOCATE ALL", nil
	}
	_, ok := s.ext.stmts[st.Deallocate]
	_, sqlOK := s.ext.sql[st.Deallocate]
	if !ok && !sqlOK {
		return "", pgError("26000", "prepared statement %q does not exist", st.Deallocate)
	}
	s.forgetStatement(st.Deallocate)
	return "DEALLOCATE", nil
}

// forgetStatement drops the session's statement name (DEALLOCATE, Close).
func (s *session) forgetStatement(name string) {
	delete(s.ext.stmts, name)
	delete(s.ext.sql, name)
	delete(s.ext.sqlPath, name)
}

func (s *session) discardAll() (done, failed bool, err error) {
	if s.txStatus != 'I' {
		return true, true, s.sendError(pgError("25001", "DISCARD ALL cannot run inside a transaction block"))
	}
	s.resetParams()
	s.hint = ""
	s.ext.init()
	return true, false, s.send(&pgproto3.CommandComplete{CommandTag: []byte("DISCARD ALL")})
}

// relay reads one reply (up to ReadyForQuery, which it returns instead of
// forwarding) from c. It first swallows the replies to prelude statements
// the proxy sent ahead of the client's (session settings, a deferred BEGIN).
// With a merger, rows and tags are combined across shards; without, every
// message goes to the client as it arrives.
func (s *session) relay(c *pool.Conn, prelude int, m *merger) (status byte, failed bool, err error) {
	s.watch.start()
	defer s.watch.stop()
	if err := s.skipPrelude(c, prelude); err != nil {
		return 0, false, err
	}
	s.relayed = 0
	for {
		_, raw, err := c.ReceiveRaw()
		if err != nil {
			return 0, failed, err
		}
		if m == nil && forwardAsIs(raw[0]) {
			switch raw[0] {
			case '1', '2':
				// ParseComplete, BindComplete: of a statement the proxy
				// runs for a Bind it has answered (executeAside).
				continue
			case 'C':
				s.relayed++
			}
			if err := s.sendRaw(raw); err != nil {
				return 0, failed, errClientGone
			}
			continue
		}
		msg, err := c.Decode(raw)
		if err != nil {
			return 0, failed, err
		}
		switch msg := msg.(type) {
		case *pgproto3.ReadyForQuery:
			return msg.TxStatus, failed, nil
		case *pgproto3.ErrorResponse:
			failed = true
			demoteFatal(msg)
		case *pgproto3.CopyInResponse:
			if m != nil {
				// Never broadcast COPY data: the router refuses multi-shard COPY.
				return 0, true, errors.New("unexpected COPY FROM in a multi-shard statement")
			}
			if err := s.send(msg); err != nil {
				return 0, failed, errClientGone
			}
			if err := s.flush(); err != nil {
				return 0, failed, errClientGone
			}
			if err := s.pumpCopyIn(c); err != nil {
				return 0, failed, err
			}
			continue
		}
		if m != nil {
			if err := m.handle(s, msg); err != nil {
				return 0, failed, err
			}
			continue
		}
		if err := s.send(msg); err != nil {
			return 0, failed, errClientGone
		}
	}
}

// skipPrelude reads the replies to the n statements the proxy sent ahead
// of the client's (session settings replayed on this backend, a failed
// transaction's marker): nothing of them reaches the client; a rejected
// setting is logged.
func (s *session) skipPrelude(c *pool.Conn, n int) error {
	for n > 0 {
		msg, err := c.Receive()
		if err != nil {
			return err
		}
		switch msg := msg.(type) {
		case *pgproto3.ReadyForQuery:
			n--
		case *pgproto3.ErrorResponse:
			if !strings.Contains(msg.Message, "shardproxy: transaction aborted") {
				s.log.Warn("shard rejected a session setting", "shard", c.Shard, "err", msg.Message)
			}
		}
	}
	return nil
}

// pumpCopyIn forwards the client's COPY data to c until CopyDone or CopyFail.
func (s *session) pumpCopyIn(c *pool.Conn) error {
	for {
		msg, err := s.receive()
		if err != nil {
			c.Send(&pgproto3.CopyFail{Message: "client connection lost"})
			c.Flush()
			return errClientGone
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			c.Send(msg)
			if len(msg.Data) > 0 {
				if err := c.Flush(); err != nil {
					return err
				}
			}
		case *pgproto3.CopyDone, *pgproto3.CopyFail:
			c.Send(msg)
			return c.Flush()
		case *pgproto3.Flush, *pgproto3.Sync:
			// Ignored during COPY, as Postgres does.
		default:
			c.Send(&pgproto3.CopyFail{Message: "unexpected message during COPY"})
			return c.Flush()
		}
	}
}

// runMulti runs one simple-protocol statement on several shards.
func (s *session) runMulti(ctx context.Context, st *router.Statement, text string, route router.Route) (bool, error) {
	if st.Kind == router.KindCopy {
		return s.runCopy(ctx, st, text, route) // copy.go: rows split by key, or streams concatenated
	}
	if err := s.checkMulti(st, route); err != nil {
		return true, s.sendError(err)
	}
	return s.fanout(ctx, st, route, func(c *pool.Conn) {
		c.Send(&pgproto3.Query{String: text})
	})
}

// checkMulti refuses what a multi-shard statement cannot do yet. It never
// runs inside a transaction: without two-phase commit a cross-shard
// transaction could half-commit.
func (s *session) checkMulti(st *router.Statement, route router.Route) error {
	switch {
	case (s.attached != nil || s.txStatus != 'I') && !(s.txStatus != 'I' && s.runtime().Config.TwoPhaseCommit):
		return errNotSupported(
			"set two_phase_commit: true in the shardproxy config to allow transactions across shards; or run statements that touch several shards outside BEGIN ... COMMIT, or add the shard key to the WHERE clause",
			"statement touches shards %s inside a transaction; cross-shard transactions need two_phase_commit",
			strings.Join(route.Shards, ", "))
	case st.Kind == router.KindCopy:
		return errNotSupported("COPY the rows of one shard key at a time, or INSERT them",
			"COPY on a sharded table is not supported yet")
	case route.Merge == router.MergeNone:
		return errNotSupported("add a condition on the shard key", "statement needs several shards but cannot be merged")
	}
	return nil
}

// fanout runs one statement on several shards at once and merges their
// replies as the route says; send writes the statement to one backend (a
// Query, or Parse/Bind/Execute/Sync). Every shard runs it at the same time;
// replies are read shard by shard, so rows stream and memory stays bounded.
//
// Data-changing statements and DDL run inside a transaction on every
// shard and commit only if every shard succeeded, so a constraint
// violation (or a column that already exists) on one shard leaves
// nothing behind on the others. DDL that cannot run in a transaction
// block (CREATE INDEX CONCURRENTLY) runs on each shard on its own. With two_phase_commit the
// commit is atomic (commitLegs); without, a shard failing between the
// COMMITs can still leave the write half-applied. They run one shard after
// the other, in shard order: two such writes to the same rows (a reference
// table) would otherwise each lock a different shard first and wait for
// each other forever, a deadlock no single server can see.
//
// Inside a transaction block, the statement runs on the transaction's
// backends instead (fanoutTx).
func (s *session) fanout(ctx context.Context, st *router.Statement, route router.Route, send func(c *pool.Conn)) (bool, error) {
	if s.txStatus != 'I' {
		return s.fanoutTx(ctx, st, route, send)
	}
	rt := s.runtime()
	type leg struct {
		c           *pool.Conn
		prelude     int
		live        bool  // reply read to ReadyForQuery: reusable
		done        bool  // given back to its pool already (commitLegs)
		rows, bytes int64 // sent to the client from this shard's reply (stats)
	}
	mark := s.statStart()
	legs := make([]leg, 0, len(route.Shards))
	drop := func(from int) {
		for _, l := range legs[from:] {
			s.setActive(l.c, false)
			rt.Pools.Get(l.c.Shard).Discard(l.c)
		}
	}
	if err := s.holdIfPaused(ctx, route.Shards...); err != nil { // before any leg holds a backend
		return true, s.send(errorResponse(s.log, err))
	}
	if err := s.srv.commits.await(ctx, route.Shards...); err != nil {
		return true, s.send(errorResponse(s.log, err))
	}
	for _, sh := range route.Shards {
		c, n, err := s.acquire(ctx, sh)
		if err != nil {
			drop(0)
			return true, s.send(errorResponse(s.log, err))
		}
		legs = append(legs, leg{c: c, prelude: n})
	}
	wrap := st.Kind == router.KindInsert || st.Kind == router.KindUpdate || st.Kind == router.KindDelete ||
		st.Kind == router.KindDDL && !st.NoTxBlock
	locks := ""
	if wrap {
		locks = refLockQuery(st) // a write to reference tables (reflock.go)
	}
	start := func(l *leg) error {
		if wrap {
			l.c.Send(&pgproto3.Query{String: "BEGIN"})
			l.prelude++
		}
		if locks != "" {
			l.c.Send(&pgproto3.Query{String: locks})
		}
		send(l.c)
		return l.c.Flush()
	}
	if !wrap {
		for i := range legs {
			if err := start(&legs[i]); err != nil {
				drop(0)
				return true, s.send(errorResponse(s.log, backendLost(legs[i].c.Shard, err)))
			}
		}
	}
	m := s.newMerger(route)
	var lost error
	for i := range legs {
		l := &legs[i]
		m.idx = i
		if wrap {
			if err := start(l); err != nil {
				lost = cmp(lost, backendLost(l.c.Shard, err))
				continue
			}
		}
		rows, bytes := s.sentRows, s.sentBytes
		status, _, err := s.relayLocked(l.c, l.prelude, locks != "", m)
		l.rows, l.bytes = s.sentRows-rows, s.sentBytes-bytes
		if errors.Is(err, errClientGone) {
			drop(0)
			return true, err
		}
		if err != nil {
			if lost == nil {
				lost = backendLost(l.c.Shard, err)
			}
			continue
		}
		l.live = status == 'I' || wrap && status != 0
	}
	m.checkSplit(s) // before the commit: a split INSERT's rows must all be placed
	if wrap && rt.Config.TwoPhaseCommit && m.err == nil && lost == nil {
		conns := make([]*pool.Conn, len(legs))
		for i := range legs {
			conns[i], legs[i].done = legs[i].c, true
		}
		lost = s.commitLegs(ctx, conns)
	} else if wrap {
		end := "COMMIT"
		if m.err != nil || lost != nil {
			end = "ROLLBACK"
		}
		phaseEnd := func() {}
		if end == "COMMIT" && len(legs) > 1 {
			phaseEnd = s.srv.commits.commit(route.Shards) // visible everywhere at once (visibility.go)
		}
		for i := range legs {
			if l := &legs[i]; l.live {
				l.c.Send(&pgproto3.Query{String: end})
				if l.c.Flush() != nil {
					l.live = false
				}
			}
		}
		for i := range legs {
			l := &legs[i]
			if !l.live {
				continue
			}
			status, failed, err := s.relay(l.c, 0, &merger{kind: router.MergeFirst, idx: 1})
			l.live = err == nil && status == 'I'
			if (failed || err != nil) && end == "COMMIT" && lost == nil {
				lost = pgError("40000", "shardproxy: COMMIT failed on shard %s; the statement may be applied on other shards", l.c.Shard)
			}
		}
		phaseEnd()
	}
	d := time.Since(mark.start)
	for _, l := range legs {
		s.srv.stats.leg(l.c.Shard, route.Kind, d, l.rows, l.bytes, lost != nil || m.err != nil)
	}
	s.srv.stats.statement(route.Kind, d)
	for _, l := range legs {
		if l.done {
			continue
		}
		s.setActive(l.c, false)
		if l.live {
			rt.Pools.Get(l.c.Shard).Release(l.c)
		} else {
			rt.Pools.Get(l.c.Shard).Discard(l.c)
		}
	}
	if lost != nil && m.err == nil {
		return true, s.send(errorResponse(s.log, lost))
	}
	return m.finish(s)
}

// merger combines the replies of several shards to one statement.
type merger struct {
	kind     router.MergeKind
	idx      int // shard being relayed
	sentDesc bool
	ncols    int
	verb     string // "SELECT", "UPDATE", "INSERT 0", ...
	count    int64
	firstTag string // MergeFirst: the first shard's tag
	err      *pgproto3.ErrorResponse
	order    *splitOrder // MergeSplitInsert with RETURNING: rows held for VALUES order (insert_split.go)
	// explain: EXPLAIN ANALYZE of a write across shards (Route.Explain):
	// these header lines, then each shard's plan under its name.
	explain  []string
	shards   []string // the route's shards, by idx
	labelled int      // shards up to which labels were sent (explain)
	bound    int      // shards, in idx order, that answered their Bind (noteBindFailed)
}

// explainRow sends one line of a shard's EXPLAIN output (Route.Explain):
// the header before the first, the shard's label before its first.
func (m *merger) explainRow(s *session, msg *pgproto3.DataRow) error {
	if len(msg.Values) != 1 || m.idx >= len(m.shards) {
		return s.sendOrGone(msg)
	}
	line := func(v string) error { return s.sendOrGone(&pgproto3.DataRow{Values: [][]byte{[]byte(v)}}) }
	if m.labelled == 0 {
		for _, h := range m.explain {
			if err := line(h); err != nil {
				return err
			}
		}
	}
	if m.labelled <= m.idx { // the shard's first line (a shard without any has no label)
		m.labelled = m.idx + 1
		if err := line(router.ShardLabel(m.shards[m.idx])); err != nil {
			return err
		}
	}
	return line(router.ShardIndent + string(msg.Values[0]))
}

func (m *merger) handle(s *session, msg pgproto3.BackendMessage) error {
	switch msg := msg.(type) {
	case *pgproto3.ErrorResponse:
		if m.err == nil {
			e := *msg
			m.err = &e
			s.noteBindFailed(m.bound > m.idx)
		}
		return nil
	case *pgproto3.RowDescription:
		if m.sentDesc {
			if len(msg.Fields) != m.ncols && m.err == nil {
				m.err = errorResponse(s.log, pgError("XX000", "shards disagree on the result columns (%d vs %d)", m.ncols, len(msg.Fields)))
			}
			return nil
		}
		if m.kind == router.MergeFirst && m.idx > 0 {
			return nil
		}
		m.sentDesc, m.ncols = true, len(msg.Fields)
		return s.sendOrGone(msg)
	case *pgproto3.DataRow:
		if m.err != nil || (m.kind == router.MergeFirst && m.idx > 0) {
			return nil
		}
		if m.order != nil {
			m.order.add(s, m, msg)
			return nil
		}
		if m.explain != nil {
			return m.explainRow(s, msg)
		}
		return s.sendOrGone(msg)
	case *pgproto3.CommandComplete:
		tag := string(msg.CommandTag)
		if m.kind == router.MergeFirst {
			if m.idx == 0 {
				m.firstTag = tag
			}
			return nil
		}
		verb, n, ok := splitTag(tag)
		if !ok {
			if m.firstTag == "" {
				m.firstTag = tag
			}
			return nil
		}
		m.verb = verb
		m.count += n
		return nil
	case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.CloseComplete:
		// Replies to the statement the proxy prepared on each shard.
		if _, ok := msg.(*pgproto3.BindComplete); ok {
			m.bound = m.idx + 1
		}
		return nil
	case *pgproto3.EmptyQueryResponse:
		if m.idx == 0 {
			return s.sendOrGone(msg)
		}
		return nil
	case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		if m.idx == 0 {
			return s.sendOrGone(msg)
		}
		return nil
	}
	if m.idx == 0 {
		return s.sendOrGone(msg)
	}
	return nil
}

func (s *session) sendOrGone(msg pgproto3.BackendMessage) error {
	if err := s.send(msg); err != nil {
		return errClientGone
	}
	return nil
}

// finish sends the merged command tag, or the first shard error.
func (m *merger) finish(s *session) (bool, error) {
	m.checkSplit(s)
	if m.err != nil {
		return true, s.send(m.err)
	}
	if m.order != nil {
		if err := m.order.sendRows(s); err != nil {
			return true, err
		}
	}
	tag := m.firstTag
	if m.verb != "" {
		tag = m.verb + " " + strconv.FormatInt(m.count, 10)
	}
	if tag == "" {
		return false, nil
	}
	return false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// splitTag splits "UPDATE 7" into ("UPDATE", 7) and "INSERT 0 3" into
// ("INSERT 0", 3).
func splitTag(tag string) (string, int64, bool) {
	i := strings.LastIndexByte(tag, ' ')
	if i < 0 {
		return "", 0, false
	}
	n, err := strconv.ParseInt(tag[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return tag[:i], n, true
}
