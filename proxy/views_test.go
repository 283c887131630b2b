package proxy_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardedViews: a view is not in the shard map, so the proxy read
// it on the default shard alone: SELECT count(*) FROM big_orders, a view
// over sharded orders, counted that shard's rows only. Now a SELECT reads
// a plain view over a sharded table as its query (a subquery the router
// merges), once the view's definition is known: at once when CREATE VIEW
// through the proxy spells out its columns, else from the shards'
// catalogs (read when the transaction of a CREATE VIEW with * through the
// proxy ends, before the first client, and at every health check). Until
// then, and for writes through the view, it is refused with 0A000 (a
// shard hint still reads one shard's part). Views over reference or
// unmapped tables work as before.
func TestShardedViews(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int PRIMARY KEY, total int)")
	mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, name text)")
	for i := 1; i <= 20; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, $2)", i, i*10)
	}
	mustExec(t, c, "INSERT INTO products VALUES (1, 'a'), (2, 'b')")
	if directCount(t, f, "s0", "orders", "true") == 0 || directCount(t, f, "s1", "orders", "true") == 0 {
		t.Fatal("want rows on both shards")
	}
	count := func(c *pgx.Conn, sql string, want int64) {
		t.Helper()
		var n int64
		if err := c.QueryRow(ctx, sql).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", sql, n, err, want)
		}
	}

	// A definition with * is known from the shards' catalogs, which
	// spell out its columns: the session reads them when the CREATE
	// VIEW's transaction ends (TestLearnedAtCommit has one that spans a
	// transaction).
	var err error
	mustExec(t, c, "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 50")
	mustExec(t, c, "CREATE VIEW product_names AS SELECT name FROM products")
	count(c, "SELECT count(*) FROM big_orders", 15)
	count(c, "SELECT count(*) FROM big_orders WHERE customer_id = 7", 1)
	count(c, "/* shard: s1 */ SELECT count(*) FROM big_orders", directCount(t, f, "s1", "orders", "total > 50"))
	count(c, "SELECT count(*) FROM product_names", 2)
	count(c, "SELECT count(*) FROM orders WHERE total > 50", 15)

	// Columns spelled out: read as its query at once.
	mustExec(t, c, "CREATE VIEW large (who, amount) AS SELECT customer_id, total FROM orders WHERE total > 50")
	count(c, "SELECT count(*) FROM large", 15)
	count(c, "SELECT sum(amount) FROM large WHERE who > 10", 1550)
	count(c, "SELECT max(l.amount) FROM large l", 200)
	_, err = c.Exec(ctx, "UPDATE large SET amount = 0")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		t.Errorf("UPDATE through a view: %v, want 0A000", err)
	}

	// DROP VIEW through the proxy drops it on every shard, and forgets it.
	mustExec(t, c, "DROP VIEW big_orders")
	for _, s := range []string{"s0", "s1"} {
		if n := directCount(t, f, s, "pg_views", "viewname = 'big_orders'"); n != 0 {
			t.Errorf("big_orders is still a view on %s", s)
		}
	}
	mustExec(t, c, "CREATE TABLE big_orders (n int)")
	mustExec(t, c, "INSERT INTO big_orders VALUES (1)")
	count(c, "SELECT count(*) FROM big_orders", 1)

	// A view created on the shards directly is known from the catalog
	// check a proxy runs before taking its first client.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "CREATE VIEW direct_orders AS SELECT customer_id FROM orders")
		mustExec(t, f.Direct(t, s), "CREATE VIEW direct_again AS SELECT * FROM direct_orders")
	}
	f.serve(t, slog.LevelWarn)
	c2 := f.Connect(t)
	count(c2, "SELECT count(*) FROM direct_orders", 20)
	count(c2, "SELECT count(*) FROM direct_again WHERE customer_id > 5", 15)
	count(c2, "SELECT count(*) FROM product_names", 2)
	// The catalog's definition lists the columns * stood for, so
	// big_orders (made with *) is now read as its query too.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "DROP TABLE IF EXISTS big_orders") // an unmapped table: s0's
		mustExec(t, f.Direct(t, s), "CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 50")
	}
	f.serve(t, slog.LevelWarn)
	count(f.Connect(t), "SELECT count(*) FROM big_orders", 15)
}
