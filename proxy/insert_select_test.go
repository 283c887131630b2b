package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const insertSelectBody = `strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1, s2]}
  by_account: {type: hash, key_type: int, shards: [s0, s1, s2]}
tables:
  customers: {key: customer_id, strategy: by_customer}
  summary:   {key: customer_id, strategy: by_customer}
  accounts:  {key: account_id, strategy: by_account}
  regions:   {reference: true}
default_shard: s0
`

const insertSelectSchema = `
CREATE TABLE customers (customer_id bigint PRIMARY KEY, region text, score int);
CREATE TABLE summary (customer_id bigint, tag text, n int, PRIMARY KEY (customer_id, tag));
CREATE TABLE accounts (account_id bigint PRIMARY KEY, owner bigint);
CREATE TABLE regions (region text PRIMARY KEY, label text);`

// TestInsertSelectColocated: INSERT ... SELECT into a sharded table runs
// on every shard of its source when each row is inserted on the shard it
// is read from (the SELECT puts a colocated table's shard key in the
// target's key column). Against an unsharded oracle, every statement
// reports the same count and RETURNING rows, the tables end up equal, and
// every inserted row is on the shard that owns its key. Statements that
// would move rows across shards are refused and change nothing.
func TestInsertSelectColocated(t *testing.T) {
	ctx := context.Background()
	f := startFixture(t, fixtureOptions{Shards: 3, Body: insertSelectBody, Top: "two_phase_commit: true\n"})
	px := f.Connect(t)
	oracle, err := pgx.Connect(ctx, f.Meta.DSN(f.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oracle.Close(context.Background()) })
	for _, c := range []*pgx.Conn{px, oracle} {
		for _, q := range strings.Split(insertSelectSchema, ";") {
			if strings.TrimSpace(q) == "" {
				continue
			}
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		var rows []string
		for i := 1; i <= 120; i++ {
			rows = append(rows, fmt.Sprintf("(%d, %s, %d)", i, []string{"'north'", "'south'", "NULL"}[i%3], i*7%50))
		}
		for _, q := range []string{
			"INSERT INTO customers VALUES " + strings.Join(rows, ", "),
			"INSERT INTO regions VALUES ('north', 'N'), ('south', 'S')",
			"INSERT INTO accounts VALUES (1, 10), (2, 20), (3, 30)",
		} {
			if _, err := c.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
	}

	same := []string{
		"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'score', score FROM customers WHERE score > 20",
		"INSERT INTO summary (tag, customer_id, n) SELECT 'one', c.customer_id, 1 FROM customers c WHERE c.customer_id IN (5, 6, 7) RETURNING customer_id, tag",
		"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'key', 1 FROM customers WHERE customer_id = 42 RETURNING *",
		// GROUP BY, aggregates, HAVING, DISTINCT: every group has one key.
		"INSERT INTO summary (customer_id, tag, n) SELECT s.customer_id, 'count', count(*) FROM summary s JOIN customers c ON c.customer_id = s.customer_id GROUP BY s.customer_id HAVING count(*) >= 1",
		"INSERT INTO summary (customer_id, tag, n) SELECT DISTINCT customer_id, 'distinct', 0 FROM summary WHERE tag = 'score'",
		// Joins with reference tables, subqueries correlated on the key.
		"INSERT INTO summary (customer_id, tag, n) SELECT c.customer_id, r.label, length(r.region) FROM customers c JOIN regions r ON r.region = c.region WHERE c.score < 10",
		"INSERT INTO summary (customer_id, tag, n) SELECT c.customer_id, 'has', 2 FROM customers c WHERE EXISTS (SELECT 1 FROM summary s WHERE s.customer_id = c.customer_id AND s.tag = 'one')",
		"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'score', 0 FROM customers WHERE score = 49 ON CONFLICT (customer_id, tag) DO UPDATE SET n = summary.n + 100",
		"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'none', 0 FROM customers WHERE false",
		// The preserved side of an outer join is fine.
		"INSERT INTO summary (customer_id, tag, n) SELECT c.customer_id, 'outer', coalesce(s.n, -1) FROM customers c LEFT JOIN summary s ON s.customer_id = c.customer_id AND s.tag = 'one'",
		// A constant key: the upsert idiom, twice (the second inserts nothing).
		"INSERT INTO summary (customer_id, tag, n) SELECT 8, 'upsert', 1 WHERE NOT EXISTS (SELECT 1 FROM summary WHERE customer_id = 8 AND tag = 'upsert')",
		"INSERT INTO summary (customer_id, tag, n) SELECT 8, 'upsert', 1 WHERE NOT EXISTS (SELECT 1 FROM summary WHERE customer_id = 8 AND tag = 'upsert')",
		"INSERT INTO summary (customer_id, tag, n) SELECT 9::bigint, 'cnt', count(*) FROM customers WHERE customer_id = 9 RETURNING n",
		"INSERT INTO summary (customer_id, tag, n) SELECT 1, region, length(label) FROM regions", // a reference table is on every shard
		// On one shard, LIMIT and window functions are exact.
		"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'lim', row_number() OVER (ORDER BY score) FROM customers WHERE customer_id = 9 ORDER BY score LIMIT 1",
	}
	for _, q := range same {
		want, wantTag := insertSelectRun(t, oracle, q)
		got, gotTag := insertSelectRun(t, px, q)
		if wantTag != gotTag || !slices.Equal(want, got) {
			t.Errorf("%s\n proxy:  %s %v\n oracle: %s %v", q, gotTag, got, wantTag, want)
		}
	}
	// The extended protocol, with parameters (in the key condition too; a
	// parameter as the key, twice with the same one).
	upsert := "INSERT INTO summary (customer_id, tag, n) SELECT $1, $2, 1 WHERE NOT EXISTS (SELECT 1 FROM summary WHERE customer_id = $1 AND tag = $2)"
	colocated := "INSERT INTO summary (customer_id, tag, n) SELECT customer_id, $1, score FROM customers WHERE customer_id = $2 OR score = $3"
	for _, x := range []struct {
		q    string
		args []any
	}{
		{upsert, []any{int64(11), "ext-upsert"}}, {upsert, []any{int64(11), "ext-upsert"}}, {upsert, []any{int64(12), "ext-upsert"}},
		{colocated, []any{"ext", int64(3), int64(9)}}, {colocated, []any{"ext", int64(17), int64(40)}},
	} {
		want, err := oracle.Exec(ctx, x.q, x.args...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := px.Exec(ctx, x.q, x.args...)
		if err != nil || got.String() != want.String() {
			t.Errorf("%s %v: proxy %q %v, oracle %q", x.q, x.args, got, err, want)
		}
	}
	insertSelectSameTable(t, px, oracle, "summary")

	refused := []struct{ sql, msg string }{
		{"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'x', 1 FROM customers LIMIT 3", "with LIMIT or OFFSET across shards"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'x', row_number() OVER () FROM customers", "with window function row_number()"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT DISTINCT ON (region) customer_id, 'x', 1 FROM customers", "with DISTINCT ON"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'x', 1 FROM customers UNION ALL SELECT customer_id, 'y', 1 FROM customers", "with UNION"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT score, 'x', 1 FROM customers", "must take customer_id from the shard key"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT customer_id + 1, 'x', 1 FROM customers", "must take customer_id from the shard key"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT account_id, 'x', 1 FROM accounts", "sharded by another strategy"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'x', (SELECT max(score) FROM customers) FROM customers", "across shards"},
		{"INSERT INTO summary SELECT customer_id, 'x', 1 FROM customers", "needs a column list"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT 8, 'x', count(*) FROM customers", "with a constant shard key reads other shards"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT 8, 'x', 1 WHERE NOT EXISTS (SELECT 1 FROM summary WHERE tag = 'x')", "with a constant shard key reads other shards"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT s.customer_id, 'x', 1 FROM customers c LEFT JOIN summary s ON s.customer_id = c.customer_id AND s.tag = 'nope'", "must take customer_id from the shard key"},
		{"INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'x', count(*) FROM customers GROUP BY ROLLUP (customer_id)", "with GROUPING SETS, ROLLUP or CUBE"},
	}
	for _, r := range refused {
		_, err := px.Exec(ctx, r.sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, r.msg) {
			t.Errorf("%s: got %v, want 0A000 containing %q", r.sql, err, r.msg)
		}
	}
	insertSelectSameTable(t, px, oracle, "summary")

	var pe *pgconn.PgError
	// A NULL key is refused as in INSERT ... VALUES.
	if _, err := px.Exec(ctx, "INSERT INTO summary (customer_id, tag, n) SELECT NULL, 'x', 1"); !errors.As(err, &pe) || pe.Code != "23502" {
		t.Errorf("NULL key: got %v, want 23502", err)
	}

	// A unique violation on one shard leaves nothing on the others.
	_, err = px.Exec(ctx, "INSERT INTO summary (customer_id, tag, n) SELECT customer_id, 'score', 0 FROM customers WHERE score > 10")
	if !errors.As(err, &pe) || pe.Code != "23505" {
		t.Fatalf("duplicate keys: got %v, want 23505", err)
	}
	insertSelectSameTable(t, px, oracle, "summary")

	// Every row is on the shard that owns its key: the one its customer is on.
	total := 0
	for _, shard := range []string{"s0", "s1", "s2"} {
		d := f.Direct(t, shard)
		var stray, n int
		if err := d.QueryRow(ctx, `SELECT count(*) FILTER (WHERE c.customer_id IS NULL), count(*)
			FROM summary s LEFT JOIN customers c USING (customer_id)`).Scan(&stray, &n); err != nil {
			t.Fatal(err)
		}
		if stray != 0 {
			t.Errorf("%s holds %d summary rows whose customer lives on another shard", shard, stray)
		}
		total += n
	}
	if total == 0 {
		t.Fatal("no summary rows on the shards: the test exercised nothing")
	}
}

// insertSelectRun runs q and returns its RETURNING rows (sorted) and its
// command tag.
func insertSelectRun(t *testing.T, c *pgx.Conn, q string) ([]string, string) {
	t.Helper()
	rows, err := c.Query(context.Background(), q, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	var out []string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(vals...))
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	slices.Sort(out)
	return out, rows.CommandTag().String()
}

// insertSelectSameTable fails the test unless table has the same rows
// through the proxy as on the oracle.
func insertSelectSameTable(t *testing.T, px, oracle *pgx.Conn, table string) {
	t.Helper()
	q := "SELECT customer_id, tag, n FROM " + table
	want, _ := insertSelectRun(t, oracle, q)
	got, _ := insertSelectRun(t, px, q)
	if !slices.Equal(want, got) {
		t.Fatalf("%s differs: proxy has %d rows, oracle %d", table, len(got), len(want))
	}
}
