package proxy

import (
	"context"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/router"
)

// Implicit transaction blocks of the simple protocol.
//
// Postgres runs a Query of several statements as one transaction, an
// implicit transaction block (protocol docs, "Multiple Statements in a
// Simple Query"): an error rolls back everything the Query did. A Query
// whose statements all go to one shard is sent as it is (commonShard) and
// that shard keeps the promise. One that writes on different shards runs
// statement by statement, inside a transaction the proxy opens before the
// first statement and ends after the last, with two-phase commit when it
// came to span shards (without two_phase_commit such a Query is refused).
// Inside it the proxy follows Postgres' rules (xact.c):
//   - BEGIN turns the block into an ordinary transaction block, which
//     outlives the Query unless the Query commits it;
//   - COMMIT or ROLLBACK ends the block, with WARNING 25P01 "there is no
//     transaction in progress"; the next statement opens another;
//   - SAVEPOINT, RELEASE, ROLLBACK TO and AND CHAIN fail with 25P01;
//   - an error ends the Query and rolls the block back; otherwise the block
//     commits after the Query's last statement, and a failed commit is the
//     Query's error.
//
// session.implicit reports that the open transaction is such a block.

// The extended protocol has the same rule: a pipeline up to Sync is one
// transaction (protocol docs, "Pipelining"). pgx.Batch and JDBC's
// executeBatch send one. A pipeline that wrote on one shard, outside a
// transaction block, and then needs another becomes one transaction
// across shards (extImplicit), committed at Sync; statements that act on
// the block follow the rules above (extImplicitStatement).

// extImplicit turns the pipeline's work on the attached backend into a
// transaction block, so that further shards join it: BEGIN, executed in
// the pipeline, makes the work before it part of the block (xact.c,
// BeginTransactionBlock in TBLOCK_STARTED), and a Sync then leaves the
// block open. If a statement of the pipeline already failed, there is
// nothing to join: the client has its error, and the error returned only
// makes the rest of the pipeline skipped.
//
// When the client's own BEGIN ran in the pipeline (s.ext.begun), the block
// is already there, and the client's: it is not implicit, and the Sync
// only brings its status.
func (s *session) extImplicit() error {
	c := s.attached
	begin := s.ext.begun
	if begin == "" {
		begin = "BEGIN"
		c.Send(&pgproto3.Parse{Query: begin})
		c.Send(&pgproto3.Bind{})
		c.Send(&pgproto3.Execute{})
		for _, k := range []byte{'P', 'B', 'E'} {
			s.pushRemote(k, c).swallow = true
		}
	}
	s.txStatus, s.implicit = 'T', s.ext.begun == ""
	if err := s.extSyncAttached(); err != nil {
		return err // the client is gone
	}
	if s.txStatus == 'I' {
		s.implicit = false // a statement before BEGIN failed: Sync rolled it back
	}
	if s.txStatus != 'T' || s.ext.clientFailed {
		// Skip to the client's Sync, which ends what is left (handleSync).
		return errTxAborted()
	}
	s.tx.begin = begin // for the shards that join
	return nil
}

// pipelineWrite reports a statement across shards that a pipeline runs in
// its transaction, committed at Sync, rather than committing it at once:
// one that writes, except DDL that cannot run in a transaction block.
func pipelineWrite(st *router.Statement) bool {
	switch st.Kind {
	case router.KindInsert, router.KindUpdate, router.KindDelete:
		return true
	case router.KindDDL:
		return !st.NoTxBlock
	}
	return false
}

// extImplicitStatement is implicitStatement's twin for a pipeline that
// became one transaction across shards (extTxStatement, after the
// pipeline so far was synced and delivered). done reports that it
// answered ps; SET is left to extTxStatement.
func (s *session) extImplicitStatement(ctx context.Context, ps *prepared) (done bool, err error) {
	st := ps.st
	switch st.Kind {
	case router.KindBegin:
		s.implicit = false
		s.pushLocal(&pgproto3.CommandComplete{CommandTag: []byte(st.Tag)})
	case router.KindCommit, router.KindRollback:
		verb := "COMMIT"
		if st.Kind == router.KindRollback {
			verb = "ROLLBACK"
		}
		if chained(ps.query) {
			return true, s.extFail(pgError("25P01", "%s AND CHAIN can only be used in transaction blocks", verb))
		}
		// The queue is empty: what is sent now arrives in order.
		if err := s.send(noticeNoTransaction); err != nil {
			return true, err
		}
		failed, err := s.endImplicit(ctx, st.Kind == router.KindCommit)
		if failed || err != nil {
			s.ext.skip, s.ext.clientFailed = true, true
			return true, err
		}
		s.pushLocal(&pgproto3.CommandComplete{CommandTag: []byte(verb)})
	case router.KindSavepoint:
		return true, s.extFail(pgError("25P01", "%s can only be used in transaction blocks", savepointVerb(st)))
	case router.KindPrepareTransaction:
		if st.FinishesPrepared() {
			return true, s.extFail(errInPipeline(st)) // as Postgres (userprepared.go)
		}
		return true, s.extFail(errNotSupported("send PREPARE TRANSACTION in a transaction block of its own",
			"PREPARE TRANSACTION in a pipeline that spans shards"))
	default:
		return false, nil
	}
	return true, nil
}

// pipelineStatement applies, at Execute, what Postgres checks of a
// statement in a pipeline's own transaction, the one it starts without a
// BEGIN (TBLOCK_STARTED in xact.c), which the proxy leaves to the shard of
// the moment (txStatus I) or runs as a block across shards (implicit):
//   - BEGIN may set another isolation level, or DEFERRABLE, only before
//     a statement of that transaction took a snapshot (ext.ran): the
//     statement may have run on another shard, or on several, whose
//     backends the BEGIN does not reach;
//   - the transaction is no transaction block, so SET LOCAL, SET
//     TRANSACTION and SET CONSTRAINTS warn, and LOCK TABLE and DECLARE
//     CURSOR fail (Statement.BlockOnly); in the proxy's block the shards
//     would not say so.
func (s *session) pipelineStatement(ps *prepared) error {
	if s.txStatus != 'I' && !s.implicit {
		return nil // the client's transaction block
	}
	st := ps.st
	switch {
	case st.Kind == router.KindBegin:
		if s.ext.ran {
			if err := beginOptionsError(ps.query, s.defaultIsolation(), true, false); err != nil {
				if s.ext.begun != "" {
					// A BEGIN earlier in the pipeline made the block
					// this one is inside, whose shard has not said so.
					s.pushLocal(noticeInProgress)
				}
				return err
			}
		}
	case st.Kind == router.KindCommit || st.Kind == router.KindRollback:
		s.ext.ran = false // the next statement starts another transaction
	case takesSnapshot(st.Kind):
		s.ext.ran = true
	}
	if s.implicit && st.BlockOnly != "" {
		if st.BlockOnlyFails {
			return pgError("25P01", "%s can only be used in transaction blocks", st.BlockOnly)
		}
		s.pushLocal(warning("25P01", st.BlockOnly+" can only be used in transaction blocks"))
	}
	return nil
}

// warning is a WARNING notice, as Postgres sends it.
func warning(code, message string) *pgproto3.NoticeResponse {
	return &pgproto3.NoticeResponse{Severity: "WARNING", SeverityUnlocalized: "WARNING", Code: code, Message: message}
}

// Postgres' WARNINGs for BEGIN inside a transaction block, and for COMMIT
// or ROLLBACK outside one.
var (
	noticeInProgress    = warning("25001", "there is already a transaction in progress")
	noticeNoTransaction = warning("25P01", "there is no transaction in progress")
)

// beginInPendingBlock is BEGIN inside a transaction block that no shard
// holds yet, after its WARNING: the error of its options, or, before the
// transaction took a snapshot, the options replace the pending BEGIN's,
// as on Postgres they set the transaction's.
func (s *session) beginInPendingBlock(text string) error {
	current := beginLevel(s.pendingBegin)
	if current == "" {
		current = s.defaultIsolation()
	}
	if err := beginOptionsError(text, current, s.tx.ran, len(s.tx.savepoints) > 0); err != nil {
		return err
	}
	if !s.tx.ran && s.pendingBegin != "" && !plainBegin(text) {
		s.pendingBegin = text
	}
	return nil
}

// snapshotToParse notes that Postgres takes the transaction's snapshot to
// parse, or bind (params: the Bind has parameters), st: analysing a query
// needs one (postgres.c, analyze_requires_snapshot), and BEGIN's options
// may no longer change the isolation level (beginOptionsError). In the
// pipeline's own transaction that is ext.ran, in a transaction block
// tx.ran (read while no shard holds the block; one that does knows).
func (s *session) snapshotToParse(st *router.Statement, params bool) {
	switch st.Kind {
	case router.KindSelect, router.KindInsert, router.KindUpdate, router.KindDelete:
	default:
		if !params && !st.Explain && st.Cursor() != 'D' {
			return
		}
	}
	if s.txStatus == 'I' || s.implicit {
		s.ext.ran = true
	} else {
		s.tx.ran = true
	}
}

// savepointVerb names a savepoint statement as Postgres' errors do.
func savepointVerb(st *router.Statement) string {
	return map[byte]string{'S': "SAVEPOINT", 'R': "RELEASE SAVEPOINT", 'B': "ROLLBACK TO SAVEPOINT"}[st.Savepoint]
}

// implicitStatement runs, in a Query executed statement by statement
// (handleQuery), before each statement: it opens an implicit block when no
// transaction is open, and answers the statements that act on the block
// itself. done reports that it answered st; failed, that st failed.
func (s *session) implicitStatement(ctx context.Context, st *router.Statement, text string) (done, failed bool, err error) {
	if s.txStatus == 'I' {
		switch st.Kind {
		case router.KindBegin, router.KindCommit, router.KindRollback:
			// BEGIN opens a block of its own; COMMIT and ROLLBACK outside
			// a transaction get the shard's own warning.
			return false, false, nil
		}
		s.pendingBegin, s.txStatus, s.implicit = "BEGIN", 'T', true
	}
	if !s.implicit {
		return false, false, nil
	}
	switch st.Kind {
	case router.KindBegin:
		if s.tx.ran {
			if err := beginOptionsError(text, s.defaultIsolation(), true, false); err != nil {
				return true, true, s.sendError(err)
			}
		}
		if s.pendingBegin != "" {
			s.pendingBegin = text // no shard yet: BEGIN's options hold
		} else if !plainBegin(text) {
			return true, true, s.sendError(errNotSupported("put BEGIN first in the query",
				"BEGIN with options after statements of the same multi-statement query that span shards"))
		}
		s.implicit = false
		return true, false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(st.Tag)})
	case router.KindCommit, router.KindRollback:
		verb := "COMMIT"
		if st.Kind == router.KindRollback {
			verb = "ROLLBACK"
		}
		if chained(text) {
			return true, true, s.sendError(pgError("25P01", "%s AND CHAIN can only be used in transaction blocks", verb))
		}
		if err := s.send(noticeNoTransaction); err != nil {
			return true, true, err
		}
		if failed, err := s.endImplicit(ctx, st.Kind == router.KindCommit); failed || err != nil {
			return true, true, err
		}
		return true, false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(verb)})
	case router.KindSavepoint:
		return true, true, s.sendError(pgError("25P01", "%s can only be used in transaction blocks", savepointVerb(st)))
	case router.KindPrepareTransaction:
		if st.FinishesPrepared() {
			return true, true, s.sendError(errInBlock(st)) // as Postgres (userprepared.go)
		}
		if err := reservedGID(st); err != nil {
			return true, true, s.sendError(err) // (commonShard let it through)
		}
		return true, true, s.sendError(errNotSupported("send PREPARE TRANSACTION in a transaction block of its own",
			"PREPARE TRANSACTION in a multi-statement query that spans shards"))
	}
	return false, false, nil
}

// endQueryBlock runs after a Query's last statement (or the one that
// failed): it ends the implicit block the Query left open, and delivers
// the last statement's tag, held until the commit succeeded (holdTag).
func (s *session) endQueryBlock(ctx context.Context, failed bool) error {
	hold := s.holdTag
	s.holdTag = false
	defer func() { s.heldTag = s.heldTag[:0] }()
	if s.implicit {
		if commitFailed, err := s.endImplicit(ctx, !failed); err != nil || commitFailed {
			return err // the commit's error replaces the tag
		}
	}
	if hold && len(s.heldTag) > 0 {
		return s.send(&pgproto3.CommandComplete{CommandTag: s.heldTag})
	}
	return nil
}

// endImplicit ends the open implicit block: it commits (commit, and no
// statement failed) or rolls back, and tells the client nothing but a
// failed commit's error (failed). Afterwards no transaction is open.
func (s *session) endImplicit(ctx context.Context, commit bool) (failed bool, err error) {
	s.implicit = false
	commit = commit && s.txStatus == 'T' && !s.localFailed
	switch {
	case s.multiLeg():
		if _, err := s.endTx(ctx, commit); err != nil {
			return true, s.send(errorResponse(s.log, err))
		}
		return false, nil
	case s.attached != nil:
		c := s.attached
		lost := func(err error) (bool, error) {
			s.dropAttached()
			s.endLocalTxn(true)
			s.rt = nil
			return true, s.send(errorResponse(s.log, backendLost(c.Shard, err)))
		}
		if err := s.finishPrelude(); err != nil {
			return lost(err)
		}
		verb := "ROLLBACK"
		if commit && !s.tx.failed {
			verb = "COMMIT"
		}
		s.sendQuery(c, verb)
		if err := c.Flush(); err != nil {
			return lost(err)
		}
		status, err := readResult(c)
		if err != nil && !isPgErr(err) {
			return lost(err)
		}
		s.tx.committed = verb == "COMMIT" && err == nil
		s.settle(status)
		if err != nil {
			return true, s.send(errorResponse(s.log, err))
		}
		return false, nil
	default:
		s.endLocalTxn(!commit)
		s.rt = nil
		return false, nil
	}
}

// beginOptionsError is Postgres' error for BEGIN's options (text) in a
// transaction block: its isolation level may change, and DEFERRABLE be
// set, only before the transaction took a snapshot (ran) and outside a
// savepoint (sub), in the order xact.c checks them (check_XactIsoLevel,
// check_transaction_deferrable). current is the transaction's level.
func beginOptionsError(text, current string, ran, sub bool) error {
	t := beginWords(text)
	if strings.Contains(t, " deferrable ") {
		switch {
		case sub:
			return pgError("25001", "SET TRANSACTION [NOT] DEFERRABLE cannot be called within a subtransaction")
		case ran:
			return pgError("25001", "SET TRANSACTION [NOT] DEFERRABLE must be called before any query")
		}
	}
	if level := levelIn(t); level != "" && level != current {
		switch {
		case ran:
			return pgError("25001", "SET TRANSACTION ISOLATION LEVEL must be called before any query")
		case sub:
			return pgError("25001", "SET TRANSACTION ISOLATION LEVEL must not be called in a subtransaction")
		}
	}
	return nil
}

// beginWords is BEGIN's text in lower case, words separated by one space,
// with a space at either end.
func beginWords(text string) string {
	return " " + strings.Join(strings.Fields(strings.ToLower(strings.NewReplacer(",", " ", ";", " ").Replace(text))), " ") + " "
}

// beginLevel is the isolation level BEGIN's text names, or "".
func beginLevel(text string) string { return levelIn(beginWords(text)) }

// levelIn is the isolation level beginWords' result t names, or "".
func levelIn(t string) string {
	for _, level := range []string{"serializable", "repeatable read", "read committed", "read uncommitted"} {
		if strings.Contains(t, " isolation level "+level+" ") {
			return level
		}
	}
	return ""
}

// defaultIsolation is the isolation level the session's transactions get.
func (s *session) defaultIsolation() string {
	if v, ok := s.params["default_transaction_isolation"]; ok {
		return strings.ToLower(strings.Trim(router.SettingSQL(v), "'\" "))
	}
	return "read committed"
}

// takesSnapshot reports statements that take a snapshot when they run
// (anything but settings and what the proxy answers itself).
func takesSnapshot(k router.Kind) bool {
	switch k {
	case router.KindSet, router.KindShow, router.KindEmpty, router.KindShardHintSet, router.KindShardHintReset,
		router.KindBegin, router.KindCommit, router.KindRollback, router.KindSavepoint:
		return false
	}
	return true
}

// plainBegin reports a BEGIN without options: its block needs nothing
// more than the one the proxy opened.
func plainBegin(text string) bool {
	switch strings.Join(strings.Fields(strings.ToLower(strings.TrimRight(strings.TrimSpace(text), ";"))), " ") {
	case "begin", "begin work", "begin transaction", "start transaction":
		return true
	}
	return false
}
