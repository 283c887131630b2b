package proxy_test

import (
	"context"
	"testing"
)

// TestCtidOneShard: DELETE ... WHERE ctid = '(0,1)' deletes one row on
// Postgres; across shards it would delete one on each. It is refused and
// deletes nothing; with the shard key it deletes the one row.
func TestCtidOneShard(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE customers (customer_id int PRIMARY KEY, name text)")
	for k := 1; k <= 20; k++ {
		mustExec(t, c, "INSERT INTO customers VALUES ($1, 'c')", k)
	}
	count := func() int {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, q := range []string{"DELETE FROM customers WHERE ctid = '(0,1)'", "SELECT name FROM customers WHERE ctid = '(0,1)'"} {
		if _, err := c.Exec(ctx, q); sqlState(err) != "0A000" {
			t.Errorf("%s: %v, want 0A000", q, err)
		}
	}
	if n := count(); n != 20 {
		t.Fatalf("%d rows after a refused DELETE by ctid; want 20", n)
	}
	var k int
	if err := c.QueryRow(ctx, "SELECT customer_id FROM customers WHERE customer_id = 7 AND ctid = (SELECT ctid FROM customers WHERE customer_id = 7)").Scan(&k); err != nil || k != 7 {
		t.Fatalf("ctid with the key: %d, %v", k, err)
	}
	tag, err := c.Exec(ctx, "DELETE FROM customers WHERE customer_id = 7 AND ctid = (SELECT ctid FROM customers WHERE customer_id = 7)")
	if err != nil || tag.RowsAffected() != 1 || count() != 19 {
		t.Fatalf("DELETE by ctid with the key: %v, %v; want 1 row", tag, err)
	}
}
