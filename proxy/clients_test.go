package proxy_test

// Real clients through the proxy: psql, pgx in every query mode (prepared
// statements, batches, transactions, type round trips) and pgbench -S in
// all three -M modes. Each talks to the in-process fixture over TCP exactly
// as it would talk to Postgres.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/shardproxy/shardproxy/strategies"
)

// clientTool finds a Postgres client program (psql, pgbench): the
// harness's binaries first, then PATH. A missing tool fails the test,
// since `make deps` installs it.
func clientTool(t testing.TB, name string) string {
	t.Helper()
	if dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin/" + name); len(dirs) > 0 {
		return dirs[len(dirs)-1]
	}
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found (run make deps): %v", name, err)
	}
	return p
}

// clientEnv points libpq at the proxy as user app.
func (f *fixture) clientEnv() []string {
	host, port, _ := strings.Cut(f.Addr, ":")
	return append(os.Environ(), "PGHOST="+host, "PGPORT="+port, "PGUSER=app",
		"PGPASSWORD=secret", "PGDATABASE="+f.DB, "PGSSLMODE=disable", "PGCONNECT_TIMEOUT=10")
}

// runTool runs a client program against the proxy with stdin and returns
// its output and exit code.
func (f *fixture) runTool(t testing.TB, prog, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = f.clientEnv()
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", prog, err)
	}
	return out.String(), errb.String(), code
}

// keysByShard returns, per shard, the first n integer keys the named
// strategy places there, computed by the strategy itself.
func keysByShard(t testing.TB, f *fixture, strategy string, n int) map[string][]int64 {
	t.Helper()
	strats, err := strategies.Build(context.Background(), f.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := strats[strategy]
	out := map[string][]int64{}
	for k := int64(1); ; k++ {
		sh, err := s.Locate(context.Background(), strategies.Key{Type: strategies.KeyInt, Int: k}, strategies.Read)
		if err != nil {
			t.Fatal(err)
		}
		if len(out[sh]) < n {
			out[sh] = append(out[sh], k)
		}
		full := true
		for _, name := range s.Shards() {
			full = full && len(out[name]) >= n
		}
		if full {
			return out
		}
	}
}

// directCount counts rows matching where on one shard, bypassing the proxy.
func directCount(t testing.TB, f *fixture, shard, table, where string, args ...any) int64 {
	t.Helper()
	var n int64
	q := "SELECT count(*) FROM " + table + " WHERE " + where
	if err := f.Direct(t, shard).QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s on %s: %v", q, shard, err)
	}
	return n
}

// connectMode opens a pgx connection to the proxy whose default query mode
// (the one batches use) is mode.
func connectMode(t testing.TB, f *fixture, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(f.DSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func mustExec(t testing.TB, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func wantSQLState(t testing.TB, err error, code string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("got error %v, want SQLSTATE %s", err, code)
	}
}

// startCustomers starts a fixture with the default map and a customers
// table created through the proxy (so on every shard).
func startCustomers(t *testing.T) (*fixture, *pgx.Conn) {
	f := startFixture(t, fixtureOptions{})
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text NOT NULL)")
	mustExec(t, c, "CREATE TABLE orders (order_id bigint, customer_id bigint, total numeric(12,2))")
	return f, c
}

func TestPsql(t *testing.T) {
	f, c := startCustomers(t)
	psql := clientTool(t, "psql")
	keys := keysByShard(t, f, "by_customer", 4)
	a0, b0, a1 := keys["s0"][0], keys["s0"][1], keys["s1"][0]
	mustExec(t, c, "INSERT INTO customers (customer_id, name) VALUES ($1, 'ann')", a0)
	mustExec(t, c, "INSERT INTO customers (customer_id, name) VALUES ($1, 'bob')", a1)

	tests := []struct {
		name     string
		args     []string // after the common -X (no psqlrc)
		stdin    string
		wantOut  []string
		notOut   []string
		wantErr  []string
		wantCode int
	}{
		{name: "list tables", args: []string{"-c", `\d`},
			wantOut: []string{"List of relations", "public | customers | table", "public | orders    | table"}},
		{name: "describe table", args: []string{"-c", `\d customers`},
			wantOut: []string{`Table "public.customers"`, "customer_id | bigint", "not null",
				`"customers_pkey" PRIMARY KEY, btree (customer_id)`}},
		{name: "insert and point select",
			args: []string{"-c", fmt.Sprintf("INSERT INTO customers (customer_id, name) VALUES (%d, 'cid')", b0),
				"-c", fmt.Sprintf("SELECT name FROM customers WHERE customer_id = %d", b0)},
			wantOut: []string{"INSERT 0 1", " cid\n", "(1 row)"}},
		{name: "point select on the other shard",
			args:    []string{"-c", fmt.Sprintf("SELECT customer_id, name FROM customers WHERE customer_id = %d", a1)},
			wantOut: []string{fmt.Sprintf("%d | bob", a1), "(1 row)"}},
		{name: "syntax error then the session goes on",
			args:    []string{"-v", "ON_ERROR_STOP=0", "-f", "-"},
			stdin:   "SELEC 1;\nSELECT 40 + 2 AS answer;\n",
			wantErr: []string{`ERROR:  syntax error at or near "SELEC"`}, wantOut: []string{"answer", "42"}},
		{name: "ON_ERROR_STOP stops the script",
			args:    []string{"-f", "-"},
			stdin:   "\\set ON_ERROR_STOP on\nSELEC 1;\nSELECT 'not reached';\n",
			wantErr: []string{`ERROR:  syntax error at or near "SELEC"`}, notOut: []string{"not reached"}, wantCode: 3},
		{name: "begin commit",
			args: []string{"-f", "-"},
			stdin: fmt.Sprintf("BEGIN;\nINSERT INTO orders (order_id, customer_id, total) VALUES (1, %[1]d, 9.50);\nUPDATE customers SET name = 'ann2' WHERE customer_id = %[1]d;\nCOMMIT;\n"+
				"SELECT name FROM customers WHERE customer_id = %[1]d;\n", a0),
			wantOut: []string{"BEGIN", "INSERT 0 1", "UPDATE 1", "COMMIT", " ann2\n"}},
		{name: "begin rollback",
			args: []string{"-f", "-"},
			stdin: fmt.Sprintf("BEGIN;\nINSERT INTO orders (order_id, customer_id, total) VALUES (2, %[1]d, 1);\nROLLBACK;\n"+
				"SELECT count(*) AS n FROM orders WHERE customer_id = %[1]d AND order_id = 2;\n", a1),
			wantOut: []string{"ROLLBACK", " n \n---\n 0\n"}},
		{name: "error inside a transaction aborts it",
			args: []string{"-f", "-"},
			stdin: fmt.Sprintf("BEGIN;\nINSERT INTO orders (order_id, customer_id, total) VALUES (3, %[1]d, 1);\nSELEC;\nINSERT INTO orders (order_id, customer_id, total) VALUES (4, %[1]d, 1);\nCOMMIT;\n"+
				"SELECT count(*) AS n FROM orders WHERE customer_id = %[1]d AND order_id IN (3, 4);\n", a0),
			wantErr: []string{"ERROR:  syntax error", "ERROR:  current transaction is aborted"},
			wantOut: []string{"ROLLBACK", " n \n---\n 0\n"}},
		{name: "second shard inside a transaction is refused",
			args: []string{"-f", "-"},
			stdin: fmt.Sprintf("BEGIN;\nINSERT INTO orders (order_id, customer_id, total) VALUES (5, %[1]d, 1);\nINSERT INTO orders (order_id, customer_id, total) VALUES (6, %[2]d, 1);\nCOMMIT;\n"+
				"SELECT count(*) AS n FROM orders WHERE customer_id = %[1]d AND order_id = 5;\n", a0, a1),
			wantErr: []string{"ERROR:  transaction is pinned to shard s0"},
			wantOut: []string{"ROLLBACK", " n \n---\n 0\n"}},
		{name: "multi-statement on one shard",
			args:    []string{"-c", fmt.Sprintf("INSERT INTO orders (order_id, customer_id, total) VALUES (7, %[1]d, 3); SELECT order_id, total FROM orders WHERE customer_id = %[1]d AND order_id = 7", a1)},
			wantOut: []string{"        7 |  3.00", "(1 row)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := f.runTool(t, psql, tc.stdin, append([]string{"-X"}, tc.args...)...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d", code, tc.wantCode)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q", w)
				}
			}
			for _, w := range tc.notOut {
				if strings.Contains(out, w) {
					t.Errorf("stdout has %q", w)
				}
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr lacks %q", w)
				}
			}
			if tc.wantErr == nil && errOut != "" {
				t.Errorf("unexpected stderr: %s", errOut)
			}
			if t.Failed() {
				t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
			}
		})
	}
	// psql's catalog commands print what they print on Postgres itself
	// (the default shard, which holds every table).
	for _, meta := range []string{`\d`, `\dt`, `\di`, `\d customers`, `\d+ orders`, `\dn`, `\l shardproxy_none`} {
		t.Run("same as postgres "+meta, func(t *testing.T) {
			viaProxy, errOut, code := f.runTool(t, psql, "", "-X", "-c", meta)
			if code != 0 || errOut != "" {
				t.Fatalf("through the proxy: exit %d: %s", code, errOut)
			}
			direct, errOut, code := f.runTool(t, psql, "", "-X", "-c", meta, f.Shards["s0"].DSN(f.DB))
			if code != 0 || errOut != "" {
				t.Fatalf("direct: exit %d: %s", code, errOut)
			}
			if viaProxy != direct {
				t.Errorf("through the proxy:\n%s\ndirect:\n%s", viaProxy, direct)
			}
		})
	}
	// The committed rows are where the strategy says, and only there.
	if n := directCount(t, f, "s0", "orders", "order_id = 1 AND customer_id = $1", a0); n != 1 {
		t.Errorf("order 1 on s0: %d rows, want 1", n)
	}
	if n := directCount(t, f, "s1", "orders", "order_id = 7"); n != 1 {
		t.Errorf("order 7 on s1: %d rows, want 1", n)
	}
	if n := directCount(t, f, "s1", "orders", "order_id IN (1, 2, 3, 4, 5, 6)"); n != 0 {
		t.Errorf("s1 holds %d rows of orders that were rolled back or belong to s0", n)
	}
}

// Every pgx query mode: the simple protocol, the extended protocol with
// and without a describe step, and cached prepared statements.
var pgxModes = []pgx.QueryExecMode{
	pgx.QueryExecModeSimpleProtocol,
	pgx.QueryExecModeExec,
	pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeCacheStatement,
}

func TestPgxQueryModes(t *testing.T) {
	f, _ := startCustomers(t)
	keys := keysByShard(t, f, "by_customer", len(pgxModes))
	ctx := context.Background()
	for i, mode := range pgxModes {
		t.Run(mode.String(), func(t *testing.T) {
			c := f.Connect(t)
			for _, sh := range []string{"s0", "s1"} {
				id := keys[sh][i]
				name := fmt.Sprintf("%s-%d", mode, id)
				tag, err := c.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, $2)", mode, id, name)
				if err != nil {
					t.Fatal(err)
				}
				if tag.String() != "INSERT 0 1" {
					t.Fatalf("tag %q", tag)
				}
				var got string
				if err := c.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", mode, id).Scan(&got); err != nil {
					t.Fatal(err)
				}
				if got != name {
					t.Fatalf("name %q, want %q", got, name)
				}
				if n := directCount(t, f, sh, "customers", "customer_id = $1 AND name = $2", id, name); n != 1 {
					t.Fatalf("shard %s holds %d rows for key %d, want 1", sh, n, id)
				}
				// A missing key is no rows, not an error.
				err = c.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", mode, -id).Scan(&got)
				if !errors.Is(err, pgx.ErrNoRows) {
					t.Fatalf("missing key: %v, want ErrNoRows", err)
				}
			}
			// A server error keeps the connection usable.
			_, err := c.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, NULL)", mode, keys["s0"][i])
			wantSQLState(t, err, "23502")
			var one int
			if err := c.QueryRow(ctx, "SELECT 1", mode).Scan(&one); err != nil || one != 1 {
				t.Fatalf("after error: %v %d", err, one)
			}
		})
	}
}

func TestPgxPrepareNamed(t *testing.T) {
	f, c := startCustomers(t)
	ctx := context.Background()
	keys := keysByShard(t, f, "by_customer", 5)
	var all []int64
	for _, sh := range []string{"s0", "s1"} {
		all = append(all, keys[sh]...)
	}
	for _, id := range all {
		mustExec(t, c, "INSERT INTO customers (customer_id, name) VALUES ($1, $2)", id, fmt.Sprint("n", id))
	}
	if _, err := c.Prepare(ctx, "get_name", "SELECT name FROM customers WHERE customer_id = $1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(ctx, "rename", "UPDATE customers SET name = $2 WHERE customer_id = $1"); err != nil {
		t.Fatal(err)
	}
	// Preparing a name twice is the client's error, as on Postgres
	// (pgx itself skips an identical re-Prepare, so use the wire).
	err := c.PgConn().Exec(ctx, "PREPARE get_name AS SELECT 1").Close()
	wantSQLState(t, err, "42P05") // SQL and protocol prepared statements share one namespace
	for round := 0; round < 2; round++ {
		for _, id := range all {
			want := fmt.Sprintf("r%d-%d", round, id)
			tag, err := c.Exec(ctx, "rename", id, want)
			if err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("rename %d: %v %v", id, tag, err)
			}
			var got string
			if err := c.QueryRow(ctx, "get_name", id).Scan(&got); err != nil || got != want {
				t.Fatalf("get_name %d: %q %v, want %q", id, got, err, want)
			}
		}
	}
	if err := c.Deallocate(ctx, "get_name"); err != nil {
		t.Fatal(err)
	}
	_, err = c.Exec(ctx, "get_name", all[0])
	if err == nil {
		t.Fatal("executing a deallocated statement succeeded")
	}
}

func TestPgxBatch(t *testing.T) {
	f, _ := startCustomers(t)
	ctx := context.Background()
	keys := keysByShard(t, f, "by_customer", 9)
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement}
	for mi, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			c := connectMode(t, f, mode)
			k0, k1 := keys["s0"][mi*3:mi*3+3], keys["s1"][mi*3:mi*3+3]

			// Writes and reads for keys of one shard: one implicit transaction there.
			b := &pgx.Batch{}
			for _, k := range k0 {
				b.Queue("INSERT INTO customers (customer_id, name) VALUES ($1, $2)", k, fmt.Sprint("b", k))
			}
			b.Queue("UPDATE customers SET name = name || '!' WHERE customer_id = $1", k0[0])
			b.Queue("SELECT name FROM customers WHERE customer_id = $1", k0[0])
			br := c.SendBatch(ctx, b)
			for range k0 {
				if _, err := br.Exec(); err != nil {
					t.Fatal(err)
				}
			}
			if tag, err := br.Exec(); err != nil || tag.RowsAffected() != 1 {
				t.Fatalf("update: %v %v", tag, err)
			}
			var name string
			if err := br.QueryRow().Scan(&name); err != nil || name != fmt.Sprintf("b%d!", k0[0]) {
				t.Fatalf("read back: %q %v", name, err)
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}
			for _, k := range k1 {
				mustExec(t, c, "INSERT INTO customers (customer_id, name) VALUES ($1, $2)", k, fmt.Sprint("b", k))
			}

			// Reads across shards in one batch.
			b = &pgx.Batch{}
			order := []int64{k0[1], k1[0], k0[2], k1[1]}
			for _, k := range order {
				b.Queue("SELECT name FROM customers WHERE customer_id = $1", k)
			}
			br = c.SendBatch(ctx, b)
			for _, k := range order {
				if err := br.QueryRow().Scan(&name); err != nil || name != fmt.Sprint("b", k) {
					t.Fatalf("read %d: %q %v", k, name, err)
				}
			}
			if err := br.Close(); err != nil {
				t.Fatal(err)
			}

			// Writes on two shards in one batch cannot be one transaction:
			// refused, and nothing of it commits anywhere.
			marker := fmt.Sprintf("x-%s", mode)
			b = &pgx.Batch{}
			b.Queue("UPDATE customers SET name = $2 WHERE customer_id = $1", k0[1], marker)
			b.Queue("UPDATE customers SET name = $2 WHERE customer_id = $1", k1[1], marker)
			b.Queue("UPDATE customers SET name = $2 WHERE customer_id = $1", k0[2], marker)
			err := c.SendBatch(ctx, b).Close()
			wantSQLState(t, err, "0A000")
			for _, sh := range []string{"s0", "s1"} {
				if n := directCount(t, f, sh, "customers", "name = $1", marker); n != 0 {
					t.Errorf("shard %s committed %d rows of the refused batch", sh, n)
				}
			}
			// The connection is still usable.
			if err := c.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", k1[1]).Scan(&name); err != nil || name != fmt.Sprint("b", k1[1]) {
				t.Fatalf("after refused batch: %q %v", name, err)
			}
		})
	}
}

func TestPgxTransactions(t *testing.T) {
	f, _ := startCustomers(t)
	ctx := context.Background()
	keys := keysByShard(t, f, "by_customer", 20)
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement}
	for mi, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			c := f.Connect(t)
			for _, sh := range []string{"s0", "s1"} {
				ks := keys[sh][mi*4 : mi*4+4]
				// One shard's keys commit together.
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range ks[:2] {
					if _, err := tx.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'tx')", mode, k); err != nil {
						t.Fatal(err)
					}
				}
				var n int64
				if err := tx.QueryRow(ctx, "SELECT count(*) FROM customers WHERE customer_id = $1 OR customer_id = $2", mode, ks[0], ks[1]).Scan(&n); err != nil {
					t.Fatal(err)
				}
				if n != 2 {
					t.Fatalf("inside the transaction: %d rows, want 2", n)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if n := directCount(t, f, sh, "customers", "customer_id = ANY($1)", ks[:2]); n != 2 {
					t.Fatalf("shard %s: %d committed rows, want 2", sh, n)
				}

				// Rollback leaves nothing.
				tx, err = c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := tx.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'rb')", mode, ks[2]); err != nil {
					t.Fatal(err)
				}
				if err := tx.Rollback(ctx); err != nil {
					t.Fatal(err)
				}
				if n := directCount(t, f, sh, "customers", "customer_id = $1", ks[2]); n != 0 {
					t.Fatalf("rolled back row is on shard %s", sh)
				}
			}

			// A statement for another shard's key fails the whole transaction.
			a, b := keys["s0"][mi*4+3], keys["s1"][mi*4+3]
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'cross')", mode, a); err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'cross')", mode, b)
			wantSQLState(t, err, "0A000")
			_, err = tx.Exec(ctx, "SELECT 1", mode)
			wantSQLState(t, err, "25P02")
			if err := tx.Commit(ctx); !errors.Is(err, pgx.ErrTxCommitRollback) {
				t.Fatalf("commit after error: %v, want ErrTxCommitRollback", err)
			}
			for _, sh := range []string{"s0", "s1"} {
				if n := directCount(t, f, sh, "customers", "name = 'cross'"); n != 0 {
					t.Fatalf("shard %s committed %d rows of the failed transaction", sh, n)
				}
			}
			if c.PgConn().TxStatus() != 'I' {
				t.Fatalf("tx status %c after the failed transaction", c.PgConn().TxStatus())
			}
		})
	}
}

// typedRow holds one value of each type the type test round-trips.
type typedRow struct {
	Num   pgtype.Numeric
	TS    *time.Time
	U     pgtype.UUID
	J     map[string]any
	B     []byte
	Ints  []int32
	Texts []string
	Note  *string
}

// String renders r by meaning: numerics by value (Postgres may change
// their scale representation), times in UTC, NULLs as <nil>.
func (r typedRow) String() string {
	num, _ := r.Num.Value()
	ts := "<nil>"
	if r.TS != nil {
		ts = r.TS.UTC().Format(time.RFC3339Nano)
	}
	note := "<nil>"
	if r.Note != nil {
		note = strconv.Quote(*r.Note)
	}
	return fmt.Sprintf("num=%v ts=%s u=%v/%x j=%v b=%q/%v ints=%#v texts=%#v note=%s",
		num, ts, r.U.Valid, r.U.Bytes, r.J, r.B, r.B == nil, r.Ints, r.Texts, note)
}

func TestPgxTypes(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  typed: {key: customer_id, strategy: by_customer}
`})
	c := f.Connect(t)
	ctx := context.Background()
	mustExec(t, c, `CREATE TABLE typed (
		customer_id bigint PRIMARY KEY, num numeric, ts timestamptz, u uuid, j jsonb,
		b bytea, ints int4[], texts text[], note text)`)
	note := "it's \"quoted\""
	ts := time.Date(2024, 2, 29, 23, 59, 58, 123456000, time.UTC)
	values := typedRow{
		Num:   pgtype.Numeric{Int: big.NewInt(-1234567890123456789), Exp: -7, Valid: true},
		TS:    &ts,
		U:     pgtype.UUID{Bytes: [16]byte{0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 1, 2, 3, 4, 5, 6, 7, 8}, Valid: true},
		J:     map[string]any{"a": []any{1.0, "two", nil}, "ü": map[string]any{"x": true}},
		B:     []byte{0, 1, 2, 0xfe, 0xff, '\\', '\''},
		Ints:  []int32{1, -2, 2147483647},
		Texts: []string{"a,b", `c"d`, "", "NULL"},
		Note:  &note,
	}
	keys := keysByShard(t, f, "by_customer", 2*len(pgxModes))
	i := 0
	for _, mode := range pgxModes {
		for _, tc := range []struct {
			name string
			in   typedRow
		}{{"values", values}, {"nulls", typedRow{}}} {
			sh := []string{"s0", "s1"}[i%2]
			id := keys[sh][i/2]
			i++
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				in := tc.in
				// JSON goes as its text: the text-format modes do not know
				// the parameter type, and a nil map must be NULL, not 'null'.
				var j *string
				if in.J != nil {
					b, err := json.Marshal(in.J)
					if err != nil {
						t.Fatal(err)
					}
					j = new(string(b))
				}
				_, err := c.Exec(ctx, `INSERT INTO typed (customer_id, num, ts, u, j, b, ints, texts, note) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, mode,
					id, in.Num, in.TS, in.U, j, in.B, in.Ints, in.Texts, in.Note)
				if err != nil {
					t.Fatal(err)
				}
				var out typedRow
				err = c.QueryRow(ctx, `SELECT num, ts, u, j, b, ints, texts, note FROM typed WHERE customer_id = $1`, mode, id).
					Scan(&out.Num, &out.TS, &out.U, &out.J, &out.B, &out.Ints, &out.Texts, &out.Note)
				if err != nil {
					t.Fatal(err)
				}
				if got, want := out.String(), in.String(); got != want {
					t.Errorf("round trip:\n got %s\nwant %s", got, want)
				}
				if n := directCount(t, f, sh, "typed", "customer_id = $1 AND num IS NOT DISTINCT FROM $2", id, in.Num); n != 1 {
					t.Errorf("row not on shard %s", sh)
				}
			})
		}
	}
}

// TestPreparedAcrossBackends checks that prepared statements follow their
// clients from backend to backend under transaction pooling. Clients hold
// transactions open at the same time and take turns in a rotating order,
// so the pool hands each of them different backends from round to round;
// every statement reports the backend it ran on to prove it.
func TestPreparedAcrossBackends(t *testing.T) {
	f, c := startCustomers(t)
	ctx := context.Background()
	const clients, rounds = 6, 6 // clients < pool size: open transactions never wait
	keys := keysByShard(t, f, "by_customer", clients)["s0"]
	for _, k := range keys {
		mustExec(t, c, "INSERT INTO customers (customer_id, name) VALUES ($1, $2)", k, fmt.Sprint("p", k))
	}
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = f.Connect(t)
		// The same text on every client (shared on the backends by name)...
		if _, err := conns[i].Prepare(ctx, "shared", "SELECT name, pg_backend_pid() FROM customers WHERE customer_id = $1"); err != nil {
			t.Fatal(err)
		}
		// ...and one of its own.
		own := fmt.Sprintf("SELECT customer_id * %d, pg_backend_pid() FROM customers WHERE customer_id = $1", i+2)
		if _, err := conns[i].Prepare(ctx, "own", own); err != nil {
			t.Fatal(err)
		}
	}
	pids := make([]map[uint32]bool, clients)
	for i := range pids {
		pids[i] = map[uint32]bool{}
	}
	for r := 0; r < rounds; r++ {
		txs := make([]pgx.Tx, clients)
		for j := 0; j < clients; j++ {
			i := (j + r) % clients
			tx, err := conns[i].Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			txs[i] = tx
			var name string
			var pid uint32
			if err := tx.QueryRow(ctx, "shared", keys[i]).Scan(&name, &pid); err != nil {
				t.Fatalf("round %d client %d shared: %v", r, i, err)
			}
			if name != fmt.Sprint("p", keys[i]) {
				t.Fatalf("round %d client %d: name %q", r, i, name)
			}
			pids[i][pid] = true
		}
		for j := clients - 1; j >= 0; j-- { // release in another order than acquired
			i := (j + 2*r) % clients
			var v int64
			var pid uint32
			if err := txs[i].QueryRow(ctx, "own", keys[i]).Scan(&v, &pid); err != nil {
				t.Fatalf("round %d client %d own: %v", r, i, err)
			}
			if v != keys[i]*int64(i+2) {
				t.Fatalf("round %d client %d: own gave %d", r, i, v)
			}
			pids[i][pid] = true
			if err := txs[i].Commit(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, p := range pids {
		if len(p) < 2 {
			t.Errorf("client %d ran on %d backend(s) only; the test did not exercise re-preparing", i, len(p))
		}
	}
}

// TestPreparedAfterBackendKilled kills the proxy's backends behind a client
// that prepared a statement. Idle backends are probed before reuse, so an
// idle kill costs the client nothing (at most one 08006 if the pool skips
// probes of just-released backends); a kill inside a transaction loses that
// transaction: one failed statement, then the client rolls back and goes on
// on a new backend, where the statement is prepared again.
func TestPreparedAfterBackendKilled(t *testing.T) {
	f, c := startCustomers(t)
	ctx := context.Background()
	key := keysByShard(t, f, "by_customer", 1)["s0"][0]
	mustExec(t, c, "INSERT INTO customers (customer_id, name) VALUES ($1, 'k')", key)
	if _, err := c.Prepare(ctx, "q", "SELECT name, pg_backend_pid() FROM customers WHERE customer_id = $1"); err != nil {
		t.Fatal(err)
	}
	direct := f.Direct(t, "s0")
	run := func() (uint32, error) {
		var name string
		var pid uint32
		err := c.QueryRow(ctx, "q", key).Scan(&name, &pid)
		if err == nil && name != "k" {
			t.Fatalf("name %q", name)
		}
		return pid, err
	}
	// killAll terminates every backend of this test's database but ours and
	// waits until they are gone.
	killAll := func() {
		t.Helper()
		const others = "datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
		if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "+others); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var n int
			if err := direct.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE "+others).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d backends survived pg_terminate_backend", n)
			}
		}
	}

	t.Run("idle", func(t *testing.T) {
		before, err := run()
		if err != nil {
			t.Fatal(err)
		}
		killAll()
		after, err := run()
		if err != nil {
			// Only a pool that skips the probe for just-released backends
			// (pool.Options.ProbeAfter > 0) may hand out a dead one: the
			// client then sees one 08006 and the retry works.
			wantSQLState(t, err, "08006")
			t.Logf("first execution after the kill failed: %v", err)
			if after, err = run(); err != nil {
				t.Fatalf("second execution after the kill: %v", err)
			}
		}
		if after == before {
			t.Fatalf("still on killed backend %d", before)
		}
	})
	t.Run("in transaction", func(t *testing.T) {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := run(); err != nil {
			t.Fatal(err)
		}
		killAll()
		_, err = run()
		// The shard's own 57P01 (demoted from FATAL: only the backend
		// ends) or the proxy's 08006, whichever the client keeps.
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "08006" && pgErr.Code != "57P01" {
			t.Fatalf("got %v, want SQLSTATE 08006 or 57P01", err)
		}
		if c.IsClosed() {
			t.Fatal("the proxy closed the client connection")
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := run(); err != nil {
			t.Fatalf("after rollback: %v", err)
		}
	})
}

// pgbenchBody shards pgbench_accounts by aid over two shards; the other
// pgbench tables live unsharded on s0.
const pgbenchBody = `
strategies:
  by_aid: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  pgbench_accounts: {key: aid, strategy: by_aid}
default_shard: s0
`

// loadPgbench runs pgbench -i on every shard directly, then deletes from
// each shard the accounts the strategy places elsewhere.
func loadPgbench(t testing.TB, f *fixture, scale int) {
	t.Helper()
	ctx := context.Background()
	pgbench := clientTool(t, "pgbench")
	for name, srv := range f.Shards {
		cmd := exec.Command(pgbench, "-i", "-q", "-s", strconv.Itoa(scale), "-I", "dtgvp", srv.DSN(f.DB))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("pgbench -i on %s: %v\n%s", name, err, out)
		}
	}
	strats, err := strategies.Build(ctx, f.Config, nil)
	if err != nil {
		t.Fatal(err)
	}
	byAid := strats["by_aid"]
	elsewhere := map[string][]int64{}
	for aid := int64(1); aid <= int64(scale)*100000; aid++ {
		owner, err := byAid.Locate(ctx, strategies.Key{Type: strategies.KeyInt, Int: aid}, strategies.Read)
		if err != nil {
			t.Fatal(err)
		}
		for name := range f.Shards {
			if name != owner {
				elsewhere[name] = append(elsewhere[name], aid)
			}
		}
	}
	for name := range f.Shards {
		d := f.Direct(t, name)
		tag, err := d.Exec(ctx, "DELETE FROM pgbench_accounts WHERE aid = ANY($1)", elsewhere[name])
		if err != nil {
			t.Fatal(err)
		}
		if tag.RowsAffected() != int64(len(elsewhere[name])) {
			t.Fatalf("%s: deleted %d rows, want %d", name, tag.RowsAffected(), len(elsewhere[name]))
		}
		mustExec(t, d, "VACUUM ANALYZE pgbench_accounts")
	}
}

var (
	pgbenchFailed    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	pgbenchProcessed = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)(?:/(\d+))?`)
)

func TestPgbenchSelectOnly(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: pgbenchBody})
	loadPgbench(t, f, 1)
	// Every account is reachable through the proxy exactly once.
	var n int64
	for _, sh := range []string{"s0", "s1"} {
		n += directCount(t, f, sh, "pgbench_accounts", "true")
	}
	if n != 100000 {
		t.Fatalf("shards hold %d accounts, want 100000", n)
	}
	// pgbench -S does not look at its rows: check that the proxy finds
	// accounts of both shards.
	c := f.Connect(t)
	for aid := int64(1); aid <= 200; aid++ {
		var got int64
		if err := c.QueryRow(context.Background(), "SELECT aid FROM pgbench_accounts WHERE aid = $1", aid).Scan(&got); err != nil || got != aid {
			t.Fatalf("account %d through the proxy: %d %v", aid, got, err)
		}
	}
	pgbench := clientTool(t, "pgbench")
	for _, mode := range []string{"simple", "extended", "prepared"} {
		for _, run := range []struct {
			name string
			args []string
			want int // transactions, 0: any positive number
		}{
			{"fixed count", []string{"-t", "250"}, 4 * 250},
			{"timed", []string{"-T", "3"}, 0},
		} {
			t.Run(mode+"/"+run.name, func(t *testing.T) {
				args := append([]string{"-n", "-S", "-c", "4", "-j", "2", "-M", mode}, run.args...)
				out, errOut, code := f.runTool(t, pgbench, "", args...)
				if code != 0 {
					t.Fatalf("pgbench exit code %d\n%s\n%s", code, out, errOut)
				}
				m := pgbenchFailed.FindStringSubmatch(out)
				if m == nil || m[1] != "0" {
					t.Errorf("failed transactions: %v\n%s", m, out)
				}
				p := pgbenchProcessed.FindStringSubmatch(out)
				if p == nil {
					t.Fatalf("no processed count in\n%s", out)
				}
				done, _ := strconv.Atoi(p[1])
				if done <= 0 || run.want > 0 && (done != run.want || p[2] != strconv.Itoa(run.want)) {
					t.Errorf("processed %s, want %d\n%s", p[0], run.want, out)
				}
				if strings.Contains(errOut, "error") {
					t.Errorf("pgbench reported errors:\n%s", errOut)
				}
			})
		}
	}
}
