package router

import (
	"fmt"
	"strings"
	"testing"
)

// TestGatherPlans: what the merge refuses is gathered (one arm per
// occurrence of a sharded table, the client's statement evaluated over
// the rows), and what cannot be gathered keeps the merge's refusal.
func TestGatherPlans(t *testing.T) {
	r, _ := newTestRouter(t)
	gathered := []struct {
		sql  string
		arms int
	}{
		{"SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders)", 2},
		{"SELECT status, count(*) FROM orders GROUP BY ROLLUP (status)", 1},
		{"SELECT o.id FROM orders o JOIN order_items i ON i.id = o.id", 2},
		{"WITH x AS (SELECT customer_id FROM orders GROUP BY 1 HAVING count(*) > 2) SELECT count(*) FROM orders o JOIN x USING (customer_id) WHERE o.total > $1", 2},
		{"SELECT sum(total) OVER w FROM orders WINDOW w AS (PARTITION BY status)", 1},
		{"SELECT p.name FROM products p WHERE p.id IN (SELECT id FROM order_items ORDER BY qty LIMIT 3)", 1},
	}
	for _, g := range gathered {
		_, rt, err := routeWith(r, g.sql, nil, Args{})
		if err != nil {
			t.Errorf("%s: %v", g.sql, err)
			continue
		}
		if rt.Merge != MergePlan || rt.Plan == nil {
			t.Errorf("%s: merge %s, want a plan", g.sql, rt.Merge)
			continue
		}
		ev, ok := rt.Plan.Root.(*Project).Input.(*Evaluate)
		if !ok || !ev.Gather || !ev.Whole || rt.Plan.Hidden != 2 {
			t.Errorf("%s: not a gathering:\n%s", g.sql, rt.Plan)
			continue
		}
		shard := dollars(ev.Input.(*Concatenate).Input.SQL)
		if n := strings.Count(shard, "::text AS "+gatherRow); n != g.arms {
			t.Errorf("%s: %d arms, want %d:\n%s", g.sql, n, g.arms, shard)
		}
		if !strings.Contains(shard, "WHERE false) _sp_q ON true") {
			t.Errorf("%s: the shards' statement does not describe the client's result:\n%s", g.sql, shard)
		}
		eval := dollars(ev.SQL) + " FROM unnest(...) " + dollars(ev.Tail)
		if n := strings.Count(eval, "unnest(ARRAY(SELECT "+evalRel+"."+evalArg(1)+"::"); n != g.arms {
			t.Errorf("%s: %d occurrences read back, want %d:\n%s", g.sql, n, g.arms, eval)
		}
		// Merge-only, the same statement is refused.
		if _, _, err := routeWith(r, g.sql, nil, Args{MergeOnly: true}); sqlState(err) != "0A000" {
			t.Errorf("%s: merge-only %v, want 0A000", g.sql, err)
		}
	}
	refused := []string{
		"SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders) FOR UPDATE",
		"SELECT o.id FROM orders o JOIN settings s ON s.k = o.status",                             // settings lives on the default shard
		"WITH orders AS (SELECT * FROM order_items) SELECT count(*) FROM orders o, order_items i", // a CTE named like a table
		"SELECT count(*) FROM orders o TABLESAMPLE SYSTEM (10) WHERE o.total > (SELECT avg(total) FROM orders)",
		"SELECT public.orders.id FROM orders WHERE total > (SELECT avg(total) FROM orders)",
		"SELECT nextval('s') FROM orders WHERE total > (SELECT avg(total) FROM orders)",
		"UPDATE orders SET note = 'x' WHERE total > (SELECT avg(total) FROM orders)",
	}
	for _, sql := range refused {
		if _, rt, err := routeWith(r, sql, nil, Args{}); sqlState(err) != "0A000" {
			t.Errorf("%s: routed %s, %v; want 0A000", sql, formatRoute(rt, err), err)
		}
	}
}

// TestGatherFilters: which WHERE terms the shards apply before gathering.
func TestGatherFilters(t *testing.T) {
	r, _ := newTestRouter(t)
	cases := []struct {
		sql  string
		want []string // each arm's WHERE, in tag order ("" = none)
	}{
		{"SELECT * FROM orders WHERE status = 'x' AND total > (SELECT avg(total) FROM orders WHERE status = 'y')",
			[]string{"status = $1", ""}}, // unqualified: at the top level only
		{"SELECT o.id FROM orders o JOIN order_items i ON i.id = o.id WHERE o.total > 5 AND i.qty IN (1, 2) AND i.qty + 1 > o.total",
			[]string{"o.total > $1", "i.qty IN ($2, $3)"}},
		{"SELECT o.id FROM orders o LEFT JOIN order_items i ON i.id = o.id WHERE o.total > 5 AND i.qty IS NULL",
			[]string{"o.total > $1", ""}}, // i is nullable
		{"SELECT o.id FROM orders o FULL JOIN order_items i ON i.id = o.id WHERE o.total > 5 AND i.qty > 1",
			[]string{"", ""}},
		{"SELECT o.id FROM orders o JOIN order_items i ON i.id = o.id WHERE lower(o.status) = 'x' AND o.note IS NOT NULL",
			[]string{"o.note IS NOT NULL", ""}}, // no functions
	}
	for _, c := range cases {
		_, rt, err := routeWith(r, c.sql, nil, Args{})
		if err != nil || rt.Plan == nil {
			t.Errorf("%s: %v", c.sql, err)
			continue
		}
		ev := rt.Plan.Root.(*Project).Input.(*Evaluate)
		shard := dollars(ev.Input.(*Concatenate).Input.SQL)
		for i, w := range c.want {
			arm := fmt.Sprintf("SELECT %d AS %s, ROW(", i+1, gatherTag)
			start := strings.Index(shard, arm)
			if start < 0 {
				t.Fatalf("%s: no arm %d in %s", c.sql, i+1, shard)
			}
			rest := shard[start:]
			end := strings.Index(rest, " UNION ALL ")
			if end < 0 {
				end = len(rest)
			}
			got := ""
			if _, where, ok := strings.Cut(rest[:end], " WHERE "); ok {
				got = strings.TrimSuffix(where, ")")
			}
			if got != w {
				t.Errorf("%s: arm %d filters %q, want %q", c.sql, i+1, got, w)
			}
		}
	}
}
