package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/proxy"
)

// Before the reload, ids from 100 up live on s1; after it, [100, 200)
// moves to s2 and a new table appears.
const (
	reloadBodyV1 = `
strategies:
  by_id: {type: range, key_type: int, ranges: [{upper: 100, shard: s0}, {shard: s1}]}
tables:
  items: {key: id, strategy: by_id}
default_shard: s0
`
	reloadBodyV2 = `
strategies:
  by_id: {type: range, key_type: int, ranges: [{upper: 100, shard: s0}, {upper: 200, shard: s2}, {shard: s1}]}
tables:
  items: {key: id, strategy: by_id}
  extra: {key: id, strategy: by_id}
default_shard: s0
`
)

// withBody returns the fixture's YAML with everything from "strategies:"
// on replaced by body (the fixture writes shards, users and the rest first).
func withBody(t *testing.T, f *fixture, body string) []byte {
	t.Helper()
	b, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(b), "\nstrategies:")
	if !ok {
		t.Fatalf("fixture YAML has no strategies:\n%s", b)
	}
	return []byte(head + body)
}

// reloadingProxy serves the fixture's databases with cmd/shardproxy's
// reload wiring: config.Watch -> proxy.Assemble(next, cur) ->
// Server.SetRuntime -> cur.Retire.
type reloadingProxy struct {
	addr    string
	watcher *config.Watcher
}

func startReloadingProxy(t *testing.T, f *fixture) *reloadingProxy {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg, err := config.Load(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := proxy.Assemble(ctx, cfg, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.NewServer(cur.Runtime(), log)
	var mu sync.Mutex
	w := config.Watch(ctx, f.cfgPath, log, func(next *config.Config) {
		mu.Lock()
		defer mu.Unlock()
		a, err := proxy.Assemble(ctx, next, cur, log)
		if err != nil {
			log.Error("reload rejected; keeping the current shard map", "err", err)
			return
		}
		srv.SetRuntime(a.Runtime())
		cur.Retire(a)
		cur = a
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(ctx, ln)
	}()
	t.Cleanup(func() {
		stop()
		<-done
		<-w.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		mu.Lock()
		cur.Close()
		mu.Unlock()
	})
	return &reloadingProxy{addr: ln.Addr().String(), watcher: w}
}

// whereIs returns the shards that hold id in table, read directly.
func whereIs(t *testing.T, f *fixture, table string, id int) []string {
	t.Helper()
	var out []string
	for _, s := range f.Config.ShardNames() {
		var n int
		err := f.Direct(t, s).QueryRow(context.Background(), "SELECT count(*) FROM "+table+" WHERE id = $1", id).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			out = append(out, s)
		}
	}
	return out
}

// TestReload swaps the shard map under live clients: new transactions
// route by the new map, a transaction open across the reload finishes on
// the old one, and an invalid file leaves the current map serving.
func TestReload(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 3, Body: reloadBodyV1})
	ctx := context.Background()
	p := startReloadingProxy(t, f)
	dsn := fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", p.addr, f.DB)
	connect := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return c
	}
	a, idle := connect(), connect()
	for _, table := range []string{"items", "extra"} {
		// "extra" is not in the map yet, so it is created on the default
		// shard only; create it everywhere for the new map.
		for _, s := range f.Config.ShardNames() {
			if _, err := f.Direct(t, s).Exec(ctx, "CREATE TABLE "+table+" (id int PRIMARY KEY, v text)"); err != nil {
				t.Fatal(err)
			}
		}
	}
	insert := func(c *pgx.Conn, table string, id int) {
		t.Helper()
		if _, err := c.Exec(ctx, "INSERT INTO "+table+" (id, v) VALUES ($1, 'x')", id); err != nil {
			t.Fatalf("insert %s %d: %v", table, id, err)
		}
	}
	insert(a, "items", 150)
	insert(a, "extra", 150) // unlisted: default shard
	if got := whereIs(t, f, "items", 150); !sameShards(got, "s1") {
		t.Fatalf("before reload, items 150 on %v, want s1", got)
	}

	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'tx')", 151); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(f.cfgPath, withBody(t, f, reloadBodyV2), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.watcher.Reload(); err != nil {
		t.Fatalf("reload of a valid map: %v", err)
	}

	// The open transaction keeps the old map: 152 is s1's, as 151 was.
	if _, err := tx.Exec(ctx, "INSERT INTO items (id, v) VALUES ($1, 'tx')", 152); err != nil {
		t.Fatalf("transaction open across the reload: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{151, 152} {
		if got := whereIs(t, f, "items", id); !sameShards(got, "s1") {
			t.Errorf("items %d from the old transaction on %v, want s1", id, got)
		}
	}

	// New transactions use the new map, on old and new client connections.
	// a prepared this INSERT (pgx caches statements) before the reload: the
	// proxy must analyse it again with the new map, not reuse the old plan.
	insert(a, "items", 160)
	insert(idle, "items", 161)
	insert(connect(), "items", 162)
	insert(idle, "extra", 163)
	insert(a, "items", 250)
	for _, tc := range []struct {
		table string
		id    int
		want  string
	}{{"items", 160, "s2"}, {"items", 161, "s2"}, {"items", 162, "s2"}, {"extra", 163, "s2"}, {"items", 250, "s1"}} {
		if got := whereIs(t, f, tc.table, tc.id); !sameShards(got, tc.want) {
			t.Errorf("after reload, %s %d on %v, want %s", tc.table, tc.id, got, tc.want)
		}
	}

	// Invalid files are rejected and the current map keeps serving.
	for name, content := range map[string][]byte{
		"bad YAML":      []byte("shards: [\n"),
		"unknown shard": withBody(t, f, strings.Replace(reloadBodyV2, "shard: s2", "shard: s9", 1)),
		"unknown strategy": withBody(t, f, strings.Replace(reloadBodyV2, "extra: {key: id, strategy: by_id}",
			"extra: {key: id, strategy: nope}", 1)),
	} {
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(f.cfgPath, content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := p.watcher.Reload(); err == nil {
				t.Fatal("invalid map accepted")
			}
			id := 170 + len(name) // distinct per case
			insert(a, "items", id)
			if got := whereIs(t, f, "items", id); !sameShards(got, "s2") {
				t.Errorf("items %d on %v after a rejected reload, want s2 (current map)", id, got)
			}
		})
	}
}

func sameShards(got []string, want ...string) bool {
	return strings.Join(got, ",") == strings.Join(want, ",")
}

// TestReloadSIGHUP runs the real binary: serve --config, edit the file,
// SIGHUP, and the routing changes without a restart.
func TestReloadSIGHUP(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 3, Body: reloadBodyV1})
	ctx := context.Background()
	for _, s := range f.Config.ShardNames() {
		if _, err := f.Direct(t, s).Exec(ctx, "CREATE TABLE items (id int PRIMARY KEY, v text)"); err != nil {
			t.Fatal(err)
		}
		// Each shard answers id 199 with its own name: the route is visible.
		if _, err := f.Direct(t, s).Exec(ctx, "INSERT INTO items VALUES (199, $1)", s); err != nil {
			t.Fatal(err)
		}
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "shardproxy")
	_, file, _, _ := runtime.Caller(0)
	build := exec.Command("go", "build", "-o", bin, "./cmd/shardproxy")
	build.Dir = filepath.Join(filepath.Dir(file), "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	port := freeLoopbackAddr(t)
	cfgPath := filepath.Join(dir, "shardproxy.yaml")
	writeCfg := func(body string) {
		y := strings.Replace(string(withBody(t, f, body)), "listen: 127.0.0.1:0", "listen: "+port, 1)
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg(reloadBodyV1)
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = cmd.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logMu sync.Mutex
	var logs strings.Builder
	logDone := make(chan struct{})
	go func() {
		defer close(logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logMu.Lock()
			logs.WriteString(sc.Text() + "\n")
			logMu.Unlock()
		}
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		<-logDone
		cmd.Wait()
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			logMu.Lock()
			t.Logf("shardproxy output:\n%s", logs.String())
			logMu.Unlock()
		}
	})

	dsn := fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", port, f.DB)
	var c *pgx.Conn
	pollUntil(t, "the proxy to accept clients", func() bool {
		c, err = pgx.Connect(ctx, dsn)
		return err == nil
	})
	defer c.Close(ctx)
	owner := func() string {
		var v string
		if err := c.QueryRow(ctx, "SELECT v FROM items WHERE id = $1", 199).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if got := owner(); got != "s1" {
		t.Fatalf("before SIGHUP id 199 is read from %s, want s1", got)
	}

	writeCfg(reloadBodyV2)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// The reload runs asynchronously after the signal.
	pollUntil(t, "routing by the reloaded map", func() bool { return owner() == "s2" })

	// A broken file on the next SIGHUP keeps the current map.
	if err := os.WriteFile(cfgPath, []byte("shards: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	pollUntil(t, "the rejected reload to be logged", func() bool {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Contains(logs.String(), "config reload failed")
	})
	if got := owner(); got != "s2" {
		t.Errorf("after a rejected reload id 199 is read from %s, want s2", got)
	}
	c.Close(ctx)
	stop()
	if !cmd.ProcessState.Exited() {
		t.Errorf("shardproxy did not exit on SIGTERM: %v", cmd.ProcessState)
	}
}

func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// pollUntil polls cond until it holds, failing the test after a generous bound.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
