package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// INSERT ... VALUES without a column list into a sharded table: the proxy
// looks the table's columns up to find the shard key's position.

const noColsBody = `
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  customers: {key: customer_id, strategy: by_customer}
  orders:    {key: customer_id, strategy: by_customer}
  notes:     {key: customer_id, strategy: by_customer}
  app.audit: {key: customer_id, strategy: by_customer}
  missing:   {key: customer_id, strategy: by_customer}
default_shard: s0
`

var noColsModes = []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement}

// placed returns the shards holding rows of table with the given key.
func placed(t *testing.T, f *fixture, table string, key int64) []string {
	t.Helper()
	var on []string
	for _, sh := range []string{"s0", "s1"} {
		if directCount(t, f, sh, table, "customer_id = $1", key) > 0 {
			on = append(on, sh)
		}
	}
	return on
}

func wantPlaced(t *testing.T, f *fixture, table string, key int64, shard string) {
	t.Helper()
	if on := placed(t, f, table, key); len(on) != 1 || on[0] != shard {
		t.Fatalf("%s rows with key %d are on %v, want [%s]", table, key, on, shard)
	}
}

func TestInsertWithoutColumns(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: noColsBody})
	ctx := context.Background()
	admin := f.Connect(t)
	mustExec(t, admin, "CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text)")
	mustExec(t, admin, "CREATE TABLE orders (order_id bigint, customer_id bigint, total numeric(12,2) DEFAULT 0)")
	mustExec(t, admin, "CREATE SCHEMA app")
	mustExec(t, admin, "CREATE TABLE app.audit (at timestamptz DEFAULT now(), what text, customer_id bigint)")
	keys := keysByShard(t, f, "by_customer", 12)
	next := map[string]int{}
	key := func(shard string) int64 { // a fresh key on shard
		k := keys[shard][next[shard]]
		next[shard]++
		return k
	}

	for _, mode := range noColsModes {
		c := connectMode(t, f, mode)
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			t.Run("key first", func(t *testing.T) {
				k := key("s1")
				mustExec(t, c, "INSERT INTO customers VALUES ($1, 'ann')", k)
				wantPlaced(t, f, "customers", k, "s1")
			})
			t.Run("key second", func(t *testing.T) {
				for _, sh := range []string{"s0", "s1"} {
					k := key(sh)
					mustExec(t, c, "INSERT INTO orders VALUES (1, $1, 9.5)", k)
					wantPlaced(t, f, "orders", k, sh)
				}
			})
			t.Run("qualified name, key last", func(t *testing.T) {
				k := key("s1")
				mustExec(t, c, "INSERT INTO app.audit VALUES (DEFAULT, 'login', $1)", k)
				wantPlaced(t, f, "app.audit", k, "s1")
			})
			t.Run("rows on one shard", func(t *testing.T) {
				k1, k2 := key("s0"), key("s0")
				mustExec(t, c, "INSERT INTO orders VALUES (2, $1, 1 + 1), (3, $2, DEFAULT)", k1, k2)
				wantPlaced(t, f, "orders", k1, "s0")
				wantPlaced(t, f, "orders", k2, "s0")
			})
			// PEERS: PgDog #259 broadcast a multi-row INSERT.
			t.Run("rows spanning shards are split", func(t *testing.T) {
				k0, k1 := key("s0"), key("s1")
				mustExec(t, c, "INSERT INTO orders VALUES (4, $1), (5, $2)", k0, k1)
				wantPlaced(t, f, "orders", k0, "s0")
				wantPlaced(t, f, "orders", k1, "s1")
			})
			t.Run("key not a value", func(t *testing.T) {
				_, err := c.Exec(ctx, "INSERT INTO orders VALUES (6, 1 + 1)")
				wantSQLState(t, err, "0A000")
			})
			// One row: the refusal must not speak of several.
			t.Run("one row, key not of the key's type", func(t *testing.T) {
				_, err := c.Exec(ctx, "INSERT INTO orders VALUES (6, 25.5)")
				wantSQLState(t, err, "0A000")
				if !strings.Contains(err.Error(), "of the INSERT's row is not a value of the key's type") {
					t.Fatalf("got %v, want the one-row refusal", err)
				}
			})
			t.Run("table missing on the shards", func(t *testing.T) {
				_, err := c.Exec(ctx, "INSERT INTO missing VALUES (1)")
				wantSQLState(t, err, "42P01")
				var one int
				if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Fatalf("session unusable after the error: %v", err)
				}
			})
			// The lookup borrows a default-shard backend while the
			// transaction holds another one of the same shard.
			t.Run("in a transaction", func(t *testing.T) {
				k1, k2 := key("s0"), key("s0")
				tx, err := c.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(ctx)
				if _, err := tx.Exec(ctx, "INSERT INTO orders VALUES (7, $1)", k1); err != nil {
					t.Fatal(err)
				}
				// Any DDL through the proxy empties the cache.
				mustExec(t, admin, "COMMENT ON TABLE customers IS 'x'")
				if _, err := tx.Exec(ctx, "INSERT INTO orders VALUES (8, $1)", k2); err != nil {
					t.Fatal(err)
				}
				if err := tx.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				wantPlaced(t, f, "orders", k1, "s0")
				wantPlaced(t, f, "orders", k2, "s0")
			})
		})
	}
}

// After ALTER TABLE ... DROP COLUMN of a column before the key, the key's
// position moves; the cached columns must be forgotten, for every session.
func TestInsertWithoutColumnsAfterDropColumn(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: noColsBody})
	ddl := f.Connect(t)
	mustExec(t, ddl, "CREATE TABLE notes (a bigint, b bigint, customer_id bigint, c bigint)")
	keys := keysByShard(t, f, "by_customer", 4)
	s0, s1 := keys["s0"], keys["s1"]

	conns := map[pgx.QueryExecMode]*pgx.Conn{}
	for i, mode := range noColsModes {
		c := connectMode(t, f, mode)
		conns[mode] = c
		// Warm the cache: the key is the third column.
		mustExec(t, c, "INSERT INTO notes VALUES ($1, $2, $3, $4)", s1[i], s1[i], s0[i], s1[i])
		wantPlaced(t, f, "notes", s0[i], "s0")
	}
	// DDL from another session: the cache is the proxy's, not the session's.
	mustExec(t, ddl, "ALTER TABLE notes DROP COLUMN a")
	for i, mode := range noColsModes {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			// Now the key is the second value; the stale position would
			// read s0[i+2] and put the row on s0.
			k := s1[i+2]
			mustExec(t, conns[mode], "INSERT INTO notes VALUES ($1, $2, $3)", s0[i+2], k, s0[i+2])
			wantPlaced(t, f, "notes", k, "s1")
		})
	}
}

// TestInsertWithoutColumnsAfterDirectDDL: the cached columns were
// forgotten only when DDL went through the proxy, so after a table was
// made again on the shards directly with its key in another place, an
// INSERT without a column list and a COPY without one went on reading
// the key from its old position: rows on another shard than their key's,
// silently, until a reload. Every health check now forgets them, as it
// learns views and functions made on the shards directly.
func TestInsertWithoutColumnsAfterDirectDDL(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: noColsBody, Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id bigint, total bigint)")
	keys := keysByShard(t, f, "by_customer", 2)
	k0, k1 := keys["s0"][0], keys["s1"][0]
	mustExec(t, c, "INSERT INTO orders VALUES ($1, $2)", k0, k1) // caches (customer_id, total)
	wantPlaced(t, f, "orders", k0, "s0")
	for _, sh := range []string{"s0", "s1"} {
		d := f.Direct(t, sh)
		mustExec(t, d, "DROP TABLE orders")
		mustExec(t, d, "CREATE TABLE orders (total bigint, customer_id bigint)")
	}
	f.Server.CheckShardsNow(ctx)
	// total k1, customer k0: the row is s0's.
	mustExec(t, c, "INSERT INTO orders VALUES ($1, $2)", k1, k0)
	wantPlaced(t, f, "orders", k0, "s0")
	if _, err := c.PgConn().CopyFrom(ctx, strings.NewReader(fmt.Sprintf("%d\t%d\n%d\t%d\n", k0, k1, k1, k0)), "COPY orders FROM STDIN"); err != nil {
		t.Fatal(err)
	}
	if on := placed(t, f, "orders", k1); len(on) != 1 || on[0] != "s1" {
		t.Errorf("COPY: rows with key %d are on %v, want [s1]", k1, on)
	}
	if n := directCount(t, f, "s0", "orders", "customer_id = $1", k0); n != 2 {
		t.Errorf("%d rows with key %d on s0, want 2", n, k0)
	}
}
