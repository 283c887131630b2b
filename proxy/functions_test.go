package proxy_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardedFunctions: a function whose body reads a sharded table runs
// wherever the statement calling it goes, and sees that shard's rows
// only. SELECT count_orders() went to the default shard and counted its
// rows; SELECT * FROM orders_of(k) found nothing for a key on the other
// shard; a DO block inserted every row on one shard. Each answered
// without an error. Now such a statement is refused (0A000) unless a
// shard hint says where to run it, and nothing is written. Functions
// are learned from CREATE FUNCTION through the proxy at once and from
// the shards' catalogs; functions that read no sharded table work as
// before.
func TestShardedFunctions(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int PRIMARY KEY, total int)")
	mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, price int)")
	for i := 1; i <= 20; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, $2)", i, i*10)
	}
	mustExec(t, c, "INSERT INTO products VALUES (1, 5), (2, 7)")
	onS1 := int64(0)
	for k := 1; k <= 20 && onS1 == 0; k++ {
		if directCount(t, f, "s1", "orders", "customer_id = $1", k) == 1 {
			onS1 = int64(k)
		}
	}
	if onS1 == 0 || directCount(t, f, "s0", "orders", "true") == 0 {
		t.Fatal("want rows on both shards")
	}
	refused := func(c *pgx.Conn, sql, want string) {
		t.Helper()
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			_, err := c.Exec(ctx, sql, mode)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, want) ||
				!strings.Contains(pgErr.Hint, "/* shard: name */") {
				t.Errorf("%s (mode %v): %v; want 0A000 saying %q, with a hint", sql, mode, err, want)
			}
		}
	}
	count := func(c *pgx.Conn, sql string, want int64) {
		t.Helper()
		var n int64
		if err := c.QueryRow(ctx, sql).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", sql, n, err, want)
		}
	}

	// Created through the proxy (DDL: on every shard), in PL/pgSQL and SQL.
	mustExec(t, c, `CREATE FUNCTION count_orders() RETURNS bigint LANGUAGE plpgsql AS $$
		BEGIN RETURN (SELECT count(*) FROM orders); END $$`)
	mustExec(t, c, "CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1 * 2'")
	mustExec(t, c, "CREATE FUNCTION price_of(int) RETURNS int LANGUAGE sql AS 'SELECT price FROM products WHERE id = $1'")
	mustExec(t, c, `CREATE PROCEDURE add_order(c int, amount int) LANGUAGE sql AS $$INSERT INTO orders VALUES (c, amount)$$`)
	refused(c, "SELECT count_orders()", "function count_orders() reads sharded table orders")
	refused(c, "SELECT customer_id, count_orders() FROM orders WHERE customer_id = 1", "count_orders()")
	refused(c, "CALL add_order(1000, 1)", "function add_order() reads sharded table orders")
	refused(c, "DO $$BEGIN INSERT INTO orders SELECT g, 1 FROM generate_series(100, 120) g; END$$", "DO block reads sharded table orders")
	refused(c, "DO $$BEGIN UPDATE products SET price = 0; END$$", "DO block writes reference table products")
	count(c, "SELECT count(*) FROM orders WHERE customer_id >= 100", 0)
	count(c, "SELECT sum(price) FROM products", 12)
	// The connection is usable after each refusal, and functions that
	// touch no sharded table work as they did.
	count(c, "SELECT twice(total) FROM orders WHERE customer_id = 3", 60)
	count(c, "SELECT sum(twice(total)) FROM orders", 4200)
	count(c, "SELECT price_of(2)", 7)
	mustExec(t, c, "DO $$BEGIN PERFORM twice(1); END$$")
	// A hint runs it where the user says: that shard's rows.
	count(c, "/* shard: s1 */ SELECT count_orders()", directCount(t, f, "s1", "orders", "true"))

	// Created on the shards directly: known from their catalogs, here
	// at a second proxy's first check.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "CREATE FUNCTION orders_of(int) RETURNS SETOF orders LANGUAGE sql AS 'SELECT * FROM orders WHERE customer_id = $1'")
		mustExec(t, f.Direct(t, s), "CREATE FUNCTION total_of(int) RETURNS bigint LANGUAGE sql RETURN (SELECT sum(total) FROM orders_of($1))")
	}
	f.serve(t, slog.LevelWarn)
	c2 := f.Connect(t)
	refused(c2, "SELECT count(*) FROM orders_of(1)", "function orders_of() reads sharded table orders")
	refused(c2, "SELECT total_of(1)", "function total_of() calls orders_of(), which reads sharded table orders")
	count(c2, "/* shard: s1 */ SELECT total FROM orders_of("+strconv.FormatInt(onS1, 10)+")", onS1*10)
	// Or by key, without knowing shard names: every customer's row is
	// found where its key lives, in both protocols.
	for k := 1; k <= 20; k++ {
		key := strconv.Itoa(k)
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			var total int64
			sql := "/* shard_key: orders = " + key + " */ SELECT total FROM orders_of(" + key + ")"
			if err := c2.QueryRow(ctx, sql, mode).Scan(&total); err != nil || total != int64(k*10) {
				t.Errorf("%s (mode %v): %d, %v; want %d", sql, mode, total, err, k*10)
			}
		}
	}

	// Dropped through the proxy: forgotten at once.
	mustExec(t, c, "DROP FUNCTION count_orders()")
	mustExec(t, c, "CREATE FUNCTION count_orders() RETURNS bigint LANGUAGE sql AS 'SELECT 42::bigint'")
	count(c, "SELECT count_orders()", 42)
}

// TestTriggerWrites: a trigger runs on the shard its row is written on.
// Stock kept in products (a reference table) by a trigger on orders was
// decremented on the order's shard only, and the copies of products
// diverged without an error. Such a write is now refused and nothing is
// written; a trigger that writes a table of the same key (customers
// here) works, its rows on the right shard.
func TestTriggerWrites(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, stock int)")
	mustExec(t, c, "CREATE TABLE orders (customer_id int, product_id int, qty int)")
	mustExec(t, c, "CREATE TABLE customers (customer_id int PRIMARY KEY)")
	mustExec(t, c, "INSERT INTO products VALUES (1, 100)")
	mustExec(t, c, `CREATE FUNCTION take_stock() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN UPDATE products SET stock = stock - NEW.qty WHERE id = NEW.product_id; RETURN NEW; END $$`)
	mustExec(t, c, "CREATE TRIGGER stock AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION take_stock()")
	stock := func(shard string) int64 {
		return directCount(t, f, shard, "products, generate_series(1, stock)", "id = 1")
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		_, err := c.Exec(ctx, "INSERT INTO orders VALUES (1, 1, 5)", mode)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "writes reference table products on the row's shard only") {
			t.Errorf("insert firing take_stock (mode %v): %v; want 0A000", mode, err)
		}
	}
	if a, b := stock("s0"), stock("s1"); a != 100 || b != 100 {
		t.Errorf("stock on the shards: %d and %d; want 100 on both", a, b)
	}
	if n := directCount(t, f, "s0", "orders", "true") + directCount(t, f, "s1", "orders", "true"); n != 0 {
		t.Errorf("%d orders written", n)
	}

	// A trigger writing rows of the same key: allowed, rows where they belong.
	mustExec(t, c, "DROP TRIGGER stock ON orders")
	mustExec(t, c, `CREATE FUNCTION note_customer() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN INSERT INTO customers VALUES (NEW.customer_id) ON CONFLICT DO NOTHING; RETURN NEW; END $$`)
	mustExec(t, c, "CREATE TRIGGER note AFTER INSERT ON orders FOR EACH ROW EXECUTE FUNCTION note_customer()")
	for i := 1; i <= 10; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, 1, 1)", i)
	}
	for i := 1; i <= 10; i++ {
		var n int64
		if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE customer_id = $1", i).Scan(&n); err != nil || n != 1 {
			t.Errorf("customer %d noted by the trigger: %d, %v; want 1 on its shard", i, n, err)
		}
	}

	// A rule does the same.
	const rule = "CREATE RULE take AS ON INSERT TO orders DO ALSO UPDATE products SET stock = stock - new.qty WHERE id = new.product_id"
	mustExec(t, c, rule)
	if _, err := c.Exec(ctx, "INSERT INTO orders VALUES (12, 1, 1)"); err == nil || !strings.Contains(err.Error(), "rule take on orders writes reference table products") {
		t.Errorf("insert firing rule take: %v; want 0A000", err)
	}
	mustExec(t, c, "DROP RULE take ON orders")
	mustExec(t, c, "INSERT INTO orders VALUES (12, 1, 1)")

	// Created on the shards directly: known from their catalogs.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "CREATE TRIGGER stock2 AFTER UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION take_stock()")
		mustExec(t, f.Direct(t, s), "CREATE RULE take AS ON DELETE TO orders DO ALSO UPDATE products SET stock = stock + old.qty WHERE id = old.product_id")
	}
	f.serve(t, slog.LevelWarn)
	c2 := f.Connect(t)
	if _, err := c2.Exec(ctx, "UPDATE orders SET qty = 2 WHERE customer_id = 3"); err == nil || !strings.Contains(err.Error(), "trigger stock2 on orders") {
		t.Errorf("update firing stock2: %v; want 0A000", err)
	}
	if _, err := c2.Exec(ctx, "DELETE FROM orders WHERE customer_id = 3"); err == nil || !strings.Contains(err.Error(), "rule take on orders") {
		t.Errorf("delete firing rule take: %v; want 0A000", err)
	}
	if a, b := stock("s0"), stock("s1"); a != 100 || b != 100 {
		t.Errorf("stock on the shards: %d and %d; want 100 on both", a, b)
	}
	mustExec(t, c2, "INSERT INTO orders VALUES (11, 1, 1)") // fires note only
}
