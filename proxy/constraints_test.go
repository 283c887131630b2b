package proxy_test

import (
	"context"
	"testing"
)

// TestUniqueNeedsShardKey: UNIQUE (email) on sharded customers was
// created on every shard, each enforcing it on its own rows: the same
// email was then taken twice, once on each shard, with no error. Such a
// constraint is refused (0A000) and made nowhere; with the shard key
// among its columns it works, and a reference table keeps any.
func TestUniqueNeedsShardKey(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	_, err := c.Exec(ctx, "CREATE TABLE customers (customer_id int, email text UNIQUE)")
	wantSQLState(t, err, "0A000")
	for _, s := range []string{"s0", "s1"} {
		var n int
		if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'customers'").Scan(&n); err != nil || n != 0 {
			t.Fatalf("%s: %d customers tables, %v; want none", s, n, err)
		}
	}
	mustExec(t, c, "CREATE TABLE customers (customer_id int PRIMARY KEY, email text)")
	_, err = c.Exec(ctx, "CREATE UNIQUE INDEX ON customers (email)")
	wantSQLState(t, err, "0A000")
	_, err = c.Exec(ctx, "ALTER TABLE customers ADD CONSTRAINT one_email UNIQUE (email)")
	wantSQLState(t, err, "0A000")
	mustExec(t, c, "ALTER TABLE customers ADD CONSTRAINT one_email UNIQUE (customer_id, email)")
	mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, sku text UNIQUE)")
	// The key's own uniqueness holds across shards: one key, one shard.
	mustExec(t, c, "INSERT INTO customers VALUES (1, 'a@example.com'), (2, 'b@example.com')")
	_, err = c.Exec(ctx, "INSERT INTO customers VALUES (2, 'c@example.com')")
	wantSQLState(t, err, "23505")
}
