package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPlannerShapes compares merged SELECTs of the planner's less common
// shapes with the oracle: hidden sort and group columns, HAVING and
// LIMIT/OFFSET as parameters (the shard query keeps every parameter),
// count(DISTINCT), DISTINCT ON with and without ORDER BY, CTEs.
func TestPlannerShapes(t *testing.T) {
	_, px, oracle := scatterFixture(t, "")
	queries := []struct {
		sql    string
		args   []any
		sorted bool // no ORDER BY: compare as sets
	}{
		{sql: "SELECT customer_id FROM customers ORDER BY visits DESC, customer_id LIMIT 10"},
		{sql: "SELECT * FROM customers ORDER BY seen DESC LIMIT 5"},
		{sql: "SELECT customer_id FROM customers ORDER BY customer_id OFFSET $1", args: []any{int64(290)}},
		{sql: "SELECT region, avg(score) FROM customers GROUP BY region ORDER BY 2 DESC NULLS LAST LIMIT $1 OFFSET $2", args: []any{int64(2), int64(1)}},
		// Text arguments: binary HAVING parameters of unknown type are the
		// executor's open 0A000 (reported), not what this test is about.
		{sql: "SELECT visits, count(*) FROM customers GROUP BY visits HAVING max(score) > $1 OR count(*) = $2 ORDER BY 1", args: []any{"900", "23"}},
		{sql: "SELECT region FROM customers GROUP BY region HAVING NOT (region IS NULL) AND sum(visits) >= 10 ORDER BY 1"},
		{sql: "SELECT count(*) FROM customers GROUP BY region, vip ORDER BY 1"},
		{sql: "SELECT count(DISTINCT name) FROM customers"},
		{sql: "SELECT count(DISTINCT customer_id), count(*) FROM customers WHERE visits > 3"},
		{sql: "SELECT region, count(DISTINCT visits), sum(visits) FROM customers GROUP BY region ORDER BY 1 NULLS FIRST"},
		{sql: "SELECT DISTINCT ON (region) region, customer_id FROM customers ORDER BY region, customer_id DESC"},
		{sql: "SELECT DISTINCT ON (region) region FROM customers", sorted: true},
		{sql: "WITH c AS (SELECT * FROM customers) SELECT region, count(*) FROM c GROUP BY region ORDER BY region"},
		{sql: "SELECT region, count(*) FROM customers WHERE name <> 'x $1' GROUP BY 1 ORDER BY 1 LIMIT 3"},
		// Gathered (the merge refuses them, below).
		{sql: "SELECT json_agg(c ORDER BY customer_id) FROM customers c"},
		{sql: "SELECT region, generate_series(1, count(*)::int) FROM customers GROUP BY region", sorted: true},
		{sql: "SELECT customer_id, sum(score) OVER w FROM customers WINDOW w AS (PARTITION BY region ORDER BY customer_id) ORDER BY 1"},
	}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement}
	for _, q := range queries {
		want, wantCols, err := rowsText(t, oracle, pgx.QueryExecModeSimpleProtocol, q.sql, q.args...)
		if err != nil {
			t.Fatalf("oracle %s: %v", q.sql, err)
		}
		if len(want) == 0 {
			t.Fatalf("oracle %s: no rows; the test data does not exercise the query", q.sql)
		}
		if q.sorted {
			slices.Sort(want)
		}
		for _, mode := range modes {
			t.Run(fmt.Sprintf("%s/%v", q.sql, mode), func(t *testing.T) {
				got, gotCols, err := rowsText(t, px, mode, q.sql, q.args...)
				if err != nil {
					t.Fatal(err)
				}
				if q.sorted {
					slices.Sort(got)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("rows differ\n got %q\nwant %q", got, want)
				}
				if !reflect.DeepEqual(gotCols, wantCols) {
					t.Errorf("columns %v, want %v", gotCols, wantCols)
				}
			})
		}
	}
	for _, sql := range []string{
		"SELECT json_agg(c) FROM customers c",
		"SELECT region, generate_series(1, count(*)::int) FROM customers GROUP BY region",
		"SELECT sum(score) OVER w FROM customers WINDOW w AS (PARTITION BY region)",
	} {
		t.Run("refused "+sql, func(t *testing.T) {
			// With gathering off, the merge's refusal.
			if _, err := px.Exec(context.Background(), "SET shardproxy.gather = off"); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if _, err := px.Exec(context.Background(), "RESET shardproxy.gather"); err != nil {
					t.Fatal(err)
				}
			}()
			for _, mode := range modes {
				_, _, err := rowsText(t, px, mode, sql)
				var pe *pgconn.PgError
				if !errors.As(err, &pe) || pe.Code != "0A000" || pe.Hint == "" {
					t.Errorf("%v: err %v, want 0A000 with a hint", mode, err)
				}
			}
		})
	}
}
