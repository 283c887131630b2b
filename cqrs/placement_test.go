package cqrs_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/cqrs/app"
)

// TestPlacement checks that the workload really spreads over the three
// shards by two strategies: products by the directory (an entry placed
// by hand wins over the fallback hash), customers and streams by hash.
func TestPlacement(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	ctx := context.Background()
	svc := app.New(e.Pool, app.Options{})
	if err := svc.Seed(ctx, 30, 100, 0, 0, 0); err != nil {
		t.Fatal(err)
	}
	count := func(shard int, sql string, args ...any) int {
		t.Helper()
		var n int
		if err := e.direct(t, shard).QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// product_hash (the directory's fallback) places ints exactly as
	// by_customer does: customer k's shard is where hashing would put
	// product k. Pin products 5 and 6 elsewhere in the directory (the
	// metadata database) before they are first written.
	hashShard := func(k int) int {
		for s := range 3 {
			if count(s, `SELECT count(*) FROM customers WHERE customer_id = $1`, k) == 1 {
				return s
			}
		}
		t.Fatalf("customer %d on no shard", k)
		return -1
	}
	pin5, pin6 := (hashShard(5)+1)%3, (hashShard(6)+2)%3
	meta, err := pgx.Connect(ctx, sharedServers(t)[3].DSN(e.DB))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close(ctx)
	if _, err := meta.Exec(ctx, `CREATE TABLE IF NOT EXISTS product_directory (key text PRIMARY KEY, shard text NOT NULL,
		updated_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := meta.Exec(ctx, `INSERT INTO product_directory (key, shard) VALUES ('5', $1), ('6', $2)`,
		shardNames[pin5], shardNames[pin6]); err != nil {
		t.Fatal(err)
	}
	if err := svc.Seed(ctx, 0, 0, 12, 10, 1); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		sql   string
		args  []any
		shard int // -1: any, but exactly one shard holds it
		total int
	}{
		{"directory entry beats the hash (5)", `SELECT count(*) FROM products WHERE product_id = $1`, []any{5}, pin5, 1},
		{"directory entry beats the hash (6)", `SELECT count(*) FROM products WHERE product_id = $1`, []any{6}, pin6, 1},
		{"fallback-placed product", `SELECT count(*) FROM products WHERE product_id = $1`, []any{7}, -1, 1},
		{"customer by hash", `SELECT count(*) FROM customers WHERE customer_id = $1`, []any{11}, -1, 1},
		{"catalog is a reference table", `SELECT count(*) FROM product_catalog`, nil, -2, 12 * 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			total, holders := 0, 0
			for s := range 3 {
				n := count(s, tc.sql, tc.args...)
				total += n
				if n > 0 {
					holders++
				}
				if tc.shard >= 0 && s != tc.shard && n != 0 {
					t.Errorf("shard s%d holds %d rows, want all on s%d", s, n, tc.shard)
				}
			}
			if total != tc.total || (tc.shard != -2 && holders != 1) {
				t.Errorf("%d rows on %d shards, want %d", total, holders, tc.total)
			}
		})
	}
	t.Run("every shard holds customers and products", func(t *testing.T) {
		for s := range 3 {
			if count(s, `SELECT count(*) FROM customers`) == 0 || count(s, `SELECT count(*) FROM products`) == 0 {
				t.Errorf("shard s%d is empty", s)
			}
		}
	})
}
