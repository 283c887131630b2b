package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/proxy"
)

// waitFatal reads from an idle client connection until the proxy sends
// something unprompted; the proxy only does so to close it.
func waitFatal(t *testing.T, c *pgx.Conn) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.PgConn().WaitForNotification(ctx)
	if ctx.Err() != nil {
		t.Fatal("the proxy did not close an idle client while draining")
	}
	return err
}

func isSQLState(err error, code string) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == code
}

// accountsFixture holds accounts(id, balance) on a 2-shard hash map, with
// one account per shard, and returns their ids by shard.
func accountsFixture(t *testing.T) (*fixture, map[string]int64) {
	return accountsFixtureWith(t, fixtureOptions{})
}

// accountsFixtureWith is accountsFixture with o's pool settings and more
// config keys (o.Body, YAML).
func accountsFixtureWith(t *testing.T, o fixtureOptions) (*fixture, map[string]int64) {
	t.Helper()
	o.Body = `
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  accounts: {key: id, strategy: by_id}
default_shard: s0
` + o.Body
	f := startFixture(t, o)
	c := f.Connect(t)
	defer c.Close(context.Background())
	mustExec(t, c, "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL)")
	ids := map[string]int64{}
	for sh, keys := range keysByShard(t, f, "by_id", 1) {
		ids[sh] = keys[0]
		mustExec(t, c, "INSERT INTO accounts VALUES ($1, 100)", keys[0])
	}
	return f, ids
}

// balance reads an account straight from its shard.
func balance(t *testing.T, f *fixture, shard string, id int64) int {
	t.Helper()
	var b int
	if err := f.Direct(t, shard).QueryRow(context.Background(), "SELECT balance FROM accounts WHERE id = $1", id).Scan(&b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDrain shuts the server down with clients in every state: idle ones
// get 57P01 at once, ones in a transaction (simple and extended protocol)
// finish it and get 57P01 at its end, and new clients are refused.
func TestDrain(t *testing.T) {
	f, ids := accountsFixture(t)
	ctx := context.Background()
	idle := f.Connect(t)
	modes := []struct {
		name string
		mode pgx.QueryExecMode
	}{{"simple", pgx.QueryExecModeSimpleProtocol}, {"extended", pgx.QueryExecModeCacheStatement}}
	type client struct {
		c  *pgx.Conn
		tx pgx.Tx
	}
	inTx := map[string]client{}
	for i, m := range modes {
		c := f.Connect(t)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		shard := fmt.Sprintf("s%d", i)
		if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = balance - 1 WHERE id = $1", m.mode, ids[shard]); err != nil {
			t.Fatal(err)
		}
		inTx[m.name] = client{c, tx}
	}

	shutdownDone := make(chan struct{})
	go func() {
		defer close(shutdownDone)
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		f.Server.Shutdown(sctx)
	}()

	// The idle client is told at once; this also shows the drain started.
	if err := waitFatal(t, idle); !isSQLState(err, "57P01") {
		t.Fatalf("idle client: got %v, want FATAL 57P01", err)
	}
	if c, err := pgx.Connect(ctx, f.DSN()); err == nil {
		c.Close(ctx)
		t.Error("a new client connected while the server drained")
	}

	for i, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			cl := inTx[m.name]
			shard := fmt.Sprintf("s%d", i)
			if _, err := cl.tx.Exec(ctx, "UPDATE accounts SET balance = balance - 1 WHERE id = $1", m.mode, ids[shard]); err != nil {
				t.Fatalf("statement in a transaction open when the drain began: %v", err)
			}
			if err := cl.tx.Commit(ctx); err != nil {
				t.Fatalf("commit of a transaction open when the drain began: %v", err)
			}
			if err := waitFatal(t, cl.c); !isSQLState(err, "57P01") {
				t.Fatalf("after commit: got %v, want FATAL 57P01", err)
			}
			if got := balance(t, f, shard, ids[shard]); got != 98 {
				t.Errorf("balance %d after the drained transaction, want 98", got)
			}
		})
	}
	select {
	case <-shutdownDone:
	case <-time.After(30 * time.Second):
		t.Fatal("Shutdown did not return after every client left")
	}
}

// TestDrainTimeout: a transaction still open when the drain timeout passes
// is rolled back, whether its client is idle in it or a statement runs,
// and Shutdown returns without waiting for the statement.
func TestDrainTimeout(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stmt     string // run in the transaction while the drain times out
		blocking bool
	}{
		{"idle in transaction", "", false},
		{"statement running", "SELECT pg_sleep(600)", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, ids := accountsFixture(t)
			ctx := context.Background()
			c := f.Connect(t)
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "UPDATE accounts SET balance = 0 WHERE id = $1", ids["s0"]); err != nil {
				t.Fatal(err)
			}
			stmtErr := make(chan error, 1)
			if tc.blocking {
				// The sleep must run on the shard of the open transaction.
				go func() {
					_, err := tx.Exec(ctx, tc.stmt+" FROM accounts WHERE id = $1", ids["s0"])
					stmtErr <- err
				}()
				pollUntil(t, "the statement to run", func() bool {
					var n int
					f.Direct(t, "s0").QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(600)%'").Scan(&n)
					return n > 0
				})
			}
			sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			done := make(chan struct{})
			go func() { f.Server.Shutdown(sctx); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Shutdown did not return after its timeout")
			}
			if tc.blocking {
				if err := <-stmtErr; err == nil {
					t.Error("the statement cut by the drain timeout succeeded")
				}
			} else if err := tx.Commit(ctx); err == nil {
				t.Error("commit after the drain timeout succeeded")
			}
			// Rolled back, not merely unfinished: the row lock is gone.
			d := f.Direct(t, "s0")
			pollUntil(t, "the row lock to be released", func() bool {
				_, err := d.Exec(ctx, "SET lock_timeout = '100ms'; UPDATE accounts SET balance = balance WHERE id = "+fmt.Sprint(ids["s0"]))
				return err == nil
			})
			if got := balance(t, f, "s0", ids["s0"]); got != 100 {
				t.Errorf("balance %d after a transaction cut by the drain timeout, want 100 (rolled back)", got)
			}
		})
	}
}

// syncBuffer is a log sink shared by session goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestLogsHideSecrets runs sessions at debug level, with passwords (right
// and wrong) and bind values in successful and failing statements, and
// checks that none of them reaches the log, while the per-connection
// attributes do.
func TestLogsHideSecrets(t *testing.T) {
	f, ids := accountsFixture(t)
	ctx := context.Background()
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var logs syncBuffer
			opts := &slog.HandlerOptions{Level: slog.LevelDebug}
			var h slog.Handler = slog.NewTextHandler(&logs, opts)
			if format == "json" {
				h = slog.NewJSONHandler(&logs, opts)
			}
			addr := serveLogging(t, f, h)
			dsn := func(password string) string {
				return fmt.Sprintf("postgres://app:%s@%s/%s?sslmode=disable", password, addr, f.DB)
			}
			if c, err := pgx.Connect(ctx, dsn("wrong-pass-7Qx")); err == nil {
				c.Close(ctx)
				t.Fatal("a wrong password was accepted")
			}
			c, err := pgx.Connect(ctx, dsn("secret"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close(ctx)
			const bind = "bind-value-9Zk"
			for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
				var s string
				if err := c.QueryRow(ctx, "SELECT $1::text FROM accounts WHERE id = $2", mode, bind, ids["s0"]).Scan(&s); err != nil || s != bind {
					t.Fatalf("mode %v: %q, %v", mode, s, err)
				}
				// Errors that quote the value: a failed cast, a duplicate key.
				if _, err := c.Exec(ctx, "SELECT $1::int FROM accounts WHERE id = $2", mode, bind, ids["s0"]); err == nil {
					t.Fatal("cast of a non-number succeeded")
				}
				if _, err := c.Exec(ctx, "INSERT INTO accounts VALUES ($1, $2)", mode, ids["s0"], 424242); err == nil {
					t.Fatal("duplicate key accepted")
				}
				// A key that does not parse fails in the proxy, not on a shard.
				if _, err := c.Exec(ctx, "SELECT * FROM accounts WHERE id = $1", mode, bind); err == nil {
					t.Fatal("a text shard key for an int column was accepted")
				}
			}
			c.Close(ctx)
			pollUntil(t, "the session to end", func() bool { return strings.Contains(logs.String(), "client disconnected") })
			out := logs.String()
			for _, secret := range []string{"wrong-pass-7Qx", "secret", bind, "424242"} {
				if strings.Contains(out, secret) {
					t.Errorf("%q appears in the log:\n%s", secret, out)
				}
			}
			for _, attr := range []string{"conn_id", "user", "db", "remote", "127.0.0.1"} {
				if !strings.Contains(out, attr) {
					t.Errorf("attribute %q missing from the log:\n%s", attr, out)
				}
			}
		})
	}
}

// TestHangUpDuringAuthentication: pg_isready and port scanners send a
// startup packet and hang up at the password request. That is no error:
// the proxy logs it at debug level only, as Postgres logs nothing for it.
func TestHangUpDuringAuthentication(t *testing.T) {
	f, _ := accountsFixture(t)
	ctx := context.Background()
	var logs syncBuffer
	addr := serveLogging(t, f, slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	startup, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "app", "database": f.DB}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(startup); err != nil {
		t.Fatal(err)
	}
	msg, err := pgproto3.NewFrontend(c, c).Receive()
	if _, ok := msg.(*pgproto3.AuthenticationSASL); !ok || err != nil {
		t.Fatalf("want the SCRAM request, got %T, %v", msg, err)
	}
	c.Close()

	pollUntil(t, "the hang-up to be logged", func() bool { return strings.Contains(logs.String(), "client left during authentication") })
	if out := logs.String(); strings.Contains(out, "level=ERROR") || strings.Contains(out, "authentication failed") {
		t.Errorf("a hang-up during authentication was logged as a failure:\n%s", out)
	}
	// Everyone else is still served.
	conn, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", addr, f.DB))
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
}

// serveLogging serves f's runtime on a free loopback port with its log
// going to h, until the test ends, and returns the address.
func serveLogging(t *testing.T, f *fixture, h slog.Handler) net.Addr {
	t.Helper()
	srv := proxy.NewServer(f.Server.Runtime(), slog.New(h))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { srv.Serve(serveCtx, ln); close(served) }()
	t.Cleanup(func() {
		stop()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return ln.Addr()
}
