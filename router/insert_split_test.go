package router

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	pg "github.com/pganalyze/pg_query_go/v6"
)

// TestInsertSplit: a multi-row INSERT whose rows span shards becomes one
// INSERT per shard with that shard's rows, in VALUES order; extended
// statements reference only their own parameters, renumbered.
func TestInsertSplit(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	type part struct {
		shard  string
		sql    string // simple: rendered with the literals; extended: ParamSQL
		params []int  // extended: the client's $n, in the order of the renumbered $1..$k
		rows   []int
	}
	cases := []struct {
		name      string
		sql       string
		params    []string // nil: simple protocol
		parts     []part
		returning bool
	}{
		{name: "simple literals", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, {c1}), (3, {c0b})",
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (3, {c0b})", rows: []int{0, 2}},
				{shard: "s1", sql: "INSERT INTO orders (id, customer_id) VALUES (2, {c1})", rows: []int{1}},
			}},
		{name: "literals as written, RETURNING, DEFAULT", sql: "insert into orders (id, customer_id, note) values (DEFAULT, {c1}, E'a\\'),(b'), (7, {c0}, 'x''y') returning id, 'k'",
			returning: true,
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders (id, customer_id, note) VALUES (7, {c0}, 'x''y') RETURNING id, 'k'", rows: []int{1}},
				{shard: "s1", sql: "INSERT INTO orders (id, customer_id, note) VALUES (DEFAULT, {c1}, E'a\\'),(b') RETURNING id, 'k'", rows: []int{0}},
			}},
		{name: "extended params renumbered", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, $2), ($3, $4), ($5, $6) RETURNING id",
			params: []string{"1", "{c1}", "2", "{c0}", "3", "{c1}"}, returning: true,
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, $2) RETURNING id", params: []int{3, 4}, rows: []int{1}},
				{shard: "s1", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, $2), ($3, $4) RETURNING id", params: []int{1, 2, 5, 6}, rows: []int{0, 2}},
			}},
		{name: "extended mixed literals and params", sql: "INSERT INTO orders (id, customer_id, note) VALUES ($1, {c0}, 'lit'), (5, $2, $3)",
			params: []string{"1", "{c1}", "n"},
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders (id, customer_id, note) VALUES ($1, {c0}, 'lit')", params: []int{1}, rows: []int{0}},
				{shard: "s1", sql: "INSERT INTO orders (id, customer_id, note) VALUES (5, $1, $2)", params: []int{2, 3}, rows: []int{1}},
			}},
		{name: "parameter in ON CONFLICT goes to every shard", sql: "INSERT INTO orders (id, customer_id) VALUES ($2, $3), ($4, $5) ON CONFLICT (id, customer_id) DO UPDATE SET note = $1",
			params: []string{"n", "1", "{c0}", "2", "{c1}"},
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders (id, customer_id) VALUES ($2, $3) ON CONFLICT (id, customer_id) DO UPDATE SET note = $1", params: []int{1, 2, 3}, rows: []int{0}},
				{shard: "s1", sql: "INSERT INTO orders (id, customer_id) VALUES ($2, $3) ON CONFLICT (id, customer_id) DO UPDATE SET note = $1", params: []int{1, 4, 5}, rows: []int{1}},
			}},
		{name: "parameter used twice", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, {c0}), ($1, {c1})", params: []string{"9"},
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, {c0})", params: []int{1}, rows: []int{0}},
				{shard: "s1", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, {c1})", params: []int{1}, rows: []int{1}},
			}},
		{name: "three shards of a ring", sql: "INSERT INTO sessions (token, data) VALUES ('{r2}', 1), ('{r0}', 2), ('{r1}', 3), ('{r2}', 4)",
			parts: []part{
				{shard: "s0", sql: "INSERT INTO sessions (token, data) VALUES ('{r0}', 2)", rows: []int{1}},
				{shard: "s1", sql: "INSERT INTO sessions (token, data) VALUES ('{r1}', 3)", rows: []int{2}},
				{shard: "s2", sql: "INSERT INTO sessions (token, data) VALUES ('{r2}', 1), ('{r2}', 4)", rows: []int{0, 3}},
			}},
		{name: "directory places new keys", sql: "INSERT INTO tenant_data (tenant, v) VALUES ('acme', 1), ('globex', 2)",
			parts: []part{
				{shard: "s0", sql: "INSERT INTO tenant_data (tenant, v) VALUES ('globex', 2)", rows: []int{1}},
				{shard: "s2", sql: "INSERT INTO tenant_data (tenant, v) VALUES ('acme', 1)", rows: []int{0}},
			}},
		{name: "without a column list", sql: "INSERT INTO orders VALUES (1, {c1}, 2.5), (2, {c0}, DEFAULT)",
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders VALUES (2, {c0}, DEFAULT)", rows: []int{1}},
				{shard: "s1", sql: "INSERT INTO orders VALUES (1, {c1}, 2.5)", rows: []int{0}},
			}},
		{name: "subquery on a reference table", sql: "INSERT INTO orders (customer_id, price) VALUES ({c0}, (SELECT price FROM products WHERE id = 1)), ({c1}, 0)",
			parts: []part{
				{shard: "s0", sql: "INSERT INTO orders (customer_id, price) VALUES ({c0}, (SELECT price FROM products WHERE id = 1))", rows: []int{0}},
				{shard: "s1", sql: "INSERT INTO orders (customer_id, price) VALUES ({c1}, 0)", rows: []int{1}},
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var params []string
			for _, p := range tc.params {
				params = append(params, keys.Replace(p))
			}
			sql := keys.Replace(tc.sql)
			var lits []string
			if tc.params == nil {
				parts, err := r.ParseQuery(sql)
				if err != nil {
					t.Fatal(err)
				}
				lits = parts[0].Lits
			}
			cols := newFakeColumns()
			_, rt, err := routeWith(r, sql, params, Args{Columns: cols.resolve})
			if err != nil {
				t.Fatalf("route: %v", err)
			}
			if rt.Merge != MergeSplitInsert || rt.Split == nil {
				t.Fatalf("route %s, want a split", formatRoute(rt, nil))
			}
			if rt.Split.Returning != tc.returning {
				t.Errorf("Returning = %v, want %v", rt.Split.Returning, tc.returning)
			}
			var shards []string
			for _, p := range tc.parts {
				shards = append(shards, p.shard)
			}
			if !slices.Equal(rt.Shards, shards) || len(rt.Split.Parts) != len(tc.parts) {
				t.Fatalf("shards %v (%d parts), want %v", rt.Shards, len(rt.Split.Parts), shards)
			}
			rows := 0
			for i, want := range tc.parts {
				got := rt.Split.Parts[i]
				rows += len(got.Rows)
				var text string
				if tc.params == nil {
					text = got.SQL.Render(func(n int) string { return lits[n-1] })
				} else {
					text = got.ParamSQL()
				}
				if w := keys.Replace(want.sql); got.Shard != want.shard || text != w {
					t.Errorf("part %d: %s %q\nwant %s %q", i, got.Shard, text, want.shard, w)
				}
				if tc.params != nil && !slices.Equal(got.Params, want.params) {
					t.Errorf("part %d params %v, want %v", i, got.Params, want.params)
				}
				if !slices.Equal(got.Rows, want.rows) {
					t.Errorf("part %d rows %v, want %v", i, got.Rows, want.rows)
				}
				if _, err := pg.Parse(text); err != nil {
					t.Errorf("part %d does not parse: %v", i, err)
				}
			}
			if rows != rt.Split.Rows {
				t.Errorf("parts hold %d rows, statement has %d", rows, rt.Split.Rows)
			}
		})
	}
}

// Rows on one shard stay on the fast path; what cannot be split exactly
// is refused as before.
func TestInsertSplitNot(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	cases := []struct {
		name   string
		sql    string
		params []string
		shards []string // routed here, no split
		code   string
		msg    string
	}{
		{name: "rows on one shard", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, {c0b})", shards: []string{"s0"}},
		{name: "params on one shard", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, $2), ($3, $4)", params: []string{"1", "{c0}", "2", "{c0b}"}, shards: []string{"s0"}},
		{name: "WITH runs once per statement", sql: "WITH n AS (SELECT 1) INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, {c1})",
			code: "0A000", msg: "multi-row INSERT spans shards s0, s1"},
		{name: "subquery reads a sharded table", sql: "INSERT INTO orders (customer_id, n) VALUES ({c0}, (SELECT count(*) FROM order_items)), ({c1}, 0)",
			code: "0A000"},
		{name: "subquery reads an unlisted table", sql: "INSERT INTO orders (customer_id, n) VALUES ({c0}, (SELECT 1 FROM settings)), ({c1}, 0)",
			code: "0A000"},
		{name: "null key", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, NULL)", code: "23502"},
		{name: "null key param", sql: "INSERT INTO orders (id, customer_id) VALUES ($1, $2), ($3, $4)", params: []string{"1", "{c0}", "2", "NULL"}, code: "23502"},
		{name: "key expression", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, 1 + 1)", code: "0A000", msg: "must be a constant or a parameter"},
		{name: "insert select", sql: "INSERT INTO orders (id, customer_id) SELECT customer_id, id FROM order_items", code: "0A000", msg: "INSERT ... SELECT"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var params []string
			for _, p := range tc.params {
				params = append(params, keys.Replace(p))
			}
			_, rt, err := routeWith(r, keys.Replace(tc.sql), params, Args{})
			if tc.code != "" {
				if err == nil {
					t.Fatalf("routed %s, want %s", formatRoute(rt, nil), tc.code)
				}
				if pe := asPg(t, err); pe.Code != tc.code || !strings.Contains(pe.Message, tc.msg) {
					t.Fatalf("error %s %q, want %s containing %q", pe.Code, pe.Message, tc.code, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rt.Kind != RouteSingle || rt.Split != nil || !slices.Equal(rt.Shards, tc.shards) {
				t.Fatalf("route %s, want Single %v", formatRoute(rt, nil), tc.shards)
			}
		})
	}
}

func TestSplitRows(t *testing.T) {
	cases := []struct {
		in   string
		rows []string // nil: not rows
	}{
		{in: "(1, 2), (3, 4)", rows: []string{"(1, 2)", "(3, 4)"}},
		{in: "(f(1, 2)), ('a,b)'), (E'x\\',('), (\"c,d\")", rows: []string{"(f(1, 2))", "('a,b)')", "(E'x\\',(')", "(\"c,d\")"}},
		{in: "(1), ($$a),($$)", rows: []string{"(1)", "($$a),($$)"}},
		{in: "(1), 2", rows: nil},
		{in: "(1", rows: nil},
		{in: "(1))", rows: nil},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			rows, ok := splitRows(tc.in)
			if ok != (tc.rows != nil) || !slices.Equal(rows, tc.rows) {
				t.Fatalf("splitRows = %q, %v; want %q", rows, ok, tc.rows)
			}
		})
	}
}

// BenchmarkRouteSplitInsert routes a 100-row INSERT over three shards
// (cached analysis; per execution: keys located, parts joined).
func BenchmarkRouteSplitInsert(b *testing.B) {
	r, _ := newTestRouter(b)
	var sb strings.Builder
	sb.WriteString("INSERT INTO sessions (token, data) VALUES ")
	for i := range 100 {
		if i > 0 {
			sb.WriteString(", ")
		}
		sb.WriteString("('k" + strconv.Itoa(i) + "', 'some data')")
	}
	sql := sb.String()
	b.ReportAllocs()
	for b.Loop() {
		parts, err := r.ParseQuery(sql)
		if err != nil {
			b.Fatal(err)
		}
		rt, err := r.Route(b.Context(), parts[0].Stmt, Args{Params: parts[0].Args})
		if err != nil || rt.Split == nil || len(rt.Split.Parts) != 3 {
			b.Fatalf("%s", formatRoute(rt, err))
		}
	}
}

// RepeatedParams marks statements whose parameter types the parts may
// not infer alone.
func TestInsertSplitRepeatedParams(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	for _, tc := range []struct {
		sql  string
		want bool
	}{
		{sql: "INSERT INTO orders (id, customer_id) VALUES ($1, {c0}), ($2, {c1})", want: false},
		{sql: "INSERT INTO orders (id, customer_id) VALUES ($2, {c0}), ($3, {c1}) ON CONFLICT (customer_id, id) DO UPDATE SET note = $1", want: false},
		{sql: "INSERT INTO orders (id, customer_id) VALUES ($1, {c0}), ($1, {c1})", want: true},
	} {
		t.Run(tc.sql, func(t *testing.T) {
			_, rt, err := routeWith(r, keys.Replace(tc.sql), []string{"1", "2", "3"}, Args{})
			if err != nil {
				t.Fatal(err)
			}
			if rt.Split == nil || rt.Split.RepeatedParams != tc.want {
				t.Fatalf("route %s: RepeatedParams want %v", formatRoute(rt, nil), tc.want)
			}
		})
	}
}
