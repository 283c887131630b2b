package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardproxy/shardproxy/proxy"
)

// pgTool finds a Postgres client program: on PATH, else Postgres 15's.
func pgTool(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := "/usr/lib/postgresql/15/bin/" + name
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found: %v", name, err)
	}
	return p
}

// runTool runs a Postgres client program and fails the test, with its
// output, if it fails; it returns its standard output.
func runTool(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, pgTool(t, name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

const dumpSchema = `
CREATE TABLE customers (customer_id int PRIMARY KEY, name text NOT NULL, balance numeric NOT NULL DEFAULT 0);
CREATE TABLE orders (customer_id int NOT NULL, order_id int NOT NULL, total numeric(10,2), note text,
	seq_no bigserial, PRIMARY KEY (customer_id, order_id), UNIQUE (customer_id, seq_no));
CREATE TABLE products (product_id int PRIMARY KEY, name text);
CREATE TABLE notes (id int PRIMARY KEY, body text);
CREATE INDEX orders_total ON orders (total);
CREATE VIEW big_orders AS SELECT customer_id, order_id, total FROM orders WHERE total > 100;
`

// TestPgDumpRoundTrip: pg_dump through the proxy writes the whole logical
// database, every shard's rows once, and the dump loads through a proxy
// over three shards (a different placement) into the same data. pg_dump
// sends what the proxy used to refuse: set_config(..., false) as a session
// setting, SQL PREPARE/EXECUTE, and one REPEATABLE READ READ ONLY
// transaction that reads every shard.
func TestPgDumpRoundTrip(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "two_phase_commit: true\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c := f.Connect(t)
	for _, q := range strings.Split(strings.TrimSpace(dumpSchema), ";\n") {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, q := range []string{
		"INSERT INTO customers VALUES " + rowsSQL(200, func(i int) string { return fmt.Sprintf("(%d, 'customer %d', %d)", i, i, i*10) }),
		"INSERT INTO orders VALUES " + rowsSQL(600, func(i int) string {
			note := "NULL"
			if i%7 == 0 {
				note = `E'tab\there, ''quote'', \\back'`
			}
			return fmt.Sprintf("(%d, %d, %d / 2.0, %s)", i%200+1, i, i*37%500, note)
		}),
		`INSERT INTO products VALUES (1, 'pen'), (2, 'ink'), (3, NULL)`,
		`INSERT INTO notes VALUES (1, 'on the default shard only')`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, s := range []string{"s0", "s1"} {
		var n int
		if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*) FROM orders").Scan(&n); err != nil || n == 0 || n == 600 {
			t.Fatalf("shard %s holds %d of the 600 orders (%v): the data must be spread", s, n, err)
		}
	}

	// s1's copy of the serial sequence has given out more numbers than the
	// default shard's (see below).
	if _, err := f.Direct(t, "s1").Exec(ctx, "SELECT setval('orders_seq_no_seq', 5000)"); err != nil {
		t.Fatal(err)
	}

	dump := filepath.Join(t.TempDir(), "dump.sql")
	runTool(t, "pg_dump", "--no-owner", "-f", dump, f.DSN())
	text, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	if got := copyRows(t, string(text), "public.orders"); got != 600 {
		t.Errorf("the dump holds %d orders, want 600", got)
	}
	if got := copyRows(t, string(text), "public.products"); got != 3 {
		t.Errorf("the dump holds %d products (a reference table, one copy), want 3", got)
	}

	// A serial column's sequence: each source shard's copy counted its
	// own rows; the dump sets it to the copy furthest along, here s1's,
	// which gave out more numbers than the default shard's.
	var furthest int64
	for _, s := range []string{"s0", "s1"} {
		var v int64
		if err := f.Direct(t, s).QueryRow(ctx, "SELECT last_value FROM orders_seq_no_seq").Scan(&v); err != nil {
			t.Fatal(err)
		}
		furthest = max(furthest, v)
	}
	if want := fmt.Sprintf("setval('public.orders_seq_no_seq', %d, true)", furthest); !strings.Contains(string(text), want) {
		t.Errorf("the dump does not hold %s", want)
	}

	// Load it through a proxy over three shards.
	g := startFixture(t, fixtureOptions{Shards: 3, Top: "two_phase_commit: true\n", Body: `
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1, s2]}
tables:
  customers:   {key: customer_id, strategy: by_customer}
  orders:      {key: customer_id, strategy: by_customer}
  products:    {reference: true}
default_shard: s0
`})
	runTool(t, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", g.DSN(), "-f", dump)

	gc := g.Connect(t)
	for _, q := range []string{
		"SELECT customer_id, name, balance FROM customers ORDER BY customer_id",
		"SELECT customer_id, order_id, total, note FROM orders ORDER BY customer_id, order_id",
		"SELECT product_id, name FROM products ORDER BY product_id",
		"SELECT id, body FROM notes ORDER BY id",
		"SELECT count(*), sum(total) FROM big_orders",
	} {
		want, got := queryText(t, c, q), queryText(t, gc, q)
		if want != got {
			t.Errorf("%s: restored data differs\nsource:   %.300s\nrestored: %.300s", q, want, got)
		}
	}
	total := 0
	for _, s := range []string{"s0", "s1", "s2"} {
		var n, p int
		d := g.Direct(t, s)
		if err := d.QueryRow(ctx, "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM products)").Scan(&n, &p); err != nil {
			t.Fatal(err)
		}
		if n == 0 || p != 3 {
			t.Errorf("restored shard %s holds %d orders and %d products", s, n, p)
		}
		total += n
	}
	if total != 600 {
		t.Errorf("the restored shards hold %d orders in all, want 600", total)
	}
	// Every restored shard's copy of the sequence is past every restored
	// row's number, so new rows do not repeat them.
	for _, s := range []string{"s0", "s1", "s2"} {
		var last, restored int64
		if err := g.Direct(t, s).QueryRow(ctx, "SELECT (SELECT last_value FROM orders_seq_no_seq), (SELECT max(seq_no) FROM orders)").Scan(&last, &restored); err != nil {
			t.Fatal(err)
		}
		if last != furthest || last < restored {
			t.Errorf("restored shard %s: sequence at %d, its rows numbered up to %d; want %d", s, last, restored, furthest)
		}
	}
}

// rowsSQL joins row(1) ... row(n) for a VALUES list.
func rowsSQL(n int, row func(i int) string) string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = row(i + 1)
	}
	return strings.Join(rows, ", ")
}

// copyRows counts the data lines of table's COPY block in a plain dump.
func copyRows(t testing.TB, dump, table string) int {
	t.Helper()
	_, rest, ok := strings.Cut(dump, "\nCOPY "+table+" ")
	if !ok {
		t.Fatalf("no COPY of %s in the dump", table)
	}
	_, rest, _ = strings.Cut(rest, "\n")
	block, _, _ := strings.Cut(rest, "\n\\.\n")
	if block == "" {
		return 0
	}
	return strings.Count(block, "\n") + 1
}

// queryText runs q and returns its rows as text.
func queryText(t testing.TB, c *pgx.Conn, q string) string {
	t.Helper()
	rows, err := c.Query(context.Background(), q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var b strings.Builder
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintln(&b, vals...)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return b.String()
}

// TestSessionSetConfig: set_config(name, value, false) as a statement of
// its own follows the session to every backend it uses next, as SET does,
// with set_config's exact value (an empty search_path, which SET cannot
// write); it never stays behind for another client; a rollback undoes it.
func TestSessionSetConfig(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "two_phase_commit: true\n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, other := f.Connect(t), f.Connect(t)
	if _, err := c.Exec(ctx, "CREATE TABLE customers (customer_id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	var v string
	if err := c.QueryRow(ctx, "SELECT pg_catalog.set_config('search_path', '', false)", pgx.QueryExecModeSimpleProtocol).Scan(&v); err != nil || v != "" {
		t.Fatalf("set_config answered %q, %v", v, err)
	}
	// The setting is the session's on every backend: another client's
	// transaction holds a backend of every shard, so c's statements move
	// between backends.
	pids := map[int32]bool{}
	for i := 0; i < 40; i++ {
		tx, err := other.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if _, err := tx.Exec(ctx, "SELECT count(*) FROM customers"); err != nil {
				t.Fatal(err)
			}
		}
		var pid int32
		var path, otherPath string
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid(), current_setting('search_path')").Scan(&pid, &path); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := other.QueryRow(ctx, "SHOW search_path").Scan(&otherPath); err != nil {
			t.Fatal(err)
		}
		pids[pid] = true
		if path != "" {
			t.Fatalf("statement %d: search_path %q on backend %d, want the empty list", i, path, pid)
		}
		if otherPath != `"$user", public` {
			t.Fatalf("another client's search_path is %q: the setting stayed on a pooled backend", otherPath)
		}
	}
	if len(pids) < 2 {
		t.Errorf("the session used %d backend(s); the test needs it to move", len(pids))
	}
	// Unqualified names are the session's own business now: refused, as
	// for a search_path set with SET; qualified ones work.
	if _, err := c.Exec(ctx, "SELECT count(*) FROM public.customers"); err != nil {
		t.Fatal(err)
	}

	// pg_dump's shape: set only where the setting exists.
	if _, err := c.Exec(ctx, "SELECT set_config(name, '7s', false) FROM pg_settings WHERE name = 'statement_timeout'"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT set_config(name, 'x', false) FROM pg_settings WHERE name = 'no_such_setting'"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := c.QueryRow(ctx, "SHOW statement_timeout").Scan(&v); err != nil || v != "7s" {
			t.Fatalf("statement_timeout %q, %v", v, err)
		}
	}

	// A rollback undoes a set_config made in the transaction, as in Postgres.
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT set_config('search_path', 'public', false)"); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, "SHOW search_path").Scan(&v); err != nil || v != "public" {
		t.Fatalf("in the transaction: %q, %v", v, err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SHOW search_path").Scan(&v); err != nil || v != "" {
		t.Fatalf("after ROLLBACK: %q, %v", v, err)
	}
	if _, err := c.Exec(ctx, "RESET search_path"); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SHOW search_path").Scan(&v); err != nil || v != `"$user", public` {
		t.Fatalf("after RESET: %q, %v", v, err)
	}

	// Where the proxy could not follow the setting, it refuses with 0A000.
	for _, q := range []string{
		"SELECT 1; SELECT set_config('search_path', '', false)",
		"SELECT set_config('search_path', lower('X'), false)",
		"SELECT set_config('shardproxy.shard', 's1', false)",
	} {
		if _, err := c.Exec(ctx, q); sqlState(err) != "0A000" {
			t.Errorf("%s: %v, want 0A000", q, err)
		}
	}

	// In the extended protocol, with the value a parameter (how drivers
	// send it) or a constant: the same session setting.
	tenantOn := func(conn *pgx.Conn) string {
		t.Helper()
		var v pgtype.Text
		if err := conn.QueryRow(ctx, "SELECT current_setting('app.tenant', true)").Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v.String
	}
	for i, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeDescribeExec} {
		want := fmt.Sprintf("tenant %d", i)
		if err := c.QueryRow(ctx, "SELECT set_config('app.tenant', $1, false)", mode, want).Scan(&v); err != nil || v != want {
			t.Fatalf("%v: set_config answered %q, %v", mode, v, err)
		}
		pids := map[int32]bool{}
		for j := 0; j < 8; j++ {
			tx, err := other.Begin(ctx) // holds a backend of the default shard, or none
			if err != nil {
				t.Fatal(err)
			}
			if j%2 == 1 {
				if _, err := tx.Exec(ctx, "SELECT count(*) FROM customers"); err != nil {
					t.Fatal(err)
				}
			}
			var pid int32
			if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			pids[pid] = true
			if got := tenantOn(c); got != want {
				t.Fatalf("%v: app.tenant %q on backend %d, want %q", mode, got, pid, want)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got := tenantOn(other); got != "" {
				t.Fatalf("another client sees app.tenant %q: the setting stayed on a pooled backend", got)
			}
		}
		if len(pids) < 2 {
			t.Errorf("%v: the session used %d backend(s); the test needs it to move", mode, len(pids))
		}
	}
	// Inside BEGIN, before any shard holds the transaction: the setting
	// reaches every shard the transaction joins, and ROLLBACK undoes it
	// while COMMIT keeps it, as in Postgres.
	for _, end := range []string{"rollback", "commit"} {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctx, "SELECT set_config('app.tenant', $1, false)", "in "+end).Scan(&v); err != nil {
			t.Fatal(err)
		}
		for id := 1; id <= 4; id++ { // both shards
			if _, err := tx.Exec(ctx, "INSERT INTO public.customers VALUES ($1) ON CONFLICT DO NOTHING", id); err != nil {
				t.Fatal(err)
			}
			var got string
			if err := tx.QueryRow(ctx, "SELECT current_setting('app.tenant') FROM public.customers WHERE customer_id = $1", id).Scan(&got); err != nil || got != "in "+end {
				t.Fatalf("%s: customer %d's shard has app.tenant %q, %v", end, id, got, err)
			}
		}
		want := "tenant 2" // from before the transaction
		if end == "commit" {
			err, want = tx.Commit(ctx), "in commit"
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := tenantOn(c); got != want {
			t.Errorf("after %s: app.tenant %q, want %q", end, got, want)
		}
	}
	if _, err := c.Exec(ctx, "SELECT set_config('app.tenant', 'tenant 2', false)"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PgConn().ExecParams(ctx, "SELECT set_config('search_path', '', false)", nil, nil, nil, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SHOW search_path").Scan(&v); err != nil || v != "" {
		t.Fatalf("after set_config in the extended protocol: %q, %v", v, err)
	}
	// A pipeline that fails before its Sync undoes it, as in Postgres.
	batch := &pgx.Batch{}
	batch.Queue("SELECT set_config('app.tenant', $1, false)", "doomed")
	batch.Queue("SELECT 1/0")
	if err := c.SendBatch(ctx, batch).Close(); sqlState(err) != "22012" {
		t.Fatalf("failing batch: %v", err)
	}
	if got := tenantOn(c); got != "tenant 2" {
		t.Errorf("after a failed pipeline: app.tenant %q, want the one before it", got)
	}
	if _, err := c.PgConn().ExecParams(ctx, "SELECT set_config('app.tenant', $1, false)", [][]byte{{0, 0, 0, 1}},
		[]uint32{pgtype.Int4OID}, []int16{pgtype.BinaryFormatCode}, nil).Close(); err == nil {
		t.Errorf("set_config with a binary int4 value: no error")
	}
	if _, err := c.Exec(ctx, "RESET search_path"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		tx, err = c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []int{1, 2, 3, 4} { // both shards
			if _, err := tx.Exec(ctx, "INSERT INTO public.customers VALUES ($1) ON CONFLICT DO NOTHING", id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx.Exec(ctx, "SELECT set_config('search_path', '', false)", mode); sqlState(err) != "0A000" {
			t.Errorf("%v, in a transaction on two shards: %v, want 0A000", mode, err)
		}
		_ = tx.Rollback(ctx)
	}
	if err := c.QueryRow(ctx, "SHOW search_path").Scan(&v); err != nil || v != `"$user", public` {
		t.Fatalf("after the refusals: %q, %v", v, err)
	}
}

// TestSQLPrepareExecute: SQL PREPARE and EXECUTE through the proxy answer
// as one Postgres server does (the same rows, column types and errors as
// the same statements on a shard directly), a prepared statement outlives
// transactions, and EXECUTE routes by the key its arguments give.
func TestSQLPrepareExecute(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "two_phase_commit: true\n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := f.Connect(t)
	direct := f.Direct(t, "s0")
	for _, q := range []string{
		"CREATE TABLE orders (customer_id int, order_id int, total numeric, PRIMARY KEY (customer_id, order_id))",
		"INSERT INTO orders VALUES " + rowsSQL(100, func(i int) string { return fmt.Sprintf("(%d, %d, %d * 1.5)", i%20+1, i, i) }),
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}

	// Table-less statements: the proxy and a shard must agree exactly.
	script := []string{
		"PREPARE untyped AS SELECT $1 AS v",
		"EXECUTE untyped(1)",
		"EXECUTE untyped('x')",
		"EXECUTE untyped(NULL)",
		"PREPARE typed(int, text) AS SELECT $1 + 1 AS n, upper($2) AS u, '$1' AS literal",
		"EXECUTE typed(41, 'abc')",
		"EXECUTE typed('-3', 'd')",
		"EXECUTE typed(1)",
		"EXECUTE typed('x', 'y')",
		"PREPARE arr(int[]) AS SELECT $1[2] AS second, cardinality($1)",
		"EXECUTE arr('{7,8,9}')",
		"PREPARE inferred AS SELECT $1::numeric * 2 AS twice, $2 || '!' AS bang",
		"EXECUTE inferred(2.5, 'hi')",
		"PREPARE inconsistent AS SELECT $1::int, $1::text",
		"PREPARE bad AS SELECT * FROM no_such_table",
		"PREPARE typed AS SELECT 1",
		"EXECUTE nope",
		"CREATE TABLE never AS EXECUTE typed('x', 'y')",
		"CREATE TABLE never AS EXECUTE typed(1)",
		"CREATE TABLE never AS EXECUTE nope",
		"PREPARE writes(int) AS INSERT INTO orders VALUES ($1, $1, 1) RETURNING order_id",
		"CREATE TABLE never AS EXECUTE writes(5)",
		"DEALLOCATE writes",
		"DEALLOCATE typed",
		"EXECUTE typed(1, 'a')",
		"DEALLOCATE nope",
	}
	for _, q := range script {
		want, wantErr := simpleResult(ctx, direct, q)
		got, gotErr := simpleResult(ctx, c, q)
		if want != got || errDetail(wantErr) != errDetail(gotErr) {
			t.Errorf("%s:\n direct: %s %s\n  proxy: %s %s", q, want, errDetail(wantErr), got, errDetail(gotErr))
		}
	}

	// CREATE TABLE AS EXECUTE makes the same table as on one server:
	// columns, types and rows (each target its own table, on s0).
	for _, q := range []string{
		"PREPARE made(int, text) AS SELECT $1 + 1 AS n, upper($2) AS u, now()::date - now()::date AS zero ORDER BY 1",
		"CREATE TABLE made_%s AS EXECUTE made(41, 'abc')",
		"CREATE TABLE IF NOT EXISTS made_%s AS EXECUTE made(1, 'z')",
		"CREATE TABLE made_empty_%s (a, b) AS EXECUTE made('7', 'q') WITH NO DATA",
		"SELECT * FROM made_%s",
		"SELECT count(*) FROM made_empty_%s",
		"SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid IN ('made_%s'::regclass, 'made_empty_%s'::regclass) AND attnum > 0 ORDER BY attrelid, attnum",
		"DEALLOCATE made",
	} {
		want, wantErr := simpleResult(ctx, direct, strings.ReplaceAll(q, "%s", "direct"))
		got, gotErr := simpleResult(ctx, c, strings.ReplaceAll(q, "%s", "proxy"))
		if want != got || errDetail(wantErr) != errDetail(gotErr) {
			t.Errorf("%s:\n direct: %s %s\n  proxy: %s %s", q, want, errDetail(wantErr), got, errDetail(gotErr))
		}
	}

	// Sharded statements: EXECUTE gives what the statement itself gives,
	// also across transactions.
	if _, err := c.Exec(ctx, "PREPARE by_customer(int) AS SELECT order_id, total FROM orders WHERE customer_id = $1 ORDER BY order_id"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "PREPARE totals AS SELECT count(*), sum(total) FROM orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "PREPARE add_order(int, int, numeric) AS INSERT INTO orders VALUES ($1, $2, $3)"); err != nil {
		t.Fatal(err)
	}
	for id := 1; id <= 20; id++ {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("EXECUTE add_order(%d, %d, 0.5)", id, 1000+id)); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		got := queryText(t, c, fmt.Sprintf("EXECUTE by_customer(%d)", id))
		want := queryText(t, c, fmt.Sprintf("SELECT order_id, total FROM orders WHERE customer_id = %d ORDER BY order_id", id))
		if got != want || !strings.Contains(got, fmt.Sprint(1000+id)) {
			t.Fatalf("EXECUTE by_customer(%d):\n%s\nwant\n%s", id, got, want)
		}
	}
	if got, want := queryText(t, c, "EXECUTE totals"), queryText(t, c, "SELECT count(*), sum(total) FROM orders"); got != want || !strings.HasPrefix(got, "120 ") {
		t.Errorf("EXECUTE totals: %s, want %s", got, want)
	}
	// EXPLAIN EXECUTE explains the bound statement: the shard's own plan
	// for a keyed one (as EXPLAIN of the plain statement), the proxy's plan
	// over the shards for the count.
	keyed := queryText(t, c, "EXPLAIN (COSTS off) EXECUTE by_customer(7)")
	if plain := queryText(t, c, "EXPLAIN (COSTS off) SELECT order_id, total FROM orders WHERE customer_id = 7::int ORDER BY order_id"); keyed != plain {
		t.Errorf("EXPLAIN EXECUTE by_customer(7):\n%s\nwant\n%s", keyed, plain)
	}
	if got := queryText(t, c, "EXPLAIN EXECUTE totals"); !strings.Contains(got, "Custom Scan (shardproxy)") {
		t.Errorf("EXPLAIN EXECUTE totals:\n%s", got)
	}
	// Each new order is on exactly one shard, its customer's.
	for _, id := range []int{1, 2, 3} {
		n := 0
		for _, s := range []string{"s0", "s1"} {
			var here, customer int
			if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*) FILTER (WHERE order_id = $2), count(*) FROM orders WHERE customer_id = $1", id, 1000+id).Scan(&here, &customer); err != nil {
				t.Fatal(err)
			}
			if here == 1 && customer < 2 {
				t.Errorf("order %d sits on %s without its customer's other orders", 1000+id, s)
			}
			n += here
		}
		if n != 1 {
			t.Errorf("order %d is on %d shards", 1000+id, n)
		}
	}
	if _, err := c.Exec(ctx, "CREATE TABLE some_orders AS EXECUTE by_customer(3)"); sqlState(err) != "0A000" {
		t.Errorf("CREATE TABLE AS EXECUTE of a sharded read: %v, want 0A000 (the table would hold one shard's rows)", err)
	}
	if _, err := c.Exec(ctx, "EXECUTE by_customer(now()::int)"); sqlState(err) != "0A000" {
		t.Errorf("EXECUTE with an expression: %v, want 0A000", err)
	}
	// Among other statements, EXECUTE would miss the Query's implicit
	// transaction: refused, and nothing of the Query runs.
	if _, err := c.Exec(ctx, "EXECUTE add_order(1, 2000, 1); EXECUTE add_order(1, 2000, 1)"); sqlState(err) != "0A000" {
		t.Errorf("two EXECUTEs in one query: %v, want 0A000", err)
	}
	if got := queryText(t, c, "SELECT count(*) FROM orders WHERE order_id = 2000"); got != "0\n" {
		t.Errorf("the refused query wrote: %q", got)
	}
	// Postgres resolves a prepared statement's names again under a new
	// search_path, holding it to the result type fixed at PREPARE. The
	// proxy learns that type at the first EXECUTE: one after the path
	// changed is refused, later ones read the new path's table.
	// (notes is not in the map: it lives on the default shard, where an
	// unqualified name resolves as the shard resolves it.)
	for _, q := range []string{"CREATE SCHEMA other", "CREATE TABLE public.notes (n int)", "CREATE TABLE other.notes (n int)",
		"INSERT INTO public.notes VALUES (1)", "PREPARE count_notes AS SELECT count(*) FROM notes", "SET search_path = other, public"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := c.Exec(ctx, "EXECUTE count_notes"); sqlState(err) != "0A000" {
		t.Errorf("first EXECUTE after search_path changed: %v, want 0A000", err)
	}
	if _, err := c.Exec(ctx, "RESET search_path"); err != nil {
		t.Fatal(err)
	}
	if got := queryText(t, c, "EXECUTE count_notes"); got != "1\n" {
		t.Errorf("EXECUTE count_notes with search_path back: %q", got)
	}
	if _, err := c.Exec(ctx, "SET search_path = other, public"); err != nil {
		t.Fatal(err)
	}
	if got := queryText(t, c, "EXECUTE count_notes"); got != "0\n" {
		t.Errorf("EXECUTE count_notes under search_path other, public: %q, want other.notes' 0 rows, as Postgres", got)
	}
	if _, err := c.Exec(ctx, "RESET search_path"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "DISCARD ALL"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "EXECUTE totals"); sqlState(err) != "26000" {
		t.Errorf("EXECUTE after DISCARD ALL: %v, want 26000", err)
	}
}

// simpleResult runs q in the simple protocol and returns its column types
// and rows as text, or its error.
func simpleResult(ctx context.Context, c *pgx.Conn, q string) (string, error) {
	res, err := c.PgConn().Exec(ctx, q).ReadAll()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, r := range res {
		for _, fd := range r.FieldDescriptions {
			fmt.Fprintf(&b, "%s:%d ", fd.Name, fd.DataTypeOID)
		}
		for _, row := range r.Rows {
			for _, v := range row {
				if v == nil {
					b.WriteString("NULL|")
				} else {
					fmt.Fprintf(&b, "%s|", v)
				}
			}
		}
		fmt.Fprintf(&b, " %s", r.CommandTag)
	}
	return b.String(), nil
}

// errDetail describes err with the fields a client can see.
func errDetail(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return fmt.Sprintf("%s %s (%s) at %d", pgErr.Code, pgErr.Message, pgErr.Detail, pgErr.Position)
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

// TestRepeatableReadReadOnlyAcrossShards: a REPEATABLE READ READ ONLY
// transaction reads every shard from one snapshot, taken at its first
// query on all of them at once: while transfers between customers on
// different shards commit all the time, its reads of each shard, made at
// different moments, always add up to the same total, and a read repeated
// later gives the same answer. It commits without two-phase commit. A
// read-write REPEATABLE READ transaction keeps the one-shard rule.
func TestRepeatableReadReadOnlyAcrossShards(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "two_phase_commit: true\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := f.Connect(t)
	const n, each = 40, 100
	for _, q := range []string{
		"CREATE TABLE customers (customer_id int PRIMARY KEY, balance int NOT NULL)",
		"INSERT INTO customers VALUES " + rowsSQL(n, func(i int) string { return fmt.Sprintf("(%d, %d)", i, each) }),
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	onShard := map[string][]int32{}
	for _, s := range []string{"s0", "s1"} {
		rows, err := f.Direct(t, s).Query(ctx, "SELECT customer_id FROM customers ORDER BY 1")
		if err != nil {
			t.Fatal(err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil || len(ids) == 0 {
			t.Fatalf("shard %s: %v %v", s, ids, err)
		}
		onShard[s] = ids
	}

	// Transfers between a customer on s0 and one on s1, one after the
	// other, until the readers are done.
	var transfers atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w, err := pgx.Connect(ctx, f.DSN())
		if err != nil {
			t.Error(err)
			return
		}
		defer w.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a, b := onShard["s0"][i%len(onShard["s0"])], onShard["s1"][i%len(onShard["s1"])]
			err := pgx.BeginFunc(ctx, w, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, "UPDATE customers SET balance = balance - 1 WHERE customer_id = $1", a); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "UPDATE customers SET balance = balance + 1 WHERE customer_id = $1", b)
				return err
			})
			if err != nil {
				t.Error(err)
				return
			}
			transfers.Add(1)
		}
	}()
	stopWriter := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopWriter()

	// sumOf reads the customers of one shard, with a statement that goes
	// to that shard alone (a key list).
	sumOf := func(ids []int32, mode pgx.QueryExecMode) int64 {
		list := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(ids)), ", "), "[]")
		var s int64
		if err := c.QueryRow(ctx, "SELECT sum(balance) FROM customers WHERE customer_id IN ("+list+")", mode).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	begins := []string{
		"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
		"BEGIN; SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY", // pg_dump's
		"START TRANSACTION READ ONLY, ISOLATION LEVEL REPEATABLE READ",
		// The session's defaults, carried to every backend like SET.
		"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ; SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY; BEGIN",
	}
	moved := 0
	for i := 0; i < 36; i++ {
		begin := begins[i%len(begins)]
		mode := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec}[i/len(begins)%3]
		for _, q := range strings.Split(begin, "; ") {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		before := transfers.Load()
		s0 := sumOf(onShard["s0"], mode)
		for transfers.Load() < before+3 { // commits land between the reads
			time.Sleep(time.Millisecond)
		}
		s1 := sumOf(onShard["s1"], mode)
		var all int64
		if err := c.QueryRow(ctx, "SELECT sum(balance) FROM customers", mode).Scan(&all); err != nil {
			t.Fatal(err)
		}
		again := sumOf(onShard["s0"], mode)
		if s0+s1 != n*each || all != n*each || again != s0 {
			t.Fatalf("%s (%v): s0 %d + s1 %d = %d, all %d, s0 again %d; want %d throughout",
				begin, mode, s0, s1, s0+s1, all, again, n*each)
		}
		if s0 != int64(len(onShard["s0"])*each) {
			moved++
		}
		if _, err := c.Exec(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
	}
	if moved == 0 {
		t.Error("no transaction saw a transfer: the test did not exercise concurrent commits")
	}
	if _, err := c.Exec(ctx, "RESET ALL"); err != nil {
		t.Fatal(err)
	}

	// BEGIN and a read of one shard in one Query, sent whole to that
	// shard: its snapshot is taken there before the proxy could take the
	// others' in the same window, so a read of another shard is refused
	// (taken later, their snapshots would see transfers this one does
	// not: the sums no longer add up).
	list := func(ids []int32) string {
		return strings.Trim(strings.Join(strings.Fields(fmt.Sprint(ids)), ", "), "[]")
	}
	res, err := c.PgConn().Exec(ctx, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT sum(balance) FROM customers WHERE customer_id IN ("+list(onShard["s0"])+")").ReadAll()
	if err != nil || len(res) != 2 || len(res[1].Rows) != 1 {
		t.Fatalf("BEGIN and a read of s0 in one Query: %v, %v", res, err)
	}
	first, err := strconv.ParseInt(string(res[1].Rows[0][0]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for before := transfers.Load(); transfers.Load() < before+3; {
		time.Sleep(time.Millisecond)
	}
	var second int64
	err = c.QueryRow(ctx, "SELECT sum(balance) FROM customers WHERE customer_id IN ("+list(onShard["s1"])+")").Scan(&second)
	if sqlState(err) != "0A000" {
		t.Errorf("a read of s1 after BEGIN and a read of s0 in one Query: %d + %d = %d, %v; want 0A000 (or %d)", first, second, first+second, err, n*each)
	}
	if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	// It commits with one COMMIT per shard.
	stopWriter()
	committed := proxy.TwoPCStats().Committed
	for _, q := range []string{"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "SELECT sum(balance) FROM customers", "COMMIT"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if got := proxy.TwoPCStats().Committed; got != committed {
		t.Errorf("a read-only transaction went through two-phase commit (%d -> %d)", committed, got)
	}

	// What stays refused: writing in it (Postgres' own error), and the
	// read-write and SERIALIZABLE levels across shards.
	for _, q := range []string{"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "SELECT count(*) FROM customers"} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Exec(ctx, "UPDATE customers SET balance = 0 WHERE customer_id = 1"); sqlState(err) != "25006" {
		t.Errorf("UPDATE in a read-only transaction: %v, want 25006", err)
	}
	if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	// Without two_phase_commit no transaction spans shards; this one is
	// refused as any other, not read from separate snapshots.
	g := startFixture(t, fixtureOptions{})
	gc := g.Connect(t)
	for _, q := range []string{
		"CREATE TABLE customers (customer_id int PRIMARY KEY, balance int NOT NULL)",
		"INSERT INTO customers VALUES " + rowsSQL(n, func(i int) string { return fmt.Sprintf("(%d, %d)", i, each) }),
		"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	} {
		if _, err := gc.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	if err := gc.QueryRow(ctx, "SELECT sum(balance) FROM customers").Scan(&total); sqlState(err) != "0A000" {
		t.Errorf("without two_phase_commit: sum %d, %v; want 0A000", total, err)
	}
	if _, err := gc.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}

	for _, begin := range []string{"BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY"} {
		if _, err := c.Exec(ctx, begin); err != nil {
			t.Fatal(err)
		}
		_, err := c.Exec(ctx, "SELECT sum(balance) FROM customers")
		if sqlState(err) != "0A000" {
			t.Errorf("%s across shards: %v, want 0A000", begin, err)
		}
		if _, err := c.Exec(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	}
}
