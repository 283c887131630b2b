package cqrs_test

// The integration tests run the real proxy in-process in front of three
// real Postgres shards and a metadata server (pool/pgtest), configured by
// testdata/orders/shardproxy.yaml.tmpl, and talk to it only through pgx,
// like the service does.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/pool/pgtest"
	"github.com/shardproxy/shardproxy/proxy"
)

// The package shares one set of servers (3 shards and a metadata server).
var shared = pgtest.NewShared("s0", "s1", "s2", "meta")

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopAll()
	os.Exit(code)
}

func sharedServers(t testing.TB) []*pgtest.Server { return shared.Servers(t) }

// env is a proxy over fresh databases on the shared servers, with the
// order service's schema migrated through it.
type env struct {
	DSN    string
	DB     string
	Pool   *pgxpool.Pool // through the proxy
	Shards []*pgtest.Server
}

func (e *env) direct(t testing.TB, shard int) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), e.Shards[shard].DSN(e.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func startEnv(t testing.TB) *env {
	t.Helper()
	srvs := sharedServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := shared.DatabaseName("o")
	t0 := time.Now()
	defer func() { t.Logf("startEnv took %v", time.Since(t0)) }()
	errs := make([]error, len(srvs))
	var wg sync.WaitGroup
	for i, s := range srvs {
		wg.Go(func() { errs[i] = s.CreateDatabase(ctx, db) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	tmpl, err := template.ParseFiles("../testdata/orders/shardproxy.yaml.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, map[string]any{
		"Listen": "127.0.0.1:0", "PoolSize": 24,
		"Shard0DSN": srvs[0].DSN(db), "Shard1DSN": srvs[1].DSN(db), "Shard2DSN": srvs[2].DSN(db),
		"MetaDSN": srvs[3].DSN(db),
	}); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/shardproxy.yaml"
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	asm, err := proxy.Assemble(ctx, cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.NewServer(asm.Runtime(), log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(serveCtx, ln)
	}()
	e := &env{DB: db, Shards: srvs[:3],
		DSN: fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", ln.Addr(), db)}
	t.Cleanup(func() {
		stop()
		<-done
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		asm.Close()
	})
	pcfg, err := pgxpool.ParseConfig(e.DSN)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns = 20
	e.Pool, err = pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Pool.Close)
	t1 := time.Now()
	if err := app.Migrate(ctx, e.Pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	t.Logf("migrate took %v", time.Since(t1)) // visible with -v: the fixed cost of a test
	return e
}

// testWriter sends proxy logs to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
