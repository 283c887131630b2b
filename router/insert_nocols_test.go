package router

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// fakeColumns is an Args.Columns resolver over a fixed catalog keyed by
// "schema.rel" ("" schema for unqualified names); it records its calls.
type fakeColumns struct {
	tables map[string][]string
	calls  []string
}

func (f *fakeColumns) resolve(ctx context.Context, schema, rel string) ([]string, error) {
	f.calls = append(f.calls, schema+"."+rel)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cols, ok := f.tables[schema+"."+rel]
	if !ok {
		return nil, &pgconn.PgError{Severity: "ERROR", Code: "42P01", Message: `relation "` + rel + `" does not exist`}
	}
	return cols, nil
}

func newFakeColumns() *fakeColumns {
	return &fakeColumns{tables: map[string][]string{
		".orders":      {"id", "customer_id", "total"},
		".sessions":    {"token", "data"},
		"app.audit":    {"at", "what", "id"},
		".events":      {"at", "payload"}, // the configured key id is missing
		".order_items": {"customer_id", "id"},
	}}
}

func TestInsertWithoutColumns(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	cases := []struct {
		name   string
		sql    string
		params []string // nil: simple protocol
		hint   string   // SET shardproxy.shard
		kind   RouteKind
		shards []string
		code   string
		msg    string
		calls  []string // resolver calls expected
	}{
		{name: "key second", sql: "INSERT INTO orders VALUES (1, {c1}, 9.5)", kind: RouteSingle, shards: []string{"s1"}, calls: []string{".orders"}},
		{name: "key first", sql: "INSERT INTO order_items VALUES ({c0}, 1)", kind: RouteSingle, shards: []string{"s0"}, calls: []string{".order_items"}},
		{name: "text key", sql: "INSERT INTO sessions VALUES ('{r2}', 'x')", kind: RouteSingle, shards: []string{"s2"}, calls: []string{".sessions"}},
		{name: "qualified, key last", sql: "INSERT INTO app.audit VALUES (now(), 'x', 1500)", kind: RouteSingle, shards: []string{"s1"}, calls: []string{"app.audit"}},
		{name: "params", sql: "INSERT INTO orders VALUES ($1, $2) RETURNING id", params: []string{"7", "{c1}"}, kind: RouteSingle, shards: []string{"s1"}, calls: []string{".orders"}},
		{name: "cast key", sql: "INSERT INTO orders VALUES (1, $1::bigint)", params: []string{"{c0}"}, kind: RouteSingle, shards: []string{"s0"}, calls: []string{".orders"}},
		{name: "rows one shard, expressions elsewhere", sql: "INSERT INTO orders VALUES (nextval('s'), {c0}, 1 + 1), (DEFAULT, {c0b}, DEFAULT)",
			kind: RouteSingle, shards: []string{"s0"}, calls: []string{".orders"}},
		{name: "short row without the key's value", sql: "INSERT INTO orders VALUES (1, {c0}), (2)", code: "0A000", msg: "does not set shard key column customer_id", calls: []string{".orders"}},
		// PEERS: PgDog #259 broadcast a multi-row INSERT.
		{name: "rows two shards", sql: "INSERT INTO orders VALUES (1, {c0}), (2, {c1})", kind: RouteMulti, shards: []string{"s0", "s1"}, calls: []string{".orders", ".orders"}},
		{name: "key expression", sql: "INSERT INTO orders VALUES (1, 1 + 1)", code: "0A000", msg: "must be a constant or a parameter", calls: []string{".orders"}},
		{name: "key default", sql: "INSERT INTO orders VALUES (1, DEFAULT)", code: "0A000", msg: "must be a constant or a parameter", calls: []string{".orders"}},
		{name: "key null", sql: "INSERT INTO orders VALUES (1, NULL)", code: "23502", msg: `null value in shard key column "customer_id"`, calls: []string{".orders"}},
		{name: "key null param", sql: "INSERT INTO orders VALUES ($1, $2)", params: []string{"1", "NULL"}, code: "23502", calls: []string{".orders"}},
		{name: "bad key text", sql: "INSERT INTO orders VALUES (1, 'abc')", code: "22P02", calls: []string{".orders"}},
		{name: "key column not in table", sql: "INSERT INTO events VALUES (now(), 'x')", code: "42703", msg: `shard key column "id" does not exist in table events`, calls: []string{".events"}},
		{name: "resolver error passes through", sql: "INSERT INTO pgbench_accounts VALUES (1, 2)", code: "42P01", msg: `relation "pgbench_accounts" does not exist`, calls: []string{".pgbench_accounts"}},
		// Say what is refused, and what would help.
		{name: "default values", sql: "INSERT INTO orders DEFAULT VALUES", code: "0A000", msg: "INSERT ... DEFAULT VALUES into sharded table orders cannot be routed"},
		{name: "select", sql: "INSERT INTO orders SELECT * FROM order_items", code: "0A000", msg: "INSERT ... SELECT into sharded table orders needs a column list"},
		{name: "values union", sql: "INSERT INTO orders VALUES (1, {c0}) UNION ALL VALUES (2, {c0})", code: "0A000", msg: "INSERT ... SELECT into sharded table orders needs a column list"},
		{name: "column list needs no lookup", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c1})", kind: RouteSingle, shards: []string{"s1"}},
		{name: "comment hint needs no lookup", sql: "/* shard: s2 */ INSERT INTO orders VALUES (1, {c1})", kind: RouteHint, shards: []string{"s2"}},
		{name: "session hint needs no lookup", sql: "INSERT INTO orders VALUES (1, 1 + 1)", hint: "s1", kind: RouteHint, shards: []string{"s1"}},
		{name: "unlisted table needs no lookup", sql: "INSERT INTO settings VALUES (1)", kind: RouteDefault, shards: []string{"s0"}},
		{name: "reference table needs no lookup", sql: "INSERT INTO products VALUES (1)", kind: RouteBroadcast, shards: []string{"s0", "s1", "s2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sql := keys.Replace(tc.sql)
			var params []string
			for _, p := range tc.params {
				params = append(params, keys.Replace(p))
			}
			cols := newFakeColumns()
			_, rt, err := routeWith(r, sql, params, Args{SessionShard: tc.hint, Columns: cols.resolve})
			if tc.code != "" {
				if err == nil {
					t.Fatalf("routed %s, want error %s", formatRoute(rt, nil), tc.code)
				}
				if pe := asPg(t, err); pe.Code != tc.code || !strings.Contains(pe.Message, tc.msg) {
					t.Fatalf("error %s %q, want %s containing %q", pe.Code, pe.Message, tc.code, tc.msg)
				}
			} else {
				if err != nil {
					t.Fatalf("error: %v", err)
				}
				if rt.Kind != tc.kind || !slices.Equal(rt.Shards, tc.shards) {
					t.Fatalf("route %s, want %s %v", formatRoute(rt, nil), tc.kind, tc.shards)
				}
			}
			if !slices.Equal(cols.calls, tc.calls) {
				t.Errorf("resolver calls %q, want %q", cols.calls, tc.calls)
			}
		})
	}
}

// Without a resolver (shardproxy route, which does not connect) the
// statement is refused, and the hint says what to do.
func TestInsertWithoutColumnsNoResolver(t *testing.T) {
	r, _ := newTestRouter(t)
	_, rt, err := route(r, "INSERT INTO orders VALUES (1, 2)", nil, "")
	if err == nil {
		t.Fatalf("routed %s, want 0A000", formatRoute(rt, nil))
	}
	pe := asPg(t, err)
	if pe.Code != "0A000" || !strings.Contains(pe.Message, "needs a column list") || !strings.Contains(pe.Hint, "name the columns") {
		t.Fatalf("got %s %q (hint %q)", pe.Code, pe.Message, pe.Hint)
	}
}

// The cached Statement holds the rows, not the key's position: the same
// statement routes by whatever the columns are at each execution (after
// ALTER TABLE ... DROP COLUMN the key moves).
func TestInsertWithoutColumnsFollowsTheTable(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	st, err := r.Prepare(keys.Replace("INSERT INTO orders VALUES ($1, $2)"))
	if err != nil {
		t.Fatal(err)
	}
	params := [][]byte{[]byte(keys.Replace("{c0}")), []byte(keys.Replace("{c1}"))}
	for _, tc := range []struct {
		cols []string
		want string
	}{
		{[]string{"id", "customer_id"}, "s1"},
		{[]string{"customer_id", "total"}, "s0"}, // id dropped
		{[]string{"id", "customer_id"}, "s1"},
	} {
		cols := func(context.Context, string, string) ([]string, error) { return tc.cols, nil }
		rt, err := r.Route(context.Background(), st, Args{Params: params, Columns: cols})
		if err != nil {
			t.Fatal(err)
		}
		if rt.Kind != RouteSingle || !slices.Equal(rt.Shards, []string{tc.want}) {
			t.Fatalf("columns %v: route %s, want %s", tc.cols, formatRoute(rt, nil), tc.want)
		}
	}
	if again, err := r.Prepare(keys.Replace("INSERT INTO orders VALUES ($1, $2)")); err != nil || again != st {
		t.Fatalf("statement not served from the plan cache (err %v)", err)
	}
}

func TestInsertWithoutColumnsCancelled(t *testing.T) {
	r, _ := newTestRouter(t)
	st, err := r.Prepare("INSERT INTO orders VALUES (1, 2)")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = r.Route(ctx, st, Args{Columns: newFakeColumns().resolve})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled (the proxy turns it into 57014)", err)
	}
}
