package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool/pgtest"
	"github.com/shardproxy/shardproxy/proxy"
)

// The package shares one set of Postgres servers (3 shards and a metadata
// server, started on first use); every fixture gets fresh databases on them,
// so tests do not see each other's tables.
var shared = pgtest.NewShared("s0", "s1", "s2", "meta")

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.StopAll()
	os.Exit(code)
}

func sharedServers(t testing.TB) []*pgtest.Server { return shared.Servers(t) }

// fixture is a running proxy in front of fresh databases on the shared servers.
type fixture struct {
	Addr    string
	DB      string // database name on every shard (and the proxy)
	Shards  map[string]*pgtest.Server
	Meta    *pgtest.Server
	Config  *config.Config
	Server  *proxy.Server
	cfgPath string
}

// fixtureOptions shape the YAML the fixture serves. Shard DSNs, users,
// listen and metadata are filled in; Body holds strategies:, tables: and
// anything else.
type fixtureOptions struct {
	Shards int    // number of shards, 2 or 3 (default 2)
	Body   string // YAML appended after shards:
	Top    string // YAML placed before shards: (e.g. tls:)
	// ShardDB is appended to the shards' CREATE DATABASE (e.g. an ICU
	// locale); by default they are C-collated.
	ShardDB string
	// Pool is the pool: mapping (default {size: 8, acquire_timeout: 2s}).
	Pool string
}

const defaultBody = `
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  customers:   {key: customer_id, strategy: by_customer}
  orders:      {key: customer_id, strategy: by_customer}
  products:    {reference: true}
default_shard: s0
`

func startFixture(t testing.TB, opts fixtureOptions) *fixture {
	t.Helper()
	if opts.Shards == 0 {
		opts.Shards = 2
	}
	if opts.Body == "" {
		opts.Body = defaultBody
	}
	srvs := sharedServers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := shared.DatabaseName("t")
	f := &fixture{DB: db, Shards: map[string]*pgtest.Server{}, Meta: srvs[3]}
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "listen: 127.0.0.1:0\nadmin_database: shardproxy\n")
	yaml.WriteString("users:\n  - {name: app, password: secret}\n  - {name: admin, password: secret, admin: true}\n")
	fmt.Fprintf(&yaml, "metadata: {dsn: %q}\n", srvs[3].DSN(db))
	yaml.WriteString(opts.Top)
	if opts.Pool == "" {
		opts.Pool = "{size: 8, acquire_timeout: 2s}"
	}
	yaml.WriteString("pool: " + opts.Pool + "\nshards:\n")
	for i := 0; i < opts.Shards; i++ {
		name := fmt.Sprintf("s%d", i)
		f.Shards[name] = srvs[i]
		fmt.Fprintf(&yaml, "  - {name: %s, dsn: %q}\n", name, srvs[i].DSN(db))
	}
	yaml.WriteString(opts.Body)
	for i := 0; i < opts.Shards; i++ {
		var err error
		if opts.ShardDB == "" {
			err = srvs[i].CreateDatabase(ctx, db)
		} else {
			err = srvs[i].Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()+" TEMPLATE template0 "+opts.ShardDB)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := srvs[3].CreateDatabase(ctx, db); err != nil {
		t.Fatal(err)
	}
	f.cfgPath = t.TempDir() + "/shardproxy.yaml"
	if err := os.WriteFile(f.cfgPath, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml.String())
	}
	f.Config = cfg
	f.serve(t, slog.LevelWarn)
	return f
}

// serve assembles f.Config and runs a proxy for it on a free loopback
// port until the test ends; proxy logs at level and above go to the test log.
func (f *fixture) serve(t testing.TB, level slog.Level) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
	asm, err := proxy.Assemble(ctx, f.Config, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	f.Server = proxy.NewServer(asm.Runtime(), log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.Addr = ln.Addr().String()
	serveCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.Server.Serve(serveCtx, ln)
	}()
	t.Cleanup(func() {
		stop()
		<-done
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		f.Server.Shutdown(sctx)
		asm.Close()
	})
}

// DSN is a libpq/pgx connection string for the proxy.
func (f *fixture) DSN() string {
	return fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", f.Addr, f.DB)
}

// Connect opens a pgx connection to the proxy, closed at test end.
func (f *fixture) Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, f.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// ConnectWith opens a pgx connection to the proxy whose startup message
// carries params besides user and database; the caller closes it.
func (f *fixture) ConnectWith(t testing.TB, params map[string]string) (*pgx.Conn, error) {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.DSN())
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range params {
		cfg.RuntimeParams[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// Direct opens a pgx connection straight to one shard's database.
func (f *fixture) Direct(t testing.TB, shard string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, f.Shards[shard].DSN(f.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// testWriter sends proxy logs to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
