package proxy_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// TestPartitionsOfShardedTables: orders is sharded by customer_id and
// partitioned by date on each shard. A partition is not in the shard
// map, so the proxy sent it to the default shard alone: a count over
// orders_2024 read one shard's part, and rows inserted or copied into
// orders_2025 all landed on the default shard, where a keyed read
// through orders could not find them. Partitions and inheritance
// children are now routed as the table they descend from, learned from
// DDL through the proxy at once and from the shards' catalogs.
func TestPartitionsOfShardedTables(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int, placed date, total int) PARTITION BY RANGE (placed)")
	mustExec(t, c, "CREATE TABLE orders_2024 PARTITION OF orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')")
	mustExec(t, c, "CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
	for i := 1; i <= 30; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, '2024-03-01'::date + $1::int, $1)", i)
	}
	// Into the partition itself, by statement and by COPY.
	for i := 1; i <= 10; i++ {
		mustExec(t, c, "INSERT INTO orders_2025 (customer_id, placed, total) VALUES ($1, '2025-02-01', 100)", i)
	}
	var rows strings.Builder
	for i := 11; i <= 20; i++ {
		fmt.Fprintf(&rows, "%d\t2025-06-01\t200\n", i)
	}
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader(rows.String()), "COPY orders_2025 (customer_id, placed, total) FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	count := func(sql string, want int64) {
		t.Helper()
		var n int64
		if err := c.QueryRow(ctx, sql).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", sql, n, err, want)
		}
	}
	on := func(table string) int64 {
		return directCount(t, f, "s0", table, "true") + directCount(t, f, "s1", table, "true")
	}
	if directCount(t, f, "s0", "orders_2024", "true") == 0 || directCount(t, f, "s1", "orders_2024", "true") == 0 {
		t.Fatal("want orders_2024 rows on both shards")
	}
	count("SELECT count(*) FROM orders_2024", 30)
	count("SELECT count(*) FROM orders_2025", 20)
	if n := on("orders_2025"); n != 20 {
		t.Errorf("orders_2025 holds %d rows on the shards; want 20", n)
	}
	// Each row inserted into the partition is on its key's shard: a
	// keyed read through the parent finds it.
	for i := 1; i <= 20; i++ {
		count(fmt.Sprintf("SELECT count(*) FROM orders WHERE customer_id = %d AND placed >= '2025-01-01'", i), 1)
		count(fmt.Sprintf("SELECT count(*) FROM orders_2025 WHERE customer_id = %d", i), 1)
	}
	count("SELECT sum(o.total) FROM orders_2025 o JOIN orders_2024 p USING (customer_id)", 3000)
	mustExec(t, c, "CREATE INDEX orders_2025_total ON orders_2025 (total)") // every shard
	for _, s := range []string{"s0", "s1"} {
		if n := directCount(t, f, s, "pg_indexes", "indexname = 'orders_2025_total'"); n != 1 {
			t.Errorf("CREATE INDEX ON orders_2025 did not reach %s", s)
		}
	}

	// Created on the shards directly: known from their catalogs (here
	// at a second proxy's first check), and routed as orders.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "CREATE TABLE orders_2026 PARTITION OF orders FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
	}
	f.serve(t, slog.LevelWarn)
	c2 := f.Connect(t)
	for i := 1; i <= 8; i++ {
		mustExec(t, c2, "INSERT INTO orders_2026 VALUES ($1, '2026-05-05', 1)", i)
	}
	for i := 1; i <= 8; i++ {
		var n int64
		if err := c2.QueryRow(ctx, "SELECT count(*) FROM orders WHERE customer_id = $1 AND placed >= '2026-01-01'", i).Scan(&n); err != nil || n != 1 {
			t.Errorf("customer %d's 2026 row: %d, %v; want 1", i, n, err)
		}
	}
	var n int64
	if err := c2.QueryRow(ctx, "SELECT count(*) FROM orders_2026").Scan(&n); err != nil || n != 8 || on("orders_2026") != 8 {
		t.Errorf("orders_2026: %d, %v; want 8", n, err)
	}
}
