package proxy_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestMultiShardStatements runs statements that need every shard in both
// protocols: rows are concatenated, command tags summed, and a write that
// fails on one shard leaves nothing behind on the others.
func TestMultiShardStatements(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec := func(sql string, args ...any) pgconn.CommandTag {
		t.Helper()
		tag, err := c.Exec(ctx, sql, args...)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return tag
	}
	mustExec("CREATE TABLE customers (customer_id bigint PRIMARY KEY, credit int CHECK (credit >= 0))")
	for id := int64(1); id <= 10; id++ {
		mustExec("INSERT INTO customers (customer_id, credit) VALUES ($1, $2)", id, id*10)
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec,
		pgx.QueryExecModeDescribeExec, pgx.QueryExecModeCacheStatement}
	for _, mode := range modes {
		t.Run(mode.String(), func(t *testing.T) {
			rows, err := c.Query(ctx, "SELECT customer_id FROM customers WHERE credit >= $1", mode, 50)
			if err != nil {
				t.Fatal(err)
			}
			got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(got)
			if want := []int64{5, 6, 7, 8, 9, 10}; !slices.Equal(got, want) {
				t.Fatalf("scatter read: %v, want %v", got, want)
			}

			tag, err := c.Exec(ctx, "UPDATE customers SET credit = credit + 1 WHERE credit >= $1", mode, 0)
			if err != nil || tag.String() != "UPDATE 10" {
				t.Fatalf("keyless update: %q, %v; want UPDATE 10", tag, err)
			}
			rows, err = c.Query(ctx, "UPDATE customers SET credit = credit - 1 WHERE credit > $1 RETURNING customer_id", mode, 0)
			if err != nil {
				t.Fatal(err)
			}
			ret, err := pgx.CollectRows(rows, pgx.RowTo[int64])
			if err != nil || len(ret) != 10 || rows.CommandTag().String() != "UPDATE 10" {
				t.Fatalf("RETURNING across shards: %v (%q), %v", ret, rows.CommandTag(), err)
			}

			// Customer 1 has credit 10: subtracting 15 violates the CHECK on
			// its shard only. Nothing may change on any shard.
			_, err = c.Exec(ctx, "UPDATE customers SET credit = credit - $1", mode, 15)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
				t.Fatalf("violating update: %v, want 23514", err)
			}
			var sum int64
			for _, sh := range []string{"s0", "s1"} {
				var n int64
				if err := f.Direct(t, sh).QueryRow(ctx, "SELECT coalesce(sum(credit), 0) FROM customers").Scan(&n); err != nil {
					t.Fatal(err)
				}
				sum += n
			}
			if sum != 550 {
				t.Fatalf("after a failed multi-shard update the credits sum to %d, want 550 (unchanged)", sum)
			}
		})
	}
}
