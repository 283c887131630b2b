package proxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestSmoke drives the basic flow a new user tries first: DDL broadcast,
// keyed inserts and point reads, in the simple and extended protocols.
func TestSmoke(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	if _, err := c.Exec(ctx, "CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text)"); err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 20; id++ {
		if _, err := c.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, $2)", id, "c"); err != nil {
			t.Fatalf("insert %d: %v", id, err)
		}
	}
	var total int64
	for _, sh := range []string{"s0", "s1"} {
		var n int64
		if err := f.Direct(t, sh).QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 || n == 20 {
			t.Errorf("shard %s holds %d of 20 rows; hash should spread them", sh, n)
		}
		total += n
	}
	if total != 20 {
		t.Fatalf("shards hold %d rows in all, want 20", total)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec, pgx.QueryExecModeCacheStatement} {
		var name string
		if err := c.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", mode, int64(7)).Scan(&name); err != nil {
			t.Fatalf("mode %v: %v", mode, err)
		}
		if name != "c" {
			t.Fatalf("mode %v: name %q", mode, name)
		}
	}
}
