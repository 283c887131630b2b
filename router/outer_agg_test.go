package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestOuterAggregateByCatalog: an aggregate in a subquery whose unqualified
// columns none of the subquery's FROM items has is the outer query's
// (Postgres resolves the name outward, and the outer query then aggregates
// all its rows into one). The columns of subqueries, VALUES, CTEs and
// set-returning functions come from their text, a table's from the
// catalog; a FROM item whose columns neither tells gets a refusal rather
// than a guess. Each "outer" case returns one row on Postgres, and would
// return one row per shard if it were not refused.
func TestOuterAggregateByCatalog(t *testing.T) {
	r, _ := newTestRouter(t)
	catalog := map[string][]string{".orders": {"id", "customer_id", "total"}, ".products": {"id", "name", "price"}}
	// A failed lookup takes the columns as the subquery's own.
	broken := func(context.Context, string, string) ([]string, error) { return nil, errors.New("catalog down") }
	if _, _, err := routeWith(r, "SELECT (SELECT max(total) FROM products LIMIT 1) FROM orders", nil, Args{Columns: broken}); err != nil {
		t.Errorf("with the catalog down: %v", err)
	}
	resolve := func(_ context.Context, schema, rel string) ([]string, error) {
		if cols, ok := catalog[schema+"."+rel]; ok {
			return cols, nil
		}
		return nil, fmt.Errorf("no table %s", rel)
	}
	const outer, unknown = "of the outer query", "over unqualified columns"
	cases := []struct{ sql, msg string }{
		{"SELECT (SELECT max(total) FROM products LIMIT 1) FROM orders", outer},              // products has no total
		{"SELECT (SELECT max(price) FROM products) FROM orders", ""},                         // its own price
		{"SELECT (SELECT max(price) + max(total) FROM products LIMIT 1) FROM orders", outer}, // the second max() is the outer query's
		{"SELECT (SELECT max(total) FROM products p JOIN orders o2 ON o2.customer_id = 1) FROM orders WHERE customer_id = 1", ""},
		{"SELECT (SELECT max(total) FROM products AS p(total)) FROM orders", ""},  // products.id renamed total
		{"SELECT (SELECT max(id) FROM products AS p(pid)) FROM orders", outer},    // products.id is pid there
		{"SELECT (SELECT max(price) FROM products AS p(pid)) FROM orders", ""},    // price keeps its name
		{"SELECT (SELECT sum(total) FROM (SELECT 1 AS x) s) FROM orders", outer},  // a subquery without total
		{"SELECT (SELECT sum(x) FROM (SELECT 1 AS x) s) FROM orders", ""},         // its own x
		{"SELECT (SELECT sum(total) FROM (SELECT 1 AS total) s) FROM orders", ""}, // shadows the outer total
		{"SELECT (SELECT sum(total) FROM (SELECT 1) s(total)) FROM orders", ""},   // named by the alias
		{"SELECT (SELECT sum(total) FROM (SELECT price FROM products) s) FROM orders", outer},
		{"SELECT (SELECT sum(price) FROM (SELECT price FROM products) s) FROM orders", ""},
		{"SELECT (SELECT sum(price) FROM (SELECT price::int FROM products) s) FROM orders", ""},
		{"SELECT (SELECT sum(count) FROM (SELECT count(*) FROM products) s) FROM orders", ""},
		{"SELECT (SELECT sum(total) FROM (SELECT * FROM products) s) FROM orders", outer}, // the star is products'
		{"SELECT (SELECT sum(price) FROM (SELECT * FROM products) s) FROM orders", ""},    // ... which has price
		{"SELECT (SELECT sum(total) FROM (SELECT p.* FROM products p) s) FROM orders", unknown},
		{"SELECT (SELECT sum(total) FROM (VALUES (1)) v(x)) FROM orders", outer},
		{"SELECT (SELECT sum(column1) FROM (VALUES (1)) v) FROM orders", ""},
		{"SELECT (SELECT sum(total) FROM generate_series(1, 2) g) FROM orders", outer},
		{"SELECT (SELECT sum(g) FROM generate_series(1, 2) g) FROM orders", ""},
		{"SELECT (SELECT sum(generate_series) FROM generate_series(1, 2)) FROM orders", ""},
		{"SELECT (SELECT sum(ordinality) FROM unnest(ARRAY[1]) WITH ORDINALITY u) FROM orders", ""},
		{"SELECT (SELECT sum(total) FROM json_each('{}') j) FROM orders", unknown}, // a row type
		{"SELECT (SELECT sum(total) FROM json_to_record('{}') AS j(a int)) FROM orders", outer},
		{"WITH c AS (SELECT 1 AS z) SELECT (SELECT sum(total) FROM c) FROM orders", outer},
		{"WITH c AS (SELECT 1 AS z) SELECT (SELECT sum(z) FROM c) FROM orders", ""},
		{"WITH c(total) AS (SELECT 1) SELECT (SELECT sum(total) FROM c) FROM orders", ""},
		{"WITH c AS (SELECT * FROM products) SELECT (SELECT sum(total) FROM c) FROM orders", outer},
		{"WITH c AS (SELECT p.* FROM products p) SELECT (SELECT sum(total) FROM c) FROM orders", unknown},
		{"WITH c AS (VALUES (1)) SELECT (SELECT sum(column1) FROM c) FROM orders", ""},
		{"SELECT (SELECT sum(total) FROM (WITH w AS (SELECT 1 AS q) SELECT * FROM w) s) FROM orders", outer},
		{"SELECT (SELECT sum(total) FROM (SELECT 1 AS a UNION ALL SELECT 2) s) FROM orders", outer},
		{"SELECT (SELECT sum(a) FROM (SELECT 1 AS a UNION ALL SELECT 2) s) FROM orders", ""},
		{"SELECT (SELECT sum(total) FROM products JOIN generate_series(1, 2) g ON g = id) FROM orders", outer},
		{"SELECT (SELECT sum(total) FROM products, json_each('{}') j) FROM orders", unknown},
		{"SELECT (SELECT sum(price) FROM products, json_each('{}') j) FROM orders", ""}, // products has it
		// A CTE whose star reads itself is followed only so far (and refused).
		{"WITH RECURSIVE c AS (SELECT * FROM c) SELECT (SELECT sum(total) FROM c) FROM orders", "across shards"},
	}
	for _, tc := range cases {
		_, rt, err := routeWith(r, tc.sql, nil, Args{Columns: resolve, MergeOnly: true})
		switch {
		case tc.msg == "" && err != nil:
			t.Errorf("%s: %v", tc.sql, err)
		case tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg)):
			t.Errorf("%s: routed %s, %v; want 0A000 containing %q", tc.sql, formatRoute(rt, nil), err, tc.msg)
		}
	}
}
