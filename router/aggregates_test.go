package router

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestLearnedAggregates: a call of a user-defined aggregate without
// aggregate syntax reads as a scalar function until the router learns
// the name; then it is gathered like any aggregate the proxy cannot
// merge, and plans cached before are not reused.
func TestLearnedAggregates(t *testing.T) {
	r, _ := newTestRouter(t)
	const q = "SELECT mysum(total) FROM orders"
	if p := planOf(t, r, q); p != nil {
		t.Fatalf("before learning, want the concatenation (no plan), got\n%s", p)
	}
	if r.CacheLen() == 0 {
		t.Fatal("the statement was not cached")
	}
	if !r.LearnAggregates([]string{"mysum", "sum", ""}) {
		t.Fatal("LearnAggregates: mysum not new")
	}
	if r.LearnAggregates([]string{"mysum", "sum"}) {
		t.Error("LearnAggregates: nothing new, yet reported new")
	}
	if n := r.CacheLen(); n != 0 {
		t.Errorf("%d cached statements survived learning", n)
	}
	p := planOf(t, r, q)
	if p == nil {
		t.Fatal("after learning, no plan")
	}
	if got := strings.Join(chain(p.Root), " "); !strings.Contains(got, "Evaluate") {
		t.Errorf("nodes %q, want the aggregate evaluated over gathered inputs\n%s", got, p)
	}
	if got := leaf(p.Root).SQL.Render(func(int) string { return "?" }); !strings.Contains(got, "array_agg(total)") {
		t.Errorf("shard SQL %s does not gather total", got)
	}

	// In GROUP BY and HAVING as well.
	if p := planOf(t, r, "SELECT status FROM orders GROUP BY status HAVING mysum(total) > 1"); p == nil ||
		!strings.Contains(leaf(p.Root).SQL.Render(func(int) string { return "?" }), "array_agg(total)") {
		t.Errorf("HAVING mysum(): plan\n%v", p)
	}
	// Schema-qualified calls name the same aggregate.
	if p := planOf(t, r, "SELECT public.mysum(total) FROM orders"); p == nil {
		t.Error("public.mysum(): no plan")
	}
	// Names are exact: "MySum" is another function.
	if p := planOf(t, r, `SELECT "MySum"(total) FROM orders`); p != nil {
		t.Errorf(`"MySum" read as mysum:%s`, p)
	}
	if got := r.LearnedAggregates(); !slices.Equal(got, []string{"mysum"}) {
		t.Errorf("LearnedAggregates = %q", got)
	}
}

// TestCreateAggregateLearned: CREATE AGGREGATE analysed by the router
// teaches it the name at once, so the next statement of the same Query
// string already merges it.
func TestCreateAggregateLearned(t *testing.T) {
	r, _ := newTestRouter(t)
	parts, err := r.ParseQuery(`CREATE AGGREGATE app."Prod"(numeric) (sfunc = numeric_mul, stype = numeric);
		SELECT "Prod"(total) FROM orders`)
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 {
		t.Fatalf("%d parts", len(parts))
	}
	if p, _ := parts[1].Stmt.Plan(); p == nil {
		t.Error(`"Prod"(total) after CREATE AGGREGATE: no plan`)
	}
	if got := r.LearnedAggregates(); !slices.Equal(got, []string{"Prod"}) {
		t.Errorf("LearnedAggregates = %q", got)
	}
	// CREATE FUNCTION teaches nothing.
	if _, err := r.ParseQuery("CREATE FUNCTION twice(numeric) RETURNS numeric LANGUAGE sql AS 'SELECT $1 * 2'"); err != nil {
		t.Fatal(err)
	}
	if got := r.LearnedAggregates(); len(got) != 1 {
		t.Errorf("LearnedAggregates = %q", got)
	}
}

// TestCacheSkipsStaleAnalysis: a statement analysed with the set of
// aggregates that LearnAggregates has since replaced is not cached.
func TestCacheSkipsStaleAnalysis(t *testing.T) {
	r, _ := newTestRouter(t)
	st, err := r.analyze("SELECT myagg(total) FROM orders", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	r.LearnAggregates([]string{"myagg"})
	r.cache.put("k", st)
	if n := r.CacheLen(); n != 0 {
		t.Errorf("stale statement cached (%d entries)", n)
	}
}

// TestQualifiedAggregateGathered: app.sum(x) is a user's aggregate named
// sum, not Postgres' sum: merging the shards' values by adding them
// counted its initial state once per shard. It is gathered; a call
// qualified by pg_catalog is still Postgres' own and merged.
func TestQualifiedAggregateGathered(t *testing.T) {
	r, _ := newTestRouter(t)
	p := planOf(t, r, "SELECT app.sum(total) FROM orders")
	if p == nil || !strings.Contains(leaf(p.Root).SQL.Render(func(int) string { return "?" }), "array_agg(total)") {
		t.Errorf("app.sum(total): plan\n%v", p)
	}
	p = planOf(t, r, "SELECT pg_catalog.sum(total) FROM orders")
	if p == nil || strings.Contains(leaf(p.Root).SQL.Render(func(int) string { return "?" }), "array_agg") {
		t.Errorf("pg_catalog.sum(total): plan\n%v", p)
	}
}

// TestShadowedAggregate: a user's aggregate named like Postgres' own
// (agg.sum) is what an unqualified sum(x) calls when the session's
// search_path lists its schema before pg_catalog. Merged as Postgres'
// sum, its per-shard values would be added up as if they were sums, so
// a merge of such a name under a custom search_path is refused; the
// default search_path, pg_catalog.sum, and one-shard statements are not.
func TestShadowedAggregate(t *testing.T) {
	r, _ := newTestRouter(t)
	custom := Args{CustomSearchPath: true}
	const merged = "SELECT sum(total) FROM public.orders"
	if _, _, err := routeWith(r, merged, nil, custom); err != nil {
		t.Fatalf("before any user aggregate named sum: %v", err)
	}
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, time.Now(), ShardCatalog{Aggregates: []string{"sum"}})
	}
	if got := r.LearnedAggregates(); len(got) != 0 {
		t.Errorf("a built-in name learned as an aggregate to gather: %q", got)
	}
	_, _, err := routeWith(r, merged, nil, custom)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, "sum()") || !strings.Contains(pgErr.Hint, "pg_catalog.sum") {
		t.Errorf("%s under a custom search_path: %v; want 0A000", merged, err)
	}
	for _, tc := range []struct {
		sql  string
		args Args
	}{
		{merged, Args{}},
		{"SELECT pg_catalog.sum(total) FROM public.orders", custom},
		{"SELECT sum(total) FROM public.orders WHERE customer_id = 1", custom},
		{"SELECT count(*) FROM public.orders", custom},
	} {
		if _, _, err := routeWith(r, tc.sql, nil, tc.args); err != nil {
			t.Errorf("%s (custom search_path %v): %v", tc.sql, tc.args.CustomSearchPath, err)
		}
	}
}
