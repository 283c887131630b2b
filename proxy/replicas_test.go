package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestReferenceCopiesStayEqual: a write to a reference table runs on
// every shard's copy, and each copy computes the statement on its own.
// random(), now(), a column's DEFAULT now() or serial, 'now'::timestamptz,
// ctid and LIMIT without ORDER BY gave each copy its own value or rows,
// with no error: INSERT INTO products VALUES (1, 'a', random()) left
// 0.62 on one shard and 8.72 on the other, and a read answered from
// whichever copy it reached. Such writes are now refused (0A000) and
// write nothing; the same values written as constants or parameters
// work, and the copies stay equal.
func TestReferenceCopiesStayEqual(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 200ms\n", Body: strings.Replace(defaultBody,
		"  products:    {reference: true}\n", "  products:    {reference: true}\n  countries:   {reference: true}\n", 1)})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, name text, price int, added timestamptz DEFAULT now())")
	mustExec(t, c, "CREATE TABLE countries (id serial PRIMARY KEY, name text)")
	mustExec(t, c, `CREATE FUNCTION jitter() RETURNS int LANGUAGE plpgsql AS $$BEGIN RETURN (random() * 100)::int; END$$`)
	mustExec(t, c, `CREATE FUNCTION twice(int) RETURNS int LANGUAGE sql AS 'SELECT $1 * 2'`)

	refused := func(sql, want string, args ...any) {
		t.Helper()
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			_, err := c.Exec(ctx, sql, append([]any{mode}, args...)...)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, want) || pgErr.Hint == "" {
				t.Errorf("%s (mode %v): %v; want 0A000 saying %q, with a hint", sql, mode, err, want)
			}
		}
	}
	// Learned from CREATE TABLE and CREATE FUNCTION through the proxy, at once.
	refused("INSERT INTO products (id, name, price) VALUES (1, 'a', 1)", "added's default now() in a write to reference table products")
	refused("INSERT INTO products VALUES (1, 'a', 1)", "added's default now()")
	refused("INSERT INTO products VALUES (1, 'a', 1, DEFAULT)", "added's default now()")
	refused("INSERT INTO products (id, name, price) SELECT 1, 'a', 1", "added's default now()")
	refused("INSERT INTO countries (name) VALUES ('x')", "id's default nextval")
	refused("INSERT INTO products VALUES (1, 'a', (random() * 10)::int, '2026-01-01')", "random() in a write to reference table products")
	refused("INSERT INTO products VALUES (1, 'a', jitter(), '2026-01-01')", "jitter(), which calls random")
	refused("INSERT INTO products VALUES (1, 'a', 1, 'now'::timestamptz)", "'now'")
	refused("INSERT INTO products VALUES (1, 'a', 1, $1::timestamptz)", "'now'", "now")
	refused("INSERT INTO products VALUES (1, 'a', 1, 'now')", "'now' without a cast") // the column makes it a moment
	refused("INSERT INTO products VALUES (1, 'a', 1, CURRENT_TIMESTAMP)", "CURRENT_TIMESTAMP")
	refused("INSERT INTO countries SELECT g, md5(random()::text) FROM generate_series(1, 3) g", "random()")
	refused("ALTER TABLE products ADD COLUMN checked timestamptz DEFAULT clock_timestamp()", "adding a column with default clock_timestamp() to reference table products")

	// The same rows written with values computed once.
	mustExec(t, c, "INSERT INTO products VALUES (1, 'a', 1, '2026-01-01'), (2, 'b', 2, '2026-01-02'), (3, 'c', 3, '2026-01-03')")
	mustExec(t, c, "INSERT INTO products (id, name, price, added) VALUES ($1, $2, $3, $4)", 4, "d", 4, time.Date(2026, 1, 4, 0, 0, 0, 0, time.UTC))
	mustExec(t, c, "INSERT INTO countries VALUES (1, 'x'), (2, 'y')")
	mustExec(t, c, "UPDATE products SET price = twice(price) WHERE id > 2")
	mustExec(t, c, "INSERT INTO products VALUES (5, 'e', 5, '2026-01-05') RETURNING now()") // only what the client sees
	mustExec(t, c, "DELETE FROM products WHERE id IN (SELECT id FROM products ORDER BY id LIMIT 1)")
	mustExec(t, c, "UPDATE products SET name = 'now'::text WHERE id = 2") // the word, as the hint says
	mustExec(t, c, "UPDATE products SET name = $1 WHERE id = 3", "Today") // a bound value is the application's text

	refused("UPDATE products SET price = (random() * 10)::int", "random()")
	refused("UPDATE products SET added = now() WHERE id = 2", "now()")
	refused("UPDATE products SET added = DEFAULT WHERE id = 2", "added's default now()")
	refused("INSERT INTO products VALUES (2, 'b', 2, '2026-01-02') ON CONFLICT (id) DO UPDATE SET added = DEFAULT", "added's default now()")
	refused("DELETE FROM products WHERE ctid = '(0,1)'", "system column ctid")
	refused("DELETE FROM products WHERE id IN (SELECT id FROM products LIMIT 1)", "LIMIT or OFFSET without ORDER BY")

	// A view over it is not in the map: a write through one would reach
	// the default shard's copy alone.
	mustExec(t, c, "CREATE VIEW cheap AS SELECT * FROM products WHERE price < 100")
	refused("UPDATE cheap SET price = 1 WHERE id = 2", "UPDATE through view cheap, which reads reference table products")

	// A trigger on a reference table runs on every copy.
	mustExec(t, c, `CREATE FUNCTION stamp() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN NEW.added := now(); RETURN NEW; END$$`)
	mustExec(t, c, "CREATE TRIGGER stamp BEFORE UPDATE ON products FOR EACH ROW EXECUTE FUNCTION stamp()")
	refused("UPDATE products SET price = 7 WHERE id = 2", "trigger stamp on products runs stamp(), which calls now")
	mustExec(t, c, "DROP TRIGGER stamp ON products")
	mustExec(t, c, "UPDATE products SET price = 7 WHERE id = 2")

	// Made on the shards directly: learned from their catalogs at the
	// next health check.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "ALTER TABLE countries ALTER COLUMN name SET DEFAULT gen_random_uuid()::text")
		mustExec(t, f.Direct(t, s), "CREATE FUNCTION tick() RETURNS bigint LANGUAGE sql AS 'SELECT extract(epoch FROM clock_timestamp())::bigint'")
	}
	// Polled in a transaction rolled back, so that a try before the
	// check has learned leaves nothing behind.
	waitRefused := func(sql, want string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_, err = tx.Exec(ctx, sql)
			_ = tx.Rollback(ctx)
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "0A000" && strings.Contains(pgErr.Message, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %v; want 0A000 saying %q", sql, err, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitRefused("INSERT INTO countries (id) VALUES (3)", "name's default (gen_random_uuid())::text")
	waitRefused("UPDATE products SET price = tick()::int", "tick(), which calls clock_timestamp")

	// Every copy holds the same rows.
	copyOf := func(shard, table string) string {
		var s string
		q := "SELECT coalesce(string_agg(t::text, ';' ORDER BY t::text), '') FROM " + table + " t"
		if err := f.Direct(t, shard).QueryRow(ctx, q).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, table := range []string{"products", "countries"} {
		if a, b := copyOf("s0", table), copyOf("s1", table); a != b || a == "" {
			t.Errorf("%s differs between its copies:\ns0: %s\ns1: %s", table, a, b)
		}
	}
	if got := copyOf("s0", "products"); strings.Count(got, ";") != 3 || !strings.Contains(got, "(2,now,7,") || !strings.Contains(got, "(3,Today,") {
		t.Errorf("products: %s; want rows 2 to 5, 2 named now with price 7, 3 named Today", got)
	}
}

// TestReferenceRowLocks: a row lock on a reference table takes one copy.
// Locked through a customer on s1, it took s1's copy, which a second
// transaction locking the same product through s0 did not see: both went
// on, and the second's UPDATE overwrote the first's. Such a lock is
// refused; locking the reference table alone takes the default shard's
// copy, which every lock of it shares, so two transactions exclude each
// other whatever shards they also use.
func TestReferenceRowLocks(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	mustExec(t, f.Connect(t), "INSERT INTO products VALUES (1, 'tea')")
	a, b := f.Connect(t), f.Connect(t)
	joinLock := fmt.Sprintf("SELECT p.name FROM customers c JOIN products p ON p.id = 1 WHERE c.customer_id = %d FOR UPDATE", f.b)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		if err := execIn(ctx, a, mode, joinLock); sqlState(err) != "0A000" {
			t.Errorf("%v: %s: %v; want 0A000", mode, joinLock, err)
		}
	}
	for _, q := range []string{"BEGIN", fmt.Sprintf("UPDATE customers SET credit = credit WHERE customer_id = %d", f.b),
		"SELECT name FROM products WHERE id = 1 FOR UPDATE"} {
		mustExec(t, a, q)
	}
	mustExec(t, b, "BEGIN")
	mustExec(t, b, fmt.Sprintf("UPDATE customers SET credit = credit WHERE customer_id = %d", f.a))
	if _, err := b.Exec(ctx, "SELECT name FROM products WHERE id = 1 FOR UPDATE NOWAIT"); sqlState(err) != "55P03" {
		t.Errorf("second lock of product 1: %v; want 55P03, the first holds it", err)
	}
	mustExec(t, b, "ROLLBACK")
	mustExec(t, a, "COMMIT")
	f.checkClean(t)
}
