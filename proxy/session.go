package proxy

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// A session serves one client connection.
//
// Goroutines: the session goroutine (run) owns the session and every backend
// connection attached to it; it alone reads from the client and from its
// backends. Two things reach in from outside, and both only through
// cancelBackends, which takes activeMu and sends CancelRequests on fresh
// connections: a client's CancelRequest (served by the goroutine of the
// connection that carried it) and Server.Shutdown, which closes the client
// socket so that run's next read fails. When run returns, every backend it
// held is released (if idle) or discarded (if a transaction or reply was in
// flight: closing the connection makes Postgres roll back and drop locks).
//
// Transaction pooling: a backend is attached at the first statement that
// needs one and detached when it reports ReadyForQuery 'I'. BEGIN is deferred
// until the first statement that names a shard, so that the transaction is
// pinned to the shard its first routed statement needs.
type session struct {
	srv    *Server
	conn   net.Conn
	be     *pgproto3.Backend
	log    *slog.Logger
	pid    uint32
	secret []byte

	// params holds the session settings the client asked for (startup
	// parameters and SET), as SQL text values; they are replayed on whichever
	// backend serves the next transaction.
	params map[string]string
	// startup is params as the startup message set them: what RESET and
	// DISCARD ALL return to, as on Postgres.
	startup map[string]string
	hint    string // SET shardproxy.shard

	rt           *Runtime    // snapshot for the current transaction
	attached     *pool.Conn  // backend holding the open transaction or batch
	types        *pgtype.Map // text -> binary conversion of merged results; made on first use
	prelude      int         // replies (ending in ReadyForQuery) to swallow before the client's own
	txStatus     byte        // what the client was last told: 'I', 'T' or 'E'
	pendingBegin string      // BEGIN text not yet sent to a shard
	stmtTouches  bool        // the statement being routed reads or writes tables (txn.touch)
	stmtSnapshot bool        // the statement being routed takes a snapshot (snapshot.go)
	stmtWrites   bool        // the statement being routed may change something (onephase.go)
	stmtHides    bool        // the statement being routed may change settings unseen (forgetSettings)
	// errPosition moves an error's position from the text the proxy runs
	// to the client's, while an EXECUTE runs (sqlprepare.go).
	errPosition func(int32) int32
	localFailed bool // transaction failed before any shard was attached
	implicit    bool // the open transaction is a multi-statement Query's implicit block (implicit.go)
	holdTag     bool // keep the next CommandComplete in heldTag instead of sending it (implicit.go)
	heldTag     []byte
	ddlInTx     bool       // DDL ran in the open transaction: forget cached columns at its end
	relayed     int        // CommandCompletes relay passed on in its last call (recordBatch)
	learn       learnState // DDL the router learned from in the open transaction (learning.go)
	tx          txn        // the transaction's other shards, savepoints, failure (txn.go)

	// columns is tableColumns bound once, so that building router.Args
	// on every statement does not allocate.
	columns func(ctx context.Context, schema, rel string) ([]string, error)
	colType func(ctx context.Context, schema, rel, col string) (string, error) // keyColumnType, bound once
	tz      sessionTimeZone                                                    // see timeZone

	ext extended
	out scratch // messages for backends, reused (scratch.go)

	stopping sessionDrain // see drain.go

	rfq pgproto3.ReadyForQuery // ready's message, reused: sent by pointer, it would escape per reply

	wbytes    int  // bytes buffered for the client since the last flush
	unflushed bool // something was buffered for the client since the last flush

	sentRows, sentBytes int64        // DataRows (and their bytes) sent to the client, for stats.go
	state               atomic.Int32 // clientIdle, clientIdleInTx or clientActive; read by Server.Stats

	activeMu sync.Mutex
	active   []*pool.Conn // backends a CancelRequest must reach
	// passed lists the shards the client message being handled went
	// through the PAUSE gate for (holdIfPaused); a pause's drain counts
	// them as held (busyOn), since between the gate and the pool the
	// statement holds no backend yet. Cleared before each client read.
	passed []string
	// cancels counts the client's CancelRequests: a step that starts
	// after one (an evaluation on a backend that was idle when the
	// request reached it, and so ignored it) is cancelled too.
	cancels atomic.Int64

	watch clientWatch // cancels the running statement if the client vanishes
	info  clientInfo  // what the admin console shows (admin.go)
}

// flushThreshold bounds what is buffered for the client: rows stream out.
const flushThreshold = 64 << 10

// newSession starts a session with params, the settings from its startup
// message (sessionParams).
func newSession(srv *Server, c net.Conn, be *pgproto3.Backend, log *slog.Logger, params map[string]string) *session {
	s := &session{srv: srv, conn: c, be: be, log: log, txStatus: 'I', params: params}
	s.startup = maps.Clone(s.params)
	s.ext.init()
	s.columns = s.tableColumns
	s.colType = s.keyColumnType
	s.watch.init(c, &srv.watchTick, func() {
		s.log.Info("client went away during a statement; cancelling it")
		s.cancelBackends()
	}, s.expireBackends)
	return s
}

// reportedValue is the value the client is told for a GUC_REPORT setting.
func (s *session) reportedValue(name string) (string, bool) {
	if v, ok := s.params[strings.ToLower(name)]; ok {
		return unquoteLiteral(router.SettingSQL(v)), true
	}
	if name == "session_authorization" {
		return "", false
	}
	if m := s.srv.serverParams.Load(); m != nil {
		v, ok := (*m)[name]
		return v, ok
	}
	defaults := map[string]string{
		"server_version": "15.0", "server_encoding": "UTF8", "client_encoding": "UTF8",
		"DateStyle": "ISO, MDY", "integer_datetimes": "on", "IntervalStyle": "postgres",
		"standard_conforming_strings": "on", "TimeZone": "UTC",
	}
	v, ok := defaults[name]
	return v, ok
}

func (s *session) run(ctx context.Context) {
	defer s.detachAll()
	defer s.watch.stop()
	defer s.endLearningGone(ctx)
	boundary := true // nothing open since the last ReadyForQuery 'I' (see drain.go)
	for {
		if boundary {
			s.endLearning(ctx)
		}
		if s.beforeRead(boundary) {
			sendFatal(s.be, s.log, errAdminShutdown())
			return
		}
		if s.txStatus == 'I' {
			s.state.Store(clientIdle)
		} else {
			s.state.Store(clientIdleInTx)
		}
		msg, err := s.receive()
		s.state.Store(clientActive)
		if s.afterRead() && errors.Is(err, os.ErrDeadlineExceeded) {
			continue // woken by Shutdown: beforeRead says goodbye
		}
		if err != nil {
			if !clientGone(err) {
				sendFatal(s.be, s.log, errProtocol("invalid frontend message: %v", err))
			}
			return
		}
		if s.ext.describeLater != nil {
			if err := s.deferDescribe(ctx, msg); err != nil {
				s.log.Debug("session ends", "err", err)
				return
			}
		}
		if s.prelude > 0 {
			if _, simple := msg.(*pgproto3.Query); !simple {
				s.queuePrelude() // left by the simple protocol (failTransaction)
			}
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			err = s.handleQuery(ctx, m.String)
		case *pgproto3.Parse:
			err = s.handleParse(m)
		case *pgproto3.Bind:
			err = s.handleBind(ctx, m)
		case *pgproto3.Describe:
			err = s.handleDescribe(ctx, m)
		case *pgproto3.Execute:
			err = s.handleExecute(ctx, m)
		case *pgproto3.Close:
			err = s.handleClose(m)
		case *pgproto3.Sync:
			err = s.handleSync(ctx)
		case *pgproto3.Flush:
			err = s.handleFlush()
		case *pgproto3.Terminate:
			return
		case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
			// Postgres ignores copy messages that arrive outside COPY (after
			// a COPY failed, the client may still be sending its data).
		default:
			sendFatal(s.be, s.log, errProtocol("invalid frontend message type %T", msg))
			return
		}
		if err != nil {
			// Only client I/O errors end the session; statement errors were
			// already sent to the client.
			s.log.Debug("session ends", "err", err)
			return
		}
		switch msg.(type) {
		case *pgproto3.Query, *pgproto3.Sync: // answered with ReadyForQuery
			boundary = s.atBoundary()
		case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		default:
			boundary = false
		}
	}
}

// send buffers one message for the client and flushes when the buffer is big,
// so that large results stream instead of piling up in memory.
func (s *session) send(msg pgproto3.BackendMessage) error {
	if s.holdTag { // rare: checked before any type switch
		if cc, ok := msg.(*pgproto3.CommandComplete); ok {
			s.heldTag = append(s.heldTag[:0], cc.CommandTag...)
			return nil
		}
	}
	if s.ext.bindOwed { // rare: checked before any type switch
		_, isErr := msg.(*pgproto3.ErrorResponse)
		s.payBind(isErr)
	}
	if s.errPosition != nil { // rare: an EXECUTE's statement runs (sqlprepare.go)
		if e, ok := msg.(*pgproto3.ErrorResponse); ok && e.Position > 0 {
			e.Position = s.errPosition(e.Position)
		}
	}
	s.be.Send(msg)
	s.unflushed = true
	switch m := msg.(type) {
	case *pgproto3.DataRow:
		n := 0
		for _, v := range m.Values {
			n += len(v) + 4
		}
		s.wbytes += n
		s.sentRows++
		s.sentBytes += int64(n)
	case *pgproto3.CopyData:
		s.wbytes += len(m.Data)
		s.sentBytes += int64(len(m.Data))
	case *pgproto3.ErrorResponse:
		s.srv.stats.countError(m.Code)
		s.learningFailed()
		s.wbytes += 16
	default:
		s.wbytes += 16
	}
	if s.wbytes >= flushThreshold {
		return s.flush()
	}
	return nil
}

func (s *session) flush() error {
	if !s.unflushed {
		return nil // pgproto3 would issue an empty write
	}
	s.wbytes, s.unflushed = 0, false
	return s.be.Flush()
}

// sendError sends a statement error to the client. If the client is inside a
// transaction, the transaction fails as it would on Postgres.
func (s *session) sendError(err error) error {
	if s.txStatus != 'I' {
		s.failTransaction()
	}
	return s.send(errorResponse(s.log, err))
}

// failTransaction puts the open transaction into the failed state, as any
// error inside a transaction block does on Postgres: on the attached backend
// (by raising an error there) or locally when no shard was attached yet.
func (s *session) failTransaction() {
	if s.multiLeg() {
		// Ended by ROLLBACK on every leg; until then the proxy answers 25P02.
		s.tx.failed, s.txStatus = true, 'E'
		return
	}
	if s.attached == nil {
		if s.txStatus != 'I' {
			s.localFailed = true
			s.txStatus = 'E'
		}
		return
	}
	s.attached.Send(&pgproto3.Query{String: abortSQL})
	s.prelude++
	s.tx.failed = true // no other shard may join it (see join)
	// The backend fails the transaction when it runs abortSQL, with the
	// next statement; the client's ReadyForQuery must say so already now.
	s.txStatus = 'E'
}

// abortSQL makes a backend transaction fail on purpose, so that it rolls back
// exactly as Postgres would after the proxy refused a statement in it.
const abortSQL = `DO $shardproxy$BEGIN RAISE EXCEPTION 'shardproxy: transaction aborted after a proxy-side error'; END$shardproxy$`

func (s *session) ready() error {
	if s.txStatus == 'I' {
		// Portals do not outlive their transaction: a transaction block
		// ended by a simple Query (COMMIT) takes its portals along, as
		// Sync does those of a pipeline (resetBatch).
		s.ext.dropPortals()
	}
	s.info.noteReady(s.txStatus)
	s.rfq.TxStatus = s.txStatus
	if err := s.send(&s.rfq); err != nil {
		return err
	}
	return s.flush()
}

// runtime returns the configuration snapshot of the current transaction.
func (s *session) runtime() *Runtime {
	if s.rt == nil {
		s.rt = s.srv.rt.Load()
	}
	return s.rt
}

func (s *session) setActive(c *pool.Conn, on bool) {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	if on {
		s.active = append(s.active, c)
		return
	}
	for i, a := range s.active {
		if a == c {
			s.active = append(s.active[:i], s.active[i+1:]...)
			return
		}
	}
}

// cancelBackends forwards a client's CancelRequest to every backend in use.
func (s *session) cancelBackends() {
	s.cancels.Add(1)
	s.activeMu.Lock()
	conns := append([]*pool.Conn(nil), s.active...)
	s.activeMu.Unlock()
	for _, c := range conns {
		go s.cancelRequest(c)
	}
}

// expireBackends ends the session goroutine's reads from the backends in
// use (clientWatch.expire): it gets an error as for a lost backend and
// discards them. Under activeMu, so that only backends the session still
// holds are touched (it releases one only after setActive(c, false)).
func (s *session) expireBackends() {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	if len(s.active) > 0 {
		s.log.Warn("statement still running after its client went away and it was cancelled; dropping its backends",
			"after", expireAfter, "backends", len(s.active))
	}
	for _, c := range s.active {
		c.Expire()
	}
}

// cancelRequest cancels the request c is working on, if any. Postgres
// ignores a cancel that reaches a backend while it is still reading its
// request, which the proxy may have sent it a moment before (a client's
// single-shard statement, a gathered statement's evaluation), so the
// cancel is sent again, at growing intervals, while that same request is
// unanswered. It stops once c answers it or is sent the next request
// (pool.Conn.CancelUnanswered: never a later request), or after
// cancelTries cancels.
func (s *session) cancelRequest(c *pool.Conn) {
	request, unanswered := c.Request()
	if !unanswered {
		return // idle (between requests): Postgres would ignore it too
	}
	wait := cancelRetryFirst
	for try := range cancelTries {
		if try > 0 {
			time.Sleep(wait)
			wait = min(2*wait, cancelRetryMax)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		sent, err := c.CancelUnanswered(ctx, request)
		cancel()
		if err != nil {
			s.log.Warn("cancel request to shard failed", "shard", c.Shard, "err", err)
			return
		}
		if !sent {
			return
		}
	}
}

// A request still unanswered after its cancel is cancelled again after
// cancelRetryFirst, then at doubling intervals up to cancelRetryMax: one
// resend is what a cancel lost to a backend still reading needs; later
// ones are cheap (a connection to the postmaster) and bounded.
const (
	cancelRetryFirst = 50 * time.Millisecond
	cancelRetryMax   = time.Second
	cancelTries      = 20
)

// acquire takes a backend for shard and brings its session settings in line
// with the client's. The settings are sent now and their replies swallowed
// by the next relay (see prelude).
func (s *session) acquire(ctx context.Context, shard string) (*pool.Conn, int, error) {
	return s.acquireWith(ctx, shard, s.params)
}

// acquireWith is acquire with the settings want in place of the
// session's (beforeBegin).
func (s *session) acquireWith(ctx context.Context, shard string, want map[string]string) (*pool.Conn, int, error) {
	p := s.runtime().Pools.Get(shard)
	if p == nil {
		return nil, 0, pgError("42704", "shard %q does not exist", shard)
	}
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, 0, err
	}
	s.noteServerParams(c)
	s.setActive(c, true)
	// One Query each: a setting the shard rejects must not keep the
	// others (a RESET above all) from being applied.
	sync := syncParams(c, want)
	for _, q := range sync {
		c.Send(&pgproto3.Query{String: q})
	}
	if s.stmtHides {
		c.SessionParams = nil // (forgetSettings)
	}
	return c, len(sync), nil
}

// forgetSettings runs before a statement that may change session
// settings where the proxy cannot see them (router.Statement.HidesSettings:
// a DO block, CALL, a function that runs SET or set_config). What it sets
// cannot follow the client to another backend, so it must not stay on
// this one for the next client either: every backend the session holds,
// and each it acquires for the statement (acquireWith), is marked unknown
// and reset before its next use (syncParams), which a later SET on it
// does not undo (knowParams). The client keeps the setting only for the
// rest of its transaction, on that backend (README).
func (s *session) forgetSettings() {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	for _, c := range s.active {
		c.SessionParams = nil
	}
}

func (s *session) noteServerParams(c *pool.Conn) {
	if s.srv.serverParams.Load() == nil && len(c.ServerParams) > 0 {
		m := make(map[string]string, len(c.ServerParams))
		for k, v := range c.ServerParams {
			m[k] = v
		}
		s.srv.serverParams.CompareAndSwap(nil, &m)
	}
}

// syncParams returns the SET/RESET statements that make backend c carry
// exactly the settings in want, and records them as applied.
func syncParams(c *pool.Conn, want map[string]string) []string {
	if c.SessionParams != nil && sameParams(want, c.SessionParams) {
		return nil // the common case, checked without allocating
	}
	var out []string
	if c.SessionParams == nil {
		// Unknown (see endTxParams): back to the backend's defaults first.
		// RESET ALL leaves the role and session authorization alone.
		out = append(out, "RESET ALL;RESET SESSION AUTHORIZATION;RESET ROLE")
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if c.SessionParams[k] != want[k] {
			out = append(out, setStatement(k, want[k]))
		}
	}
	for k, v := range c.SessionParams {
		if _, ok := want[k]; !ok {
			out = append(out, resetStatement(k, v))
		}
	}
	if len(out) == 0 {
		return nil
	}
	c.SessionParams = make(map[string]string, len(want))
	for k, v := range want {
		c.SessionParams[k] = v
	}
	return out
}

// knowParams records that backend c now holds the session settings p,
// unless the proxy already lost track of them (nil: reset before the next
// use, see syncParams): a SET of one setting does not tell the others.
func knowParams(c *pool.Conn, p map[string]string) {
	if c.SessionParams != nil {
		c.SessionParams = p
	}
}

// attach pins the backend for shard to the session (for the rest of the
// transaction or extended-protocol batch).
func (s *session) attach(ctx context.Context, shard string) (*pool.Conn, error) {
	if err := s.srv.commits.await(ctx, shard); err != nil { // see visibility.go
		return nil, err
	}
	if err := s.beforeSnapshot(ctx, shard, s.stmtSnapshot, s.attached == nil || !s.ext.sent); err != nil {
		return nil, err
	}
	if s.attached != nil && s.attached.Shard == shard {
		return s.attached, s.touch(shard)
	}
	if s.multiLeg() {
		return s.join(ctx, shard)
	}
	if s.attached != nil {
		if s.txStatus == 'I' || !s.runtime().Config.TwoPhaseCommit {
			return nil, errCrossShard(s.attached.Shard, shard)
		}
		return s.join(ctx, shard)
	}
	if len(s.tx.replay) > 0 && s.pendingBegin != "" {
		// Savepoints were taken before any shard: open it synchronously
		// so that an error in them is reported (see openLeg).
		s.tx.begin, s.pendingBegin = s.pendingBegin, ""
		c, err := s.openLeg(ctx, shard, false)
		if err != nil {
			s.tx.failed, s.localFailed, s.txStatus = true, true, 'E'
			return nil, err
		}
		s.attached = c
		return c, s.touch(shard)
	}
	if err := s.holdIfPaused(ctx, shard); err != nil {
		return nil, err
	}
	c, n, err := s.acquire(ctx, shard)
	if err != nil {
		return nil, err
	}
	if s.pendingBegin != "" {
		c.Send(&pgproto3.Query{String: s.pendingBegin})
		s.tx.begin, s.pendingBegin = s.pendingBegin, "" // for shards joining later
		n++
	}
	s.attached, s.prelude = c, n
	return c, s.touch(shard)
}

func errCrossShard(pinned, want string) error {
	return errNotSupported(
		"set two_phase_commit: true in the shardproxy config to allow transactions across shards; or keep each transaction on one shard key, or send the statement outside the transaction",
		"transaction is pinned to shard %s; this statement targets shard %s", pinned, want)
}

// settle records the transaction status a backend reported and detaches the
// backend when the transaction is over (transaction pooling).
func (s *session) settle(status byte) {
	if s.multiLeg() {
		// One leg's status is not the transaction's: it fails when any leg
		// fails and ends only in endTx. ('I' here would mean a leg's
		// transaction ended under the proxy: it cannot commit any more.)
		if status != 'T' {
			s.tx.failed = true
		}
		s.txStatus = 'T'
		if s.tx.failed {
			s.txStatus = 'E'
		}
		return
	}
	s.txStatus = status
	s.tx.failed = status == 'E'
	if status == 'I' {
		s.endTxParams(s.attached)
		s.tx = txn{}
	}
	if status == 'I' && s.ddlInTx {
		s.ddlInTx = false
		s.afterDDLCommitted()
	}
	if status == 'I' && s.attached != nil {
		c := s.attached
		s.attached = nil
		s.setActive(c, false)
		s.runtime().Pools.Get(c.Shard).Release(c)
		s.rt = nil
	}
}

// dropAttached discards the attached backend after an I/O error or desync.
func (s *session) dropAttached() {
	if s.multiLeg() {
		if c := s.attached; c != nil {
			s.dropLeg(c)
		}
		return
	}
	if c := s.attached; c != nil {
		s.attached = nil
		s.prelude = 0
		s.setActive(c, false)
		s.runtime().Pools.Get(c.Shard).Discard(c)
	}
}

// detachAll runs when the client is gone: an idle backend goes back to the
// pool, one in a transaction is closed, which rolls it back.
func (s *session) detachAll() {
	if s.multiLeg() {
		// Closing the backends rolls their transactions back.
		for _, c := range s.tx.legs {
			s.putBack(c, false)
		}
		s.tx, s.attached = txn{}, nil
		return
	}
	if s.attached != nil {
		if s.txStatus == 'I' && s.prelude == 0 && s.ext.pendingEmpty() {
			s.settle('I')
		} else {
			s.dropAttached()
		}
	}
}

// quoteLiteral renders v as a SQL string literal.
func quoteLiteral(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

// unquoteLiteral undoes quoteLiteral for values shown in ParameterStatus.
func unquoteLiteral(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return strings.ReplaceAll(v[1:len(v)-1], "''", "'")
	}
	return v
}

// setStatement returns the statement that gives a backend the session
// setting name with recorded value v (a router.Statement.SetValue).
func setStatement(name, v string) string {
	if q, ok := router.ConfigStatement(name, v); ok {
		return q // set_config made it (router/setconfig.go)
	}
	return "SET " + quoteIdent(name) + " = " + v
}

// resetStatement returns the statement that takes setting name, whose
// recorded value on a backend is v, back to the backend's default.
func resetStatement(name, v string) string {
	if q, ok := router.ConfigReset(name, v); ok {
		return q // it may not exist there (router/setconfig.go)
	}
	return "RESET " + quoteIdent(name)
}

func quoteIdent(s string) string {
	for _, r := range s {
		if !(r == '_' || r == '.' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9') {
			return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
		}
	}
	return s
}

// isConnErr reports whether err means the backend connection is unusable.
func isConnErr(err error) bool {
	var pgErr *pgconn.PgError
	return err != nil && !errors.As(err, &pgErr)
}

var _ = router.KindSelect

func sameParams(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
