package proxy_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardedTableSize: the size of a sharded table or of one of its
// indexes (learnt from the shards' catalogs) is refused with 0A000 in
// both protocols, and the connection goes on; a shard hint gets that
// shard's own size, and a reference table's size is a shard's copy.
func TestShardedTableSize(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 100ms\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int, order_id int, note text, PRIMARY KEY (customer_id, order_id))")
	mustExec(t, c, "CREATE INDEX orders_note_idx ON orders (note)")
	mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, name text)")
	for i := 1; i <= 200; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, $1, repeat('x', 100))", i)
	}
	mustExec(t, c, "INSERT INTO products SELECT g, 'p' FROM generate_series(1, 100) g")

	size := func(c *pgx.Conn, sql string, args ...any) (int64, error) {
		var n int64
		err := c.QueryRow(ctx, sql, args...).Scan(&n)
		return n, err
	}
	refused := func(sql, what string, args ...any) {
		t.Helper()
		_, err := size(c, sql, args...)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, what) ||
			!strings.Contains(pe.Hint, "on s0, s1") {
			t.Errorf("%s %v: want 0A000 naming %q, hint naming s0, s1; got %v", sql, args, what, err)
		}
		if n, err := size(c, "SELECT count(*) FROM orders"); err != nil || n != 200 {
			t.Errorf("after the refusal: count %d, %v", n, err)
		}
	}
	refused("SELECT pg_total_relation_size('orders')", "sharded table orders", pgx.QueryExecModeSimpleProtocol)
	refused("SELECT pg_table_size($1)", "sharded table orders", "public.orders")
	refused("SELECT pg_indexes_size('orders'::regclass)", "sharded table orders", pgx.QueryExecModeSimpleProtocol)

	// A named CREATE INDEX through the proxy is known at once; the
	// primary key's index from the shards' catalogs, read every 100ms here.
	refused("SELECT pg_relation_size('orders_note_idx')", "an index of sharded table orders")
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := size(c, "SELECT pg_relation_size('orders_pkey')")
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "0A000" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_relation_size('orders_pkey') never refused: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	refused("SELECT pg_relation_size('orders_note_idx')", "an index of sharded table orders")
	refused("SELECT pg_relation_size('orders_pkey')", "an index of sharded table orders", pgx.QueryExecModeSimpleProtocol)

	// What a shard hint asks for is that shard's own size; a reference
	// table's is its copy's on the default shard.
	for _, s := range []string{"s0", "s1"} {
		want, err := size(f.Direct(t, s), "SELECT pg_total_relation_size('orders')")
		if err != nil {
			t.Fatal(err)
		}
		got, err := size(c, "/* shard: "+s+" */ SELECT pg_total_relation_size('orders')")
		if err != nil || got != want || got == 0 {
			t.Errorf("%s's orders through a hint: %d, %v; directly %d", s, got, err, want)
		}
	}
	for _, q := range []string{"SELECT pg_total_relation_size('products')", "SELECT pg_relation_size('products_pkey')"} {
		want, err := size(f.Direct(t, "s0"), q)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := size(c, q); err != nil || got != want || got == 0 {
			t.Errorf("%s: %d, %v; s0 directly %d", q, got, err, want)
		}
	}
}
