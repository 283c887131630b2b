package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const scatterBody = `strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1, s2]}
tables:
  customers: {key: customer_id, strategy: by_customer}
default_shard: s0
`

const scatterSchema = `CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text, region text,
	score numeric(10,2), visits int, vip bool, seen timestamptz)`

// scatterFixture is 3 shards behind the proxy and an unsharded oracle
// database (on the metadata server) holding the same 300 customers.
func scatterFixture(t *testing.T, top string) (*fixture, *pgx.Conn, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	f := startFixture(t, fixtureOptions{Shards: 3, Body: scatterBody, Top: top})
	proxyConn := f.Connect(t)
	oracle, err := pgx.Connect(ctx, f.Meta.DSN(f.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oracle.Close(context.Background()) })
	var rows []string
	for i := 1; i <= 300; i++ {
		name := fmt.Sprintf("'cust %03d é'", i%97)
		region := []string{"'north'", "'south'", "'east'", "NULL"}[i%4]
		score := fmt.Sprintf("%d.%02d", (i*37)%1000, i%100)
		if i%11 == 0 {
			score = "NULL"
		}
		rows = append(rows, fmt.Sprintf("(%d, %s, %s, %s, %d, %t, timestamptz '2024-01-01 00:00:00+00' + interval '%d hours')",
			i, name, region, score, i%13, i%3 == 0, i*7))
	}
	for _, c := range []*pgx.Conn{proxyConn, oracle} {
		if _, err := c.Exec(ctx, scatterSchema); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if _, err := c.Exec(ctx, "INSERT INTO customers VALUES "+r); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f, proxyConn, oracle
}

// rowsText runs sql and returns its rows as text, every column rendered by
// the server (so numeric scale and timestamp text are compared exactly).
func rowsText(t *testing.T, c *pgx.Conn, mode pgx.QueryExecMode, sql string, args ...any) ([]string, []string, error) {
	t.Helper()
	rows, err := c.Query(context.Background(), sql, append([]any{mode}, args...)...)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			return nil, nil, err
		}
		parts := make([]string, len(vals))
		for i, v := range vals {
			parts[i] = fmt.Sprint(v)
		}
		out = append(out, strings.Join(parts, "|"))
	}
	var cols []string
	for _, fd := range rows.FieldDescriptions() {
		cols = append(cols, fmt.Sprintf("%s:%d", fd.Name, fd.DataTypeOID))
	}
	return out, cols, rows.Err()
}

// TestScatterProtocols runs merged SELECTs in every pgx execution mode
// (simple protocol with literals, extended with parameters and binary
// results) and compares them with the oracle.
func TestScatterProtocols(t *testing.T) {
	_, px, oracle := scatterFixture(t, "")
	queries := []struct {
		sql  string
		args []any
	}{
		{"SELECT customer_id, name FROM customers ORDER BY name, customer_id DESC LIMIT 7 OFFSET 3", nil},
		{"SELECT customer_id, score FROM customers ORDER BY score DESC NULLS LAST, customer_id LIMIT $1 OFFSET $2", []any{int64(9), int64(4)}},
		{"SELECT count(*), sum(score), avg(score), min(name), max(seen) FROM customers", nil},
		{"SELECT region, count(*), avg(visits), bool_and(vip) FROM customers GROUP BY region ORDER BY region NULLS FIRST", nil},
		{"SELECT region, sum(visits) AS v FROM customers WHERE customer_id > $1 GROUP BY region HAVING count(*) > $2 ORDER BY v DESC", []any{int64(20), int64(50)}},
		{"SELECT DISTINCT region FROM customers ORDER BY 1", nil},
		{"SELECT customer_id, seen FROM customers WHERE customer_id IN (3, 17, 44, 250) ORDER BY seen DESC", nil},
		// Expressions over aggregates (Evaluate), with literals, parameters
		// and more groups than one evaluation batch holds.
		{"SELECT region, round(avg(score), 3) AS a, sum(visits) * $1 FROM customers GROUP BY region HAVING max(score) > 2 * min(score) + $2 ORDER BY sum(score) / count(*) DESC, 1", []any{int64(3), int64(1)}},
		{"SELECT coalesce(max(score), 0) - 1.5, count(*) FILTER (WHERE vip)::numeric / count(*) FROM customers WHERE visits > $1", []any{int64(4)}},
		{"SELECT customer_id * 3 + g AS k, count(*) + g FROM customers, generate_series(1, 3) g GROUP BY 1, g ORDER BY k", nil},
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec,
		pgx.QueryExecModeCacheStatement, pgx.QueryExecModeDescribeExec}
	for _, q := range queries {
		want, wantCols, err := rowsText(t, oracle, pgx.QueryExecModeSimpleProtocol, q.sql, q.args...)
		if err != nil {
			t.Fatalf("oracle %s: %v", q.sql, err)
		}
		if len(want) == 0 {
			t.Fatalf("oracle %s: no rows; the test data does not exercise the query", q.sql)
		}
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%s/%v", q.sql, mode), func(t *testing.T) {
				got, gotCols, err := rowsText(t, px, mode, q.sql, q.args...)
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("rows differ\n got %q\nwant %q", got, want)
				}
				if !reflect.DeepEqual(gotCols, wantCols) {
					t.Errorf("columns %v, want %v", gotCols, wantCols)
				}
			})
		}
	}
}

// TestScatterFailures checks that a shard error, a cancel and the memory
// budget each end the merged statement with the right SQLSTATE and leave
// the connection and the pools usable.
func TestScatterFailures(t *testing.T) {
	f, px, _ := scatterFixture(t, "merge_memory: 64kB\n")
	ctx := context.Background()
	check := func(t *testing.T, c *pgx.Conn) {
		t.Helper()
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 300 {
			t.Fatalf("after the failure: count = %d, %v", n, err)
		}
	}
	code := func(err error) string {
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			return pe.Code
		}
		return fmt.Sprint(err)
	}
	t.Run("shard error mid-merge", func(t *testing.T) {
		// Only the shard holding customer 150 divides by zero.
		_, err := px.Exec(ctx, "SELECT customer_id, 1 / (customer_id - 150) FROM customers ORDER BY customer_id")
		if code(err) != "22012" {
			t.Fatalf("got %v, want division_by_zero (22012)", err)
		}
		check(t, px)
	})
	t.Run("cancel", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		_, err := px.Exec(cctx, "SELECT customer_id, pg_sleep(0.05) FROM customers ORDER BY customer_id")
		if err == nil {
			t.Fatal("a 15 s statement finished within its 300 ms context")
		}
		c2 := f.Connect(t)
		check(t, c2)
	})
	t.Run("window memory budget", func(t *testing.T) {
		// 60,000 rows for one evaluation of their window: past 64kB.
		c := f.Connect(t)
		_, err := c.Exec(ctx, "SELECT a.customer_id, g, row_number() OVER () FROM customers a, generate_series(1, 200) g")
		if code(err) != "53200" {
			t.Fatalf("got %v, want out_of_memory (53200)", err)
		}
		check(t, c)
	})
	t.Run("memory budget", func(t *testing.T) {
		c := f.Connect(t)
		_, err := c.Exec(ctx, "SELECT a.customer_id, count(*) FROM customers a, generate_series(1, 200) g GROUP BY a.customer_id, g")
		if code(err) != "53200" {
			t.Fatalf("got %v, want out_of_memory (53200)", err)
		}
		check(t, c)
	})
}

// TestScatterEvaluate covers what the differential suite does not: an
// evaluation's error, parameters the client left untyped, and
// evaluations inside a transaction, which run on the transaction's own
// backends (two_phase_commit) and fail it as any error does.
func TestScatterEvaluate(t *testing.T) {
	f, px, oracle := scatterFixture(t, "two_phase_commit: true\n")
	ctx := context.Background()
	t.Run("error", func(t *testing.T) {
		// The sum is 0 only over all shards: the shards' partials raise
		// nothing; gathered, Postgres raises it as on one server.
		_, err := px.Exec(ctx, "SELECT 1 / (sum(visits) - (SELECT sum(visits) FROM customers)) FROM customers")
		if sqlState(err) != "22012" {
			t.Fatalf("subquery: got %v, want division_by_zero (22012)", err)
		}
		var total int64
		if err := oracle.QueryRow(ctx, "SELECT sum(visits) FROM customers").Scan(&total); err != nil {
			t.Fatal(err)
		}
		_, err = px.Exec(ctx, fmt.Sprintf("SELECT 1 / (sum(visits) - %d) FROM customers", total))
		if sqlState(err) != "22012" {
			t.Fatalf("got %v, want division_by_zero (22012)", err)
		}
		var n int64
		if err := px.QueryRow(ctx, "SELECT count(*) * 2 FROM customers").Scan(&n); err != nil || n != 600 {
			t.Fatalf("after the error: %d, %v", n, err)
		}
	})
	t.Run("window over a row value", func(t *testing.T) {
		// A record has no array type to bind all rows' values with.
		_, err := px.Exec(ctx, "SELECT customer_id, row_number() OVER (ORDER BY customer_id), ROW(name, region) FROM customers")
		if sqlState(err) != "0A000" {
			t.Fatalf("got %v, want 0A000", err)
		}
		var n int64
		if err := px.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil || n != 300 {
			t.Fatalf("after the refusal: %d, %v", n, err)
		}
	})
	t.Run("untyped parameters", func(t *testing.T) {
		// $1 is read by the shards only, $2 by the evaluation only; neither
		// has a type from the client (as psql's \bind sends them).
		sql := "SELECT region, sum(visits) + $2 FROM customers WHERE visits > $1 GROUP BY region ORDER BY region NULLS FIRST"
		res := px.PgConn().ExecParams(ctx, sql, [][]byte{[]byte("3"), []byte("10")}, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatal(res.Err)
		}
		want := oracle.PgConn().ExecParams(ctx, sql, [][]byte{[]byte("3"), []byte("10")}, nil, nil, nil).Read()
		if want.Err != nil {
			t.Fatal(want.Err)
		}
		if !reflect.DeepEqual(res.Rows, want.Rows) || len(res.Rows) != 4 {
			t.Fatalf("rows %q, want %q", res.Rows, want.Rows)
		}
	})
	t.Run("transaction", func(t *testing.T) {
		c := f.Connect(t)
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "UPDATE customers SET visits = visits + 100 WHERE customer_id IN (1, 2, 3)"); err != nil {
			t.Fatal(err)
		}
		// The evaluation sees the transaction's own writes.
		var over int64
		if err := tx.QueryRow(ctx, "SELECT count(*) FILTER (WHERE visits >= 100) * 10 FROM customers").Scan(&over); err != nil || over != 30 {
			t.Fatalf("in the transaction: %d, %v; want 30", over, err)
		}
		_, err = tx.Exec(ctx, "SELECT sum(visits) / (count(*) - 300) FROM customers")
		if sqlState(err) != "22012" {
			t.Fatalf("got %v, want 22012", err)
		}
		_, err = tx.Exec(ctx, "SELECT count(*) FROM customers")
		if sqlState(err) != "25P02" {
			t.Fatalf("after the error: %v, want in_failed_sql_transaction (25P02)", err)
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SELECT count(*) FILTER (WHERE visits >= 100) * 10 FROM customers").Scan(&over); err != nil || over != 0 {
			t.Fatalf("after ROLLBACK: %d, %v; want 0", over, err)
		}
	})
}

// TestScatterCollatedText: on shards whose databases do not order text
// by its bytes (ICU en-US: 'a' < 'B'), the proxy orders no text itself
// and says so, takes COLLATE "C" at its word, and leaves windows and
// gathered aggregates to Postgres, which orders by the database's
// collation.
func TestScatterCollatedText(t *testing.T) {
	f := startFixture(t, fixtureOptions{Shards: 3, Body: scatterBody,
		ShardDB: "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'"})
	px := f.Connect(t)
	ctx := context.Background()
	if _, err := px.Exec(ctx, scatterSchema); err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a", "B", "c", "D", "b"} {
		if _, err := px.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, $2)", int64(i+1), name); err != nil {
			t.Fatal(err)
		}
	}
	wantRefusals(t, px, "collation",
		"SELECT name FROM customers ORDER BY name",
		"SELECT max(name) FROM customers",
		"SELECT region, count(*) FROM customers GROUP BY region ORDER BY min(name)")
	for _, q := range []struct{ sql, want string }{
		{`SELECT string_agg(name, ',' ORDER BY name COLLATE "C") FROM customers`, "B,D,a,b,c"},
		{`SELECT string_agg(name, ',' ORDER BY name) FROM customers`, "a,b,B,c,D"},
	} {
		var got string
		if err := px.QueryRow(ctx, q.sql).Scan(&got); err != nil || got != q.want {
			t.Errorf("%s: %q, %v; want %q", q.sql, got, err, q.want)
		}
	}
	for _, q := range []struct{ sql, want string }{
		{`SELECT name, row_number() OVER (ORDER BY name) FROM customers ORDER BY 2`, "a|1,b|2,B|3,c|4,D|5"}, // en-US
		{`SELECT name FROM customers ORDER BY name COLLATE "C"`, "B,D,a,b,c"},
	} {
		got, _, err := rowsText(t, px, pgx.QueryExecModeSimpleProtocol, q.sql)
		if err != nil || strings.Join(got, ",") != q.want {
			t.Errorf("%s: %v, %v; want %s", q.sql, got, err, q.want)
		}
	}
}

// wantRefusals checks that each statement is refused with 0A000 and a
// message naming what.
func wantRefusals(t *testing.T, c *pgx.Conn, what string, sqls ...string) {
	t.Helper()
	for _, sql := range sqls {
		_, err := c.Exec(context.Background(), sql)
		if sqlState(err) != "0A000" || !strings.Contains(err.Error(), what) {
			t.Errorf("%s: %v, want 0A000 naming %s", sql, err, what)
		}
	}
}

// TestScatterCollatedColumn: a column with a collation of its own, created
// through the proxy while its connections are pooled, is not ordered by
// the proxy nor handed to an evaluation (where it would lose its
// collation); COLLATE "C" still is.
func TestScatterCollatedColumn(t *testing.T) {
	_, px, _ := scatterFixture(t, "")
	ctx := context.Background()
	if _, err := px.Exec(ctx, `ALTER TABLE customers ADD COLUMN nick text COLLATE "en-US-x-icu"`); err != nil {
		t.Fatal(err)
	}
	if _, err := px.Exec(ctx, `UPDATE customers SET nick = CASE WHEN customer_id % 2 = 0 THEN 'a' ELSE 'B' END`); err != nil {
		t.Fatal(err)
	}
	wantRefusals(t, px, "collation",
		"SELECT nick FROM customers ORDER BY nick",
		"SELECT max(nick) FROM customers",
		"SELECT string_agg(DISTINCT nick, ',' ORDER BY nick) FROM customers")
	var got string
	if err := px.QueryRow(ctx, `SELECT nick FROM customers ORDER BY nick COLLATE "C" LIMIT 1`).Scan(&got); err != nil || got != "B" {
		t.Errorf(`ORDER BY nick COLLATE "C": %q, %v; want B`, got, err)
	}
}
