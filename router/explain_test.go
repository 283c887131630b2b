package router

import (
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// TestExplainPlans: EXPLAIN of a SELECT across shards is planned as the
// SELECT is, and the shards explain what they would run for it: the
// merge's partial query, the gathering's arms, or (rows only
// concatenated) the client's own statement, each with the client's
// options. What the SELECT cannot do, its EXPLAIN cannot either.
func TestExplainPlans(t *testing.T) {
	r, _ := newTestRouter(t)
	tests := []struct {
		sql, shards string // shards: the Scatter SQL, $n for parameters
		steps       string // the proxy's steps, first node
	}{
		{"EXPLAIN SELECT count(*) FROM orders", "EXPLAIN SELECT count(*) FROM orders", "Aggregate finish count(c0)"},
		{"EXPLAIN (ANALYZE, FORMAT JSON) SELECT status, avg(total) FROM orders GROUP BY status",
			"EXPLAIN (analyze, format 'json') SELECT status, sum(total) AS avg, count(total) AS _sp_h0 FROM orders GROUP BY status", "Project visible columns"},
		{"EXPLAIN ANALYZE VERBOSE SELECT * FROM orders ORDER BY total LIMIT 5",
			"EXPLAIN (analyze, verbose) SELECT *, total AS _sp_h0 FROM orders ORDER BY total LIMIT $1", "Project visible columns"},
		{"EXPLAIN (COSTS OFF) SELECT * FROM orders WHERE total > 5", "EXPLAIN (COSTS OFF) SELECT * FROM orders WHERE total > $1", "Concatenate"},
		{"EXPLAIN SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders)", "LEFT JOIN (SELECT * FROM (SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders)) _sp_q0 WHERE false)", "Project visible columns"},
	}
	for _, tt := range tests {
		_, rt, err := routeWith(r, tt.sql, nil, Args{})
		if err != nil {
			t.Errorf("%s: %v", tt.sql, err)
			continue
		}
		ex, ok := rt.Plan.Root.(*ExplainShards)
		if rt.Merge != MergePlan || !ok || rt.Plan.Hidden != 0 {
			t.Errorf("%s: merge %s, plan\n%s", tt.sql, rt.Merge, rt.Plan)
			continue
		}
		if strings.Join(ex.Shards, ",") != "s0,s1" || ex.Steps[0] != tt.steps && !strings.HasPrefix(ex.Steps[0], tt.steps+" ") {
			t.Errorf("%s: shards %v, steps %q, want first %q", tt.sql, ex.Shards, ex.Steps, tt.steps)
		}
		if got := dollars(ex.Input.SQL); !strings.Contains(got, tt.shards) || !strings.HasPrefix(got, "EXPLAIN ") {
			t.Errorf("%s: the shards run\n  %s\nwant it to hold\n  %s", tt.sql, got, tt.shards)
		}
	}

	// Gathered, then gathering off: refused as the SELECT itself is.
	gathered := "EXPLAIN SELECT o.status FROM orders o JOIN order_items i ON i.id = o.id"
	if _, rt, err := routeWith(r, gathered, nil, Args{}); err != nil || !strings.Contains(strings.Join(rt.Plan.Root.(*ExplainShards).Steps, "\n"), "gathered rows") {
		t.Errorf("%s: %v %s", gathered, err, rt.Plan)
	}
	if _, _, err := routeWith(r, gathered, nil, Args{MergeOnly: true}); sqlState(err) != "0A000" {
		t.Errorf("%s merge-only: %v, want the SELECT's 0A000", gathered, err)
	}
	for _, sql := range []string{
		"EXPLAIN (FORMAT YAML) SELECT * FROM orders",
		"EXPLAIN (FORMAT XML) SELECT count(*) FROM orders",
	} {
		if _, _, err := routeWith(r, sql, nil, Args{}); sqlState(err) != "0A000" {
			t.Errorf("%s: %v, want 0A000", sql, err)
		}
	}
	// A write without ANALYZE runs nothing: explained like a SELECT
	// whose rows are concatenated. With ANALYZE it runs as the write
	// does, its shards' plans one after the other, in TEXT only. One
	// shard answers alone.
	for sql, want := range map[string]MergeKind{
		"EXPLAIN SELECT * FROM orders WHERE customer_id = 3":        MergeNone,
		"EXPLAIN UPDATE orders SET total = 1":                       MergePlan,
		"EXPLAIN ANALYZE UPDATE orders SET total = 1":               MergeConcat,
		"EXPLAIN (ANALYZE false) DELETE FROM orders":                MergePlan,
		"EXPLAIN UPDATE orders SET total = 1 WHERE customer_id = 3": MergeNone,
	} {
		if _, rt, err := routeWith(r, sql, nil, Args{}); err != nil || rt.Merge != want {
			t.Errorf("%s: %v %s, want merge %s", sql, err, rt.Merge, want)
		}
	}
	if _, rt, err := routeWith(r, "EXPLAIN ANALYZE UPDATE orders SET total = 1", nil, Args{}); err != nil ||
		strings.Join(rt.Explain, "|") != "Custom Scan (shardproxy)|  Shards: s0, s1|  Merge: "+writeStep {
		t.Errorf("EXPLAIN ANALYZE of a write: %v, header %q", err, rt.Explain)
	}
	for _, sql := range []string{
		"EXPLAIN (ANALYZE, FORMAT JSON) DELETE FROM orders",
		"EXPLAIN (FORMAT YAML) UPDATE orders SET total = 1",
	} {
		if _, _, err := routeWith(r, sql, nil, Args{}); sqlState(err) != "0A000" {
			t.Errorf("%s: %v, want 0A000", sql, err)
		}
	}
}

// TestExplainOptions: the options are passed to the shards as written
// (quoted where they were words), and FORMAT and VERBOSE are read as
// Postgres reads them.
func TestExplainOptions(t *testing.T) {
	for sql, want := range map[string]explainOptions{
		"EXPLAIN SELECT 1":                                         {format: "text"},
		"EXPLAIN ANALYZE VERBOSE SELECT 1":                         {list: "(analyze, verbose)", format: "text", verbose: true},
		"EXPLAIN (VERBOSE off, FORMAT JSON) SELECT 1":              {list: "(verbose 'off', format 'json')", format: "json"},
		"EXPLAIN (verbose true, costs false, format xml) SELECT 1": {list: "(verbose 'true', costs 'false', format 'xml')", format: "xml", verbose: true},
		"EXPLAIN (verbose 1, format 'it''s') SELECT 1":             {list: "(verbose 1, format 'it''s')", format: "it's", verbose: true},
	} {
		tree, err := pg.Parse(sql)
		if err != nil {
			t.Fatal(err)
		}
		got := explainOptionsOf(tree.Stmts[0].Stmt.GetExplainStmt())
		if got.list != want.list || got.format != want.format || got.verbose != want.verbose {
			t.Errorf("%s: got %+v, want %+v", sql, got, want)
		}
	}
}
