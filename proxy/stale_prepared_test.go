package proxy_test

import (
	"context"
	"testing"
)

// TestPreparedStatementLearnsCatalog: a statement a driver prepared
// before the proxy learnt a fact of the shards' catalogs (here, that a
// table is a partition of a sharded one) is analysed again at its next
// Bind. Before, pgx's cached statement kept reading orders_p1 as an
// unmapped table and counted the default shard's rows only.
func TestPreparedStatementLearnsCatalog(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int NOT NULL, n int NOT NULL) PARTITION BY LIST (n)")
	want := 0
	for i, s := range []string{"s0", "s1"} {
		d := f.Direct(t, s)
		mustExec(t, d, "CREATE TABLE orders_p1 (customer_id int NOT NULL, n int NOT NULL)")
		for k := 0; k <= i+1; k++ { // 2 rows on s0, 3 on s1
			mustExec(t, d, "INSERT INTO orders_p1 VALUES ($1, 1)", 100*i+k)
			want++
		}
	}
	count := func() int {
		t.Helper()
		var n int
		// pgx's default mode prepares the statement once and reuses it.
		if err := c.QueryRow(ctx, "SELECT count(*) FROM orders_p1 WHERE n = $1", 1).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != 2 {
		t.Fatalf("before the attach: %d rows; want s0's 2 (an unmapped table is the default shard's)", n)
	}
	mustExec(t, c, "ALTER TABLE orders ATTACH PARTITION orders_p1 FOR VALUES IN (1)")
	if n := count(); n != want {
		t.Errorf("after the attach, the prepared statement counts %d rows; want every shard's %d", n, want)
	}
}
