package router

import (
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// planStatements are printed with their routes and plans into
// testdata/router/plans.txt. Review the diff when it changes; regenerate
// with `go test ./router -run TestPlanGolden -update`.
var planStatements = []struct {
	sql    string
	params []string
}{
	// Nothing to merge: concatenation, no plan.
	{sql: "SELECT id, total FROM orders WHERE status = 'open'"},
	{sql: "SELECT id FROM orders UNION ALL SELECT id FROM order_items"},
	// One shard: the shard answers everything, no plan.
	{sql: "SELECT * FROM orders WHERE customer_id = {c1} ORDER BY id LIMIT 3"},
	{sql: "SELECT count(*) FROM orders WHERE customer_id = {c0}"},
	// ORDER BY.
	{sql: "SELECT id, total FROM orders ORDER BY total DESC"},
	{sql: "SELECT id, total AS t FROM orders ORDER BY t, id DESC NULLS LAST"},
	{sql: "SELECT id, total FROM orders ORDER BY 2 DESC, 1"},
	{sql: "SELECT id FROM orders ORDER BY created_at NULLS FIRST, total * 2"},
	{sql: "SELECT * FROM orders ORDER BY id"},
	{sql: "SELECT * FROM orders ORDER BY 3, status"},
	{sql: "SELECT o.id, i.qty FROM orders o JOIN order_items i ON i.customer_id = o.customer_id ORDER BY i.qty"},
	{sql: "SELECT o.id, p.name FROM orders o JOIN products p ON p.id = o.product_id ORDER BY p.name, o.id"},
	{sql: "SELECT id FROM orders WHERE customer_id IN ({c0}, {c1}) ORDER BY lower(status)"},
	{sql: "SELECT id, status FROM orders ORDER BY lower(status), lower(status)"},
	// LIMIT / OFFSET.
	{sql: "SELECT * FROM orders LIMIT 5"},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT 10 OFFSET 20"},
	{sql: "SELECT id FROM orders ORDER BY id OFFSET 20"},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT ALL OFFSET 2"},
	{sql: "SELECT id FROM orders ORDER BY id FETCH FIRST 3 ROWS ONLY"},
	{sql: "SELECT id FROM orders ORDER BY id LIMIT $1 OFFSET $2", params: []string{"10", "5"}},
	{sql: "SELECT id FROM orders WHERE status = $1 ORDER BY id LIMIT 10", params: []string{"open"}},
	{sql: "SELECT id FROM orders ORDER BY id OFFSET $1", params: []string{"1"}},
	{sql: "SELECT status, avg(total) FROM orders GROUP BY status ORDER BY 2 LIMIT $1 OFFSET $2", params: []string{"2", "1"}},
	{sql: "SELECT status, count(*) FROM orders WHERE total > $1 GROUP BY status HAVING max(total) < $2 OR count(*) = $3", params: []string{"1", "100", "2"}},
	// Aggregates.
	{sql: "SELECT count(*) FROM orders"},
	{sql: "SELECT count(*), count(status), sum(total), min(created_at), max(total) FROM orders"},
	{sql: "SELECT avg(total) FROM orders"},
	{sql: "SELECT bool_and(paid), every(paid), bool_or(paid) FROM orders"},
	{sql: "SELECT count(DISTINCT customer_id) FROM orders"},
	{sql: "SELECT count(DISTINCT o.customer_id) FROM orders o JOIN order_items i USING (customer_id)"},
	{sql: "SELECT count(DISTINCT status) FROM orders"},
	{sql: "SELECT status, count(DISTINCT product_id), count(*) FROM orders GROUP BY status"},
	{sql: "SELECT avg(total) AS mean, count(*) n FROM orders WHERE status <> 'void'"},
	// GROUP BY, HAVING, ORDER BY on aggregates.
	{sql: "SELECT status, count(*) FROM orders GROUP BY status"},
	{sql: "SELECT status FROM orders GROUP BY status"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY 1"},
	{sql: "SELECT count(*) FROM orders GROUP BY status, date_trunc('day', created_at)"},
	{sql: "SELECT status, date_trunc('day', created_at) AS d, sum(total) FROM orders GROUP BY status, date_trunc('day', created_at)"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) > 1"},
	{sql: "SELECT status, sum(total) FROM orders GROUP BY status HAVING avg(total) >= 10 AND (max(total) < 100 OR min(total) IS NULL)"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING NOT (status = 'void') AND 5 < count(*)"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) > $1", params: []string{"3"}},
	{sql: "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY n DESC, status LIMIT 3"},
	{sql: "SELECT status FROM orders GROUP BY status ORDER BY sum(total) DESC"},
	{sql: "SELECT status, avg(total) FROM orders GROUP BY status ORDER BY avg(total) LIMIT 5 OFFSET 1"},
	{sql: "SELECT customer_id, count(*) FROM orders GROUP BY customer_id ORDER BY 2 DESC"},
	{sql: "SELECT count(*) FROM orders HAVING count(*) > 0"},
	// FILTER stays on the shards' partials (avg's hidden count too).
	{sql: "SELECT status, count(*) FILTER (WHERE paid), avg(total) FILTER (WHERE paid) FROM orders GROUP BY status HAVING sum(total) FILTER (WHERE paid) > 0 ORDER BY 1"},
	// DISTINCT.
	{sql: "SELECT DISTINCT status FROM orders"},
	{sql: "SELECT DISTINCT status, total FROM orders ORDER BY total DESC LIMIT 4"},
	{sql: "SELECT DISTINCT ON (customer_id) customer_id, id, total FROM orders ORDER BY customer_id, total DESC"},
	{sql: "SELECT DISTINCT ON (status) id FROM orders ORDER BY status, id LIMIT 2"},
	{sql: "SELECT DISTINCT status, count(*) FROM orders GROUP BY status, product_id"},
	// Literals and parameters in the shard text.
	{sql: "SELECT id FROM orders WHERE note = 'it''s $1' AND total > -5 ORDER BY id LIMIT 7"},
	{sql: "SELECT id FROM orders WHERE note = E'a\\nb' ORDER BY id"},
	// Expressions over aggregates: evaluated by Postgres over the merged
	// aggregates (Evaluate); the shards return a typed placeholder.
	{sql: "SELECT sum(total) * 2 FROM orders"},
	{sql: "SELECT coalesce(count(*), 0) FROM orders"},
	{sql: "SELECT avg(total)::int FROM orders"},
	{sql: "SELECT status, round(avg(total), 2) AS a, count(*) * 100.0 / 7 FROM orders GROUP BY status ORDER BY sum(total) / count(*) DESC, a"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) + 1 > 2 * min(flags) OR status IN ('x', 'y')"},
	{sql: "SELECT upper(status) || $1 || count(*) FROM orders GROUP BY status HAVING sum(flags) > $2", params: []string{":", "1"}},
	{sql: "SELECT paid, CASE WHEN count(*) > 1 THEN 'many' WHEN paid THEN 'one paid' END FROM orders GROUP BY paid"},
	{sql: "SELECT count(DISTINCT customer_id) * 2, sum(flags) + 1 FROM orders"},
	// Aggregates gathered whole: the shards return their inputs as
	// arrays, Postgres runs the aggregate over them.
	{sql: "SELECT string_agg(status, ',') FROM orders"},
	{sql: "SELECT count(DISTINCT status) FILTER (WHERE paid) FROM orders"},
	{sql: "SELECT status, string_agg(DISTINCT note, ', ' ORDER BY note) || '.', percentile_cont(0.5) WITHIN GROUP (ORDER BY total) FROM orders GROUP BY status HAVING stddev(total) > 1"},
	{sql: "SELECT count(DISTINCT status), count(DISTINCT product_id), count(DISTINCT customer_id) FROM orders"},
	// Refusals.
	{sql: "SELECT row_number() OVER (ORDER BY id) FROM orders"},
	{sql: "SELECT id, sum(total) OVER (PARTITION BY status ORDER BY id) AS s FROM orders ORDER BY s DESC, id LIMIT 3"},
	{sql: "SELECT status, count(*), rank() OVER (ORDER BY count(*) DESC) FROM orders GROUP BY status HAVING sum(total) > $1", params: []string{"5"}},
	{sql: "SELECT row_number() OVER () FROM orders"},
	{sql: "SELECT status, string_agg(note, ',' ORDER BY note COLLATE \"C\") FROM orders GROUP BY status HAVING max(note) COLLATE \"POSIX\" > 'a'"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY ROLLUP (status)"},
	{sql: "SELECT * FROM orders ORDER BY id FOR UPDATE"},
	{sql: "SELECT id FROM orders UNION SELECT id FROM order_items"},
	{sql: "SELECT id FROM orders UNION ALL SELECT id FROM order_items ORDER BY 1"},
	{sql: "SELECT id, status FROM orders INTERSECT SELECT id, tag FROM orders WHERE paid ORDER BY 2 LIMIT 4"},
	{sql: "SELECT id FROM orders EXCEPT ALL (SELECT id FROM order_items UNION SELECT customer_id FROM orders)"},
	{sql: "SELECT * FROM (SELECT customer_id, count(*) FROM orders GROUP BY 1) s"},
	// Correlated on the shard key: the subquery runs whole on the row's shard.
	{sql: "SELECT * FROM orders WHERE id IN (SELECT order_id FROM order_items i WHERE i.customer_id = orders.customer_id LIMIT 1)"},
	{sql: "SELECT count(*) FROM orders o WHERE flags < (SELECT avg(i.qty) FROM order_items i WHERE i.customer_id = o.customer_id)"},
	{sql: "SELECT (SELECT max(i.qty) FROM order_items i WHERE i.customer_id = o.customer_id) FROM orders o"},
	{sql: "SELECT *, count(*) FROM orders GROUP BY id"},
	{sql: "SELECT DISTINCT ON (status) id FROM orders"},
	{sql: "SELECT DISTINCT ON (status, 1) id, total FROM orders LIMIT 3"},
	{sql: "SELECT lower(status) AS status, count(*) FROM orders GROUP BY status"},
	{sql: "SELECT count(DISTINCT status), count(DISTINCT product_id) FROM orders"},
	{sql: "SELECT id FROM orders LIMIT 2 * 3"},
	// Grouped by the shard key: every group is on one shard, so the shards
	// aggregate completely and the proxy merges finished groups.
	{sql: "SELECT o.customer_id, string_agg(status, ',' ORDER BY id), sum(total) * 2 AS t FROM orders o GROUP BY o.customer_id HAVING count(*) > length(min(status)) ORDER BY t DESC, 1 LIMIT 10"},
	{sql: "SELECT customer_id, count(*) FROM orders GROUP BY 1"},
	{sql: "SELECT status, count(*) FROM orders GROUP BY status, customer_id ORDER BY 2 DESC LIMIT 3"},
	// ... but not when the key is another table's in a join (outer joins
	// make NULL groups on every shard).
	{sql: "SELECT o.customer_id, count(*) FROM orders o JOIN order_items i ON i.customer_id = o.customer_id GROUP BY o.customer_id"},
}

func TestPlanGolden(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	var b strings.Builder
	b.WriteString("# statement [params] -> route, then the merge plan (generated by TestPlanGolden; -update rewrites)\n\n")
	for _, g := range planStatements {
		sql := keys.Replace(g.sql)
		_, rt, err := routeWith(r, sql, g.params, Args{MergeOnly: true})
		b.WriteString(sql + "\n")
		if g.params != nil {
			b.WriteString("  params: " + strings.Join(g.params, ", ") + "\n")
		}
		b.WriteString("  -> " + formatRoute(rt, err) + "\n")
		if rt.Plan != nil {
			b.WriteString("     " + strings.ReplaceAll(rt.Plan.String(), "\n", "\n     ") + "\n")
		}
		b.WriteString("\n")
	}
	checkGolden(t, filepath.Join("..", "testdata", "router", "plans.txt"), b.String())
}

// chain lists the node types from the root down the first children.
func chain(n Node) []string {
	var out []string
	for n != nil {
		out = append(out, strings.TrimPrefix(reflect.TypeOf(n).String(), "*router."))
		kids := n.Children()
		if len(kids) == 0 {
			break
		}
		n = kids[0]
	}
	return out
}

func leaf(n Node) *Scatter {
	for {
		if s, ok := n.(*Scatter); ok {
			return s
		}
		n = n.Children()[0]
	}
}

func find[T Node](n Node) T {
	var zero T
	for n != nil {
		if x, ok := n.(T); ok {
			return x
		}
		kids := n.Children()
		if len(kids) == 0 {
			break
		}
		n = kids[0]
	}
	return zero
}

func planOf(t *testing.T, r *Router, sql string) *ScatterPlan {
	t.Helper()
	parts, err := r.ParseQuery(sql)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parts[0].Stmt.Plan()
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return p
}

func TestPlanShapes(t *testing.T) {
	r, _ := newTestRouter(t)
	cases := []struct {
		sql    string
		chain  string // node types, root first; "" = no plan
		hidden int
		shard  string // Scatter SQL with $n holes
	}{
		{sql: "SELECT id FROM orders WHERE total > 5", chain: ""},
		{sql: "SELECT id FROM orders UNION ALL SELECT id FROM order_items", chain: ""},
		{sql: "SELECT status, sum(DISTINCT qty), avg(DISTINCT qty) FILTER (WHERE total > 1), count(DISTINCT qty) FROM orders GROUP BY status", chain: "Project Aggregate Concatenate Scatter", hidden: 1,
			shard: "SELECT status, sum(DISTINCT qty), sum(DISTINCT qty) FILTER (WHERE total > $1) AS avg, qty AS count, count(DISTINCT qty) FILTER (WHERE total > $1) AS _sp_h0 FROM orders GROUP BY status, qty"},
		{sql: "SELECT id FROM orders UNION SELECT id FROM order_items", chain: "Distinct Concatenate Scatter",
			shard: "SELECT id FROM orders UNION SELECT id FROM order_items"},
		{sql: "SELECT id AS k FROM orders UNION ALL SELECT id FROM order_items ORDER BY k DESC LIMIT 3 OFFSET 2", chain: "Limit MergeSort Scatter",
			shard: "SELECT id AS k FROM orders UNION ALL SELECT id FROM order_items ORDER BY k DESC LIMIT $1::int8 + $2::int8"},
		{sql: "SELECT id, total FROM orders UNION SELECT id, qty FROM order_items ORDER BY 2, 1 LIMIT 5", chain: "Limit Distinct MergeSort Scatter",
			shard: "SELECT id, total FROM orders UNION SELECT id, qty FROM order_items ORDER BY 2, 1 LIMIT $1"},
		{sql: "SELECT o.id FROM products p JOIN orders o ON o.product_id = p.id", chain: ""},
		{sql: "SELECT o.id, p.id FROM orders o LEFT JOIN products p ON o.product_id = p.id", chain: ""},
		{sql: "WITH x AS (SELECT * FROM orders) SELECT status, count(*) FROM x GROUP BY status", chain: "Aggregate Concatenate Scatter",
			shard: "WITH x AS (SELECT * FROM orders) SELECT status, count(*) FROM x GROUP BY status"},
		{sql: "SELECT id FROM orders TABLESAMPLE SYSTEM (10) ORDER BY 1", chain: "MergeSort Scatter",
			shard: "SELECT id FROM orders TABLESAMPLE system($1) ORDER BY 1"},
		{sql: "WITH orders AS (SELECT * FROM orders) SELECT id FROM orders ORDER BY id", chain: "MergeSort Scatter",
			shard: "WITH orders AS (SELECT * FROM orders) SELECT id FROM orders ORDER BY id"},
		{sql: "SELECT count(*) FROM (SELECT * FROM orders) s", chain: "Aggregate Concatenate Scatter",
			shard: "SELECT count(*) FROM (SELECT * FROM orders) s"},
		{sql: "SELECT id, total FROM orders ORDER BY total DESC", chain: "MergeSort Scatter",
			shard: "SELECT id, total FROM orders ORDER BY total DESC"},
		{sql: "SELECT id FROM orders ORDER BY created_at", chain: "Project MergeSort Scatter", hidden: 1,
			shard: "SELECT id, created_at AS _sp_h0 FROM orders ORDER BY created_at"},
		{sql: "SELECT * FROM orders ORDER BY 2, id", chain: "Project MergeSort Scatter", hidden: 1,
			shard: "SELECT *, id AS _sp_h0 FROM orders ORDER BY 2, id"},
		{sql: "SELECT * FROM orders LIMIT 5", chain: "Limit Concatenate Scatter",
			shard: "SELECT * FROM orders LIMIT $1"},
		{sql: "SELECT id FROM orders ORDER BY id LIMIT 10 OFFSET 20", chain: "Limit MergeSort Scatter",
			shard: "SELECT id FROM orders ORDER BY id LIMIT $1::int8 + $2::int8"},
		{sql: "SELECT id FROM orders ORDER BY id OFFSET 20", chain: "Limit MergeSort Scatter",
			shard: "SELECT id FROM orders ORDER BY id LIMIT NULLIF($1::int8, $1::int8)"},
		{sql: "SELECT count(*) FROM orders", chain: "Aggregate Concatenate Scatter",
			shard: "SELECT count(*) FROM orders"},
		{sql: "SELECT avg(total) FROM orders", chain: "Project Aggregate Concatenate Scatter", hidden: 1,
			shard: "SELECT sum(total) AS avg, count(total) AS _sp_h0 FROM orders"},
		{sql: "SELECT count(DISTINCT status) FROM orders", chain: "Project Aggregate Concatenate Scatter",
			shard: "SELECT status AS count FROM orders GROUP BY status"},
		{sql: "SELECT count(DISTINCT customer_id) FROM orders", chain: "Aggregate Concatenate Scatter",
			shard: "SELECT count(DISTINCT customer_id) FROM orders"},
		{sql: "SELECT status, count(*) FROM orders GROUP BY status HAVING sum(total) > 1 ORDER BY 2 DESC LIMIT 3",
			chain: "Project Limit Sort Aggregate Concatenate Scatter", hidden: 1,
			shard: "SELECT status, count(*), sum(total) AS _sp_h0 FROM orders GROUP BY status HAVING sum(total) > $1 OR true LIMIT NULLIF($2::int8, $2::int8)"},
		{sql: "SELECT count(*) FROM orders GROUP BY status", chain: "Project Aggregate Concatenate Scatter", hidden: 1,
			shard: "SELECT count(*), status AS _sp_h0 FROM orders GROUP BY status"},
		{sql: "SELECT DISTINCT status FROM orders ORDER BY status LIMIT 2", chain: "Limit Distinct MergeSort Scatter",
			shard: "SELECT DISTINCT status FROM orders ORDER BY status LIMIT $1"},
		{sql: "SELECT DISTINCT ON (status) id FROM orders ORDER BY status, id", chain: "Project Distinct MergeSort Scatter", hidden: 1,
			shard: "SELECT DISTINCT ON (status) id, status AS _sp_h0 FROM orders ORDER BY status, id"},
		{sql: "SELECT DISTINCT ON (status) id FROM orders", chain: "Project Distinct MergeSort Scatter", hidden: 1,
			shard: "SELECT DISTINCT ON (status) id, status AS _sp_h0 FROM orders ORDER BY status"},
		{sql: "SELECT DISTINCT status FROM orders GROUP BY status, total", chain: "Project Distinct Aggregate Concatenate Scatter", hidden: 1,
			shard: "SELECT status, total AS _sp_h0 FROM orders GROUP BY status, total"},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			p := planOf(t, r, c.sql)
			if c.chain == "" {
				if p != nil {
					t.Fatalf("want no plan, got\n%s", p)
				}
				return
			}
			if p == nil {
				t.Fatal("no plan")
			}
			if got := strings.Join(chain(p.Root), " "); got != c.chain {
				t.Errorf("nodes %q, want %q\n%s", got, c.chain, p)
			}
			if p.Hidden != c.hidden {
				t.Errorf("hidden %d, want %d", p.Hidden, c.hidden)
			}
			got := leaf(p.Root).SQL.Render(func(n int) string { return "$" + strconv.Itoa(n) })
			if got != c.shard {
				t.Errorf("shard SQL\n got %s\nwant %s", got, c.shard)
			}
			if _, err := pg.Parse(got); err != nil {
				t.Errorf("shard SQL does not parse: %v", err)
			}
		})
	}
}

// TestPlanColumns checks the ColRefs and aggregate specs the executor relies on.
func TestPlanColumns(t *testing.T) {
	r, _ := newTestRouter(t)
	t.Run("sort keys", func(t *testing.T) {
		p := planOf(t, r, "SELECT id, total AS t FROM orders ORDER BY t DESC, created_at NULLS FIRST, 1 ASC NULLS LAST, id DESC NULLS LAST")
		ms := find[*MergeSort](p.Root)
		want := []SortKey{
			{Col: ColRef{Index: 1}, Desc: true, NullsFirst: true},
			{Col: ColRef{Hidden: true, Index: 0}, NullsFirst: true},
			{Col: ColRef{Index: 0}},
			{Col: ColRef{Index: 0}, Desc: true},
		}
		if !reflect.DeepEqual(ms.Keys, want) {
			t.Errorf("keys %v, want %v", ms.Keys, want)
		}
	})
	t.Run("aggregates", func(t *testing.T) {
		p := planOf(t, r, "SELECT status, avg(total), count(*), count(DISTINCT product_id), bool_or(paid) FROM orders GROUP BY status HAVING max(total) > 3")
		ag := find[*Aggregate](p.Root)
		want := []AggSpec{
			{Func: AggAvg, Col: ColRef{Index: 1}, Count: ColRef{Hidden: true, Index: 0}},
			{Func: AggCount, Col: ColRef{Index: 2}},
			{Func: AggCountDistinct, Col: ColRef{Index: 3}},
			{Func: AggBoolOr, Col: ColRef{Index: 4}},
			{Func: AggMax, Col: ColRef{Hidden: true, Index: 1}},
		}
		if !reflect.DeepEqual(ag.Aggs, want) {
			t.Errorf("aggs %v, want %v", ag.Aggs, want)
		}
		if !reflect.DeepEqual(ag.GroupBy, []ColRef{{Index: 0}}) {
			t.Errorf("group by %v", ag.GroupBy)
		}
		wantHaving := &Expr{Op: ExprCmp, Cmp: ">", Col: ColRef{Hidden: true, Index: 1}, Value: ValueRef{Param: 1}}
		if !reflect.DeepEqual(ag.Having, wantHaving) {
			t.Errorf("having %v, want %v", ag.Having, wantHaving)
		}
		if p.Hidden != 2 {
			t.Errorf("hidden %d", p.Hidden)
		}
	})
	t.Run("having flipped and nested", func(t *testing.T) {
		p := planOf(t, r, "SELECT status FROM orders GROUP BY status HAVING 2 <= count(*) OR NOT status IS NULL")
		h := find[*Aggregate](p.Root).Having
		if got := h.String(); got != "(h0 >= $1 OR NOT c0 IS NULL)" {
			t.Errorf("having %s", got)
		}
	})
	t.Run("limit values", func(t *testing.T) {
		p := planOf(t, r, "SELECT id FROM orders ORDER BY id LIMIT ALL OFFSET 4")
		l := find[*Limit](p.Root)
		if !l.Count.Null || l.Offset.Param != 1 {
			t.Errorf("limit %s", l.Describe())
		}
		got := leaf(p.Root).SQL.Render(func(n int) string { return "$" + strconv.Itoa(n) })
		if got != "SELECT id FROM orders ORDER BY id LIMIT NULL + (NULLIF($1::int8, $1::int8))" {
			t.Errorf("shard SQL %q", got)
		}
	})
	t.Run("distinct on", func(t *testing.T) {
		p := planOf(t, r, "SELECT DISTINCT ON (customer_id, status) id FROM orders ORDER BY status, customer_id, id")
		d := find[*Distinct](p.Root)
		if !reflect.DeepEqual(d.On, []ColRef{{Hidden: true, Index: 1}, {Hidden: true, Index: 0}}) {
			t.Errorf("on %v", d.On)
		}
	})
}

// TestPlanRefusals: statements whose rows cannot be merged exactly get
// 0A000 naming the construct (with a hint) when they span shards, and
// still run when they target one shard.
func TestPlanRefusals(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	cases := []struct{ sql, msg string }{
		{"SELECT count(*) + (SELECT count(*) FROM products) FROM orders", "subquery in an expression over aggregates"},
		{"SELECT status FROM orders GROUP BY status HAVING count(*) > (SELECT 1)", "subquery in an expression over aggregates"},
		{"SELECT status, generate_series(1, count(*)::int) FROM orders GROUP BY status", "set-returning function generate_series() in an expression over aggregates"},
		{"SELECT o.customer_id, count(DISTINCT o.status) + length(o.note) FROM orders o JOIN order_items i ON i.customer_id = o.customer_id GROUP BY o.customer_id", "reads a column other than a GROUP BY expression, with a DISTINCT aggregate"},
		{"SELECT * FROM products WHERE id IN (SELECT product_id FROM orders)", "rows come from reference tables"},
		{"WITH x AS (UPDATE orders SET total = 0 RETURNING *) SELECT * FROM x", "data-modifying statement in WITH"},
		{"SELECT (SELECT max(o.total)) FROM orders o", "aggregate max() of the outer query written inside a subquery"},
		{"SELECT (SELECT sum(p.price) + count(o.id) FROM products p) FROM orders o", "aggregate count() of the outer query"},
		{"SELECT EXISTS (SELECT 1 FROM products p GROUP BY p.id HAVING max(o.total) > 1) FROM orders o", "aggregate max() of the outer query"},
		{"WITH x AS (DELETE FROM orders WHERE status = 'void' RETURNING id) SELECT count(*) FROM x", "data-modifying statement in WITH"},
		{"SELECT count(*) FROM products p WHERE EXISTS (SELECT 1 FROM orders o WHERE o.product_id = p.id)", "rows come from reference tables"},
		{"SELECT p.id, o.id FROM products p LEFT JOIN orders o ON o.product_id = p.id", "nullable side of an outer join"},
		{"SELECT id FROM orders UNION ALL SELECT id FROM products WHERE id IN (SELECT product_id FROM order_items)", "rows come from reference tables"},
		{"SELECT *, row_number() OVER (ORDER BY id) FROM orders", "SELECT * with window functions"},
		{"SELECT o, rank() OVER (ORDER BY total) FROM orders o", "whole row with window functions"},
		{"SELECT DISTINCT ON (status) status, rank() OVER (ORDER BY total) FROM orders", "DISTINCT ON with window functions"},
		{"SELECT sum(total) OVER w FROM orders WINDOW w AS (PARTITION BY status)", "WINDOW clause"},
		{"SELECT status, count(*) FROM orders GROUP BY ROLLUP (status)", "GROUPING SETS, ROLLUP or CUBE"},
		{"SELECT status, count(*) FROM orders GROUP BY CUBE (status)", "GROUPING SETS, ROLLUP or CUBE"},
		{"SELECT status, count(*) FROM orders GROUP BY GROUPING SETS ((status), ())", "GROUPING SETS"},
		{"SELECT * FROM orders FOR UPDATE", "FOR UPDATE across shards"},
		{"SELECT * FROM orders ORDER BY id FOR SHARE", "FOR SHARE across shards"},
		{"SELECT * FROM orders FOR NO KEY UPDATE SKIP LOCKED", "FOR NO KEY UPDATE across shards"},
		{"SELECT * FROM orders FOR KEY SHARE", "FOR KEY SHARE across shards"},
		{"SELECT id FROM orders UNION SELECT 1", "UNION with an arm whose rows do not come from a sharded table"},
		{"SELECT id FROM orders UNION SELECT id FROM order_items ORDER BY id + 1", "ORDER BY over a UNION"},
		{"(SELECT id FROM orders UNION SELECT id FROM order_items LIMIT 2) UNION ALL SELECT id FROM orders", "in a subquery"},
		{"SELECT id FROM orders INTERSECT SELECT id FROM order_items, generate_series(1, 2) g", "INTERSECT across shards"},
		{"SELECT id FROM orders EXCEPT SELECT DISTINCT id FROM order_items", "in a subquery"},
		{"SELECT id FROM orders UNION ALL SELECT 1", "UNION ALL with an arm that reads no sharded table"},
		{"SELECT * FROM (SELECT customer_id, count(*) FROM orders GROUP BY 1) s", "in a subquery"},
		{"SELECT * FROM orders o WHERE total > (SELECT avg(total) FROM order_items i WHERE i.customer_id = o.customer_id OR i.qty > 1)", "without equating their shard keys"},
		{"SELECT * FROM orders o WHERE total > (SELECT avg(total) FROM order_items i WHERE i.product_id = o.product_id)", "without equating their shard keys"},
		{"SELECT * FROM (SELECT * FROM orders ORDER BY id LIMIT 5) s", "in a subquery"},
		{"WITH t AS (SELECT status, count(*) FROM orders GROUP BY status) SELECT * FROM t", "in a subquery"},
		{"SELECT *, count(*) FROM orders GROUP BY id", "SELECT * with GROUP BY"},
		{"SELECT * FROM orders GROUP BY id", "SELECT * with GROUP BY"},
		{"SELECT DISTINCT ON (status) status, count(*) FROM orders GROUP BY status ORDER BY status", "DISTINCT ON with GROUP BY"},
		{"SELECT lower(status) AS status, count(*) FROM orders GROUP BY status", "GROUP BY output column name"},
		{"SELECT 1 AS one, count(DISTINCT status) FROM orders", "non-aggregate column with count(DISTINCT)"},
		{"SELECT id FROM orders LIMIT 2 * 3", "LIMIT with an expression"},
		{"SELECT json_agg(o) FROM orders o", "aggregate json_agg() over whole rows"},
		{"SELECT status, array_agg(o.* ORDER BY o.id) FROM orders o GROUP BY status", "aggregate array_agg() over whole rows"},
		{"SELECT concat_ws(VARIADIC ARRAY[status]) FROM orders GROUP BY status HAVING max(1) > 0 AND string_agg(VARIADIC ARRAY[status, 'x']) > ''", "VARIADIC"},
		{"SELECT id FROM orders ORDER BY id OFFSET (SELECT 1)", "OFFSET with an expression"},
		{"SELECT id FROM orders ORDER BY id FETCH FIRST 3 ROWS WITH TIES", "WITH TIES"},
		{"SELECT id FROM orders ORDER BY id USING <", "ORDER BY ... USING"},
		{"SELECT status, count(*) FROM orders GROUP BY DISTINCT status", "GROUP BY DISTINCT"},
		{"WITH RECURSIVE t AS (SELECT id, parent_id FROM orders WHERE id = 1 UNION ALL SELECT o.id, o.parent_id FROM orders o JOIN t ON o.parent_id = t.id) SELECT * FROM t", "WITH RECURSIVE"},
		{"SELECT * FROM orders WHERE id IN (WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r)", "WITH RECURSIVE"},
	}
	if len(cases) < 30 {
		t.Fatalf("only %d refusals", len(cases))
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			_, rt, err := route(r, c.sql, nil, "")
			if err == nil {
				t.Fatalf("routed %s merge=%s, want 0A000", rt.Kind, rt.Merge)
			}
			pe := asPg(t, err)
			if pe.Code != codeFeatureNotSupport || !strings.Contains(pe.Message, c.msg) || pe.Hint == "" {
				t.Errorf("got %s %q (hint %q), want 0A000 containing %q", pe.Code, pe.Message, pe.Hint, c.msg)
			}
			// The same statement on one shard is the shard's business.
			keyed, ok := keyOnOrders(c.sql)
			if !ok {
				return
			}
			keyed = keys.Replace(keyed)
			if _, rt, err := route(r, keyed, nil, ""); err != nil || rt.Kind != RouteSingle || rt.Plan != nil {
				t.Errorf("on one shard (%s): %s", keyed, formatRoute(rt, err))
			}
		})
	}
}

// keyOnOrders adds a shard-key condition to the only `FROM orders` of a
// statement without WHERE, subqueries or set operations.
func keyOnOrders(sql string) (string, bool) {
	if strings.Count(sql, "FROM orders") != 1 || strings.Contains(sql, "(SELECT") {
		return "", false
	}
	for _, w := range []string{"WHERE", "UNION", "INTERSECT", "EXCEPT", "WITH "} {
		if strings.Contains(sql, w) {
			return "", false
		}
	}
	i := strings.Index(sql, "FROM orders") + len("FROM orders")
	rest := sql[i:]
	for _, next := range []string{"", " GROUP", " ORDER", " LIMIT", " FOR", " WINDOW", " HAVING"} {
		if rest == next || (next != "" && strings.HasPrefix(rest, next)) {
			return sql[:i] + " WHERE customer_id = {c1}" + rest, true
		}
	}
	return "", false
}

// TestPlanDistinctOrder: SELECT DISTINCT may only sort by selected
// columns; hidden sort columns must not make the shards accept it.
func TestPlanDistinctOrder(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, sql := range []string{
		"SELECT DISTINCT status FROM orders ORDER BY total",
		"SELECT DISTINCT status FROM orders GROUP BY status, total ORDER BY total",
	} {
		t.Run(sql, func(t *testing.T) {
			_, _, err := route(r, sql, nil, "")
			if code := sqlState(err); code != "42P10" {
				t.Errorf("got %q (%v), want 42P10", code, err)
			}
		})
	}
}

func TestSplitTemplate(t *testing.T) {
	cases := []struct {
		sql    string
		params []int
		pieces []string
	}{
		{"SELECT 1", nil, []string{"SELECT 1"}},
		{"SELECT $1, $12 FROM t", []int{1, 12}, []string{"SELECT ", ", ", " FROM t"}},
		{"SELECT '$1', $2", []int{2}, []string{"SELECT '$1', ", ""}},
		{"SELECT 'it''s $1' || $1", []int{1}, []string{"SELECT 'it''s $1' || ", ""}},
		{`SELECT E'\'$1' || $3`, []int{3}, []string{`SELECT E'\'$1' || `, ""}},
		{`SELECT "a$1", a$1, $1`, []int{1}, []string{`SELECT "a$1", a$1, `, ""}},
		{"SELECT $q$ $1 $q$, $$ $2 $$, $3", []int{3}, []string{"SELECT $q$ $1 $q$, $$ $2 $$, ", ""}},
		{"SELECT /* $1 /* $2 */ */ $4 -- $5\n, $6", []int{4, 6}, []string{"SELECT /* $1 /* $2 */ */ ", " -- $5\n, ", ""}},
		{"LIMIT $1::int8 + $2::int8", []int{1, 2}, []string{"LIMIT ", "::int8 + ", "::int8"}},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			tp := splitTemplate(c.sql)
			if !reflect.DeepEqual(tp.Params, c.params) || !reflect.DeepEqual(tp.Pieces, c.pieces) {
				t.Errorf("got %q %v, want %q %v", tp.Pieces, tp.Params, c.pieces, c.params)
			}
			if got := tp.Render(func(n int) string { return "$" + strconv.Itoa(n) }); got != c.sql {
				t.Errorf("render %q", got)
			}
		})
	}
}

// TestLiterals: the literals the normaliser lifts out are kept as written,
// so a Template renders back into the client's own text.
func TestLiterals(t *testing.T) {
	r, _ := newTestRouter(t)
	cases := []struct {
		sql  string
		lits []string
	}{
		{"SELECT * FROM orders WHERE id = 5", []string{"5"}},
		{"SELECT * FROM orders WHERE note = 'it''s' AND total > -1.5e3", []string{"'it''s'", "1.5e3"}},
		{`SELECT * FROM orders WHERE note = E'a\'b\n'`, []string{`E'a\'b\n'`}},
		{"SELECT * FROM orders WHERE note = '$1 inside'", []string{"'$1 inside'"}},
		{"SELECT id FROM orders ORDER BY 2, id LIMIT 3", []string{"3"}},
		{"SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 2 DESC, 1", nil},
		{"SELECT DISTINCT ON (1, status) id FROM orders ORDER BY 1, status, total LIMIT 2", []string{"2"}},
		{"SELECT DISTINCT ON (f(1), 2) id FROM orders ORDER BY f(1), 2", []string{"1", "1"}},
		{"SELECT * FROM orders WHERE id = $1 AND total > 5", nil},

		{"SELECT date '2024-01-01' FROM orders", nil},
	}
	for _, c := range cases {
		t.Run(c.sql, func(t *testing.T) {
			if got := r.Literals(c.sql); !reflect.DeepEqual(got, c.lits) {
				t.Errorf("Literals %q, want %q", got, c.lits)
			}
			// With ORDER BY the statement has a plan (or a gathering), and its part the Lits.
			sql := c.sql + " ORDER BY 1"
			if strings.Contains(c.sql, "ORDER BY") {
				sql = c.sql
			}
			parts, err := r.ParseQuery(sql)
			if err != nil {
				t.Fatal(err)
			}
			if p, _ := parts[0].Stmt.Plan(); p == nil && parts[0].Stmt.gather == nil && parts[0].Lits != nil {
				t.Errorf("Lits %q without a plan", parts[0].Lits)
			} else if p != nil && !reflect.DeepEqual(parts[0].Lits, c.lits) {
				t.Errorf("Lits %q, want %q", parts[0].Lits, c.lits)
			}
			if parts[0].Lits != nil && len(parts[0].Lits) != len(parts[0].Args) {
				t.Errorf("%d Lits, %d Args", len(parts[0].Lits), len(parts[0].Args))
			}
		})
	}
}

// TestPlanRenderLiterals: the simple protocol renders the shard query
// with the client's literal tokens; the result must be what a client
// could have written.
func TestPlanRenderLiterals(t *testing.T) {
	r, _ := newTestRouter(t)
	sql := `SELECT id FROM orders WHERE note = 'it''s $1' AND tag = E'\'x' AND total > -5 ORDER BY id LIMIT 7 OFFSET 2`
	parts, err := r.ParseQuery(sql)
	if err != nil {
		t.Fatal(err)
	}
	p, err := parts[0].Stmt.Plan()
	if err != nil || p == nil {
		t.Fatalf("plan %v %v", p, err)
	}
	lits := parts[0].Lits
	got := leaf(p.Root).SQL.Render(func(n int) string { return lits[n-1] })
	want := `SELECT id FROM orders WHERE note = 'it''s $1' AND tag = E'\'x' AND total > (- 5) ORDER BY id LIMIT 7::int8 + 2::int8`
	if got != want {
		t.Errorf("rendered\n got %s\nwant %s", got, want)
	}
	if _, err := pg.Parse(got); err != nil {
		t.Errorf("rendered SQL does not parse: %v", err)
	}
	l := find[*Limit](p.Root)
	if l.Count.Param != 4 || l.Offset.Param != 5 || lits[3] != "7" || lits[4] != "2" {
		t.Errorf("limit %s with lits %q", l.Describe(), lits)
	}
}

// TestPlanCached: texts that differ only in literals share one analysed
// statement and therefore one plan; single-shard routes carry no plan.
func TestPlanCached(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	a, _ := r.ParseQuery("SELECT id FROM orders WHERE total > 5 ORDER BY id LIMIT 10")
	b, _ := r.ParseQuery("SELECT id FROM orders WHERE total > 7 ORDER BY id LIMIT 20")
	pa, _ := a[0].Stmt.Plan()
	pb, _ := b[0].Stmt.Plan()
	if a[0].Stmt != b[0].Stmt || pa != pb || pa == nil {
		t.Errorf("plans not shared: %p %p", pa, pb)
	}
	c, _ := r.ParseQuery("SELECT id, total FROM orders ORDER BY 2")
	d, _ := r.ParseQuery("SELECT id, total FROM orders ORDER BY 1")
	if c[0].Stmt == d[0].Stmt {
		t.Error("ORDER BY 1 and ORDER BY 2 share a statement")
	}
	_, rt, err := route(r, keys.Replace("SELECT id FROM orders WHERE customer_id = {c0} ORDER BY id LIMIT 10"), nil, "")
	if err != nil || rt.Kind != RouteSingle || rt.Merge != MergeNone || rt.Plan != nil {
		t.Errorf("single shard: %s plan=%v", formatRoute(rt, err), rt.Plan)
	}
	_, rt, err = route(r, "SELECT id FROM orders ORDER BY id LIMIT 10", nil, "")
	if err != nil || rt.Merge != MergePlan || rt.Plan != pa && rt.Plan == nil {
		t.Errorf("keyless: %s", formatRoute(rt, err))
	}
}
