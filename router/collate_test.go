package router

import (
	"context"
	"maps"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// TestPlanCollations: the planner records which columns of the shards'
// rows a COLLATE clause of the statement governs, and whether a FROM item
// or WITH query holds one (plan_build_collate.go).
func TestPlanCollations(t *testing.T) {
	r, _ := newTestRouter(t)
	x, b := CollationExplicit, CollationBytes
	cases := []struct {
		sql  string
		want map[ColRef]Collation
		from bool
	}{
		{sql: `SELECT id, status FROM orders ORDER BY status LIMIT 3`},
		{sql: `SELECT status FROM orders ORDER BY status COLLATE "en-x-icu" LIMIT 1`, want: map[ColRef]Collation{h(0): x}},
		{sql: `SELECT status FROM orders ORDER BY status COLLATE "C" LIMIT 1`, want: map[ColRef]Collation{h(0): b}},
		{sql: `SELECT status FROM orders ORDER BY status COLLATE pg_catalog."POSIX" LIMIT 1`, want: map[ColRef]Collation{h(0): b}},
		{sql: `SELECT status FROM orders ORDER BY status COLLATE public."C" LIMIT 1`, want: map[ColRef]Collation{h(0): x}},
		{sql: `SELECT status FROM orders ORDER BY status COLLATE "default" LIMIT 1`},
		{sql: `SELECT status COLLATE "en-x-icu" AS s FROM orders ORDER BY s LIMIT 1`, want: map[ColRef]Collation{c(0): x}},
		{sql: `SELECT (status COLLATE "en-x-icu") COLLATE "C" AS s FROM orders ORDER BY s LIMIT 1`, want: map[ColRef]Collation{c(0): b}},
		{sql: `SELECT upper(status COLLATE "en-x-icu") AS s FROM orders ORDER BY s LIMIT 1`, want: map[ColRef]Collation{c(0): x}},
		{sql: `SELECT max(status COLLATE "en-x-icu"), min(status COLLATE "C"), max(status) FROM orders`, want: map[ColRef]Collation{c(0): x, c(1): b}},
		{sql: `SELECT max(status::varchar COLLATE "C") FROM orders`, want: map[ColRef]Collation{c(0): b}},
		{sql: `SELECT max(lower(status COLLATE "C")) FROM orders`},
		{sql: `SELECT count(DISTINCT status COLLATE ci) FROM orders`, want: map[ColRef]Collation{c(0): x}},
		{sql: `SELECT count(*) FROM orders GROUP BY status COLLATE ci`, want: map[ColRef]Collation{h(0): x}},
		{sql: `SELECT DISTINCT status COLLATE ci FROM orders`, want: map[ColRef]Collation{c(0): x}},
		{sql: `SELECT status COLLATE ci FROM orders UNION SELECT status FROM order_items`, want: map[ColRef]Collation{c(0): x}},
		{sql: `SELECT status FROM orders UNION SELECT status COLLATE "C" FROM order_items`, want: map[ColRef]Collation{c(0): b}},
		{sql: `SELECT s FROM (SELECT status COLLATE "en-x-icu" AS s FROM orders) q ORDER BY s LIMIT 1`, from: true},
		{sql: `WITH q AS (SELECT status COLLATE "en-x-icu" AS s FROM orders) SELECT s FROM q ORDER BY s LIMIT 1`, from: true},
		{sql: `SELECT o.status FROM orders o JOIN order_items i ON i.order_id = o.id AND i.status COLLATE ci = o.status ORDER BY 1 LIMIT 1`},
		{sql: `SELECT *, status COLLATE "en-x-icu" FROM orders ORDER BY id LIMIT 1`, from: true},
		{sql: `SELECT id FROM orders WHERE status COLLATE ci = 'open' ORDER BY id LIMIT 1`},
	}
	for _, tt := range cases {
		p := planOf(t, r, tt.sql)
		if p == nil {
			t.Errorf("%s: no plan", tt.sql)
			continue
		}
		if !maps.Equal(p.Collations, tt.want) || p.CollatedFrom != tt.from {
			t.Errorf("%s:\ncollations %v from %v, want %v from %v\n%s", tt.sql, p.Collations, p.CollatedFrom, tt.want, tt.from, p)
		}
	}
}

// TestExecuteExplicitCollation: the executor orders no text under a
// collation the statement names (other than "C"), compares none for
// equality under one when the database has a nondeterministic collation,
// and hands none to an evaluation; bytes still compare under COLLATE "C",
// and other types under any COLLATE. A column the shards describe as a
// table column without a collation of its own (PlainColumns) is not
// concerned by other columns' collations.
func TestExecuteExplicitCollation(t *testing.T) {
	run := func(p *ScatterPlan, oid uint32, opts ExecOptions) error {
		srcs, _ := srcsOf(rows("a", "b"), rows("B")) // each shard's rows in byte order
		if oid == oidInt8 {
			srcs, _ = srcsOf(rows("1", "2"), rows("3"))
		}
		_, err := p.Execute(context.Background(), fieldsOf(oid), srcs, nil, opts, func([][]byte) error { return nil })
		return err
	}
	concat := &Concatenate{Input: scatter}
	explicit := map[ColRef]Collation{c(0): CollationExplicit}
	bytes := map[ColRef]Collation{c(0): CollationBytes}
	nd := ExecOptions{Nondeterministic: true}
	var evalOK Evaluator = func(context.Context, EvalQuery) ([]pgproto3.FieldDescription, [][][]byte, error) {
		return nil, nil, nil
	}
	cases := []struct {
		name   string
		plan   *ScatterPlan
		oid    uint32
		opts   ExecOptions
		refuse bool
	}{
		{"merge", &ScatterPlan{Root: mergeOn(asc(c(0))), Collations: explicit}, oidText, ExecOptions{}, true},
		{"merge varchar", &ScatterPlan{Root: mergeOn(asc(c(0))), Collations: explicit}, oidVarchar, ExecOptions{}, true},
		{"merge name", &ScatterPlan{Root: mergeOn(asc(c(0))), Collations: explicit}, oidName, ExecOptions{}, true},
		{"merge from a subquery", &ScatterPlan{Root: mergeOn(asc(c(0))), CollatedFrom: true}, oidText, ExecOptions{}, true},
		{"sort", &ScatterPlan{Root: &Sort{Input: concat, Keys: []SortKey{asc(c(0))}}, Collations: explicit}, oidText, ExecOptions{}, true},
		{"max", &ScatterPlan{Root: &Aggregate{Input: concat, Aggs: []AggSpec{{Func: AggMax, Col: c(0)}}}, Collations: explicit}, oidText, ExecOptions{}, true},
		{"having <", &ScatterPlan{Root: &Aggregate{Input: concat, GroupBy: []ColRef{c(0)},
			Having: &Expr{Op: ExprCmp, Cmp: "<", Col: c(0), Value: ValueRef{Text: "b"}}}, Collations: explicit}, oidText, ExecOptions{}, true},
		{"group, nondeterministic", &ScatterPlan{Root: &Aggregate{Input: concat, GroupBy: []ColRef{c(0)}}, Collations: explicit}, oidText, nd, true},
		{"distinct, nondeterministic", &ScatterPlan{Root: &Distinct{Input: concat}, Collations: explicit}, oidText, nd, true},
		{"count distinct, nondeterministic", &ScatterPlan{Root: &Aggregate{Input: concat, Aggs: []AggSpec{{Func: AggCountDistinct, Col: c(0)}}}, Collations: explicit}, oidText, nd, true},
		{"having =, nondeterministic", &ScatterPlan{Root: &Aggregate{Input: concat, GroupBy: []ColRef{c(0)},
			Having: &Expr{Op: ExprCmp, Cmp: "=", Col: c(0), Value: ValueRef{Text: "b"}}}, Collations: explicit}, oidText, nd, true},
		{"group, nondeterministic column", &ScatterPlan{Root: &Aggregate{Input: concat, GroupBy: []ColRef{c(0)}}}, oidText, ExecOptions{NondeterministicColumns: true}, true},
		{"evaluate", &ScatterPlan{Root: &Evaluate{Input: concat, SQL: Template{Pieces: []string{"SELECT 1"}}, Args: []ColRef{c(0)}}, Collations: explicit}, oidText,
			ExecOptions{Evaluate: evalOK}, true},
		{"evaluate under COLLATE \"C\" in a collated database", &ScatterPlan{Root: &Evaluate{Input: concat, SQL: Template{Pieces: []string{"SELECT 1"}}, Args: []ColRef{c(0)}}, Collations: bytes}, oidText,
			ExecOptions{Evaluate: evalOK, CollatedText: true}, true},

		{"merge collated column", &ScatterPlan{Root: mergeOn(asc(c(0)))}, oidText, ExecOptions{CollatedColumns: true}, true},
		{"merge explicit over a plain column", &ScatterPlan{Root: mergeOn(asc(c(0))), Collations: explicit}, oidText, ExecOptions{CollatedColumns: true, PlainColumns: []bool{true}}, true},
		{"merge plain column, collated database", &ScatterPlan{Root: mergeOn(asc(c(0)))}, oidText, ExecOptions{CollatedColumns: true, CollatedText: true, PlainColumns: []bool{true}}, true},

		{"merge plain column", &ScatterPlan{Root: mergeOn(asc(c(0)))}, oidText, ExecOptions{CollatedColumns: true, PlainColumns: []bool{true}}, false},
		{"group plain column", &ScatterPlan{Root: &Aggregate{Input: concat, GroupBy: []ColRef{c(0)}}}, oidText, ExecOptions{NondeterministicColumns: true, CollatedColumns: true, PlainColumns: []bool{true}}, false},
		{"group, deterministic", &ScatterPlan{Root: &Aggregate{Input: concat, GroupBy: []ColRef{c(0)}}, Collations: explicit}, oidText, ExecOptions{}, false},
		{"distinct, deterministic", &ScatterPlan{Root: &Distinct{Input: concat}, Collations: explicit}, oidText, ExecOptions{}, false},
		{"merge int", &ScatterPlan{Root: mergeOn(asc(c(0))), Collations: explicit}, oidInt8, ExecOptions{}, false},
		{"merge implied", &ScatterPlan{Root: mergeOn(asc(c(0)))}, oidText, nd, false},
		{"merge bytes", &ScatterPlan{Root: mergeOn(asc(c(0))), Collations: bytes, CollatedFrom: true}, oidText, ExecOptions{CollatedColumns: true, CollatedText: true}, false},
		{"max bytes", &ScatterPlan{Root: &Aggregate{Input: concat, Aggs: []AggSpec{{Func: AggMax, Col: c(0)}}}, Collations: bytes}, oidText, ExecOptions{CollatedColumns: true}, false},
		{"group bytes", &ScatterPlan{Root: &Aggregate{Input: concat, GroupBy: []ColRef{c(0)}}, Collations: bytes}, oidText, ExecOptions{NondeterministicColumns: true, Nondeterministic: true}, false},
	}
	for _, tt := range cases {
		err := run(tt.plan, tt.oid, tt.opts)
		switch {
		case tt.refuse && (sqlState(err) != "0A000" || !strings.Contains(err.Error(), "collation")):
			t.Errorf("%s: %v, want 0A000 naming the collation", tt.name, err)
		case !tt.refuse && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}
