package pool_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// shared is one trust-auth server for the tests that do not stop it.
var shared *pgtest.Server

func TestMain(m *testing.M) {
	srv, err := pgtest.Start(context.Background(), pgtest.Options{Name: "pooltest"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		pgtest.StopAll()
		os.Exit(1)
	}
	shared = srv
	code := m.Run()
	if err := pgtest.StopAll(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

func newPool(t testing.TB, dsn string, opts pool.Options) *pool.Pool {
	t.Helper()
	p, err := pool.New(config.Shard{Name: "s0", DSN: dsn}, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// query runs sql over the simple protocol on c and returns the first
// column of each row, or the server's error.
func query(c *pool.Conn, sql string) ([]string, error) {
	c.Send(&pgproto3.Query{String: sql})
	if err := c.Flush(); err != nil {
		return nil, err
	}
	return readResult(c)
}

// readResult reads up to ReadyForQuery.
func readResult(c *pool.Conn) ([]string, error) {
	var rows []string
	var qerr error
	for {
		msg, err := c.Receive()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.DataRow:
			rows = append(rows, string(m.Values[0]))
		case *pgproto3.ErrorResponse:
			qerr = pgconn.ErrorResponseToPgError(m)
		case *pgproto3.ReadyForQuery:
			return rows, qerr
		}
	}
}

func backendPID(t *testing.T, c *pool.Conn) string {
	t.Helper()
	rows, err := query(c, "SELECT pg_backend_pid()")
	if err != nil {
		t.Fatal(err)
	}
	return rows[0]
}

func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// refusedDSN points at a loopback port nobody listens on.
func refusedDSN(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "postgres://postgres:sekrit@" + addr + "/postgres?sslmode=disable"
}

func TestAcquireReleaseReusesBackend(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 2})
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pid := backendPID(t, c)
	if want := fmt.Sprint(c.PID); pid != want {
		t.Errorf("pg_backend_pid() = %s, Conn.PID = %s", pid, want)
	}
	if c.Shard != "s0" || c.ServerParams["server_version"] == "" || len(c.SecretKey) == 0 {
		t.Errorf("Conn fields not filled: shard %q, params %v, secret %d bytes", c.Shard, c.ServerParams, len(c.SecretKey))
	}
	p.Release(c)
	for i := range 3 {
		c, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := backendPID(t, c); got != pid {
			t.Errorf("acquire %d: backend %s, want reused %s", i, got, pid)
		}
		p.Release(c)
	}
	if s := p.Stats(); s.Connects != 1 || s.Acquires != 4 || s.Total != 1 || s.Idle != 1 || s.InUse != 0 {
		t.Errorf("stats = %+v, want 1 connect, 4 acquires, 1 idle", s)
	}
}

func TestSizeBoundUnderConcurrency(t *testing.T) {
	const size, workers = 3, 50
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: size, AcquireTimeout: time.Minute})
	var inUse, maxInUse atomic.Int32
	full := make(chan struct{}) // closed once size conns were in use at once
	var fullOnce sync.Once
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			c, err := p.Acquire(ctx)
			if err != nil {
				errs <- err
				return
			}
			n := inUse.Add(1)
			for m := maxInUse.Load(); n > m && !maxInUse.CompareAndSwap(m, n); m = maxInUse.Load() {
			}
			if n == size {
				fullOnce.Do(func() { close(full) })
			}
			// Hold the conn until the pool was full once, so that the bound
			// is actually reached, then prove the conn works.
			select {
			case <-full:
			case <-time.After(30 * time.Second):
				errs <- errors.New("pool never had Size conns in use at once")
			}
			if _, err := query(c, "SELECT 1"); err != nil {
				errs <- err
			}
			inUse.Add(-1)
			p.Release(c)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := maxInUse.Load(); got != size {
		t.Errorf("max in use = %d, want %d", got, size)
	}
	s := p.Stats()
	if s.Total > size || s.Connects > size || s.InUse != 0 || s.Waiting != 0 || s.Acquires != workers {
		t.Errorf("stats = %+v, want at most %d conns, none in use or waiting, %d acquires", s, size, workers)
	}
}

func TestAcquireWaitEnds(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		cancel  bool // cancel the ctx once the acquire waits
		check   func(error) bool
	}{
		// The timeout also bounds the first Acquire's connect: long enough
		// for a busy machine (CI compiles in parallel) to connect within it.
		{"timeout", 400 * time.Millisecond, false, func(err error) bool { return sqlstate(err) == "53300" }},
		{"ctx canceled", time.Minute, true, func(err error) bool { return errors.Is(err, context.Canceled) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 1, AcquireTimeout: tt.timeout})
			held, err := p.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			if tt.cancel {
				go func() {
					for p.Stats().Waiting == 0 {
						time.Sleep(time.Millisecond)
					}
					cancel()
				}()
			}
			c, err := p.Acquire(ctx)
			if err == nil || !tt.check(err) {
				t.Fatalf("Acquire = %v, %v; want %s error", c, err, tt.name)
			}
			if s := p.Stats(); s.Waits != 1 || s.Waiting != 0 || s.Total != 1 {
				t.Errorf("stats = %+v, want 1 wait, 0 waiting, 1 conn", s)
			}
			// The abandoned wait must not leak the slot or steal the conn.
			p.Release(held)
			c, err = p.Acquire(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if c != held {
				t.Errorf("got a new conn, want the released one")
			}
			p.Release(c)
		})
	}
}

func TestConnectErrors(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		code string
	}{
		{"nothing listens", refusedDSN(t), "08006"},
		{"no such database", shared.DSN("nosuchdb"), "3D000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Size 1 and a long timeout: the later acquires queue behind the
			// first and must get its slot and fail on their own, not wait.
			const n = 4
			p := newPool(t, tt.dsn, pool.Options{Size: 1, AcquireTimeout: 10 * time.Minute})
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					c, err := p.Acquire(t.Context())
					if err == nil {
						p.Release(c)
					}
					errs[i] = err
				})
			}
			wg.Wait()
			for i, err := range errs {
				if sqlstate(err) != tt.code {
					t.Errorf("acquire %d: %v, want SQLSTATE %s", i, err, tt.code)
					continue
				}
				msg := err.Error()
				if !strings.Contains(msg, "cannot connect to shard s0") || strings.Contains(msg, "sekrit") {
					t.Errorf("message %q: want shard named, password absent", msg)
				}
			}
			if s := p.Stats(); s.ConnectErrors != n || s.Total != 0 || s.Connects != 0 {
				t.Errorf("stats = %+v, want %d connect errors and no conns", s, n)
			}
		})
	}
}

// TestShardRestart checks that idle conns to a shard that went away are
// detected and replaced, and that the pool recovers once the shard is back.
func TestShardRestart(t *testing.T) {
	srv := pgtest.StartN(t, 1, pgtest.Options{Name: "restart"})[0]
	tests := []struct {
		name string
		down func() error
	}{
		{"kill", srv.Kill}, // SIGKILL: the socket just closes
		{"halt", srv.Halt}, // fast shutdown: backends send FATAL 57P01 first
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if srv.PID() == 0 { // an earlier subtest failed while it was down
				if err := srv.Restart(ctx); err != nil {
					t.Fatal(err)
				}
			}
			p := newPool(t, srv.DSN("postgres"), pool.Options{Size: 2, AcquireTimeout: time.Minute})
			c, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			old := backendPID(t, c)
			p.Release(c)

			if err := tt.down(); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Acquire(ctx); sqlstate(err) != "08006" {
				t.Fatalf("acquire with shard down: %v, want 08006", err)
			}
			if err := srv.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			c, err = p.Acquire(ctx)
			if err != nil {
				t.Fatalf("acquire after restart: %v", err)
			}
			if got := backendPID(t, c); got == old {
				t.Errorf("got old backend %s again", got)
			}
			p.Release(c)
			if s := p.Stats(); s.Connects != 2 || s.ConnectErrors != 1 || s.Total != 1 {
				t.Errorf("stats = %+v, want 2 connects, 1 error, 1 conn", s)
			}
		})
	}
}

// TestBackendHangsUp: a backend terminated while its Conn is in use or
// idle is never handed out again, also when the Conn is acquired at once
// after release, when the pool takes the hang-up watch's word instead of
// probing the socket.
func TestBackendHangsUp(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 2})
	admin := newPool(t, shared.DSN("postgres"), pool.Options{Size: 1})
	terminate := func(c *pool.Conn) {
		t.Helper()
		a, err := admin.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Release(a)
		if _, err := query(a, fmt.Sprintf("SELECT pg_terminate_backend(%d)", c.PID)); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); !pool.HungUp(c); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the hang-up of backend %d was not seen", c.PID)
			}
		}
	}
	for _, when := range []string{"in use", "idle"} {
		t.Run(when, func(t *testing.T) {
			c, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			old := c.PID
			if when == "in use" {
				terminate(c)
				p.Release(c)
			} else {
				p.Release(c)
				terminate(c)
			}
			c, err = p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Release(c)
			if c.PID == old {
				t.Fatalf("got terminated backend %d again", old)
			}
			if got := backendPID(t, c); got != fmt.Sprint(c.PID) {
				t.Fatalf("new backend answers as %s, Conn.PID %d", got, c.PID)
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 2, IdleTimeout: time.Millisecond})
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	first := c.PID
	p.Release(c)
	time.Sleep(10 * time.Millisecond)
	c, err = p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.PID == first {
		t.Errorf("reused a conn idle past IdleTimeout")
	}
	p.Release(c)
	if s := p.Stats(); s.Connects != 2 || s.Total != 1 {
		t.Errorf("stats = %+v, want 2 connects, 1 conn", s)
	}
}

func TestDiscardFreesSlot(t *testing.T) {
	tests := []struct {
		name    string
		discard func(*pool.Pool, *pool.Conn)
	}{
		{"Discard", (*pool.Pool).Discard},
		{"Conn.Close", func(_ *pool.Pool, c *pool.Conn) { c.Close() }},
		{"Release with unread bytes", func(p *pool.Pool, c *pool.Conn) {
			// A result is pending: the conn is not idle and must not be reused.
			c.Send(&pgproto3.Query{String: "SELECT 1"})
			c.Flush()
			time.Sleep(50 * time.Millisecond)
			if _, err := c.Receive(); err != nil { // reads RowDescription, buffers the rest
				panic(err)
			}
			p.Release(c)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 1, AcquireTimeout: time.Minute})
			c, err := p.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// A waiter queued behind the full pool gets the freed slot.
			got := make(chan *pool.Conn)
			go func() {
				c, err := p.Acquire(ctx)
				if err != nil {
					t.Error(err)
				}
				got <- c
			}()
			for p.Stats().Waiting == 0 {
				time.Sleep(time.Millisecond)
			}
			old := c.PID
			tt.discard(p, c)
			c = <-got
			if c == nil {
				return
			}
			if c.PID == old {
				t.Errorf("waiter got the discarded backend")
			}
			if _, err := query(c, "SELECT 1"); err != nil {
				t.Error(err)
			}
			p.Release(c)
			if s := p.Stats(); s.Connects != 2 || s.Total != 1 || s.InUse != 0 {
				t.Errorf("stats = %+v, want 2 connects, 1 conn", s)
			}
		})
	}
}

func TestCancel(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
	}{
		{"tcp", shared.DSN("postgres")},
		{"unix socket", fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", shared.DataDir(), shared.Port())},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testCancel(t, tt.dsn) })
	}
}

func testCancel(t *testing.T, dsn string) {
	ctx := t.Context()
	p := newPool(t, dsn, pool.Options{Size: 1})
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c.Send(&pgproto3.Query{String: "SELECT pg_sleep(10)"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// A cancel that arrives before the backend runs the query is ignored
	// by Postgres, so wait until it is running.
	watch, err := shared.Connect(ctx, "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(ctx)
	for {
		var state string
		err := watch.QueryRow(ctx, "SELECT coalesce(state, '') FROM pg_stat_activity WHERE pid = $1", c.PID).Scan(&state)
		if err != nil {
			t.Fatal(err)
		}
		if state == "active" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := readResult(c); sqlstate(err) != "57014" {
		t.Fatalf("after Cancel: %v, want 57014 query_canceled", err)
	}
	// The canceled backend is idle again, passes the probe and is reused.
	p.Release(c)
	c2, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c2 != c {
		t.Errorf("canceled conn not reused")
	}
	if rows, err := query(c2, "SELECT 42"); err != nil || len(rows) != 1 || rows[0] != "42" {
		t.Errorf("query after cancel = %v, %v", rows, err)
	}
	p.Release(c2)
}

// TestCancelUnanswered: CancelUnanswered cancels the request it names
// while that request is unanswered, and never an answered one or the one
// sent after it.
func TestCancelUnanswered(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 1})
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(c)
	if _, unanswered := c.Request(); unanswered {
		t.Fatal("a fresh backend reports an unanswered request")
	}
	c.Send(&pgproto3.Query{String: "SELECT 1"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	first, unanswered := c.Request()
	if !unanswered {
		t.Fatal("no unanswered request after Flush")
	}
	if _, err := readResult(c); err != nil {
		t.Fatal(err)
	}
	if sent, err := c.CancelUnanswered(ctx, first); sent || err != nil {
		t.Fatalf("answered request cancelled: %v, %v", sent, err)
	}
	// The next request: a cancel for the first must not reach it.
	c.Send(&pgproto3.Query{String: "SELECT pg_sleep(0.3)"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	second, _ := c.Request()
	if sent, err := c.CancelUnanswered(ctx, first); sent || err != nil {
		t.Fatalf("a later request cancelled: %v, %v", sent, err)
	}
	if _, err := readResult(c); err != nil {
		t.Fatalf("the later request: %v", err)
	}
	// And the one it names, while unanswered, is cancelled.
	c.Send(&pgproto3.Query{String: "SELECT pg_sleep(10)"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	third, _ := c.Request()
	if third == second {
		t.Fatal("Flush did not start a new request")
	}
	// Postgres may ignore a cancel that comes before it read the request:
	// that is what callers resend for, as here, until it is answered.
	resent := make(chan int)
	go func() {
		n := 0
		for {
			sent, err := c.CancelUnanswered(ctx, third)
			if err != nil {
				t.Error(err)
			}
			if !sent || err != nil {
				resent <- n
				return
			}
			n++
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if _, err := readResult(c); sqlstate(err) != "57014" {
		t.Fatalf("after CancelUnanswered: %v, want 57014", err)
	}
	if n := <-resent; n == 0 {
		t.Error("CancelUnanswered sent nothing for an unanswered request")
	}
}

func TestSCRAM(t *testing.T) {
	srv := pgtest.StartN(t, 1, pgtest.Options{Name: "scram", Auth: pgtest.AuthSCRAM, Password: "pw"})[0]
	good := srv.DSN("postgres")
	if !strings.Contains(good, ":pw@") {
		t.Fatalf("DSN %q carries no password", good)
	}
	tests := []struct {
		name string
		dsn  string
		code string // "" = success
	}{
		{"right password", good, ""},
		{"wrong password", strings.Replace(good, ":pw@", ":wrong-pw-9@", 1), "28P01"},
		{"no password", strings.Replace(good, ":pw@", "@", 1), "28P01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPool(t, tt.dsn, pool.Options{Size: 1})
			c, err := p.Acquire(t.Context())
			if tt.code == "" {
				if err != nil {
					t.Fatal(err)
				}
				if _, err := query(c, "SELECT 1"); err != nil {
					t.Error(err)
				}
				p.Release(c)
				return
			}
			if sqlstate(err) != tt.code {
				t.Fatalf("Acquire: %v, want SQLSTATE %s", err, tt.code)
			}
			if strings.Contains(err.Error(), "wrong-pw-9") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}

func TestSendRaw(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 1})
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Release(c)
	// Two queries: one sent raw between two sent as messages, in order.
	raw, err := (&pgproto3.Query{String: "SELECT 'raw'"}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Send(&pgproto3.Query{String: "SELECT 'one'"})
	c.SendRaw(raw)
	c.Send(&pgproto3.Query{String: "SELECT 'two'"})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		rows, err := readResult(c)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rows...)
	}
	if strings.Join(got, ",") != "one,raw,two" {
		t.Errorf("results = %v, want one,raw,two", got)
	}
}

func TestSetDeadlineClearedOnRelease(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 1})
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDeadline(time.Now().Add(20 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	p.Release(c)
	time.Sleep(40 * time.Millisecond)
	c, err = p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := query(c, "SELECT 1"); err != nil {
		t.Errorf("query after the old deadline: %v", err)
	}
	p.Release(c)
}

func TestClose(t *testing.T) {
	ctx := t.Context()
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 2, AcquireTimeout: time.Minute})
	idle, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	busy, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Release(idle)
	waitErr := make(chan error)
	go func() {
		// Size is 2 and busy is out, so this one takes idle...
		c, err := p.Acquire(ctx)
		if err != nil {
			waitErr <- err
			return
		}
		// ...and this one waits until Close.
		_, err = p.Acquire(ctx)
		p.Release(c)
		waitErr <- err
	}()
	for p.Stats().Waiting == 0 {
		time.Sleep(time.Millisecond)
	}
	p.Close()
	if err := <-waitErr; sqlstate(err) != "57P01" {
		t.Errorf("waiter after Close: %v, want 57P01", err)
	}
	if _, err := p.Acquire(ctx); sqlstate(err) != "57P01" {
		t.Errorf("Acquire after Close: %v, want 57P01", err)
	}
	if s := p.Stats(); s.Total != 1 || s.InUse != 1 {
		t.Errorf("stats after Close = %+v, want only the busy conn", s)
	}
	p.Release(busy)
	if s := p.Stats(); s.Total != 0 || s.Idle != 0 || s.InUse != 0 {
		t.Errorf("stats after last release = %+v, want empty", s)
	}
	p.Close() // idempotent
}

func TestDoubleReleasePanics(t *testing.T) {
	p := newPool(t, shared.DSN("postgres"), pool.Options{Size: 1})
	c, err := p.Acquire(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p.Release(c)
	defer func() {
		if recover() == nil {
			t.Error("second Release did not panic")
		}
	}()
	p.Release(c)
}

func TestNew(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		size int
		want string // substring of the error
	}{
		{"zero size", "postgres://u@localhost/db", 0, "size must be positive"},
		{"bad dsn", "postgres://u:sekrit@localhost:notaport/db", 1, `shard "s0"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pool.New(config.Shard{Name: "s0", DSN: tt.dsn}, pool.Options{Size: tt.size})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "sekrit") {
				t.Errorf("error %q reveals the password", err)
			}
		})
	}
}

func TestCluster(t *testing.T) {
	dbs := map[string]string{"s0": "postgres", "s1": "template1"}
	shards := []config.Shard{
		{Name: "s0", DSN: shared.DSN(dbs["s0"])},
		{Name: "s1", DSN: shared.DSN(dbs["s1"])},
	}
	cl, err := pool.NewCluster(shards, pool.Options{Size: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, s := range shards {
		p := cl.Get(s.Name)
		if p == nil || p.Name() != s.Name {
			t.Fatalf("Get(%q) = %v", s.Name, p)
		}
		c, err := p.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		rows, err := query(c, "SELECT current_database()")
		if err != nil || len(rows) != 1 || rows[0] != dbs[s.Name] {
			t.Errorf("shard %s: current_database() = %v, %v; want %s", s.Name, rows, err, dbs[s.Name])
		}
		p.Release(c)
	}
	if cl.Get("nope") != nil {
		t.Error("Get of an unknown shard is not nil")
	}
	st := cl.Stats()
	if len(st) != 2 || st["s0"].Connects != 1 || st["s1"].Connects != 1 {
		t.Errorf("Stats = %+v", st)
	}
	if _, err := pool.NewCluster(append(shards, shards[0]), pool.Options{Size: 1}); err == nil {
		t.Error("duplicate shard name accepted")
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	for _, bb := range []struct {
		name       string
		probeAfter time.Duration
	}{
		// A conn released a moment ago: the hang-up watch vouches for
		// it (Linux), so neither probes.
		{"default", 0},
		{"no-probe", time.Minute},
	} {
		b.Run(bb.name, func(b *testing.B) {
			p := newPool(b, shared.DSN("postgres"), pool.Options{Size: 4, ProbeAfter: bb.probeAfter})
			ctx := context.Background()
			c, err := p.Acquire(ctx) // connect outside the timed loop
			if err != nil {
				b.Fatal(err)
			}
			p.Release(c)
			b.ReportAllocs()
			for b.Loop() {
				c, err := p.Acquire(ctx)
				if err != nil {
					b.Fatal(err)
				}
				p.Release(c)
			}
		})
	}
}

func BenchmarkAcquireReleaseParallel(b *testing.B) {
	p := newPool(b, shared.DSN("postgres"), pool.Options{Size: 4, AcquireTimeout: time.Minute})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c, err := p.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release(c)
		}
	})
}

// TestBytewiseText: a backend knows whether its database orders text by
// its bytes (the harness' C databases) or not (an ICU collation), which
// decides whether the proxy may merge sorted text itself.
func TestBytewiseText(t *testing.T) {
	ctx := t.Context()
	if err := shared.Exec(ctx, "postgres", "CREATE DATABASE bytewise_icu TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := shared.Exec(context.Background(), "postgres", "DROP DATABASE bytewise_icu WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	for _, tt := range []struct {
		db   string
		want bool
	}{{"postgres", true}, {"bytewise_icu", false}} {
		p := newPool(t, shared.DSN(tt.db), pool.Options{Size: 1})
		c, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if c.BytewiseText != tt.want {
			t.Errorf("%s: BytewiseText = %v, want %v", tt.db, c.BytewiseText, tt.want)
		}
		if c.CollatedColumns {
			t.Errorf("%s: CollatedColumns before any table has one", tt.db)
		}
		p.Release(c)
	}

	// A column with a collation of its own, created while a connection
	// is pooled: after SchemaChanged the connection reads it again.
	p := newPool(t, shared.DSN("bytewise_icu"), pool.Options{Size: 1})
	c, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Release(c)
	if err := shared.Exec(ctx, "bytewise_icu", `CREATE TABLE names (n text COLLATE "en-US-x-icu")`); err != nil {
		t.Fatal(err)
	}
	p.SchemaChanged()
	if c, err = p.Acquire(ctx); err != nil {
		t.Fatal(err)
	}
	defer p.Release(c)
	if !c.CollationsStale() {
		t.Fatal("the pooled connection's collations are not stale after SchemaChanged")
	}
	if err := c.RefreshCollations(); err != nil {
		t.Fatal(err)
	}
	if !c.CollatedColumns || c.CollationsStale() {
		t.Errorf("after the refresh: CollatedColumns %v, stale %v; want true, false", c.CollatedColumns, c.CollationsStale())
	}
}
