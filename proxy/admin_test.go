package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/config"
)

// adminDSN is the console's connection string for user (password secret).
func (f *fixture) adminDSN(user string) string {
	return fmt.Sprintf("postgres://%s:secret@%s/shardproxy?sslmode=disable", user, f.Addr)
}

// connectAdmin opens a console session over the simple protocol.
func connectAdmin(t *testing.T, f *fixture) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.adminDSN("admin"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// adminRows runs one console command and returns its rows as column ->
// value maps.
func adminRows(t *testing.T, c *pgx.Conn, cmd string) []map[string]string {
	t.Helper()
	rs, err := c.PgConn().Exec(context.Background(), cmd).ReadAll()
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	if len(rs) != 1 {
		t.Fatalf("%s: %d results, want 1", cmd, len(rs))
	}
	return resultMaps(rs[0])
}

func resultMaps(r *pgconn.Result) []map[string]string {
	var out []map[string]string
	for _, row := range r.Rows {
		m := make(map[string]string)
		for i, fd := range r.FieldDescriptions {
			m[fd.Name] = string(row[i])
		}
		out = append(out, m)
	}
	return out
}

// rowWhere returns the first row whose column col equals val, or nil.
func rowWhere(rows []map[string]string, col, val string) map[string]string {
	for _, r := range rows {
		if r[col] == val {
			return r
		}
	}
	return nil
}

// keysPerShard creates and fills customers and returns one key stored on
// each shard, found by asking the shards directly.
func keysPerShard(t *testing.T, f *fixture, app *pgx.Conn) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	if _, err := app.Exec(ctx, "CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text)"); err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 20; id++ {
		if _, err := app.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'c')", id); err != nil {
			t.Fatal(err)
		}
	}
	keys := map[string]int64{}
	for _, sh := range []string{"s0", "s1"} {
		var id *int64
		if err := f.Direct(t, sh).QueryRow(ctx, "SELECT min(customer_id) FROM customers").Scan(&id); err != nil {
			t.Fatal(err)
		}
		if id == nil {
			t.Fatalf("shard %s holds no customer", sh)
		}
		keys[sh] = *id
	}
	return keys
}

// TestAdminShow checks that every SHOW answers with plausible content
// after some traffic, with an app session holding a transaction open.
func TestAdminShow(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	app := f.Connect(t)
	keys := keysPerShard(t, f, app)
	tx, err := app.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "UPDATE customers SET name = 'x' WHERE customer_id = $1", keys["s1"]); err != nil {
		t.Fatal(err)
	}
	var backendPID uint32
	if err := f.Direct(t, "s1").QueryRow(ctx,
		"SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state LIKE 'idle in transaction%'").Scan(&backendPID); err != nil {
		t.Fatalf("finding the backend of the open transaction: %v", err)
	}
	adm := connectAdmin(t, f)

	t.Run("help", func(t *testing.T) {
		rows := adminRows(t, adm, "show help;")
		for _, cmd := range []string{"SHOW SHARDS", "SHOW ROUTE <sql>", "RELOAD", "PAUSE [shard]", "SHUTDOWN"} {
			if rowWhere(rows, "command", cmd) == nil {
				t.Errorf("SHOW HELP lacks %s: %v", cmd, rows)
			}
		}
	})
	t.Run("shards", func(t *testing.T) {
		rows := adminRows(t, adm, "SHOW SHARDS")
		if len(rows) != 2 {
			t.Fatalf("%d rows, want 2: %v", len(rows), rows)
		}
		for _, name := range []string{"s0", "s1"} {
			r := rowWhere(rows, "name", name)
			want := fmt.Sprintf("%s:%d", f.Shards[name].Host(), f.Shards[name].Port())
			if r == nil || r["address"] != want || r["status"] != "up" || r["latency_ms"] == "" || r["epoch"] != "0" || r["paused"] != "false" {
				t.Errorf("shard %s: %v, want address %s, up, a latency, epoch 0, not paused", name, r, want)
			}
		}
	})
	t.Run("pools", func(t *testing.T) {
		for _, r := range adminRows(t, adm, "SHOW POOLS") {
			if r["connects"] == "0" || r["acquires"] == "0" {
				t.Errorf("pool %s saw traffic but shows %v", r["shard"], r)
			}
		}
		if r := rowWhere(adminRows(t, adm, "SHOW POOLS"), "shard", "s1"); r == nil || r["in_use"] != "1" {
			t.Errorf("s1 has one backend in an open transaction; SHOW POOLS says %v", r)
		}
	})
	t.Run("clients", func(t *testing.T) {
		rows := adminRows(t, adm, "SHOW CLIENTS")
		r := rowWhere(rows, "user", "app")
		if r == nil || r["database"] != f.DB || r["state"] != "idle in transaction" || r["shard"] != "s1" ||
			!strings.HasPrefix(r["addr"], "127.0.0.1:") || r["last_statement"] == "" || r["connected_since"] == "" {
			t.Errorf("app session: %v in %v", r, rows)
		}
	})
	t.Run("servers", func(t *testing.T) {
		rows := adminRows(t, adm, "SHOW SERVERS")
		if len(rows) != 1 || rows[0]["shard"] != "s1" || rows[0]["backend_pid"] != fmt.Sprint(backendPID) || rows[0]["user"] != "app" {
			t.Errorf("SHOW SERVERS: %v, want s1 pid %d of user app", rows, backendPID)
		}
	})
	t.Run("transactions", func(t *testing.T) {
		rows := adminRows(t, adm, "SHOW TRANSACTIONS")
		if len(rows) != 1 || rows[0]["shard"] != "s1" || rows[0]["state"] != "open" || rows[0]["since"] == "" {
			t.Errorf("SHOW TRANSACTIONS: %v, want the app's open transaction on s1", rows)
		}
	})
	t.Run("stats", func(t *testing.T) {
		rows := adminRows(t, adm, "SHOW STATS")
		for _, sh := range []string{"s0", "s1"} {
			found := false
			for _, r := range rows {
				if r["shard"] == sh && r["statements"] != "0" && r["avg_ms"] != "" {
					found = true
				}
			}
			if !found {
				t.Errorf("no statements counted on %s: %v", sh, rows)
			}
		}
	})
	t.Run("config", func(t *testing.T) {
		rows := adminRows(t, adm, "SHOW CONFIG")
		for _, r := range rows {
			if strings.Contains(r["value"], "secret") {
				t.Errorf("SHOW CONFIG shows a password: %v", r)
			}
		}
		for key, want := range map[string]string{"admin_database": "shardproxy", "default_shard": "s0", "pool.size": "8", "user.admin": "admin"} {
			if r := rowWhere(rows, "key", key); r == nil || r["value"] != want {
				t.Errorf("%s = %v, want %s", key, r, want)
			}
		}
		if r := rowWhere(rows, "key", "shard.s1"); r == nil || !strings.Contains(r["value"], f.DB) {
			t.Errorf("shard.s1 = %v, want its DSN", r)
		}
	})
	t.Run("tables", func(t *testing.T) {
		rows := adminRows(t, adm, "SHOW TABLES")
		want := map[string]string{"table": "customers", "key": "customer_id", "strategy": "by_customer", "type": "hash", "shards": "s0,s1"}
		if r := rowWhere(rows, "table", "customers"); fmt.Sprint(r) != fmt.Sprint(want) {
			t.Errorf("customers: %v, want %v", r, want)
		}
		if r := rowWhere(rows, "table", "products"); r == nil || r["type"] != "reference" {
			t.Errorf("products: %v", r)
		}
	})
	t.Run("route", func(t *testing.T) {
		for sh, id := range keys {
			rows := adminRows(t, adm, fmt.Sprintf("show route SELECT name FROM customers WHERE customer_id = %d;", id))
			if len(rows) != 1 || rows[0]["shards"] != sh || rows[0]["route"] != "Single" || rows[0]["kind"] != "Select" || rows[0]["reason"] == "" {
				t.Errorf("key %d (stored on %s): %v", id, sh, rows)
			}
		}
		rows := adminRows(t, adm, "SHOW ROUTE SELECT 1; DELETE FROM customers")
		if len(rows) != 2 || rows[1]["shards"] != "s0,s1" || rows[1]["merge"] != "SumTag" {
			t.Errorf("two statements: %v", rows)
		}
		rows = adminRows(t, adm, "SHOW ROUTE SELECT pg_catalog.set_config('search_path', '', false); SET work_mem = '8MB'")
		if len(rows) != 2 || rows[0]["route"] != "served" || !strings.Contains(rows[0]["reason"], "like SET (search_path = '')") ||
			rows[1]["route"] != "served" || !strings.Contains(rows[1]["reason"], "carried to every backend") {
			t.Errorf("settings the proxy carries: %v", rows)
		}
		rows = adminRows(t, adm, "SHOW ROUTE SELECT name, count(*) FROM customers GROUP BY name ORDER BY 2 DESC LIMIT 3")
		if len(rows) != 1 || rows[0]["merge"] != "Plan" || !strings.Contains(rows[0]["plan"], "Aggregate") ||
			!strings.Contains(rows[0]["plan"], "Scatter") || !strings.Contains(rows[0]["plan"], "Limit") {
			t.Errorf("merged SELECT: %v", rows)
		}
		rows = adminRows(t, adm, fmt.Sprintf("SHOW ROUTE INSERT INTO customers (customer_id, name) VALUES (%d, 'a'), (%d, 'b')", keys["s1"], keys["s0"]))
		if len(rows) != 1 || rows[0]["merge"] != "SplitInsert" || rows[0]["shards"] != "s0,s1" ||
			!strings.Contains(rows[0]["plan"], "Insert s0 rows 2 ") || !strings.Contains(rows[0]["plan"], "Insert s1 rows 1 ") {
			t.Errorf("split INSERT: %v", rows)
		}
	})
	t.Run("several commands in one query", func(t *testing.T) {
		rs, err := adm.PgConn().Exec(ctx, "SHOW POOLS; show tables ;;SHOW HELP").ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) != 3 || len(rs[2].Rows) < 10 || rs[0].CommandTag.String() != "SHOW" {
			t.Errorf("%d results", len(rs))
		}
	})
}

// TestAdminErrors checks what the console refuses, and that the session
// survives each refusal.
func TestAdminErrors(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	adm := connectAdmin(t, f)
	ctx := context.Background()
	cases := []struct {
		cmd, code, msg string
	}{
		{"SHOW NOTHING", "42601", `unrecognized admin command "SHOW NOTHING"`},
		{"SELECT 1", "42601", `unrecognized admin command "SELECT 1"`},
		{"SHOW ROUTE", "42601", "SHOW ROUTE needs a statement"},
		{"SHOW ROUTE SELEC 1", "42601", "syntax error"},
		{"PAUSE s9", "42704", `shard "s9" does not exist`},
		{"RESUME s0", "55000", "shard s0 is not paused"},
		{"RELOAD", "0A000", "no reload hook"},
		{"SHUTDOWN", "0A000", "no shutdown hook"},
	}
	for _, tc := range cases {
		t.Run(tc.cmd, func(t *testing.T) {
			_, err := adm.PgConn().Exec(ctx, tc.cmd).ReadAll()
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != tc.code || !strings.Contains(pgErr.Message, tc.msg) {
				t.Fatalf("err %v, want %s %q", err, tc.code, tc.msg)
			}
			if tc.code == "42601" && strings.HasPrefix(tc.msg, "unrecognized") && pgErr.Hint != "SHOW HELP lists the commands" {
				t.Errorf("hint %q", pgErr.Hint)
			}
			if rows := adminRows(t, adm, "SHOW POOLS"); len(rows) != 2 {
				t.Errorf("session unusable after the error: %v", rows)
			}
		})
	}
	t.Run("extended protocol", func(t *testing.T) {
		var n int
		err := adm.QueryRow(ctx, "SHOW POOLS", pgx.QueryExecModeExec).Scan(&n)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
			t.Fatalf("err %v, want 0A000", err)
		}
		if rows := adminRows(t, adm, "SHOW POOLS"); len(rows) != 2 {
			t.Errorf("session unusable after the error: %v", rows)
		}
	})
	t.Run("non-admin user", func(t *testing.T) {
		_, err := pgx.Connect(ctx, f.adminDSN("app"))
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
			t.Fatalf("err %v, want 42501", err)
		}
	})
}

// TestAdminHooks checks RELOAD and SHUTDOWN through the hooks the serve
// command installs.
func TestAdminHooks(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	adm := connectAdmin(t, f)
	ctx := context.Background()

	bad := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(bad, []byte("listen: 127.0.0.1:0\nshards:\n  - {name: s0, dsn: 'host=x'}\nbogus_key: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Atomics: the hook runs on the console's goroutine, and the race
	// detector cannot see the round trip over the socket.
	var reloads atomic.Int32
	var path atomic.Value
	path.Store(f.cfgPath)
	f.Server.SetReloadHook(func() error {
		reloads.Add(1)
		_, err := config.Load(path.Load().(string))
		return err
	})
	if _, err := adm.PgConn().Exec(ctx, "RELOAD").ReadAll(); err != nil || reloads.Load() != 1 {
		t.Fatalf("RELOAD: %v, hook ran %d times", err, reloads.Load())
	}
	path.Store(bad)
	_, err := adm.PgConn().Exec(ctx, "reload;").ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "F0000" || !strings.Contains(pgErr.Message, bad+":") {
		t.Fatalf("RELOAD of an invalid file: %v, want F0000 naming %s:line", err, bad)
	}

	stopped := make(chan struct{})
	f.Server.SetShutdownHook(func() { close(stopped) })
	rs, err := adm.PgConn().Exec(ctx, "SHUTDOWN").ReadAll()
	if err != nil || len(rs) != 1 || rs[0].CommandTag.String() != "SHUTDOWN" {
		t.Fatalf("SHUTDOWN: %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("SHUTDOWN did not call the shutdown hook")
	}
}

// TestAdminPause checks PAUSE s0: it waits for the open transaction on s0,
// then holds new ones on s0 until RESUME while s1 keeps serving.
func TestAdminPause(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	keys := keysPerShard(t, f, f.Connect(t))
	adm := connectAdmin(t, f)

	running := f.Connect(t)
	tx, err := running.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE customers SET name = 'running' WHERE customer_id = $1", keys["s0"]); err != nil {
		t.Fatal(err)
	}
	// PAUSE returns only once the running transaction ends.
	paused := pauseAside(t, f, adm, "s0")
	pausedOnceEnded(t, paused, "a transaction on s0 was open", tx.Commit)

	held := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(ctx, f.DSN())
		if err != nil {
			held <- err
			return
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "UPDATE customers SET name = 'held' WHERE customer_id = $1", keys["s0"])
		held <- err
	}()
	s1 := f.Connect(t)
	if _, err := s1.Exec(ctx, "UPDATE customers SET name = 's1 works' WHERE customer_id = $1", keys["s1"]); err != nil {
		t.Fatalf("s1 while s0 is paused: %v", err)
	}
	select {
	case err := <-held:
		t.Fatalf("a statement on paused s0 finished (%v) before RESUME", err)
	default:
	}
	if _, err := adm.PgConn().Exec(ctx, "RESUME s0").ReadAll(); err != nil {
		t.Fatalf("RESUME: %v", err)
	}
	if err := <-held; err != nil {
		t.Fatalf("held statement after RESUME: %v", err)
	}
	var name string
	if err := f.Direct(t, "s0").QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", keys["s0"]).Scan(&name); err != nil || name != "held" {
		t.Fatalf("row on s0: %q, %v", name, err)
	}
}

// pauseAside sends PAUSE shard (PAUSE alone for "") on adm, which it keeps
// busy, and returns once SHOW SHARDS shows the shard (every shard for "")
// paused. The channel gives PAUSE's answer, which comes only when no
// transaction holds the shard any more. RESUME is sent when the test ends.
func pauseAside(t *testing.T, f *fixture, adm *pgx.Conn, shard string) <-chan error {
	t.Helper()
	ctx := context.Background()
	watch := connectAdmin(t, f)
	paused := make(chan error, 1)
	go func() {
		_, err := adm.PgConn().Exec(ctx, strings.TrimSpace("PAUSE "+shard)).ReadAll()
		paused <- err
	}()
	t.Cleanup(func() { watch.PgConn().Exec(ctx, strings.TrimSpace("RESUME "+shard)).ReadAll() })
	waitFor(t, func() bool {
		rows := adminRows(t, watch, "SHOW SHARDS")
		for _, r := range rows {
			if (shard == "" || r["name"] == shard) && r["paused"] != "true" {
				return false
			}
		}
		return len(rows) > 0
	})
	return paused
}

// pausedOnceEnded checks that PAUSE (pauseAside) has not answered while
// held says what holds it, ends that with end (a transaction's Commit or
// Rollback), and then requires PAUSE to succeed.
func pausedOnceEnded(t *testing.T, paused <-chan error, held string, end func(context.Context) error) {
	t.Helper()
	select {
	case err := <-paused:
		t.Fatalf("PAUSE returned (%v) while %s", err, held)
	default:
	}
	if err := end(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-paused; err != nil {
		t.Fatalf("PAUSE after %s no more: %v", held, err)
	}
}

// pausedShard reads SHOW SHARDS' paused column on a fresh console session.
func pausedShard(t *testing.T, f *fixture, shard string) bool {
	r := rowWhere(adminRows(t, connectAdmin(t, f), "SHOW SHARDS"), "name", shard)
	return r != nil && r["paused"] == "true"
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not reached in 10s")
}

// TestAdminPsql checks that psql prints the console's answers as tables.
func TestAdminPsql(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	psql, err := exec.LookPath("psql")
	if err != nil {
		psql = "/usr/lib/postgresql/15/bin/psql"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, psql, "-X", "-v", "ON_ERROR_STOP=1", "-d", f.adminDSN("admin"), "-c", "SHOW HELP")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("psql: %v, stderr %q", err, stderr.String())
	}
	out := stdout.String()
	for _, want := range []string{"command", "description", "-+-", "SHOW ROUTE <sql>", fmt.Sprintf("(%d rows)", 16)} {
		if !strings.Contains(out, want) {
			t.Errorf("psql output lacks %q:\n%s", want, out)
		}
	}
}

// TestAdminRouteDirectory checks that SHOW ROUTE of an INSERT into a
// directory table does not place its key, as routing it would.
func TestAdminRouteDirectory(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  h_int: {type: hash, key_type: int, shards: [s0, s1]}
  d_int: {type: directory, table: dir_int, fallback: h_int}
tables:
  tenants: {key: tenant_id, strategy: d_int}
default_shard: s0
`})
	adm := connectAdmin(t, f)
	rows := adminRows(t, adm, "SHOW ROUTE INSERT INTO tenants (tenant_id) VALUES (77); SELECT * FROM tenants WHERE tenant_id = 77")
	if len(rows) != 2 || rows[0]["route"] != "not evaluated" || !strings.Contains(rows[0]["reason"], "directory table tenants") {
		t.Fatalf("INSERT: %v", rows)
	}
	// Had the INSERT been routed, key 77 would now have an owner.
	if rows[1]["route"] != "None" || rows[1]["shards"] != "" {
		t.Errorf("SELECT of the never-inserted key 77: %v, want route None", rows[1])
	}
}

// TestPanicClosesOneConnection: a bug that panics while serving one
// client (here the console's RESHARD hook) closes that connection only;
// another client's open session and new connections keep working.
func TestPanicClosesOneConnection(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	other := f.Connect(t)
	f.Server.SetReshardHook(func(context.Context, []string) ([]string, error) { panic("bug in a hook") })
	adm := connectAdmin(t, f)
	if _, err := adm.PgConn().Exec(ctx, "RESHARD STATUS").ReadAll(); err == nil {
		t.Fatal("RESHARD with a panicking hook succeeded")
	}
	if !adm.PgConn().IsClosed() {
		// The error may have been seen as a read error before pgconn
		// noticed; the connection must be unusable either way.
		if err := adm.Ping(ctx); err == nil {
			t.Fatal("the panicking connection is still usable")
		}
	}
	var n int
	if err := other.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("another client after the panic: %v", err)
	}
	if err := f.Connect(t).QueryRow(ctx, "SELECT 2").Scan(&n); err != nil || n != 2 {
		t.Fatalf("a new client after the panic: %v", err)
	}
}

// TestHeldStatementAcrossReload: a statement routed and then held at the
// PAUSE gate runs on the map it was routed with when a reload (SetRuntime)
// comes meanwhile, as a reload applies to new transactions; after a
// resharding cutover (CutOver) it fails with 40001 instead, since its key
// may have moved.
func TestHeldStatementAcrossReload(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	keys := keysPerShard(t, f, f.Connect(t))
	adm := connectAdmin(t, f)
	for _, cutover := range []bool{false, true} {
		if _, err := adm.PgConn().Exec(ctx, "PAUSE s0").ReadAll(); err != nil {
			t.Fatalf("PAUSE: %v", err)
		}
		held := make(chan error, 1)
		c := f.Connect(t)
		go func() {
			_, err := c.Exec(ctx, "UPDATE customers SET name = 'held' WHERE customer_id = $1", keys["s0"])
			held <- err
		}()
		// Active: it has been read, routed, and waits at the gate.
		waitFor(t, func() bool {
			for _, r := range adminRows(t, adm, "SHOW CLIENTS") {
				if r["state"] == "active" && r["user"] == "app" {
					return true
				}
			}
			return false
		})
		rt := *f.Server.Runtime() // same pools: only the map object is new
		if cutover {
			f.Server.CutOver(&rt)
		} else {
			f.Server.SetRuntime(&rt)
		}
		if _, err := adm.PgConn().Exec(ctx, "RESUME s0").ReadAll(); err != nil {
			t.Fatalf("RESUME: %v", err)
		}
		err := <-held
		var pgErr *pgconn.PgError
		switch {
		case !cutover && err != nil:
			t.Errorf("held statement after a reload: %v, want it to run", err)
		case cutover && (!errors.As(err, &pgErr) || pgErr.Code != "40001"):
			t.Errorf("held statement after a cutover: %v, want 40001", err)
		}
	}
}
