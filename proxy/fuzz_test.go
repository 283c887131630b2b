package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// FuzzMessageLoop writes arbitrary bytes as frontend messages on an
// authenticated connection, then half-closes it and reads whatever the
// proxy answers until it closes. The invariants: no panic (a panic in a
// session goroutine kills the test process) and the proxy keeps serving a
// client that was connected all along. One fixture serves every input.
// The seed corpus is below and in testdata/fuzz/FuzzMessageLoop.
func FuzzMessageLoop(f *testing.F) {
	seeds := [][]byte{
		frontend(&pgproto3.Query{String: "SELECT 1"}, &pgproto3.Terminate{}),
		frontend(&pgproto3.Query{String: "SELECT name FROM customers WHERE customer_id = 7; SELECT 2"}),
		frontend(&pgproto3.Query{String: "BEGIN"}, &pgproto3.Query{String: "INSERT INTO customers VALUES (3, 'x')"},
			&pgproto3.Query{String: "ROLLBACK"}),
		frontend(&pgproto3.Parse{Name: "s", Query: "SELECT name FROM customers WHERE customer_id = $1"},
			&pgproto3.Describe{ObjectType: 'S', Name: "s"},
			&pgproto3.Bind{PreparedStatement: "s", Parameters: [][]byte{[]byte("7")}},
			&pgproto3.Execute{MaxRows: 1}, &pgproto3.Sync{}),
		frontend(&pgproto3.Parse{Query: "SELECT $1::int"}, &pgproto3.Bind{Parameters: [][]byte{[]byte("5")}},
			&pgproto3.Describe{ObjectType: 'P'}, &pgproto3.Execute{}, &pgproto3.Flush{}, &pgproto3.Close{ObjectType: 'P'},
			&pgproto3.Sync{}),
		frontend(&pgproto3.Bind{PreparedStatement: "missing"}, &pgproto3.Execute{}, &pgproto3.Sync{},
			&pgproto3.Query{String: "SELECT 1"}),
		frontend(&pgproto3.Parse{Query: "SELECT 1; SELECT 2"}, &pgproto3.Sync{}),
		frontend(&pgproto3.Query{String: "SET shardproxy.shard = 's1'; SELECT 1"}, &pgproto3.Query{String: "RESET shardproxy.shard"}),
		frontend(&pgproto3.CopyData{Data: []byte("x")}, &pgproto3.CopyDone{}, &pgproto3.Query{String: "SELEC"}),
		cat([]byte{'Q'}, be32(3)),
		cat([]byte{'z'}, be32(4)),
		cat([]byte{'Q'}, be32(20), []byte("SELECT")),
		cat([]byte{'P'}, be32(5), []byte{0}),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	fx := startLightFixture(f)
	other := fx.Connect(f)
	if _, err := other.Exec(context.Background(),
		"CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text)"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		hc := hijack(t, fx.DSN())
		nc := hc.Conn
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(in); err == nil {
			// Half-close: the proxy serves what it got, then sees EOF and
			// must end the session, which closes the connection.
			nc.(*net.TCPConn).CloseWrite()
			if err := drain(nc); err != nil {
				t.Fatalf("proxy did not close the connection after the client's EOF: %v", err)
			}
			checkNoBackendsInUse(t, fx)
		}
		checkServing(t, other)
	})
}

// drain reads until the proxy closes the connection (nil) or the deadline
// passes (the error).
func drain(nc net.Conn) error {
	buf := make([]byte, 32<<10)
	for {
		if _, err := nc.Read(buf); err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return err
			}
			return nil // EOF or a reset: closed
		}
	}
}

// checkNoBackendsInUse checks that the sessions that ended gave their
// backends back (idle clients hold none under transaction pooling).
func checkNoBackendsInUse(t testing.TB, f *fixture) {
	t.Helper()
	// The shard health check borrows a backend for a moment every few
	// seconds, so poll: a leaked backend never comes back, a borrowed one
	// does within milliseconds.
	deadline := time.Now().Add(5 * time.Second)
	for {
		busy := ""
		for shard, st := range f.Server.Runtime().Pools.Stats() {
			if st.InUse != 0 {
				busy = fmt.Sprintf("shard %s: %d backends still in use after every client went idle or away", shard, st.InUse)
			}
		}
		if busy == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(busy)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startLightFixture is startFixture's default map on a single Postgres
// server: shards s0 and s1 are two databases of it. A fuzz worker starts
// it in a few seconds, where the shared fixture initialises four servers.
func startLightFixture(t testing.TB) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgtest.Start(ctx, pgtest.Options{Name: "fuzz"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	f := &fixture{DB: "f0", Shards: map[string]*pgtest.Server{"s0": srv, "s1": srv}, Meta: srv}
	for _, db := range []string{"f0", "f1"} {
		if err := srv.CreateDatabase(ctx, db); err != nil {
			t.Fatal(err)
		}
	}
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
admin_database: shardproxy
users:
  - {name: app, password: secret}
metadata: {dsn: %q}
pool: {size: 8, acquire_timeout: 2s}
shards:
  - {name: s0, dsn: %q}
  - {name: s1, dsn: %q}
`, srv.DSN("f0"), srv.DSN("f0"), srv.DSN("f1")) + defaultBody
	f.cfgPath = t.TempDir() + "/shardproxy.yaml"
	if err := os.WriteFile(f.cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	if f.Config, err = config.Load(f.cfgPath); err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	// Fuzz inputs provoke errors by the thousand: log only what is worse.
	f.serve(t, slog.LevelError)
	return f
}
