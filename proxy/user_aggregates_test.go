package proxy_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy"
)

// TestUserAggregates: a user-defined aggregate called without aggregate
// syntax, mysum(total), looked like a scalar function to the router, so
// a keyless query returned one row per shard (each shard's own sum).
// Now the router knows the shards' aggregates and gathers them like any
// aggregate it cannot merge: the results are compared with the built-in
// sum over the same rows.
func TestUserAggregates(t *testing.T) {
	// The periodic check would teach the router on its own: an hour
	// keeps this test on the paths it names.
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int PRIMARY KEY, total numeric)")
	for i := 1; i <= 40; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, $2::numeric * 1.25)", i, i)
	}
	if directCount(t, f, "s0", "orders", "true") == 0 || directCount(t, f, "s1", "orders", "true") == 0 {
		t.Fatal("want rows on both shards")
	}
	same := func(t *testing.T, c *pgx.Conn, got, want string) {
		t.Helper()
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			g, _, err := rowsText(t, c, mode, got)
			if err != nil {
				t.Errorf("%s (mode %v): %v", got, mode, err)
				continue
			}
			w, _, err := rowsText(t, c, mode, want)
			if err != nil {
				t.Fatalf("%s: %v", want, err)
			}
			if !slices.Equal(g, w) {
				t.Errorf("%s (mode %v):\n got %q\nwant %q (%s)", got, mode, g, w, want)
			}
		}
	}
	checkAll := func(t *testing.T, c *pgx.Conn, agg string) {
		t.Helper()
		same(t, c, "SELECT "+agg+"(total) FROM orders", "SELECT sum(total) FROM orders")
		same(t, c, "SELECT customer_id % 3 AS g, "+agg+"(total) FROM orders GROUP BY 1 ORDER BY 1",
			"SELECT customer_id % 3 AS g, sum(total) FROM orders GROUP BY 1 ORDER BY 1")
		same(t, c, "SELECT "+agg+"(total) + 1 AS x, count(*) FROM orders", "SELECT sum(total) + 1 AS x, count(*) FROM orders")
		// Over 1,000 in all, under it on either shard.
		same(t, c, "SELECT count(*) FROM orders HAVING "+agg+"(total) > 1000", "SELECT count(*) FROM orders HAVING sum(total) > 1000")
		same(t, c, "SELECT public."+agg+"(total) FROM orders WHERE customer_id > 10", "SELECT sum(total) FROM orders WHERE customer_id > 10")
	}

	// Created through the proxy: known at once.
	mustExec(t, c, "CREATE FUNCTION add_num(numeric, numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT coalesce($1, 0) + $2'")
	mustExec(t, c, "CREATE AGGREGATE mysum(numeric) (sfunc = add_num, stype = numeric)")
	checkAll(t, c, "mysum")
	// A user's aggregate named like Postgres' own, called qualified: its
	// per-shard values do not add up (the initial state counted once per
	// shard: 1000 too much with two shards).
	mustExec(t, c, "CREATE SCHEMA agg")
	mustExec(t, c, "CREATE AGGREGATE agg.sum(numeric) (sfunc = numeric_add, stype = numeric, initcond = '1000')")
	same(t, c, "SELECT agg.sum(total) FROM orders", "SELECT sum(total) + 1000 FROM orders")
	same(t, c, "SELECT pg_catalog.sum(total) FROM orders", "SELECT sum(total) FROM orders")
	// Unqualified, it is the user's under a search_path that lists agg
	// before pg_catalog (as each shard shows); merging it as Postgres'
	// sum would add the initial state once per shard: refused.
	mustExec(t, c, "SET search_path = agg, pg_catalog, public")
	var shardSum, builtin float64
	d := f.Direct(t, "s1")
	mustExec(t, d, "SET search_path = agg, pg_catalog, public")
	if err := d.QueryRow(context.Background(), "SELECT sum(total), pg_catalog.sum(total) FROM orders").Scan(&shardSum, &builtin); err != nil || shardSum != builtin+1000 {
		t.Errorf("on s1 under agg, pg_catalog: sum %v, pg_catalog.sum %v, %v; want the user's (1000 more)", shardSum, builtin, err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		_, err := c.Exec(context.Background(), "SELECT sum(total) FROM public.orders", mode)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Hint, "pg_catalog.sum") {
			t.Errorf("sum(total) under search_path agg, pg_catalog (mode %v): %v; want 0A000", mode, err)
		}
	}
	same(t, c, "SELECT pg_catalog.sum(total) FROM public.orders", "SELECT pg_catalog.sum(total) + 0 FROM public.orders")
	mustExec(t, c, "RESET search_path")

	// Created on the shards directly: known from the health check, which
	// also runs before a server takes its first client.
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "CREATE AGGREGATE direct_sum(numeric) (sfunc = add_num, stype = numeric)")
	}
	f.serve(t, slog.LevelWarn) // a second proxy, started now
	checkAll(t, f.Connect(t), "direct_sum")

	// A reload builds a new router; what the shards define carries over
	// (the next check is an hour away).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	a, err := proxy.Assemble(ctx, f.Config, nil, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	old := f.Server.Runtime()
	f.Server.SetRuntime(a.Runtime())
	t.Cleanup(func() {
		f.Server.SetRuntime(old)
		a.Close()
	})
	if old.Router == f.Server.Runtime().Router {
		t.Fatal("the reload kept the router")
	}
	checkAll(t, f.Connect(t), "direct_sum")
	checkAll(t, f.Connect(t), "mysum")
}

// TestUserAggregatesLearnedByHealthCheck: an aggregate created on the
// shards behind a running proxy is merged once a health check has seen it.
func TestUserAggregatesLearnedByHealthCheck(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 100ms\n"})
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int PRIMARY KEY, total numeric)")
	for i := 1; i <= 20; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, $2)", i, i)
	}
	for _, s := range []string{"s0", "s1"} {
		mustExec(t, f.Direct(t, s), "CREATE AGGREGATE late_sum(numeric) (sfunc = numeric_add, stype = numeric, initcond = '0')")
	}
	rt := f.Server.Runtime()
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Contains(rt.Router.LearnedAggregates(), "late_sum") {
		if time.Now().After(deadline) {
			t.Fatal("no health check taught the router late_sum in 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	var got string
	if err := c.QueryRow(context.Background(), "SELECT late_sum(total) FROM orders", pgx.QueryExecModeSimpleProtocol).Scan(&got); err != nil || got != "210" {
		t.Errorf("late_sum = %q, %v; want 210", got, err)
	}
}
