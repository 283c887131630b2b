package proxy_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
	"github.com/jackc/pgx/v5/pgproto3"
)

// connectCancelling opens a pgx connection whose context cancellation sends
// a CancelRequest (libpq's behaviour) instead of closing the socket.
func connectCancelling(t *testing.T, f *fixture) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.BuildContextWatcherHandler = func(pc *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.CancelRequestContextWatcherHandler{Conn: pc, DeadlineDelay: 20 * time.Second}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// activity watches the shards' pg_stat_activity over direct connections.
type activity struct{ conns []*pgx.Conn }

// cancelMidway runs sql on c, cancels it once a shard runs the statement
// marked marker, and checks that the client gets 57014 and that no shard
// runs it any longer.
func (a *activity) cancelMidway(t *testing.T, c *pgx.Conn, mode pgx.QueryExecMode, marker, sql string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, sql, mode)
		done <- err
	}()
	a.wait(t, marker, true)
	cancel()
	if err := <-done; sqlState(err) != "57014" {
		t.Fatalf("got %v, want SQLSTATE 57014", err)
	}
	a.wait(t, marker, false)
}

func watchActivity(t *testing.T, f *fixture) *activity {
	a := &activity{}
	for name := range f.Shards {
		a.conns = append(a.conns, f.Direct(t, name))
	}
	return a
}

// running counts the statements with marker in their text on every shard;
// markers (in a comment) keep tests apart.
func (a *activity) running(t *testing.T, marker string) int {
	t.Helper()
	total := 0
	for _, c := range a.conns {
		var n int
		err := c.QueryRow(context.Background(),
			"SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
			marker).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// wait polls until the marked statement runs on a shard (want) or no longer
// runs anywhere (!want).
func (a *activity) wait(t *testing.T, marker string, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for (a.running(t, marker) > 0) != want {
		if time.Now().After(deadline) {
			t.Fatalf("statement %s running: %v after 10s, want %v", marker, !want, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCancelRequest: a pgx context cancellation reaches the shard through
// the proxy's CancelRequest forwarding, in both protocols, and the
// connection is usable afterwards.
func TestCancelRequest(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	c := connectCancelling(t, f)
	act := watchActivity(t, f)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			marker := "cancel_" + mode.String()
			act.cancelMidway(t, c, mode, marker, "SELECT pg_sleep(30) /* "+marker+" */")
			var n int
			if err := c.QueryRow(context.Background(), "SELECT 1", mode).Scan(&n); err != nil || n != 1 {
				t.Fatalf("connection unusable after cancel: %v", err)
			}
		})
	}
}

// TestCancelRequestWrongKey: a CancelRequest must match the process id and
// the secret the proxy issued; otherwise it does nothing.
func TestCancelRequestWrongKey(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	c := f.Connect(t)
	act := watchActivity(t, f)
	pid, secret := c.PgConn().PID(), c.PgConn().SecretKey()
	wrong := append([]byte(nil), secret...)
	wrong[0] ^= 0xff
	cases := []struct {
		name   string
		pid    uint32
		secret []byte
	}{
		{"wrong secret", pid, wrong},
		{"short secret", pid, secret[:2]},
		{"unknown pid", pid ^ 1, secret},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			marker := "wrongkey_" + tc.name[:3]
			done := make(chan error, 1)
			go func() {
				_, err := c.Exec(context.Background(), "SELECT pg_sleep(1) /* "+marker+" */")
				done <- err
			}()
			act.wait(t, marker, true)
			nc := dialProxy(t, f)
			req, _ := (&pgproto3.CancelRequest{ProcessID: tc.pid, SecretKey: tc.secret}).Encode(nil)
			if _, err := nc.Write(req); err != nil {
				t.Fatal(err)
			}
			// The proxy closes the cancel connection (Postgres answers
			// nothing; a malformed request may get an error first).
			if r := readReplies(t, nc); !r.eof {
				t.Errorf("cancel connection: %+v, want it closed", r)
			}
			if err := <-done; err != nil {
				t.Fatalf("statement was cancelled by a CancelRequest with the wrong key: %v", err)
			}
		})
	}
}

// TestClientVanishes: a client that disconnects abruptly loses its
// transaction and its running statement, as on Postgres. The clients are
// raw sockets: pgx would send a CancelRequest of its own when its socket
// breaks mid-query, which is not what a killed process or a lost network
// does.
func TestClientVanishes(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	admin := f.Connect(t)
	act := watchActivity(t, f)
	if _, err := admin.Exec(ctx, "CREATE TABLE kv (key int PRIMARY KEY, v int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Exec(ctx, "INSERT INTO kv VALUES (1, 1)"); err != nil {
		t.Fatal(err)
	}
	exec := func(t *testing.T, nc net.Conn, sql string) {
		t.Helper()
		nc.Write(frontend(&pgproto3.Query{String: sql}))
		if r := readReplies(t, nc); len(r.codes) > 0 || !r.ready {
			t.Fatalf("%s: %+v", sql, r)
		}
	}
	// reset closes the socket with a RST, as the kernel does for a killed
	// process with unread data or a lost peer; fin closes it politely
	// (without Terminate).
	reset := func(nc net.Conn) {
		nc.(*net.TCPConn).SetLinger(0)
		nc.Close()
	}
	fin := func(nc net.Conn) { nc.Close() }
	// terminate says goodbye and closes: the proxy, busy with the
	// statement, has not read the Terminate when the FIN arrives, as
	// when pgx gives up on a context deadline.
	terminate := func(nc net.Conn) {
		nc.Write(frontend(&pgproto3.Terminate{}))
		nc.Close()
	}
	// v reads key 1 through the proxy once its row lock is free.
	v := func(t *testing.T) int {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		var v int
		if err := admin.QueryRow(wctx, "UPDATE kv SET v = v WHERE key = 1 RETURNING v").Scan(&v); err != nil {
			t.Fatalf("row still locked by the vanished client: %v", err)
		}
		return v
	}
	sleep := func(marker string) []byte {
		return frontend(&pgproto3.Query{String: "SELECT pg_sleep(30) /* " + marker + " */"})
	}
	sleepExtended := func(marker string) []byte {
		return frontend(&pgproto3.Parse{Query: "SELECT pg_sleep($1) /* " + marker + " */"},
			&pgproto3.Bind{Parameters: [][]byte{[]byte("30")}}, &pgproto3.Execute{}, &pgproto3.Sync{})
	}

	t.Run("idle in transaction", func(t *testing.T) {
		nc := authedConn(t, f)
		exec(t, nc, "BEGIN")
		exec(t, nc, "UPDATE kv SET v = 100 WHERE key = 1")
		reset(nc)
		if got := v(t); got != 1 {
			t.Fatalf("v = %d, want 1: the vanished client's update was not rolled back", got)
		}
	})

	for _, tc := range []struct {
		name  string
		send  func(marker string) []byte
		leave func(net.Conn)
		tx    bool
	}{
		{name: "reset during query", send: sleep, leave: reset},
		{name: "fin during query", send: sleep, leave: fin},
		{name: "reset during query in transaction", send: sleep, leave: reset, tx: true},
		{name: "reset during extended query", send: sleepExtended, leave: reset},
		{name: "fin during extended query in transaction", send: sleepExtended, leave: fin, tx: true},
		{name: "terminate during query", send: sleep, leave: terminate},
		{name: "terminate during extended query in transaction", send: sleepExtended, leave: terminate, tx: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := "vanish_" + strings.ReplaceAll(tc.name, " ", "_")
			nc := authedConn(t, f)
			if tc.tx {
				exec(t, nc, "BEGIN")
				exec(t, nc, "UPDATE kv SET v = 100 WHERE key = 1")
			}
			baseline := proxyGoroutines()
			nc.Write(tc.send(marker))
			act.wait(t, marker, true)
			tc.leave(nc)
			// The proxy notices while the statement runs (the statement
			// would otherwise run for 30 s, past act.wait's patience).
			act.wait(t, marker, false)
			if got := v(t); got != 1 {
				t.Fatalf("v = %d, want 1: the vanished client's update was not rolled back", got)
			}
			waitGoroutines(t, baseline)
		})
	}

	// A backend that ignores the cancel (here stopped with SIGSTOP, as a
	// hung one would be) must not keep the vanished client's session, its
	// backends and their locks for good: expireAfter past the cancel,
	// the session drops its backends and ends.
	t.Run("backend ignores the cancel", func(t *testing.T) {
		const marker = "vanish_stopped_backend"
		baseline := proxyGoroutines() // without the session's
		nc := authedConn(t, f)
		exec(t, nc, "BEGIN")
		exec(t, nc, "UPDATE kv SET v = 100 WHERE key = 1")
		nc.Write(sleep(marker))
		act.wait(t, marker, true)
		resume := stopBackend(t, act.pid(t, marker))
		reset(nc)
		waitGoroutines(t, baseline)
		// Resumed, the backend finds its connection closed and rolls
		// back (the cancel, pending while it was stopped, ends the sleep).
		resume()
		if got := v(t); got != 1 {
			t.Fatalf("v = %d, want 1: the vanished client's update was not rolled back", got)
		}
	})
}

// pid is the backend process running the marked statement.
func (a *activity) pid(t *testing.T, marker string) int {
	t.Helper()
	for _, c := range a.conns {
		var pid int
		err := c.QueryRow(context.Background(),
			"SELECT pid FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()",
			marker).Scan(&pid)
		if err == nil {
			return pid
		}
		if err != pgx.ErrNoRows {
			t.Fatal(err)
		}
	}
	t.Fatalf("no backend runs %s", marker)
	return 0
}
