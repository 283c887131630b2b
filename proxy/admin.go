package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// The admin console: a client that connects to cfg.AdminDatabase as an
// admin user talks to the proxy itself, PgBouncer-style. It speaks the
// simple Query protocol only and answers every command with an ordinary
// result set of text columns, so psql prints tables.

// adminState is the part of Server the console drives: hooks the serve
// command installs, the map epoch and the PAUSE gate.
type adminState struct {
	epoch    atomic.Int64 // runtimes installed by SetRuntime: a reload counter
	reload   atomic.Pointer[func() error]
	shutdown atomic.Pointer[func()]
	gate     pauseGate
}

// SetReloadHook installs what the console's RELOAD runs: the serve command
// passes its config watcher's reload. Its error (a *config.ValidationError
// naming file:line) goes to the admin client.
func (s *Server) SetReloadHook(f func() error) { s.admin.reload.Store(&f) }

// SetShutdownHook installs what the console's SHUTDOWN runs: the serve
// command cancels its serve context, which drains as SIGTERM does.
func (s *Server) SetShutdownHook(f func()) { s.admin.shutdown.Store(&f) }

// pauseTimeout bounds how long PAUSE waits for running transactions.
var pauseTimeout = 30 * time.Second

// pauseGate holds new transactions on paused shards (PAUSE / RESUME). A
// session consults it when it takes a backend for a shard, which happens
// at transaction start; while nothing is paused that costs one atomic load.
type pauseGate struct {
	any atomic.Bool // something is paused: take the slow path

	mu sync.Mutex
	// A pause is numbered: the shards it closes the gate for carry its
	// number (see mustWait); 0 means open.
	seq     uint64
	all     uint64            // PAUSE without a shard
	shards  map[string]uint64 // PAUSE <shard>, a cutover's sources
	resumed chan struct{}     // closed (and replaced) by every RESUME
}

// wait returns once shard is not paused, or with ctx's error.
func (g *pauseGate) wait(ctx context.Context, shard string) error {
	for {
		g.mu.Lock()
		if g.all == 0 && g.shards[shard] == 0 {
			g.mu.Unlock()
			return nil
		}
		ch := g.resumed
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// holdIfPaused waits while any of shards is paused. Sessions call it
// where a transaction takes a backend (attach, a shard joining, the legs
// of a multi-shard statement, all of them before any is taken); catalog
// reads, Describe and table-less reads outside a transaction are not
// held, so that other shards keep serving.
//
// The session announces the shards it passed for (session.passed) before
// it looks at the gate a last time, and a pause closes the gate before it
// counts the sessions on its shards (busyOn): so either the pause sees
// this session and waits for its statement, or the session sees the
// pause and waits at the gate. Looking only before the pool would let a
// statement pass in the instant before the gate closed and take its
// backend after the drain had counted nobody: a write on a source shard
// after a cutover's catch-up point, lost to the new owner. A shard the
// session holds a backend of, or passed for already in this client
// message, is not waited for again: the drain waits for this session,
// and waiting at the gate would hold both up until the pause's bound.
// For the same reason neither is a shard closed by the same pause as
// one of those (mustWait): a transaction that holds one source shard of
// a cutover and then writes on another (another key, a reference table)
// is waited for by the cutover's pause.
// While nothing is paused the cost is a lock of activeMu and two atomic
// loads.
func (s *session) holdIfPaused(ctx context.Context, shards ...string) error {
	g := &s.srv.admin.gate
	for {
		fresh := s.pass(shards)
		if len(fresh) == 0 || !g.any.Load() {
			break
		}
		n := len(s.passed) - len(fresh)
		held := g.mustWait(fresh, s.holding(n))
		if len(held) == 0 {
			break
		}
		s.unpass(n)
		for _, sh := range held {
			if err := g.wait(ctx, sh); err != nil {
				return err
			}
		}
	}
	if h := s.srv.afterGate.Load(); h != nil {
		(*h)(shards)
	}
	if err := s.srv.reshard.checkFence(shards); err != nil { // see reshard.go
		return err
	}
	return s.checkMapAfterHold() // see reshard.go
}

// pass adds to session.passed the shards it neither holds a backend of
// nor passed for already, and returns them.
func (s *session) pass(shards []string) []string {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	n := len(s.passed)
	for _, sh := range shards {
		if !slices.Contains(s.passed, sh) && !slices.ContainsFunc(s.active, func(c *pool.Conn) bool { return c.Shard == sh }) {
			s.passed = append(s.passed, sh)
		}
	}
	return s.passed[n:]
}

// holding lists the shards the session holds a backend of, or passed
// the gate for among the first n of session.passed.
func (s *session) holding(n int) []string {
	s.activeMu.Lock()
	defer s.activeMu.Unlock()
	out := slices.Clone(s.passed[:n])
	for _, c := range s.active {
		out = append(out, c.Shard)
	}
	return out
}

// unpass forgets the shards passed after the first n.
func (s *session) unpass(n int) {
	s.activeMu.Lock()
	s.passed = s.passed[:n]
	s.activeMu.Unlock()
}

// receive reads the client's next message. Every backend the session
// took in the last one is in session.active by now, so the shards it
// passed the gate for are forgotten: a session waiting for its client
// must not hold a pause up.
func (s *session) receive() (pgproto3.FrontendMessage, error) {
	if len(s.passed) > 0 {
		s.unpass(0)
	}
	return s.be.Receive()
}

// pause closes the gate for shards, as one pause ("" = every shard).
func (g *pauseGate) pause(shards ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.resumed == nil {
		g.resumed = make(chan struct{})
	}
	g.seq++
	for _, sh := range shards {
		if sh == "" {
			g.all = g.seq
			continue
		}
		if g.shards == nil {
			g.shards = make(map[string]uint64)
		}
		g.shards[sh] = g.seq
	}
	g.any.Store(true)
}

// resume opens the gate for shard ("" = everything paused).
func (g *pauseGate) resume(shard string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case shard == "":
		g.all = 0
		clear(g.shards)
	case g.all != 0:
		return pgError("55000", "every shard is paused; RESUME without a shard resumes them")
	case g.shards[shard] == 0:
		return pgError("55000", "shard %s is not paused", shard)
	default:
		delete(g.shards, shard)
	}
	g.any.Store(g.all != 0 || len(g.shards) > 0)
	if g.resumed != nil {
		close(g.resumed)
		g.resumed = make(chan struct{})
	}
	return nil
}

// mustWait returns the shards of fresh a session that holds (or passed
// the gate for) the shards in mine must wait for: those paused, except
// where every pause closing one also closes one of mine. Such a pause
// waits for the session anyway (busyOn), and once it is acknowledged no
// session holds any of its shards, so none can join one through this.
func (g *pauseGate) mustWait(fresh, mine []string) []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []string
	for _, sh := range fresh {
		if id := g.shards[sh]; g.all != 0 && len(mine) == 0 ||
			id != 0 && !slices.ContainsFunc(mine, func(m string) bool { return g.shards[m] == id }) {
			out = append(out, sh)
		}
	}
	return out
}

func (g *pauseGate) paused(shard string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.all != 0 || g.shards[shard] != 0
}

// clientInfo is what SHOW CLIENTS and SHOW TRANSACTIONS read about a
// session from another goroutine. The plain fields are set before the
// session is registered and never change; the session goroutine updates
// the atomics once per ReadyForQuery, nothing else on the hot path.
type clientInfo struct {
	id       uint64
	user, db string
	addr     string
	since    time.Time

	lastReady atomic.Int64  // unix nanoseconds of the last ReadyForQuery
	tx        atomic.Uint32 // transaction status the client was last told
	txSince   atomic.Int64  // unix nanoseconds of the first ReadyForQuery in the open transaction
}

func (ci *clientInfo) init(id uint64, user, db string, addr net.Addr) {
	ci.id, ci.user, ci.db, ci.since = id, user, db, time.Now()
	if addr != nil {
		ci.addr = addr.String()
	}
	ci.tx.Store('I')
}

// noteReady records the status of a ReadyForQuery sent to the client.
func (ci *clientInfo) noteReady(status byte) {
	now := time.Now().UnixNano()
	if status != 'I' && ci.tx.Load() == 'I' {
		ci.txSince.Store(now)
	}
	ci.tx.Store(uint32(status))
	ci.lastReady.Store(now)
}

// clientSnapshot is one session as the console shows it.
type clientSnapshot struct {
	info     *clientInfo
	state    string
	tx       byte
	backends []backendRef
	passed   []string // session.passed
}

type backendRef struct {
	shard string
	pid   uint32
}

// snapshotClients reads every session without stopping any: Server.mu for
// the list, each session's activeMu for its backends, atomics for the rest.
func (s *Server) snapshotClients() []clientSnapshot {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	out := make([]clientSnapshot, 0, len(sessions))
	for _, sess := range sessions {
		cs := clientSnapshot{info: &sess.info, tx: byte(sess.info.tx.Load())}
		sess.activeMu.Lock()
		for _, c := range sess.active {
			cs.backends = append(cs.backends, backendRef{shard: c.Shard, pid: c.PID})
		}
		cs.passed = slices.Clone(sess.passed)
		sess.activeMu.Unlock()
		switch st := sess.state.Load(); {
		case st == clientActive:
			cs.state = "active"
		case st == clientIdleInTx && cs.tx == 'E':
			cs.state = "idle in transaction (aborted)"
		case st == clientIdleInTx:
			cs.state = "idle in transaction"
		default:
			cs.state = "idle"
		}
		out = append(out, cs)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.id < out[j].info.id })
	return out
}

// busyOn counts sessions holding a backend of one of shards (nil: any),
// or past the PAUSE gate for one on their way to the pool.
func (s *Server) busyOn(shards map[string]bool) int {
	n := 0
	for _, cs := range s.snapshotClients() {
		on := slices.ContainsFunc(cs.passed, func(sh string) bool { return shards == nil || shards[sh] })
		for _, b := range cs.backends {
			on = on || shards == nil || shards[b.shard]
		}
		if on {
			n++
		}
	}
	return n
}

// adminConn is one console session.
type adminConn struct {
	srv  *Server
	be   *pgproto3.Backend
	log  *slog.Logger
	user string
}

// serveAdmin runs the console after authentication until the client leaves.
func (s *Server) serveAdmin(ctx context.Context, be *pgproto3.Backend, log *slog.Logger, user string) {
	a := &adminConn{srv: s, be: be, log: log, user: user}
	be.Send(&pgproto3.AuthenticationOk{})
	for _, p := range [][2]string{
		{"server_version", "15.0 (shardproxy admin console)"}, {"server_encoding", "UTF8"},
		{"client_encoding", "UTF8"}, {"DateStyle", "ISO, MDY"}, {"integer_datetimes", "on"},
		{"standard_conforming_strings", "on"}, {"TimeZone", "UTC"}, {"IntervalStyle", "postgres"},
	} {
		be.Send(&pgproto3.ParameterStatus{Name: p[0], Value: p[1]})
	}
	be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if err := be.Flush(); err != nil {
		return
	}
	log.Info("admin console session started")
	skipToSync := false
	for {
		msg, err := be.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// The only deadline on a console is the one Shutdown sets.
				sendFatal(be, log, errAdminShutdown())
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Debug("admin console read failed", "err", err)
			}
			return
		}
		switch m := msg.(type) {
		case *pgproto3.Query:
			a.query(ctx, m.String)
		case *pgproto3.Terminate:
			return
		case *pgproto3.Sync:
			skipToSync = false
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Describe, *pgproto3.Execute, *pgproto3.Close, *pgproto3.Flush:
			// Like Postgres after an error: one ErrorResponse, then skip to Sync.
			if !skipToSync {
				skipToSync = true
				be.Send(errorResponse(log, errNotSupported("use the simple query protocol (psql does; pgx: QueryExecModeSimpleProtocol)",
					"the admin console does not support the extended query protocol")))
			}
		case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
		default:
			sendFatal(be, log, errProtocol("invalid frontend message type %T", msg))
			return
		}
		if err := be.Flush(); err != nil {
			return
		}
	}
}

// query runs every command of one Query message; the first error ends it.
func (a *adminConn) query(ctx context.Context, q string) {
	defer a.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	cmds := splitAdminCommands(q)
	if len(cmds) == 0 {
		a.be.Send(&pgproto3.EmptyQueryResponse{})
		return
	}
	for _, cmd := range cmds {
		if err := a.command(ctx, cmd); err != nil {
			a.be.Send(errorResponse(a.log, err))
			return
		}
	}
}

// splitAdminCommands splits a Query at semicolons. SHOW ROUTE takes the
// rest of the text as its SQL, semicolons and quotes included.
func splitAdminCommands(q string) []string {
	var out []string
	for {
		q = strings.TrimLeft(q, " \t\r\n;")
		if q == "" {
			return out
		}
		if f := strings.Fields(q); len(f) >= 2 && strings.EqualFold(f[0], "show") && strings.EqualFold(f[1], "route") {
			return append(out, strings.TrimSpace(q))
		}
		i := strings.IndexByte(q, ';')
		if i < 0 {
			return append(out, strings.TrimSpace(q))
		}
		out = append(out, strings.TrimSpace(q[:i]))
		q = q[i+1:]
	}
}

// resultSet is a table of text values.
type resultSet struct {
	cols []string
	rows [][]string
}

func (rs *resultSet) add(vals ...any) {
	row := make([]string, len(vals))
	for i, v := range vals {
		row[i] = fmt.Sprint(v)
	}
	rs.rows = append(rs.rows, row)
}

// send writes rs as RowDescription, DataRows and CommandComplete.
func (a *adminConn) send(tag string, rs *resultSet) {
	fields := make([]pgproto3.FieldDescription, len(rs.cols))
	for i, c := range rs.cols {
		fields[i] = pgproto3.FieldDescription{Name: []byte(c), DataTypeOID: 25, DataTypeSize: -1, TypeModifier: -1}
	}
	a.be.Send(&pgproto3.RowDescription{Fields: fields})
	for _, r := range rs.rows {
		vals := make([][]byte, len(r))
		for i, v := range r {
			vals[i] = []byte(v)
		}
		a.be.Send(&pgproto3.DataRow{Values: vals})
	}
	a.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

func (a *adminConn) complete(tag string) {
	a.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(tag)})
}

// adminHelp lists the commands; SHOW HELP prints it.
var adminHelp = [][2]string{
	{"SHOW HELP", "this list"},
	{"SHOW SHARDS", "shards: address, up/down and latency of the last health check, paused, map epoch (configurations installed since start)"},
	{"SHOW POOLS", "backend pools per shard: connections and counters"},
	{"SHOW CLIENTS", "client sessions: user, database, address, state, pinned shard"},
	{"SHOW SERVERS", "backend connections in use by client sessions"},
	{"SHOW STATS", "statements, rows, bytes, errors, avg and p99 time per shard and route kind"},
	{"SHOW CONFIG", "the resolved configuration (passwords masked)"},
	{"SHOW TABLES", "sharded and reference tables: key, strategy, shards"},
	{"SHOW ROUTE <sql>", "where each statement of <sql> goes and why (literal values)"},
	{"SHOW TRANSACTIONS", "open client transactions, with the shards they span, two-phase commits whose decision is logged but not yet applied on every shard, and transactions clients prepared (PREPARE TRANSACTION) and have not finished"},
	{"RELOAD", "reload the configuration file; errors name file:line"},
	{"PAUSE [shard]", "wait for running transactions to end, hold new ones until RESUME"},
	{"RESUME [shard]", "let held transactions go on"},
	{"SHUTDOWN", "stop accepting clients and drain, as SIGTERM"},
	{"SHOW RESHARD", "this proxy's resharding state (map epoch, shards held for a cutover, recent steps) and the latest job"},
	{"RESHARD PLAN|START <target.yaml or -> [strategy:key=shard ...] / STATUS|ABORT|RESUME [job]", "resharding jobs, as the reshard CLI (- keeps the current map; each strategy:key=shard moves a directory key; START and RESUME run the job in this process)"},
}

func (a *adminConn) command(ctx context.Context, cmd string) error {
	f := strings.Fields(cmd)
	if len(f) == 0 {
		return nil
	}
	verb := strings.ToUpper(f[0])
	arg := ""
	if len(f) > 1 {
		arg = f[1]
	}
	switch {
	case verb == "SHOW" && len(f) >= 2 && strings.EqualFold(arg, "route"):
		return a.showRoute(ctx, strings.TrimSpace(cmd[strings.Index(strings.ToLower(cmd), "route")+len("route"):]))
	case verb == "SHOW" && len(f) == 2:
		switch strings.ToUpper(arg) {
		case "HELP":
			rs := &resultSet{cols: []string{"command", "description"}}
			for _, h := range adminHelp {
				rs.add(h[0], h[1])
			}
			a.send("SHOW", rs)
			return nil
		case "SHARDS":
			a.send("SHOW", a.srv.showShards())
			return nil
		case "POOLS":
			a.send("SHOW", a.srv.showPools())
			return nil
		case "CLIENTS":
			a.send("SHOW", a.srv.showClients())
			return nil
		case "SERVERS":
			a.send("SHOW", a.srv.showServers())
			return nil
		case "STATS":
			a.send("SHOW", a.srv.showStats())
			return nil
		case "CONFIG":
			a.send("SHOW", showConfig(a.srv.rt.Load().Config))
			return nil
		case "TABLES":
			a.send("SHOW", showTables(a.srv.rt.Load().Config))
			return nil
		case "TRANSACTIONS":
			a.send("SHOW", a.srv.showTransactions())
			return nil
		case "RESHARD":
			return a.showReshard(ctx) // see reshard.go
		}
	case verb == "RESHARD":
		return a.reshard(ctx, f[1:]) // see reshard.go
	case verb == "RELOAD" && len(f) == 1:
		return a.reload()
	case (verb == "PAUSE" || verb == "RESUME") && len(f) <= 2:
		if arg != "" && a.srv.rt.Load().Config.ShardIndex(arg) < 0 {
			return pgError("42704", "shard %q does not exist", arg)
		}
		if verb == "PAUSE" {
			return a.pause(ctx, arg)
		}
		if err := a.srv.admin.gate.resume(arg); err != nil {
			return err
		}
		a.log.Info("admin console: resumed", "shard", arg, "admin", a.user)
		a.complete("RESUME")
		return nil
	case verb == "SHUTDOWN" && len(f) == 1:
		h := a.srv.admin.shutdown.Load()
		if h == nil {
			return errNotSupported("", "SHUTDOWN is not available: this server has no shutdown hook")
		}
		a.log.Warn("admin console: shutdown requested", "admin", a.user)
		a.complete("SHUTDOWN")
		(*h)()
		return nil
	}
	e := pgError("42601", "unrecognized admin command %q", cmd)
	e.Hint = "SHOW HELP lists the commands"
	return e
}

func (a *adminConn) reload() error {
	h := a.srv.admin.reload.Load()
	if h == nil {
		return errNotSupported("send SIGHUP to the process instead", "RELOAD is not available: this server has no reload hook")
	}
	if err := (*h)(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return err
		}
		// config_file_error; the message carries file:line.
		return pgError("F0000", "reload rejected; the current shard map keeps serving: %v", err)
	}
	a.log.Info("admin console: configuration reloaded", "admin", a.user)
	a.complete("RELOAD")
	return nil
}

// pause closes the gate, then waits until no session holds a backend on
// the paused shards (their transactions ended) or pauseTimeout passes.
// A transaction that passed the gate in the instant before it closed is
// waited for as soon as it holds its backend.
func (a *adminConn) pause(ctx context.Context, shard string) error {
	g := &a.srv.admin.gate
	g.pause(shard)
	a.log.Info("admin console: paused", "shard", shard, "admin", a.user)
	var which map[string]bool
	if shard != "" {
		which = map[string]bool{shard: true}
	}
	deadline := time.Now().Add(pauseTimeout)
	for {
		n := a.srv.busyOn(which)
		if n == 0 {
			a.complete("PAUSE")
			return nil
		}
		if time.Now().After(deadline) {
			return pgError("55000", "PAUSE timed out after %s: %d sessions still hold a backend; new transactions stay held until RESUME", pauseTimeout, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// showShards reports the periodic health checks of health.go.
func (s *Server) showShards() *resultSet {
	rs := &resultSet{cols: []string{"name", "address", "status", "latency_ms", "last_check", "paused", "epoch", "error"}}
	epoch := s.admin.epoch.Load()
	for _, h := range s.ShardHealth() {
		status, latency, last := "down", "", ""
		if h.Up {
			status, latency = "up", fmt.Sprintf("%.3f", float64(h.Latency.Microseconds())/1000)
		}
		if !h.LastCheck.IsZero() {
			last = h.LastCheck.UTC().Format(time.RFC3339Nano)
		}
		rs.add(h.Name, h.Addr, status, latency, last, s.admin.gate.paused(h.Name), epoch, h.Err)
	}
	return rs
}

func (s *Server) showPools() *resultSet {
	rt := s.rt.Load()
	stats := rt.Pools.Stats()
	rs := &resultSet{cols: []string{"shard", "total", "idle", "in_use", "waiting", "acquires", "waits", "connects", "connect_errors", "size"}}
	for _, sh := range rt.Config.Shards {
		st := stats[sh.Name]
		rs.add(sh.Name, st.Total, st.Idle, st.InUse, st.Waiting, st.Acquires, st.Waits, st.Connects, st.ConnectErrors, rt.Config.Pool.Size)
	}
	return rs
}

func formatTime(unixNano int64) string {
	if unixNano == 0 {
		return ""
	}
	return time.Unix(0, unixNano).UTC().Format(time.RFC3339Nano)
}

func backendShards(bs []backendRef) string {
	names := make([]string, len(bs))
	for i, b := range bs {
		names[i] = b.shard
	}
	return strings.Join(names, ",")
}

func (s *Server) showClients() *resultSet {
	rs := &resultSet{cols: []string{"conn_id", "user", "database", "addr", "state", "shard", "connected_since", "last_statement"}}
	for _, cs := range s.snapshotClients() {
		ci := cs.info
		rs.add(ci.id, ci.user, ci.db, ci.addr, cs.state, backendShards(cs.backends),
			ci.since.UTC().Format(time.RFC3339Nano), formatTime(ci.lastReady.Load()))
	}
	return rs
}

func (s *Server) showServers() *resultSet {
	rs := &resultSet{cols: []string{"shard", "backend_pid", "client_conn_id", "user", "client_state"}}
	for _, cs := range s.snapshotClients() {
		for _, b := range cs.backends {
			rs.add(b.shard, b.pid, cs.info.id, cs.info.user, cs.state)
		}
	}
	return rs
}

func (s *Server) showTransactions() *resultSet {
	rs := &resultSet{cols: []string{"client_conn_id", "user", "shard", "state", "since", "two_phase"}}
	for _, cs := range s.snapshotClients() {
		if cs.tx == 'I' {
			continue
		}
		shard := backendShards(cs.backends)
		if shard == "" {
			shard = "(none yet: BEGIN is deferred)"
		}
		state := "open"
		if cs.tx == 'E' {
			state = "aborted"
		}
		twoPhase := "no"
		if len(cs.backends) > 1 {
			twoPhase = "yes" // spans shards: two-phase commit if several of them changed something (onephase.go)
		}
		rs.add(cs.info.id, cs.info.user, shard, state, formatTime(cs.info.txSince.Load()), twoPhase)
	}
	// Logged decisions whose prepared transactions are not all finished yet
	// (or not yet forgotten): in doubt until COMMIT PREPARED reaches every shard.
	if rt := s.Runtime(); rt != nil && rt.twopc != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if rows, err := rt.twopc.inDoubt(ctx); err == nil {
			for _, r := range rows {
				outcome := "in doubt: rollback decided"
				if r[2] == "true" {
					outcome = "in doubt: commit decided"
				}
				rs.add(r[0], "", r[1], outcome, r[3], "yes")
			}
		} else {
			s.log.Warn("SHOW TRANSACTIONS: reading the two-phase commit log failed", "err", err)
		}
	}
	// Transactions clients prepared themselves (PREPARE TRANSACTION): they
	// hold their locks until a client finishes them (userprepared.go).
	if rt := s.Runtime(); rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, sh := range rt.Config.Shards {
			rows, err := clientPrepared(ctx, rt.Pools.Get(sh.Name))
			if err != nil {
				s.log.Warn("SHOW TRANSACTIONS: reading a shard's prepared transactions failed", "shard", sh.Name, "err", err)
				continue
			}
			for _, r := range rows {
				rs.add(r[0], r[1], sh.Name, "prepared by a client: COMMIT PREPARED or ROLLBACK PREPARED finishes it", r[2], "client")
			}
		}
	}
	return rs
}

// showStats reports the statement counters of stats.go: one row per shard
// and route kind, then one row per route kind ("*" shard) in which a
// statement that ran on several shards counts once.
func (s *Server) showStats() *resultSet {
	st := s.Stats()
	rs := &resultSet{cols: []string{"shard", "route_kind", "statements", "rows", "bytes", "errors", "avg_ms", "p99_ms"}}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d.Microseconds())/1000) }
	for _, r := range st.Routes {
		rs.add(r.Shard, r.Kind, r.Statements, r.Rows, r.Bytes, r.Errors, ms(r.Latency.Mean()), ms(r.Latency.P99()))
	}
	for _, k := range st.Latency {
		rs.add("*", k.Kind, k.Latency.Count, "", "", "", ms(k.Latency.Mean()), ms(k.Latency.P99()))
	}
	return rs
}

// showConfig lists the resolved configuration as key/value rows, in the
// order config.Describe prints it; DSNs are masked, passwords never shown.
func showConfig(c *config.Config) *resultSet {
	rs := &resultSet{cols: []string{"key", "value"}}
	rs.add("config", c.Path)
	rs.add("listen", c.Listen)
	rs.add("metrics_listen", c.MetricsListen)
	rs.add("admin_database", c.AdminDatabase)
	tls := "disabled"
	if c.TLS != nil {
		tls = fmt.Sprintf("cert %s, key %s", c.TLS.Cert, c.TLS.Key)
	}
	rs.add("tls", tls)
	rs.add("metadata", config.MaskDSN(c.Metadata.DSN))
	rs.add("pool.size", c.Pool.Size)
	rs.add("pool.acquire_timeout", time.Duration(c.Pool.AcquireTimeoutMillis)*time.Millisecond)
	rs.add("two_phase_commit", c.TwoPhaseCommit)
	rs.add("plan_cache_size", c.PlanCacheSize)
	rs.add("default_shard", c.DefaultShard)
	for _, u := range c.Users {
		role := "user"
		if u.Admin {
			role = "admin"
		}
		rs.add("user."+u.Name, role)
	}
	for _, sh := range c.Shards {
		rs.add("shard."+sh.Name, config.MaskDSN(sh.DSN))
	}
	for _, st := range c.Strategies {
		v := fmt.Sprintf("%s, key %s", st.Type, st.KeyType)
		switch st.Type {
		case config.StrategyHash:
			v += ", shards " + strings.Join(st.Shards, " ")
		case config.StrategyConsistent:
			v += fmt.Sprintf(", %d partitions, shards %s", st.Partitions, strings.Join(st.Shards, " "))
		case config.StrategyDirectory:
			v += fmt.Sprintf(", table %s, new keys by %s", st.Table, st.Fallback)
		case config.StrategyRange:
			v += ", " + strings.Join(config.Intervals(st.Ranges), "; ")
		}
		rs.add("strategy."+st.Name, v)
	}
	return rs
}

func showTables(c *config.Config) *resultSet {
	rs := &resultSet{cols: []string{"table", "key", "strategy", "type", "shards"}}
	for _, t := range c.Tables {
		if t.Reference {
			rs.add(t.Name, "", "", "reference", strings.Join(c.ShardNames(), ","))
			continue
		}
		typ := ""
		if st := c.StrategyByName(t.Strategy); st != nil {
			typ = st.Type
		}
		rs.add(t.Name, t.Key, t.Strategy, typ, strings.Join(c.StrategyShards(t.Strategy), ","))
	}
	rs.add("(other tables)", "", "", "unsharded", c.DefaultShard)
	return rs
}

// showRoute routes each statement of sql as a client's Query would be
// routed (literals are the bind values), without running it.
func (a *adminConn) showRoute(ctx context.Context, sql string) error {
	if sql == "" {
		e := pgError("42601", "SHOW ROUTE needs a statement")
		e.Hint = "for example: SHOW ROUTE SELECT * FROM orders WHERE customer_id = 42"
		return e
	}
	rt := a.srv.rt.Load()
	r := rt.Router
	parts, err := r.ParseQuery(sql)
	if err != nil {
		return err
	}
	rs := &resultSet{cols: []string{"statement", "kind", "route", "shards", "merge", "reason", "plan"}}
	for _, p := range parts {
		text := strings.TrimSpace(p.Text)
		if t := directoryInsert(rt.Config, p.Stmt); t != "" {
			// Routing it would place its new keys in the directory.
			rs.add(text, p.Stmt.Kind, "not evaluated", "", "", fmt.Sprintf(
				"INSERT into directory table %s: routing would place new keys; SHOW ROUTE SELECT ... WHERE <key> = ... shows where existing keys live", t), "")
			continue
		}
		if how, ok := p.Stmt.Served(p.Args); ok {
			rs.add(text, p.Stmt.Kind, "served", "", "", how, "")
			continue
		}
		route, err := r.Route(ctx, p.Stmt, router.Args{Params: p.Args, Literals: true, TimeZone: time.UTC})
		if err != nil {
			rs.add(text, p.Stmt.Kind, "error", "", "", err.Error(), "")
			continue
		}
		plan := ""
		if route.Plan != nil {
			plan = route.Plan.String()
		}
		if route.Split != nil {
			plan = route.Split.String()
		}
		rs.add(text, p.Stmt.Kind, route.Kind, strings.Join(route.Shards, ","), route.Merge, route.Reason, plan)
	}
	a.send("SHOW", rs)
	return nil
}

// directoryInsert returns the directory-placed table an INSERT writes, if
// any: SHOW ROUTE must not route it, since a directory places an unknown
// key when an INSERT is routed.
func directoryInsert(c *config.Config, st *router.Statement) string {
	if st.Kind != router.KindInsert {
		return ""
	}
	for _, name := range st.Tables {
		t := c.TableByName(strings.ToLower(name))
		if t == nil {
			continue
		}
		if s := c.StrategyByName(t.Strategy); s != nil && s.Type == config.StrategyDirectory {
			return t.Name
		}
	}
	return ""
}
