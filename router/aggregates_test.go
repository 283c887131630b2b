package router

import (
	"slices"
	"strings"
	"testing"
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
	if r.LearnAggregates([]string{"mysum", "count"}) {
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
