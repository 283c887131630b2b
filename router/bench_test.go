package router

import (
	"context"
	"testing"
)

const pgbenchSelect = "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;"

// BenchmarkParseQueryCached is the simple-protocol hot path: scan,
// normalise, plan-cache hit.
func BenchmarkParseQueryCached(b *testing.B) {
	r, _ := newTestRouter(b)
	if _, err := r.ParseQuery(pgbenchSelect); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.ParseQuery(pgbenchSelect); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoute binds the literal and locates the hash shard.
func BenchmarkRoute(b *testing.B) {
	r, _ := newTestRouter(b)
	parts, err := r.ParseQuery(pgbenchSelect)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	args := Args{Params: parts[0].Args}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Route(ctx, parts[0].Stmt, args); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseQueryAndRoute is what the proxy pays per statement.
func BenchmarkParseQueryAndRoute(b *testing.B) {
	r, _ := newTestRouter(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		parts, err := r.ParseQuery(pgbenchSelect)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Route(ctx, parts[0].Stmt, Args{Params: parts[0].Args}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseQueryMiss measures pg_query analysis (a cache of one entry
// that two texts keep evicting).
func BenchmarkParseQueryMiss(b *testing.B) {
	r, _ := newTestRouter(b)
	r.cache = newPlanCache(1)
	texts := []string{pgbenchSelect, "SELECT * FROM orders o JOIN order_items i USING (customer_id) WHERE o.customer_id = 5"}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := r.ParseQuery(texts[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
