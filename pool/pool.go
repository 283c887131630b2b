package pool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
)

// Defaults for zero Options fields.
const (
	DefaultAcquireTimeout = 5 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute
)

// Options configure one shard's pool.
type Options struct {
	Size           int           // max connections to this shard (cfg.Pool.Size); must be > 0
	AcquireTimeout time.Duration // max wait for a free connection, connecting included; 0 = DefaultAcquireTimeout
	IdleTimeout    time.Duration // idle conns older than this are closed, not reused; 0 = DefaultIdleTimeout
	// ProbeAfter skips the liveness probe (one non-blocking recv syscall,
	// about 0.7 µs) of conns released less than this long ago. 0 probes
	// whenever the hang-up watch (Linux) cannot vouch for the conn: a
	// backend that hung up meanwhile is then never handed out.
	ProbeAfter time.Duration
	Logger     *slog.Logger // nil = discard
}

// Stats is a snapshot of one pool. Total = Idle + InUse + connections
// being opened. The int64 fields are counters since New.
type Stats struct {
	Total, Idle, InUse, Waiting              int
	Acquires, Waits, Connects, ConnectErrors int64
}

// Pool is a bounded set of backend connections to one shard. It is safe
// for concurrent use.
type Pool struct {
	// schema counts the schema changes the proxy has seen: a Conn whose
	// collation facts were read at an older count reads them again
	// (Conn.RefreshCollations) before the proxy relies on them.
	schema atomic.Uint64

	name           string
	cfg            *pgconn.Config // shared by all dials; pgconn only reads it
	size           int
	acquireTimeout time.Duration
	idleTimeout    time.Duration
	probeAfter     time.Duration
	log            *slog.Logger
	watch          *hangupWatch // nil where it could not start: every idle Conn is probed

	mu     sync.Mutex
	closed bool
	// idle is a stack: Acquire takes the most recently released Conn, so a
	// quiet period lets the bottom ones age past idleTimeout and be closed.
	idle []*Conn
	// total counts idle + in use + connecting Conns and never exceeds size.
	// A "slot" is one unit of total; it moves between goroutines with the
	// Conn it stands for, or on its own to a waiter that will connect.
	total int
	inUse int
	// waiters queue FIFO. Invariant (whenever mu is free): if waiters is
	// non-empty then idle is empty and total == size, because Release and
	// freeSlot hand their Conn or slot to the first waiter.
	waiters []*waiter

	acquires, waits, connects, connectErrors int64
}

// waiter is one Acquire blocked on a full pool.
type waiter struct {
	ch chan grant // buffered (1): granting under mu never blocks
}

// grant is what a waiter receives: a Conn (still counted in use), or the
// right to open one (conn and err nil; the slot is already counted in
// total), or an error (pool closed).
type grant struct {
	conn *Conn
	err  error
}

// New returns a pool for shard. It does not connect: the first Acquire
// does. Only DSN syntax is checked here.
func New(shard config.Shard, opts Options) (*Pool, error) {
	if opts.Size <= 0 {
		return nil, fmt.Errorf("pool: shard %q: size must be positive, got %d", shard.Name, opts.Size)
	}
	// ParseConfigError masks the password in its message.
	cfg, err := pgconn.ParseConfig(shard.DSN)
	if err != nil {
		return nil, fmt.Errorf("pool: shard %q: %w", shard.Name, err)
	}
	p := &Pool{
		name:           shard.Name,
		cfg:            cfg,
		size:           opts.Size,
		acquireTimeout: opts.AcquireTimeout,
		idleTimeout:    opts.IdleTimeout,
		probeAfter:     opts.ProbeAfter,
		log:            opts.Logger,
		idle:           make([]*Conn, 0, opts.Size),
	}
	if p.acquireTimeout <= 0 {
		p.acquireTimeout = DefaultAcquireTimeout
	}
	if p.idleTimeout <= 0 {
		p.idleTimeout = DefaultIdleTimeout
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("shard", shard.Name)
	if p.watch, err = newHangupWatch(); err != nil {
		p.log.Debug("pool: no hang-up watch; idle connections are probed before reuse", "error", err)
	}
	return p, nil
}

// Name returns the shard name.
func (p *Pool) Name() string { return p.name }

// Acquire returns a Conn to this shard for the caller's exclusive use, to
// be handed back with Release or Discard. It reuses an idle Conn, opens a
// new one while fewer than Size exist, or else waits (FIFO) for one.
//
// Errors: ctx.Err() when ctx ends first; *pgconn.PgError 53300 after
// AcquireTimeout; 08006 (or the server's own SQLSTATE, e.g. 28P01, 57P03)
// at once when a new connection cannot be opened; 57P01 after Close.
func (p *Pool) Acquire(ctx context.Context) (*Conn, error) {
	start := time.Now()
	p.mu.Lock()
	p.acquires++
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, p.closedError()
		}
		c := p.popIdleLocked()
		if c == nil {
			break
		}
		c.inUse = true
		p.inUse++
		p.mu.Unlock()
		// The probe is a syscall: keep it outside the lock.
		if c.reusable(start, p.idleTimeout, p.probeAfter) {
			return c, nil
		}
		c.terminate()
		p.log.Debug("pool: dropped stale idle connection", "pid", c.PID)
		p.mu.Lock()
		c.inUse = false
		p.inUse--
		// Free the dead Conn's slot. No waiter can take it meanwhile: we
		// hold mu until we either pop another idle Conn or, idle being
		// empty, take a slot again below to connect.
		p.total--
	}
	if p.total < p.size {
		p.total++
		p.mu.Unlock()
		return p.connect(ctx, start)
	}
	w := &waiter{ch: make(chan grant, 1)}
	p.waiters = append(p.waiters, w)
	p.waits++
	p.mu.Unlock()
	return p.wait(ctx, w, start)
}

func (p *Pool) popIdleLocked() *Conn {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	c := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return c
}

// wait blocks until w is granted something, ctx ends or the acquire
// timeout (counted from start) elapses.
func (p *Pool) wait(ctx context.Context, w *waiter, start time.Time) (*Conn, error) {
	timer := time.NewTimer(p.acquireTimeout - time.Since(start))
	defer timer.Stop()
	var err error
	select {
	case g := <-w.ch:
		return p.useGrant(ctx, g, start)
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = p.timeoutError()
	}
	p.mu.Lock()
	if p.removeWaiterLocked(w) {
		p.mu.Unlock()
		return nil, err
	}
	p.mu.Unlock()
	// A grant raced with the timeout or ctx; it is already in w.ch.
	g := <-w.ch
	if ctx.Err() == nil {
		return p.useGrant(ctx, g, start)
	}
	switch {
	case g.conn != nil:
		p.Release(g.conn)
	case g.err == nil:
		p.mu.Lock()
		p.freeSlotLocked()
		p.mu.Unlock()
	}
	return nil, err
}

func (p *Pool) useGrant(ctx context.Context, g grant, start time.Time) (*Conn, error) {
	switch {
	case g.err != nil:
		return nil, g.err
	case g.conn != nil:
		return g.conn, nil
	default:
		return p.connect(ctx, start)
	}
}

func (p *Pool) removeWaiterLocked(w *waiter) bool {
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return true
		}
	}
	return false
}

// freeSlotLocked gives up one slot of total: to the first waiter, which
// will connect with it, or back to the pool.
func (p *Pool) freeSlotLocked() {
	if len(p.waiters) > 0 && !p.closed {
		w := p.waiters[0]
		p.waiters = append(p.waiters[:0], p.waiters[1:]...)
		w.ch <- grant{}
		return
	}
	p.total--
}

// connect opens a Conn for a slot the caller already holds in total.
func (p *Pool) connect(ctx context.Context, start time.Time) (*Conn, error) {
	c, err := p.dial(ctx, start)
	p.mu.Lock()
	if err != nil {
		p.connectErrors++
		p.freeSlotLocked()
		p.mu.Unlock()
		return nil, err
	}
	p.connects++
	if p.closed {
		p.total--
		p.mu.Unlock()
		c.terminate()
		return nil, p.closedError()
	}
	c.inUse = true
	p.inUse++
	p.mu.Unlock()
	return c, nil
}

// dial connects and authenticates with pgconn, which speaks TLS, SCRAM,
// md5 and trust as the DSN asks, then takes the socket over.
func (p *Pool) dial(parent context.Context, start time.Time) (*Conn, error) {
	ctx, cancel := context.WithDeadline(parent, start.Add(p.acquireTimeout))
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, p.cfg)
	var coll collations
	schema := p.schema.Load()
	if err == nil {
		coll, err = readCollations(ctx, pc)
		// SyncConn stops pgconn's background reader and checks that no
		// read is buffered, so the hijacked socket is ours alone.
		if err == nil {
			err = pc.SyncConn(ctx)
		}
		if err != nil {
			pc.Close(ctx)
		}
	}
	if err != nil {
		if perr := parent.Err(); perr != nil {
			return nil, perr
		}
		pgErr := p.connectError(err)
		p.log.Warn("pool: cannot connect", "sqlstate", pgErr.Code, "error", pgErr.Message)
		return nil, pgErr
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, p.connectError(err)
	}
	c := newConn(p, hc)
	p.watch.add(c)
	coll.set(c, schema)
	p.log.Debug("pool: connected", "pid", c.PID)
	return c, nil
}

// collations is what the proxy must know of a database's collations
// before it orders text across shards.
type collations struct {
	bytewise bool // the default collation orders text by its bytes
	columns  bool // some user column (or domain) has a collation of its own
	// ndColumns: some of those collations is nondeterministic.
	ndColumns bool
	// nondeterministic: the database has a nondeterministic collation.
	nondeterministic bool
	// own are the table and view columns with a collation of their own,
	// by columnKey (Conn.OwnCollation).
	own   map[uint64]struct{}
	enums map[uint32]uint32 // enum types (to 0) and their arrays (to the enum); see Conn.Enums
}

func columnKey(table uint32, attnum int16) uint64 { return uint64(table)<<16 | uint64(uint16(attnum)) }

// readCollations reads the connected database's collation provider and
// default collation, and which user columns have a collation of their
// own (100 is "default", 950 "C", 951 "POSIX"). datlocprovider is
// Postgres 15's and collisdeterministic 12's; to_jsonb reads them as NULL
// (the libc provider, deterministic) on older servers.
func readCollations(ctx context.Context, pc *pgconn.PgConn) (collations, error) {
	res := pc.ExecParams(ctx, collationsQuery, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return collations{}, res.Err
	}
	if len(res.Rows) != 1 {
		return collations{}, nil
	}
	return parseCollations(res.Rows[0]), nil
}

// collationsQuery: own lists "table:attnum:nd" of the columns of tables,
// views, materialized views and foreign tables that a result column may
// come from (the RowDescription's table OID and attribute number);
// columns also counts composite types' and indexes' columns and domains,
// whose collations reach values no RowDescription traces to a column.
const collationsQuery = `WITH own AS (
	SELECT a.attrelid, a.attnum, c.relkind, NOT coalesce((to_jsonb(co) ->> 'collisdeterministic')::bool, true) AS nd
	FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_collation co ON co.oid = a.attcollation
	WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attcollation NOT IN (0, 100, 950, 951)
		AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace)
	UNION ALL
	SELECT t.oid, 0, 'd', NOT coalesce((to_jsonb(co) ->> 'collisdeterministic')::bool, true)
	FROM pg_type t JOIN pg_collation co ON co.oid = t.typcollation
	WHERE t.typtype = 'd' AND t.typcollation NOT IN (0, 100, 950, 951)
		AND t.typnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace))
SELECT coalesce(to_jsonb(d) ->> 'datlocprovider', 'c'), datcollate,
	EXISTS (SELECT 1 FROM own),
	(SELECT string_agg(t.oid || ':' || t.typarray, ',') FROM pg_type t WHERE t.typtype = 'e'),
	EXISTS (SELECT 1 FROM own WHERE nd),
	EXISTS (SELECT 1 FROM pg_collation co WHERE NOT coalesce((to_jsonb(co) ->> 'collisdeterministic')::bool, true)),
	(SELECT string_agg(attrelid || ':' || attnum, ',') FROM own WHERE relkind IN ('r', 'p', 'v', 'm', 'f'))
	FROM pg_database d WHERE datname = current_database()`

func parseCollations(row [][]byte) collations {
	if len(row) != 7 {
		return collations{}
	}
	provider, coll := string(row[0]), string(row[1])
	c := collations{columns: string(row[2]) == "t", ndColumns: string(row[4]) == "t", nondeterministic: string(row[5]) == "t"}
	for pair := range strings.SplitSeq(string(row[3]), ",") {
		e, a, _ := strings.Cut(pair, ":")
		enum, err1 := strconv.ParseUint(e, 10, 32)
		array, err2 := strconv.ParseUint(a, 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		if c.enums == nil {
			c.enums = map[uint32]uint32{}
		}
		c.enums[uint32(enum)] = 0
		if array != 0 {
			c.enums[uint32(array)] = uint32(enum)
		}
	}
	for pair := range strings.SplitSeq(string(row[6]), ",") {
		r, a, _ := strings.Cut(pair, ":")
		rel, err1 := strconv.ParseUint(r, 10, 32)
		attnum, err2 := strconv.ParseInt(a, 10, 16)
		if err1 != nil || err2 != nil {
			continue
		}
		if c.own == nil {
			c.own = map[uint64]struct{}{}
		}
		c.own[columnKey(uint32(rel), int16(attnum))] = struct{}{}
	}
	switch coll {
	case "C", "POSIX", "C.UTF-8", "C.utf8":
		c.bytewise = provider == "c"
	}
	return c
}

// set records c's facts on conn.
func (c collations) set(conn *Conn, schema uint64) {
	conn.BytewiseText, conn.CollatedColumns, conn.Enums, conn.schema = c.bytewise, c.columns, c.enums, schema
	conn.NondeterministicColumns, conn.Nondeterministic, conn.own = c.ndColumns, c.nondeterministic, c.own
}

// OwnCollation tells whether column attnum of table (a RowDescription's
// table OID and attribute number, on c's database) has a collation of its
// own (neither the default, C nor POSIX), as last read.
func (c *Conn) OwnCollation(table uint32, attnum int16) bool {
	_, ok := c.own[columnKey(table, attnum)]
	return ok
}

// SchemaChanged tells the pool that the schema may have changed (DDL
// through the proxy): its connections read their collation facts again
// before the proxy next relies on them.
func (p *Pool) SchemaChanged() { p.schema.Add(1) }

// CollationsStale tells whether the schema changed since c's collation
// facts were read.
func (c *Conn) CollationsStale() bool { return c.schema != c.pool.schema.Load() }

// RefreshCollations reads c's collation facts again when the schema
// changed since they were read. c must be idle or in a transaction that
// has not failed: it runs one query.
func (c *Conn) RefreshCollations() error {
	schema := c.pool.schema.Load()
	if c.schema == schema {
		return nil
	}
	c.Send(&pgproto3.Query{String: collationsQuery})
	if err := c.Flush(); err != nil {
		return err
	}
	var row [][]byte
	var failed error
	for {
		msg, err := c.Receive()
		if err != nil {
			return err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			row = make([][]byte, len(m.Values))
			for i, v := range m.Values {
				row[i] = append([]byte(nil), v...)
			}
		case *pgproto3.ErrorResponse:
			failed = fmt.Errorf("pool: reading collations: %s (SQLSTATE %s)", m.Message, m.Code)
		case *pgproto3.ReadyForQuery:
			if failed != nil {
				return failed
			}
			parseCollations(row).set(c, schema)
			return nil
		}
	}
}

// Release returns c, whose backend is idle (ReadyForQuery 'I' was the last
// message read and nothing is pending), for reuse. It panics if c is not
// in use, since a double release would hand one backend to two sessions.
func (p *Pool) Release(c *Conn) {
	if !c.clean() {
		p.Discard(c)
		return
	}
	c.lastUsed = time.Now()
	p.mu.Lock()
	p.mustBeInUseLocked(c, "Release")
	if p.closed {
		c.inUse = false
		p.inUse--
		p.total--
		p.mu.Unlock()
		c.terminate()
		return
	}
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = append(p.waiters[:0], p.waiters[1:]...)
		w.ch <- grant{conn: c}
		p.mu.Unlock()
		return
	}
	c.inUse = false
	p.inUse--
	p.idle = append(p.idle, c)
	// Lazy idle timeout: the bottom of the stack is the longest idle.
	var expired *Conn
	if len(p.idle) > 1 && c.lastUsed.Sub(p.idle[0].lastUsed) > p.idleTimeout {
		expired = p.idle[0]
		copy(p.idle, p.idle[1:])
		p.idle[len(p.idle)-1] = nil
		p.idle = p.idle[:len(p.idle)-1]
		p.total--
	}
	p.mu.Unlock()
	if expired != nil {
		expired.terminate()
	}
}

// Discard closes c, which is in use but not reusable (client vanished
// mid-transaction, protocol desync, I/O error), and frees its slot.
func (p *Pool) Discard(c *Conn) {
	p.mu.Lock()
	p.mustBeInUseLocked(c, "Discard")
	c.inUse = false
	p.inUse--
	p.freeSlotLocked()
	p.mu.Unlock()
	c.terminate()
}

// Close closes idle Conns now and fails waiting and future Acquires.
// Conns in use are closed when they are released or discarded.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.total -= len(idle)
	for _, w := range p.waiters {
		w.ch <- grant{err: p.closedError()}
	}
	p.waiters = nil
	p.mu.Unlock()
	for _, c := range idle {
		c.terminate()
	}
	p.watch.close()
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{
		Total:         p.total,
		Idle:          len(p.idle),
		InUse:         p.inUse,
		Waiting:       len(p.waiters),
		Acquires:      p.acquires,
		Waits:         p.waits,
		Connects:      p.connects,
		ConnectErrors: p.connectErrors,
	}
}

func (p *Pool) timeoutError() error {
	return &pgconn.PgError{
		Severity: "ERROR",
		Code:     "53300", // too_many_connections
		Message:  "shardproxy: timed out waiting for a connection to shard " + p.name,
		Detail:   fmt.Sprintf("All %d connections to the shard stayed in use for %s.", p.size, p.acquireTimeout),
		Hint:     "Raise pool.size or pool.acquire_timeout, or shorten transactions.",
	}
}

func (p *Pool) closedError() error {
	return &pgconn.PgError{
		Severity: "ERROR",
		Code:     "57P01", // admin_shutdown
		Message:  "shardproxy: the connection pool of shard " + p.name + " is closed",
	}
}

// connectError turns a failed connection attempt into what a client of
// the proxy should see: the server's own SQLSTATE when it answered
// (28P01, 3D000, 57P03, ...), otherwise 08006 connection_failure.
func (p *Pool) connectError(err error) *pgconn.PgError {
	prefix := "shardproxy: cannot connect to shard " + p.name + ": "
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return &pgconn.PgError{
			Severity: "ERROR",
			Code:     pgErr.Code,
			Message:  prefix + p.redact(pgErr.Message),
			Detail:   p.redact(pgErr.Detail),
			Hint:     p.redact(pgErr.Hint),
		}
	}
	// A ConnectError's own text only repeats user and database; its cause
	// names the address and what went wrong there.
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		if inner := errors.Unwrap(ce); inner != nil {
			err = inner
		}
	}
	return &pgconn.PgError{
		Severity: "ERROR",
		Code:     "08006", // connection_failure
		Message:  prefix + p.redact(err.Error()),
	}
}

// redact masks the DSN password should any error text ever echo it.
func (p *Pool) redact(s string) string {
	if p.cfg.Password == "" {
		return s
	}
	return strings.ReplaceAll(s, p.cfg.Password, "xxxxx")
}

// mustBeInUseLocked panics, unlocking first so that the pool stays usable,
// if c is not handed out: a double Release would give one backend to two
// sessions.
func (p *Pool) mustBeInUseLocked(c *Conn, op string) {
	if !c.inUse {
		p.mu.Unlock()
		panic("pool: " + op + " of a Conn that is not in use (released twice?)")
	}
}
