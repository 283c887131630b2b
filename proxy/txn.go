package proxy

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// Cross-shard transactions (two_phase_commit: true).
//
// A transaction starts on one backend, session.attached, exactly as without
// two-phase commit: nothing here costs a single-shard transaction anything
// but a few field assignments. When a statement needs a second shard, the
// transaction grows legs: every backend it has opened, one per shard. From
// then on session.attached is the leg of the statement at hand (so the
// single-backend code paths work unchanged), statements that concern the
// whole transaction (COMMIT, ROLLBACK, SAVEPOINT, RELEASE, ROLLBACK TO, SET)
// go to every leg, and COMMIT is a two-phase commit (commitLegs).
//
// A shard that joins late replays the transaction's BEGIN and its
// savepoint and SET LOCAL statements so far (txn.replay), and the SETs
// made after its first savepoint (txn.base): a savepoint taken before the
// shard joined then exists there too, and ROLLBACK TO it undoes exactly
// what that shard did since, settings included, as on one server.
//
// Failure: an error on any leg fails the whole transaction, as on Postgres
// (txn.failed); the proxy answers later statements with 25P02 itself, and
// only ROLLBACK, or ROLLBACK TO a savepoint (sent to every leg), gets out.
type txn struct {
	legs   []*pool.Conn // every backend of the transaction; nil while it has one shard
	begin  string       // the client's BEGIN, replayed on every shard that joins
	replay []string     // SAVEPOINT, RELEASE, ROLLBACK TO, SET LOCAL, set_config(..., true), SET (replaySessionSet), in order
	// characteristics are the SET TRANSACTION statements of replay made
	// outside savepoints: with begin, what AND CHAIN carries over.
	characteristics []string
	// localSets are the settings SET LOCAL set in replay: a later SET of
	// one of them is replayed too (noteReplay).
	localSets []string
	// ran: a statement that takes a snapshot ran in the transaction (in
	// the simple protocol); BEGIN's isolation options are then too late
	// (beginOptionsError).
	ran  bool
	full bool // replay overflowed: no further shard may join
	// localConfig: set_config(..., true) ran on the transaction's shard;
	// no further shard may join, since it would miss the setting.
	localConfig bool
	failed      bool // a statement failed: only ROLLBACK (TO) is possible
	// strict: the transaction is REPEATABLE READ or SERIALIZABLE (its
	// level, read when a second shard joined); touched: the shards its
	// table-reading statements ran on (touch).
	strict  string
	touched []string
	// wrote: the shards a statement that may change something ran on,
	// which commitSpanning prepares without first asking (onephase.go).
	wrote      []string
	touchedBuf [4]string // touched's first backing array: no allocation per transaction
	// snapshotTaken: a statement that takes a snapshot was sent (or
	// is being sent); consistent: the transaction is REPEATABLE READ
	// READ ONLY and took its snapshots on every shard at once
	// (snapshot.go), so touch does not keep it to one shard.
	snapshotTaken, consistent bool
	// roundedFloats: a SET LOCAL extra_float_digits below 1 (or a
	// set_config(..., true) of it) ran; kept to the transaction's end even
	// past a ROLLBACK TO, which only makes merges refuse more.
	roundedFloats bool
	// customSearchPath: likewise for a search_path other than the default
	// (router.Args.CustomSearchPath).
	customSearchPath bool
	// mergeOnly: likewise for SET LOCAL shardproxy.gather = off
	// (router.Args.MergeOnly).
	mergeOnly bool
	// params is the session's settings before the first SET in this
	// transaction (nil: none yet): a rollback returns to them, as SET does
	// in Postgres. committed: the transaction's COMMIT succeeded.
	params    map[string]string
	committed bool
	// hintBefore is the shard hint before the transaction changed it
	// (hintSaved), restored like params.
	hintBefore string
	hintSaved  bool
	// savepoints holds the session's settings at each open savepoint, for
	// ROLLBACK TO, which undoes the SETs made since (noteSavepoint).
	savepoints []savepointParams
	// base is the session's settings when the transaction's first
	// savepoint was taken (nil: none yet). A backend that opens the
	// transaction later gets them before its BEGIN (beforeBegin), and the
	// session SETs made since come in the replay, in order among the
	// savepoints (replaySessionSet): what a shard got before BEGIN, no
	// ROLLBACK TO can undo, so a SET made after a savepoint must reach a
	// joining shard after that savepoint, as it did the client's server.
	base map[string]string
	// cursors are the SQL cursors declared in the transaction, by name
	// (cursor.go).
	cursors map[string]*cursorRef
}

type savepointParams struct {
	name   string
	params map[string]string
	hint   string
	// portals: the session's portal sequence when it was taken
	// (extended.portalSeq); ROLLBACK TO drops the portals bound since.
	portals uint64
}

// maxReplay bounds what a transaction remembers for shards joining late.
const maxReplay = 256

func (s *session) multiLeg() bool { return s.tx.legs != nil }

func errTxAborted() *pgconn.PgError {
	return pgError("25P02", "current transaction is aborted, commands ignored until end of transaction block")
}

// txConn returns the backend of shard in the open transaction block,
// attaching it on first use (deferred BEGIN, session settings, replayed
// savepoints). No reply is pending on the returned backend; it stays owned
// by the session until the transaction ends. Without two_phase_commit a
// second shard is refused with 0A000.
func (s *session) txConn(ctx context.Context, shard string) (*pool.Conn, error) {
	if s.txStatus == 'I' {
		return nil, pgError("XX000", "shardproxy: txConn outside a transaction block")
	}
	c, err := s.attach(ctx, shard)
	if err != nil {
		return nil, err
	}
	if err := s.finishPrelude(); err != nil {
		return nil, err
	}
	return c, nil
}

// join adds shard to the open transaction, or switches to its leg, and makes
// that backend the attached one.
func (s *session) join(ctx context.Context, shard string) (*pool.Conn, error) {
	if s.txStatus == 'E' || s.tx.failed || s.localFailed {
		return nil, errTxAborted()
	}
	for _, c := range s.tx.legs {
		if c.Shard == shard {
			if err := s.touch(shard); err != nil {
				return nil, err
			}
			if err := s.finishPrelude(); err != nil {
				return nil, err
			}
			s.attached = c
			return c, nil
		}
	}
	if s.tx.localConfig {
		return nil, errLocalConfig("shard " + shard + " cannot join it")
	}
	if s.tx.full {
		return nil, errNotSupported("use fewer savepoints or SET statements before touching another shard",
			"too many savepoint and SET statements (over %d) for shard %s to join the transaction", maxReplay, shard)
	}
	if err := s.finishPrelude(); err != nil {
		return nil, err
	}
	c, err := s.openLeg(ctx, shard, true)
	if err != nil {
		return nil, err
	}
	if err := s.touch(shard); err != nil {
		s.setActive(c, false)
		s.runtime().Pools.Get(shard).Discard(c) // rolls its BEGIN back
		return nil, err
	}
	if s.tx.legs == nil {
		s.tx.legs = make([]*pool.Conn, 0, 4)
		if s.attached != nil {
			s.tx.legs = append(s.tx.legs, s.attached)
		}
	}
	s.tx.legs = append(s.tx.legs, c)
	s.attached = c
	return c, nil
}

// openLeg acquires a backend for shard and opens the transaction there:
// BEGIN and the replayed statements, read at once so that an error in them
// (a ROLLBACK TO of a savepoint that never existed) fails this statement.
// joining: the shard joins a transaction on another shard, which must not
// be REPEATABLE READ or SERIALIZABLE across shards: its level is read
// after the replay (touch).
func (s *session) openLeg(ctx context.Context, shard string, joining bool) (*pool.Conn, error) {
	if err := s.holdIfPaused(ctx, shard); err != nil {
		return nil, err
	}
	c, n, err := s.acquireWith(ctx, shard, s.beforeBegin())
	if err != nil {
		return nil, err
	}
	begin := s.tx.begin
	if begin == "" {
		begin = "BEGIN"
	}
	c.Send(&pgproto3.Query{String: begin})
	for _, q := range s.tx.replay {
		c.Send(&pgproto3.Query{String: q})
	}
	if joining {
		c.Send(&pgproto3.Query{String: "SHOW transaction_isolation"})
	}
	p := s.runtime().Pools.Get(shard)
	fail := func(err error) (*pool.Conn, error) {
		s.setActive(c, false)
		p.Discard(c)
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return fail(backendLost(shard, err))
	}
	var failure error
	for i := 0; i < n+1+len(s.tx.replay); i++ {
		_, err := readResult(c)
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
		case !errors.As(err, &pgErr):
			return fail(backendLost(shard, err))
		case i < n:
			s.log.Warn("shard rejected a session setting", "shard", shard, "err", pgErr.Message)
		case failure == nil:
			failure = err
		}
	}
	if joining && failure == nil {
		level, err := readShow(c)
		if err != nil && !isPgErr(err) {
			return fail(backendLost(shard, err))
		}
		failure = err
		if level == "repeatable read" || level == "serializable" {
			s.tx.strict = level
		}
	}
	if failure != nil {
		return fail(failure)
	}
	// The replay brought the session SETs since base: the backend now
	// holds the session's settings, which a COMMIT keeps.
	knowParams(c, maps.Clone(s.params))
	return c, nil
}

// beforeBegin is the settings a backend that opens the transaction late
// must have before its BEGIN and the replay (txn.base).
func (s *session) beforeBegin() map[string]string {
	if s.tx.base != nil {
		return s.tx.base
	}
	return s.params
}

// A transaction that spans shards runs as one transaction on each, with
// a snapshot taken on each when it first reads there. REPEATABLE READ and
// SERIALIZABLE promise one snapshot, and a serial order, for the whole
// transaction: each shard would keep its promise for its own rows only
// (a transfer committed between two shards' snapshots would be half
// seen; write skew across shards would commit), with no error. Such a
// transaction may read and write tables on one shard only, where it is
// exactly Postgres'. Table-less statements (SELECT now(), SHOW) may have
// opened it on another shard: they read nothing there.
//
// touch notes that the statement at hand, if it reads or writes tables
// (session.stmtTouches), runs on shard, and refuses it when such a
// transaction has done so on another shard. The isolation level is read
// from each shard that joins (openLeg), after the transaction's BEGIN,
// SET TRANSACTION and session settings were replayed there.
func (s *session) touch(shard string) error {
	if s.stmtWrites && s.txStatus != 'I' && !slices.Contains(s.tx.wrote, shard) {
		s.tx.wrote = append(s.tx.wrote, shard) // (onephase.go)
	}
	if !s.stmtTouches || s.txStatus == 'I' {
		return nil
	}
	if s.tx.strict != "" && !s.tx.consistent {
		for _, t := range s.tx.touched {
			if t != shard {
				return errNotSupported("run it at READ COMMITTED, or keep the transaction's statements to one shard",
					"a %s transaction cannot read or write tables on shards %s and %s: each would isolate only its own part",
					strings.ToUpper(s.tx.strict), t, shard)
			}
		}
	}
	if !slices.Contains(s.tx.touched, shard) {
		if s.tx.touched == nil {
			s.tx.touched = s.tx.touchedBuf[:0]
		}
		s.tx.touched = append(s.tx.touched, shard)
	}
	return nil
}

// readShow reads a SHOW reply's value, up to ReadyForQuery.
func readShow(c *pool.Conn) (string, error) {
	value, failure, err := readValue(c)
	if err != nil {
		return "", err
	}
	if failure != nil {
		failure.Position = 0 // in the proxy's SHOW, not the client's text
		return value, failure
	}
	return value, nil
}

// readValue reads the replies to a Query the proxy sent whose result is
// one value, up to ReadyForQuery: the value, and the first error the shard
// reported (with its position in the proxy's query text, which is for
// the caller to map or drop). err is the connection's.
func readValue(c *pool.Conn) (value string, failure *pgconn.PgError, err error) {
	for {
		msg, err := c.Receive()
		if err != nil {
			return "", nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			if len(m.Values) == 1 {
				value = string(m.Values[0])
			}
		case *pgproto3.ErrorResponse:
			if failure == nil {
				failure = pgErrorOf(m)
				failure.Position = m.Position
			}
		case *pgproto3.ReadyForQuery:
			return value, failure, nil
		}
	}
}

// finishPrelude reads the replies to statements the proxy sent ahead on
// the attached backend (see session.prelude) before the session leaves it.
func (s *session) finishPrelude() error {
	c := s.attached
	if c == nil || s.prelude == 0 {
		return nil
	}
	if err := c.Flush(); err != nil {
		s.dropAttached()
		return backendLost(c.Shard, err)
	}
	for ; s.prelude > 0; s.prelude-- {
		status, err := readResult(c)
		var pgErr *pgconn.PgError
		if err != nil && !errors.As(err, &pgErr) {
			s.dropAttached()
			return backendLost(c.Shard, err)
		}
		if status == 'E' {
			s.tx.failed = true
		}
	}
	return nil
}

// readResult reads one simple-query reply up to ReadyForQuery, discarding
// rows; a shard's error comes back as a *pgconn.PgError.
func readResult(c *pool.Conn) (byte, error) {
	var failure error
	for {
		msg, err := c.Receive()
		if err != nil {
			return 0, err
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			if failure == nil {
				failure = pgErrorOf(m)
			}
		case *pgproto3.ReadyForQuery:
			return m.TxStatus, failure
		}
	}
}

// noteLocalConfig refuses set_config(..., true) in a transaction that
// already spans shards, where it would reach only one of them. Elsewhere
// in a transaction, the simple protocol replays its text on shards that
// join later, as SET LOCAL (noteReplay); the extended protocol's text has
// parameters and cannot be replayed, so no further shard may join.
func (s *session) noteLocalConfig(st *router.Statement, simple bool) error {
	if !st.LocalConfig || s.txStatus == 'I' {
		return nil
	}
	if s.multiLeg() {
		return errLocalConfig("it would reach only one of them")
	}
	if !simple || !st.TxnScoped {
		s.tx.localConfig = true
	}
	return nil
}

// noteSavepoint follows a savepoint statement that succeeded, for the
// session's settings: ROLLBACK TO returns them to what they were at the
// SAVEPOINT, as Postgres does on the backend, on every shard of the
// transaction: one that joined after the savepoint got the SETs made
// since it in the replay, after the savepoint (txn.base).
//
// seq is the session's portal sequence when the statement was sent: the
// portals bound up to then, in the order of the client's messages.
func (s *session) noteSavepoint(st *router.Statement, seq uint64) {
	sp := s.tx.savepoints
	last := -1
	for i := len(sp) - 1; i >= 0; i-- {
		if sp[i].name == st.SavepointName {
			last = i
			break
		}
	}
	switch st.Savepoint {
	case 'S':
		if s.tx.base == nil {
			s.tx.base = maps.Clone(s.params)
		}
		s.tx.savepoints = append(sp, savepointParams{st.SavepointName, maps.Clone(s.params), s.hint, seq})
	case 'R':
		if last >= 0 {
			s.tx.savepoints = sp[:last]
			s.cursorsRolledBack(last, true)
		}
	case 'B':
		if last < 0 {
			break
		}
		// The savepoints taken after it are gone, and so are the
		// cursors declared since.
		s.tx.savepoints = sp[:last+1]
		s.cursorsRolledBack(last, false)
		s.ext.dropPortalsAfter(sp[last].portals, seq)
		s.hint = sp[last].hint
		if sameParams(s.params, sp[last].params) {
			break
		}
		if s.tx.params == nil {
			s.tx.params = maps.Clone(s.params)
		}
		s.params = maps.Clone(sp[last].params)
		if s.attached != nil && !s.multiLeg() {
			knowParams(s.attached, maps.Clone(s.params))
		}
		for _, c := range s.tx.legs {
			knowParams(c, maps.Clone(s.params))
		}
	}
}

// hasSavepoint reports whether the transaction holds a savepoint name
// (noteSavepoint follows them).
func (s *session) hasSavepoint(name string) bool {
	for _, sp := range s.tx.savepoints {
		if sp.name == name {
			return true
		}
	}
	return false
}

func errLocalConfig(why string) error {
	return errNotSupported("use SET LOCAL, which shardproxy replays on every shard the transaction touches",
		"set_config(..., true) in a transaction that spans shards: %s", why)
}

// noteReplay remembers a savepoint, SET LOCAL or set_config(..., true)
// statement that succeeded, for shards that join the transaction later.
func (s *session) noteReplay(st *router.Statement, text string) {
	s.noteReplayAt(st, text, s.ext.portalSeq)
}

// noteReplayAt is noteReplay for a statement sent when the session's
// portal sequence was seq (noteSavepoint).
func (s *session) noteReplayAt(st *router.Statement, text string, seq uint64) {
	if s.txStatus == 'I' {
		return
	}
	if st.Kind == router.KindSet && !st.SetLocal && !st.LocalConfig {
		s.replaySessionSet(st)
		return
	}
	if !(st.Kind == router.KindSavepoint || st.Kind == router.KindSet && st.SetLocal ||
		st.LocalConfig && st.TxnScoped) {
		return
	}
	if st.Kind == router.KindSavepoint {
		s.noteSavepoint(st, seq)
	}
	s.replayLocal(st, text)
}

// replayLocal adds a SET LOCAL (or another statement that acts on the
// transaction) to the replay, noting the setting a SET LOCAL sets.
func (s *session) replayLocal(st *router.Statement, text string) {
	if st.Kind == router.KindSet && st.SetLocal && st.SetName != "" && !slices.Contains(s.tx.localSets, st.SetName) {
		s.tx.localSets = append(s.tx.localSets, st.SetName)
	}
	s.appendReplay(st, text)
	if st.SetsCharacteristic() && len(s.tx.savepoints) == 0 {
		s.tx.characteristics = append(s.tx.characteristics, text)
	}
}

// replaySessionSet follows a session SET in a transaction, for shards
// that join it later, which get the session's settings before its BEGIN
// (beforeBegin). It is replayed after a savepoint (txn.base), which a
// ROLLBACK TO would undo, and after a SET LOCAL of the same setting,
// which it overrides, as in Postgres. Call after the SET is applied to
// s.params: the replay gives the setting its session value.
func (s *session) replaySessionSet(st *router.Statement) {
	if st.SetName == "" { // RESET ALL: undoes SET LOCALs too
		if s.tx.base == nil && len(s.tx.localSets) == 0 {
			return
		}
		s.appendReplay(st, "RESET ALL")
		for _, k := range slices.Sorted(maps.Keys(s.params)) {
			s.appendReplay(st, setStatement(k, s.params[k]))
		}
		return
	}
	if s.tx.base == nil && !slices.Contains(s.tx.localSets, st.SetName) {
		return
	}
	set := "RESET " + quoteIdent(st.SetName)
	if v, ok := s.params[st.SetName]; ok {
		set = setStatement(st.SetName, v)
	}
	s.appendReplay(st, set)
}

// appendReplay adds a statement to the transaction's replay, and notes
// whether it makes floats print rounded (txn.roundedFloats).
func (s *session) appendReplay(st *router.Statement, text string) {
	if st.Kind == router.KindSet && st.SetName == "extra_float_digits" && !exactFloatDigits(router.SettingSQL(st.SetValue)) ||
		st.LocalConfig && strings.Contains(strings.ToLower(text), "extra_float_digits") {
		s.tx.roundedFloats = true
	}
	if st.Kind == router.KindSet && st.SetName == "search_path" && !defaultSearchPath(router.SettingSQL(st.SetValue), s.runtime().Router.MapsLoginSchema()) ||
		st.LocalConfig && strings.Contains(strings.ToLower(text), "search_path") {
		s.tx.customSearchPath = true
	}
	if st.Kind == router.KindSet && st.SetName == router.GatherParameter && gatherOff(router.SettingSQL(st.SetValue)) {
		s.tx.mergeOnly = true
	}
	if len(s.tx.replay) >= maxReplay {
		s.tx.full = true
		return
	}
	s.tx.replay = append(s.tx.replay, text)
}

// txStatement answers, in the simple protocol, statements that concern the
// whole of a transaction that spans shards, and savepoints taken before a
// transaction touched any shard. done reports that it did.
func (s *session) txStatement(ctx context.Context, st *router.Statement, text string) (done, failed bool, err error) {
	if !s.multiLeg() {
		if s.attached == nil && s.pendingBegin != "" &&
			(st.Kind == router.KindSavepoint || st.Kind == router.KindSet && st.SetLocal) {
			if err := s.beforeAnyShard(st, text); err != nil {
				return true, true, s.sendError(err)
			}
			return true, false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(savepointTag(st, text))})
		}
		return false, false, nil
	}
	switch st.Kind {
	case router.KindCommit, router.KindRollback:
		if chained(text) {
			return true, true, s.sendError(errChain())
		}
		tag, err := s.endTx(ctx, st.Kind == router.KindCommit)
		if err != nil {
			return true, true, s.send(errorResponse(s.log, err))
		}
		return true, false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	case router.KindBegin:
		if err := s.send(noticeInProgress); err != nil {
			return true, false, err
		}
		if err := s.beginInSpanningTxn(text); err != nil {
			return true, true, s.sendError(err)
		}
		return true, false, s.send(&pgproto3.CommandComplete{CommandTag: []byte(st.Tag)})
	case router.KindPrepareTransaction:
		if st.FinishesPrepared() {
			s.failTransaction()
			return true, true, s.sendError(errInBlock(st)) // as Postgres (userprepared.go)
		}
		return true, true, s.sendError(errNotSupported("let shardproxy commit the transaction (two_phase_commit does it for transactions that span shards)",
			"PREPARE TRANSACTION is not supported in a transaction that spans shards"))
	case router.KindSavepoint, router.KindSet:
		if err := s.setWhileCursorsRead(st); err != nil {
			return true, true, s.sendError(err)
		}
		failed, err := s.onAllLegs(st, text)
		return true, failed, err
	}
	return false, false, nil
}

// beforeAnyShard answers a savepoint statement or SET LOCAL in a
// transaction block no shard holds yet: nothing to save yet, the
// statement is replayed on the first shard.
func (s *session) beforeAnyShard(st *router.Statement, text string) error {
	if st.Kind == router.KindSavepoint && st.Savepoint != 'S' && !s.hasSavepoint(st.SavepointName) {
		return pgError("3B001", "savepoint %q does not exist", st.SavepointName)
	}
	if isRollbackTo(st, text) && s.localFailed {
		// What failed ran after the savepoint and reached no shard.
		s.localFailed, s.txStatus = false, 'T'
	}
	s.noteReplay(st, text)
	return nil
}

// chainTx is what COMMIT or ROLLBACK AND CHAIN, sent to the one shard of
// a transaction, leaves of it: a new transaction with the same BEGIN and
// SET TRANSACTION (replayed on shards that join), and none of the old
// one's state (a failure, savepoints and SET LOCALs to replay, shards
// touched, snapshots). Its settings (params, the shard hint) stay for the
// reply, which keeps or undoes them (endTxParams). If the COMMIT fails,
// the backend ends the transaction and skips what follows, and its
// ReadyForQuery settles the rest.
func (s *session) chainTx() {
	old := &s.tx
	s.tx = txn{begin: old.begin, params: old.params, hintBefore: old.hintBefore, hintSaved: old.hintSaved,
		replay: slices.Clone(old.characteristics), characteristics: old.characteristics}
	s.txStatus = 'T'
}

// chained reports COMMIT AND CHAIN / ROLLBACK AND CHAIN.
func chained(text string) bool {
	t := strings.Join(strings.Fields(strings.ToLower(text)), " ")
	return strings.Contains(t, "and chain")
}

func errChain() error {
	return errNotSupported("end the transaction, then BEGIN a new one",
		"AND CHAIN is not supported for a transaction that spans shards")
}

// savepointTag is the command tag Postgres gives a savepoint statement.
func savepointTag(st *router.Statement, text string) string {
	if st.Kind == router.KindSet {
		return st.SetTag()
	}
	switch t := strings.ToLower(strings.TrimSpace(text)); {
	case strings.HasPrefix(t, "release"):
		return "RELEASE"
	case strings.HasPrefix(t, "rollback"):
		return "ROLLBACK"
	}
	return "SAVEPOINT"
}

// isRollbackTo reports whether a savepoint statement is ROLLBACK TO, which
// a failed transaction may still run.
func isRollbackTo(st *router.Statement, text string) bool {
	return st.Kind == router.KindSavepoint && savepointTag(st, text) == "ROLLBACK"
}

// exitsTransaction reports the statements Postgres still parses in a
// failed transaction (postgres.c, IsTransactionExitStmt).
func exitsTransaction(st *router.Statement, text string) bool {
	switch st.Kind {
	case router.KindCommit, router.KindRollback:
		return true
	case router.KindPrepareTransaction:
		return st.TwoPhase == 'P' // not COMMIT or ROLLBACK PREPARED
	}
	return isRollbackTo(st, text)
}

// onAllLegs runs a savepoint or SET statement on every leg; the client sees
// one reply (the first leg's, or the first error).
func (s *session) onAllLegs(st *router.Statement, text string) (bool, error) {
	if s.tx.failed && !isRollbackTo(st, text) {
		return true, s.send(errorResponse(s.log, errTxAborted()))
	}
	if err := s.finishPrelude(); err != nil {
		return true, s.sendError(err)
	}
	legs := s.tx.legs
	for _, c := range legs {
		c.Send(&pgproto3.Query{String: text})
	}
	m := &merger{kind: router.MergeFirst}
	var lost error
	var gone []*pool.Conn
	ok := true
	for i, c := range legs {
		m.idx = i
		if err := c.Flush(); err != nil {
			lost, ok = backendLost(c.Shard, err), false
			gone = append(gone, c)
			continue
		}
		status, _, err := s.relay(c, 0, m)
		if errors.Is(err, errClientGone) {
			return true, err
		}
		if err != nil {
			lost, ok = backendLost(c.Shard, err), false
			gone = append(gone, c)
			continue
		}
		ok = ok && status == 'T'
	}
	for _, c := range gone {
		s.dropLeg(c)
	}
	if ok && m.err == nil {
		s.tx.failed = false // ROLLBACK TO recovered every leg
		if st.Kind == router.KindSet && !st.SetLocal {
			s.recordSet(st, nil)
			for _, c := range s.tx.legs {
				knowParams(c, maps.Clone(s.params))
			}
		}
		s.noteReplay(st, text)
	} else {
		s.tx.failed = true
	}
	s.txStatus = 'T'
	if s.tx.failed {
		s.txStatus = 'E'
	}
	if lost != nil && m.err == nil {
		return true, s.send(errorResponse(s.log, lost))
	}
	return m.finish(s)
}

// dropLeg discards one backend of the transaction after an I/O error; the
// transaction cannot commit any more.
func (s *session) dropLeg(c *pool.Conn) {
	if !s.multiLeg() {
		if c == s.attached {
			s.dropAttached()
		}
		return
	}
	for i, l := range s.tx.legs {
		if l == c {
			s.tx.legs = append(s.tx.legs[:i], s.tx.legs[i+1:]...)
			break
		}
	}
	if c == s.attached {
		s.attached, s.prelude = nil, 0
	}
	s.tx.failed = true
	s.setActive(c, false)
	s.runtime().Pools.Get(c.Shard).Discard(c)
}

// endTx ends a transaction that spans shards: a two-phase commit, or a
// rollback on every leg (also for COMMIT of a failed transaction, as
// Postgres does). It returns the command tag.
func (s *session) endTx(ctx context.Context, commit bool) (string, error) {
	defer s.endTxState()
	if err := s.finishPrelude(); err != nil {
		commit = false
	}
	if s.tx.params != nil {
		// SETs ran on the legs: whichever way the transaction ends, the
		// backends go back to their pools in a state the proxy can only
		// guess at (a failed COMMIT), so they are reset on next use.
		for _, c := range s.tx.legs {
			c.SessionParams = nil
		}
	}
	if !commit || s.tx.failed || s.localFailed {
		s.endTxParams()
		s.rollbackLegs(s.tx.legs)
		if commit {
			twoPCStats.aborted.Add(1)
		}
		return "ROLLBACK", nil
	}
	commitAll := s.commitSpanning // onephase.go
	switch {
	case s.tx.consistent:
		commitAll = s.commitReadOnly // snapshot.go
	case s.tx.strict == "serializable":
		commitAll = s.commitLegs
	}
	if err := commitAll(ctx, s.tx.legs); err != nil {
		s.endTxParams()
		return "", err
	}
	return "COMMIT", nil
}

// endTxState forgets the ended transaction; its backends are back in their pools.
func (s *session) endTxState() {
	s.tx = txn{}
	s.attached, s.prelude = nil, 0
	s.pendingBegin, s.localFailed, s.txStatus = "", false, 'I'
	if s.ddlInTx {
		s.ddlInTx = false
		s.afterDDLCommitted()
	}
	s.rt = nil
}

// rollbackLegs rolls back and releases every backend in conns.
func (s *session) rollbackLegs(conns []*pool.Conn) {
	for _, c := range conns {
		c.Send(&pgproto3.Query{String: "ROLLBACK"})
	}
	for _, c := range conns {
		ok := c.Flush() == nil
		if ok {
			status, err := readResult(c)
			ok = status == 'I' && (err == nil || isPgErr(err))
		}
		s.putBack(c, ok)
	}
}

func isPgErr(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// putBack returns a backend the session no longer uses to its pool.
func (s *session) putBack(c *pool.Conn, reusable bool) {
	s.setActive(c, false)
	p := s.runtime().Pools.Get(c.Shard)
	if reusable {
		p.Release(c)
	} else {
		p.Discard(c)
	}
}

// commitLegs commits the transaction open on every backend of conns, all
// idle in a transaction block, with two-phase commit, and gives the
// backends back to their pools. The client may be told COMMIT only when it
// returns nil: the decision is then durable, and a shard that could not be
// told is committed by recovery. An error means nothing was committed,
// except 08007, where recovery decides (the decision may have been logged).
func (s *session) commitLegs(ctx context.Context, conns []*pool.Conn) error {
	tp := s.runtime().twopc
	if tp == nil {
		return pgError("XX000", "shardproxy: two-phase commit is not configured")
	}
	// The commit must run to its end even if the session's context ends.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	gid := newGID()
	started := time.Now()
	usable := make([]bool, len(conns))
	defer func() {
		for i, c := range conns {
			s.putBack(c, usable[i])
		}
	}()

	// Phase 1: prepare everywhere.
	prepare := "PREPARE TRANSACTION " + quoteLiteral(gid)
	for _, c := range conns {
		c.Send(&pgproto3.Query{String: prepare})
	}
	prepared := make([]bool, len(conns))
	var failure error
	for i, c := range conns {
		if err := c.Flush(); err != nil {
			failure = cmp(failure, backendLost(c.Shard, err))
			continue
		}
		status, err := readResult(c)
		switch {
		case err == nil && status == 'I':
			prepared[i], usable[i] = true, true
		case isPgErr(err):
			// PREPARE failed (a deferred constraint, serialization): the
			// shard rolled its part back.
			usable[i] = status == 'I'
			failure = cmp(failure, err)
		default:
			failure = cmp(failure, backendLost(c.Shard, err))
		}
	}
	if failure == nil && time.Since(started) > tp.grace/2 {
		// Recovery may roll back what was prepared more than a grace period
		// ago; deciding only well within it means recovery never races a
		// commit decision (see txnlog.go).
		failure = pgError("40000", "shardproxy: preparing the transaction on its shards took longer than half of two_phase_commit_grace (%s); rolled back", tp.grace)
	}
	if failure != nil {
		s.abortPrepared(conns, prepared, usable, gid)
		twoPCStats.aborted.Add(1)
		return failure
	}
	tp.crash("prepare")

	// The decision.
	shards := make([]string, len(conns))
	for i, c := range conns {
		shards[i] = c.Shard
	}
	if err := tp.decide(ctx, gid, shards); err != nil {
		if isPgErr(err) {
			s.log.Error("two-phase commit: logging the decision failed; rolling back", "gid", gid, "err", err)
			s.abortPrepared(conns, prepared, usable, gid)
			twoPCStats.aborted.Add(1)
			e := pgError("40000", "shardproxy: could not log the commit decision; the transaction was rolled back")
			e.Detail = err.Error()
			return e
		}
		s.log.Error("two-phase commit: outcome unknown; recovery will resolve it", "gid", gid, "err", err)
		e := pgError("08007", "shardproxy: lost the metadata database while committing; the transaction will be committed or rolled back by recovery")
		e.Detail = "prepared transaction " + gid
		return e
	}
	tp.crash("decide")
	twoPCStats.committed.Add(1)

	// Phase 2: commit everywhere; a shard we cannot reach now is committed
	// by recovery from the decision.
	commit := "COMMIT PREPARED " + quoteLiteral(gid)
	phaseEnd := sync.OnceFunc(s.srv.commits.commit(shards)) // visible everywhere at once (visibility.go)
	defer phaseEnd()
	for i, c := range conns {
		if usable[i] {
			c.Send(&pgproto3.Query{String: commit})
			usable[i] = c.Flush() == nil
		}
	}
	pending := false
	for i, c := range conns {
		if usable[i] {
			status, err := readResult(c)
			usable[i] = status == 'I' && (err == nil || isPgErr(err))
			if err == nil {
				continue
			}
			if isPgErr(err) {
				s.log.Error("two-phase commit: COMMIT PREPARED failed", "shard", c.Shard, "gid", gid, "err", err)
				pending = true
				continue
			}
		}
		if !s.retryOnShard(ctx, c.Shard, commit) {
			s.log.Warn("two-phase commit: shard unreachable; recovery will commit it", "shard", c.Shard, "gid", gid)
			pending = true
		}
	}
	phaseEnd()
	if !pending {
		tp.forget(ctx, gid)
	}
	return nil
}

// cmp keeps the first error.
func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// abortPrepared rolls back an undecided transaction: ROLLBACK PREPARED where
// it was prepared, ROLLBACK on the backends still in it. What fails here is
// left to recovery, which rolls back whatever has no commit decision.
func (s *session) abortPrepared(conns []*pool.Conn, prepared, usable []bool, gid string) {
	rollback := "ROLLBACK PREPARED " + quoteLiteral(gid)
	for i, c := range conns {
		if !usable[i] {
			continue
		}
		q := "ROLLBACK"
		if prepared[i] {
			q = rollback
		}
		c.Send(&pgproto3.Query{String: q})
		if c.Flush() != nil {
			usable[i] = false
			continue
		}
		status, err := readResult(c)
		usable[i] = status == 'I' && (err == nil || isPgErr(err))
	}
}

// retryOnShard runs a statement that must happen (COMMIT PREPARED) on fresh
// backends of shard, a few times.
func (s *session) retryOnShard(ctx context.Context, shard, sql string) bool {
	p := s.runtime().Pools.Get(shard)
	for attempt := 0; attempt < 3; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return false
			case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
			}
		}
		c, err := p.Acquire(ctx)
		if err != nil {
			continue
		}
		_, err = queryRows(c, sql)
		if err != nil && !isPgErr(err) {
			p.Discard(c)
			continue
		}
		p.Release(c)
		var pgErr *pgconn.PgError
		// 42704: already finished (by recovery).
		return err == nil || errors.As(err, &pgErr) && pgErr.Code == "42704"
	}
	return false
}

// fanoutTx runs one statement on several shards inside the open
// transaction, on the transaction's backends. Writes go one shard after the
// other in shard order, so that two transactions writing the same rows on
// every shard (a reference table) queue behind each other on the first
// shard instead of each locking a different shard first and waiting for the
// other forever (no server would see that deadlock).
func (s *session) fanoutTx(ctx context.Context, st *router.Statement, route router.Route, send func(c *pool.Conn)) (bool, error) {
	if s.txStatus == 'E' || s.tx.failed || s.localFailed {
		return true, s.send(errorResponse(s.log, errTxAborted()))
	}
	mark := s.statStart()
	if err := s.holdIfPaused(ctx, route.Shards...); err != nil { // before a joining leg holds a backend
		return true, s.sendError(err)
	}
	conns := make([]*pool.Conn, 0, len(route.Shards))
	for _, sh := range route.Shards {
		c, err := s.txConn(ctx, sh)
		if err != nil {
			return true, s.sendError(err)
		}
		conns = append(conns, c)
	}
	write := st.Kind != router.KindSelect && st.Kind != router.KindShow
	locks := ""
	if write {
		locks = refLockQuery(st) // a write to reference tables (reflock.go)
	}
	m := s.newMerger(route)
	var lost error
	var gone []*pool.Conn
	run := func(i int, c *pool.Conn) error {
		m.idx = i
		status, _, err := s.relayLocked(c, 0, locks != "", m)
		switch {
		case errors.Is(err, errClientGone):
			return err
		case err != nil:
			lost = cmp(lost, backendLost(c.Shard, err))
			gone = append(gone, c)
		case status != 'T':
			s.tx.failed = true
		}
		return nil
	}
	flush := func(c *pool.Conn) bool {
		if locks != "" {
			c.Send(&pgproto3.Query{String: locks})
		}
		send(c)
		if err := c.Flush(); err != nil {
			lost = cmp(lost, backendLost(c.Shard, err))
			gone = append(gone, c)
			return false
		}
		return true
	}
	var started []bool
	if !write {
		started = make([]bool, len(conns))
		for i, c := range conns {
			started[i] = flush(c)
		}
	}
	for i, c := range conns {
		if write && !flush(c) || !write && !started[i] {
			continue
		}
		if err := run(i, c); err != nil {
			return true, err
		}
	}
	for _, c := range gone {
		s.dropLeg(c)
	}
	m.checkSplit(s)
	if lost != nil || m.err != nil {
		s.tx.failed = true
	}
	if s.tx.failed {
		s.txStatus = 'E'
	}
	d := time.Since(mark.start)
	for _, c := range conns {
		s.srv.stats.leg(c.Shard, route.Kind, d, 0, 0, s.tx.failed)
	}
	s.srv.stats.statement(route.Kind, d)
	if lost != nil && m.err == nil {
		return true, s.send(errorResponse(s.log, lost))
	}
	return m.finish(s)
}

// extTxStatement runs, in the extended protocol, a statement that concerns
// the whole of a transaction that spans shards (see txStatement). The
// batch so far is synced and delivered first, so replies stay in order.
func (s *session) extTxStatement(ctx context.Context, ps *prepared) error {
	if err := s.extSyncAttached(); err != nil {
		return err
	}
	if s.ext.clientFailed {
		s.ext.skip = true
		return nil
	}
	if s.implicit {
		if done, err := s.extImplicitStatement(ctx, ps); done {
			return err
		}
	}
	if !s.multiLeg() {
		return s.executeLocal(ps) // the transaction ended while syncing
	}
	st := ps.st
	switch st.Kind {
	case router.KindCommit, router.KindRollback:
		if chained(ps.query) {
			return s.extFail(errChain())
		}
		tag, err := s.endTx(ctx, st.Kind == router.KindCommit)
		if err != nil {
			return s.extFail(err)
		}
		s.pushLocal(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
	case router.KindBegin:
		s.pushLocal(noticeInProgress)
		if err := s.beginInSpanningTxn(ps.query); err != nil {
			return s.extFail(err)
		}
		s.pushLocal(&pgproto3.CommandComplete{CommandTag: []byte(ps.st.Tag)})
	case router.KindPrepareTransaction:
		if st.FinishesPrepared() {
			return s.extFail(errInBlock(st)) // as Postgres (userprepared.go)
		}
		return s.extFail(errNotSupported("let shardproxy commit the transaction",
			"PREPARE TRANSACTION is not supported in a transaction that spans shards"))
	case router.KindSavepoint, router.KindSet:
		if err := s.setWhileCursorsRead(st); err != nil {
			return s.extFail(err)
		}
		failed, err := s.onAllLegs(st, ps.query)
		if err != nil {
			return err
		}
		if failed {
			s.ext.skip, s.ext.clientFailed = true, true
		}
	}
	return nil
}

// beginInSpanningTxn is the error, if any, of the options of a BEGIN
// inside a transaction that spans shards, after its WARNING: every shard
// took a snapshot (beginOptionsError).
func (s *session) beginInSpanningTxn(text string) error {
	current := s.tx.strict
	if current == "" {
		current = s.defaultIsolation()
	}
	return beginOptionsError(text, current, true, len(s.tx.savepoints) > 0)
}

// txWide reports statements that extTxStatement answers once a transaction
// spans shards.
func (s *session) txWide(k router.Kind) bool {
	switch k {
	case router.KindCommit, router.KindRollback, router.KindBegin, router.KindPrepareTransaction,
		router.KindSavepoint:
		return s.multiLeg() || s.implicit // implicit.go
	case router.KindSet:
		return s.multiLeg()
	}
	return false
}

// extSyncAttached ends the batch sent so far to the attached backend with a
// Sync (inside a transaction block it does not end the transaction) and
// delivers its replies, so that the session may use other backends.
func (s *session) extSyncAttached() error {
	if c := s.attached; c != nil && s.ext.sent {
		c.Send(&pgproto3.Sync{})
		s.pushRemote('S', c).swallow = true
		if err := c.Flush(); err != nil {
			s.ext.queue = s.ext.queue[:0]
			s.dropAttached()
			return s.sendLost(c.Shard, err)
		}
	}
	err := s.drain()
	s.ext.sent = false
	return err
}
