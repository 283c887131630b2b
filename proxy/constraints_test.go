package proxy_test

import (
	"context"
	"fmt"
	"testing"
)

// TestUniqueNeedsShardKey: UNIQUE (email) on sharded customers was
// created on every shard, each enforcing it on its own rows: the same
// email was then taken twice, once on each shard, with no error. Such a
// constraint is refused (0A000) and made nowhere; with the shard key
// among its columns it works, and a reference table keeps any. An
// ON CONFLICT target without the key is refused too: on a unique index
// made on the shards directly, it would search one shard.
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

	// A unique index without the key, made on the shards directly: an
	// ON CONFLICT on it would search the new row's shard alone, and a
	// customer on the other shard would take the same email.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "CREATE UNIQUE INDEX customers_email ON customers (email)")
	}
	var other int64 // a customer whose row goes to the shard customer 1 is not on
	for k := int64(3); other == 0; k++ {
		mustExec(t, c, "INSERT INTO customers VALUES ($1, $2)", k, "probe")
		if directCount(t, f, "s0", "customers", "customer_id = 1") != directCount(t, f, "s0", "customers", "customer_id = $1", k) {
			other = k
		}
		mustExec(t, c, "DELETE FROM customers WHERE customer_id = $1", k)
	}
	_, err = c.Exec(ctx, "INSERT INTO customers VALUES ($1, 'a@example.com') ON CONFLICT (email) DO NOTHING", other)
	wantSQLState(t, err, "0A000")
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE email = 'a@example.com'").Scan(&n); err != nil || n != 1 {
		t.Errorf("%d customers with a@example.com, %v; want 1", n, err)
	}
}

// TestRolesOnEveryShard: CREATE ROLE went to the default shard alone, so
// the GRANT that followed (to every shard) failed on the others, and
// ALTER ROLE ... SET changed one shard's sessions. Role statements now
// run on every shard, and so does maintenance that names no table.
func TestRolesOnEveryShard(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	role := "r_" + f.DB // roles are server-wide: one per test database
	t.Cleanup(func() {
		for _, s := range []string{"s0", "s1"} {
			d := f.Direct(t, s)
			_, _ = d.Exec(ctx, "DROP OWNED BY "+role)
			_, _ = d.Exec(ctx, "DROP ROLE IF EXISTS "+role)
		}
	})
	mustExec(t, c, "CREATE TABLE orders (customer_id int PRIMARY KEY, total int)")
	mustExec(t, c, "CREATE ROLE "+role)
	mustExec(t, c, "GRANT SELECT ON orders TO "+role)
	mustExec(t, c, "ALTER ROLE "+role+" SET work_mem = '8MB'")
	for _, s := range []string{"s0", "s1"} {
		var config string
		var can bool
		err := f.Direct(t, s).QueryRow(ctx, "SELECT array_to_string(rolconfig, ','), has_table_privilege($1, 'orders', 'SELECT') FROM pg_roles WHERE rolname = $1", role).Scan(&config, &can)
		if err != nil || config != "work_mem=8MB" || !can {
			t.Errorf("%s: role %s has config %q and SELECT %v (%v); want work_mem=8MB and true", s, role, config, can, err)
		}
	}
	mustExec(t, c, "VACUUM")
	mustExec(t, c, "REVOKE SELECT ON orders FROM "+role)
	mustExec(t, c, "DROP ROLE "+role)
	for _, s := range []string{"s0", "s1"} {
		var n int
		if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*) FROM pg_roles WHERE rolname = $1", role).Scan(&n); err != nil || n != 0 {
			t.Errorf("%s: %d roles %s after DROP ROLE (%v)", s, n, role, err)
		}
	}
}

// TestMergeAndUpsertKeys: MERGE INTO orders ... WHEN NOT MATCHED THEN
// INSERT was sent to every shard and inserted the order on each (two
// rows, one on a shard its key does not own). ON CONFLICT DO UPDATE SET
// customer_id = ... moved a row's key while the row stayed on its old
// shard, where a read by the new key would not look. Both are refused;
// MERGE into a reference table runs on every copy; an upsert that keeps
// the key (SET customer_id = EXCLUDED.customer_id) works.
func TestMergeAndUpsertKeys(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	merge := fmt.Sprintf("MERGE INTO customers c USING (VALUES (%d, 50)) v(k, credit) ON c.customer_id = v.k "+
		"WHEN NOT MATCHED THEN INSERT VALUES (v.k, v.credit)", f.a+1000)
	_, err := c.Exec(ctx, merge)
	wantSQLState(t, err, "0A000")
	for _, s := range []string{"s0", "s1"} {
		if n := directCount(t, f.fixture, s, "customers", "customer_id = $1", f.a+1000); n != 0 {
			t.Errorf("%s holds %d rows of the refused MERGE", s, n)
		}
	}
	mustExec(t, c, "MERGE INTO products p USING (VALUES (1, 'tea'), (2, 'coffee')) v(i, n) ON p.id = v.i "+
		"WHEN MATCHED THEN UPDATE SET name = v.n WHEN NOT MATCHED THEN INSERT VALUES (v.i, v.n)")
	for _, s := range []string{"s0", "s1"} {
		if n := directCount(t, f.fixture, s, "products", "true"); n != 2 {
			t.Errorf("%s's copy of products has %d rows after MERGE, want 2", s, n)
		}
	}

	upsert := fmt.Sprintf("INSERT INTO customers VALUES (%d, 1) ON CONFLICT (customer_id) DO UPDATE SET customer_id = %d", f.a, f.b)
	_, err = c.Exec(ctx, upsert)
	wantSQLState(t, err, "0A000")
	mustExec(t, c, fmt.Sprintf("INSERT INTO customers VALUES (%d, 7) ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, credit = EXCLUDED.credit", f.a))
	var credit int
	if err := c.QueryRow(ctx, "SELECT credit FROM customers WHERE customer_id = $1", f.a).Scan(&credit); err != nil || credit != 7 {
		t.Errorf("credit of %d after the upsert: %d, %v; want 7", f.a, credit, err)
	}
	if n := directCount(t, f.fixture, "s1", "customers", "customer_id = $1", f.a); n != 0 {
		t.Errorf("customer %d (on s0) found on s1", f.a)
	}
}

// TestDDLAllOrNothing: DDL sent to every shard ran on each in autocommit,
// so when one shard refused it (here a column that shard already has)
// the others kept it, and the shards' schemas parted. It now runs in a
// transaction on each shard, committed only if every shard succeeded;
// CREATE INDEX CONCURRENTLY, which no transaction block may hold, still
// runs on each shard on its own.
func TestDDLAllOrNothing(t *testing.T) {
	for _, body := range []string{defaultBody, twoPCBody} {
		f := startFixture(t, fixtureOptions{Body: body})
		ctx := context.Background()
		c := f.Connect(t)
		mustExec(t, c, "CREATE TABLE orders (customer_id int PRIMARY KEY, total int)")
		mustExec(t, f.Direct(t, "s1"), "ALTER TABLE orders ADD COLUMN note text")
		_, err := c.Exec(ctx, "ALTER TABLE orders ADD COLUMN note text")
		wantSQLState(t, err, "42701")
		var n int
		if err := f.Direct(t, "s0").QueryRow(ctx, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'note'").Scan(&n); err != nil || n != 0 {
			t.Errorf("s0 kept the column s1 refused (%d, %v)", n, err)
		}
		mustExec(t, c, "CREATE INDEX CONCURRENTLY orders_total ON orders (total)")
		mustExec(t, c, "DROP INDEX CONCURRENTLY orders_total")
		mustExec(t, c, "CREATE INDEX orders_total ON orders (total)")
		for _, s := range []string{"s0", "s1"} {
			if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*) FROM pg_indexes WHERE indexname = 'orders_total'").Scan(&n); err != nil || n != 1 {
				t.Errorf("%s: %d indexes orders_total, %v; want 1", s, n, err)
			}
		}
	}
}
