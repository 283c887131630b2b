package router

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSequenceStatements: a sequence is made on every shard unless a
// table owns it; statements naming one go where its owner is (as the
// catalogs or the statements analysed here tell), else to every shard.
func TestSequenceStatements(t *testing.T) {
	r, _ := newTestRouter(t)
	all, def := []string{"s0", "s1", "s2"}, []string{"s0"}
	want := func(sql string, shards []string) {
		t.Helper()
		_, rt, err := route(r, sql, nil, "")
		if err != nil || !slices.Equal(rt.Shards, shards) {
			t.Errorf("%s: %v %v (%s), %v; want %v", sql, rt.Kind, rt.Shards, rt.Reason, err, shards)
		}
	}
	// pg_dump's order for a sharded table's serial column.
	want("CREATE SEQUENCE public.orders_order_id_seq AS integer START WITH 1", all)
	want("ALTER SEQUENCE public.orders_order_id_seq OWNED BY public.orders.order_id", all)
	want("ALTER TABLE ONLY public.orders ALTER COLUMN order_id SET DEFAULT nextval('public.orders_order_id_seq'::regclass)", all)
	want("ALTER SEQUENCE orders_order_id_seq RESTART", all)

	// An unmapped table's: where the table is, once its owner is known.
	want("CREATE TABLE misc (id serial, b int GENERATED ALWAYS AS IDENTITY)", def)
	for _, q := range []string{
		"ALTER SEQUENCE misc_id_seq RESTART WITH 100",
		"ALTER SEQUENCE public.misc_b_seq INCREMENT BY 2",
		"COMMENT ON SEQUENCE misc_id_seq IS 'x'",
		"GRANT USAGE ON SEQUENCE misc_id_seq TO app",
		"ALTER SEQUENCE misc_id_seq OWNER TO app",
	} {
		want(q, def)
	}
	want("CREATE SEQUENCE misc_x_seq OWNED BY misc.id", def)
	want("ALTER SEQUENCE misc_x_seq RESTART", def)
	want("ALTER SEQUENCE misc_x_seq RENAME TO misc_y_seq", def)
	want("ALTER SEQUENCE misc_y_seq RESTART", def)
	want("ALTER SEQUENCE misc_x_seq RESTART", all) // no longer known by that name
	want("DROP SEQUENCE misc_y_seq", def)
	want("ALTER SEQUENCE misc_y_seq RESTART", all)
	want("ALTER TABLE misc ADD COLUMN c bigserial", def)
	want("ALTER SEQUENCE misc_c_seq RESTART", def)

	// Standalone: made and changed on every shard.
	for _, q := range []string{"CREATE SEQUENCE s", "ALTER SEQUENCE s RESTART", "DROP SEQUENCE IF EXISTS s", "GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO app"} {
		want(q, all)
	}

	// Owners from the shards' catalogs.
	for _, s := range all {
		r.CatalogChecked(s, time.Now(), ShardCatalog{Sequences: []Owned{{"public", "legacy_id_seq", "public", "legacy"}}})
	}
	want("ALTER SEQUENCE legacy_id_seq RESTART", def)
}

// TestSetvalPlacement: setval() goes where its sequence is, as ALTER
// SEQUENCE does: every shard for a mapped table's (or one no table is
// known to own), the default shard for an unmapped table's. Read with
// sharded or unmapped tables, a mapped table's sequence is refused.
func TestSetvalPlacement(t *testing.T) {
	r, _ := newTestRouter(t)
	all, def := []string{"s0", "s1", "s2"}, []string{"s0"}
	for _, s := range all {
		r.CatalogChecked(s, time.Now(), ShardCatalog{Sequences: []Owned{
			{"public", "orders_order_id_seq", "public", "orders"},
			{"public", "products_product_id_seq", "public", "products"},
			{"public", "misc_id_seq", "public", "misc"},
		}})
	}
	cases := []struct {
		sql    string
		params []string
		want   []string // nil: refused with 0A000
		merge  MergeKind
	}{
		// pg_dump's, after a table's data; both protocols.
		{sql: "SELECT pg_catalog.setval('public.orders_order_id_seq', 600, true)", want: all, merge: MergeFirst},
		{sql: "SELECT setval($1, $2)", params: []string{"orders_order_id_seq", "5"}, want: all, merge: MergeFirst},
		{sql: "SELECT setval('orders_order_id_seq'::regclass, 7)", want: all, merge: MergeFirst},
		{sql: "SELECT setval('products_product_id_seq', 3)", want: all, merge: MergeFirst},
		{sql: "SELECT setval('standalone_seq', 3)", want: all, merge: MergeFirst},
		// Reference tables are whole on every shard: each computes the same.
		{sql: "SELECT setval('products_product_id_seq', max(product_id)) FROM products", want: all, merge: MergeFirst},
		// An unmapped table's sequence is the default shard's.
		{sql: "SELECT setval('misc_id_seq', 9)", want: def},
		{sql: "SELECT setval('misc_id_seq', max(id)) FROM misc", want: def},
		// Computed per shard or on one: refused.
		{sql: "SELECT setval('orders_order_id_seq', max(order_id)) FROM orders"},
		{sql: "SELECT setval('orders_order_id_seq', (SELECT max(order_id) FROM orders))"},
		{sql: "SELECT setval('orders_order_id_seq', max(id)) FROM misc"},
		// A hint names the one shard the client means.
		{sql: "/* shard: s2 */ SELECT setval('orders_order_id_seq', 1)", want: []string{"s2"}},
		// nextval() still runs on one shard (README).
		{sql: "SELECT nextval('orders_order_id_seq')", want: nil, merge: MergeNone},
	}
	for _, tc := range cases {
		_, rt, err := route(r, tc.sql, tc.params, "")
		switch {
		case tc.sql == "SELECT nextval('orders_order_id_seq')":
			if err != nil || rt.Kind != RouteAny {
				t.Errorf("%s: %v %v, %v; want any shard", tc.sql, rt.Kind, rt.Shards, err)
			}
		case tc.want == nil:
			if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "every shard has its own copy of the sequence") {
				t.Errorf("%s: %v %v, %v; want 0A000", tc.sql, rt.Kind, rt.Shards, err)
			}
		case err != nil || !slices.Equal(rt.Shards, tc.want) || rt.Merge != tc.merge:
			t.Errorf("%s: %v %v merge %v (%s), %v; want %v merge %v", tc.sql, rt.Kind, rt.Shards, rt.Merge, rt.Reason, err, tc.want, tc.merge)
		}
	}
}

// TestSequenceRead: the plain read of a sharded table's sequence runs on
// every shard of the table and takes the copy furthest along; any other
// read of it is refused; an unmapped or reference table's reads as before.
func TestSequenceRead(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, time.Now(), ShardCatalog{Sequences: []Owned{
			{"public", "orders_order_id_seq", "public", "orders"},
			{"public", "products_product_id_seq", "public", "products"},
			{"public", "misc_id_seq", "public", "misc"},
		}})
	}
	for _, q := range []string{
		"SELECT last_value, is_called FROM public.orders_order_id_seq", // pg_dump's
		"SELECT * FROM orders_order_id_seq",
		"SELECT s.is_called FROM orders_order_id_seq s",
	} {
		_, rt, err := route(r, q, nil, "")
		if err != nil || !slices.Equal(rt.Shards, []string{"s0", "s1"}) || rt.Merge != MergePlan {
			t.Errorf("%s: %v %v merge %v, %v; want s0, s1 merged", q, rt.Kind, rt.Shards, rt.Merge, err)
			continue
		}
		if plan := rt.Plan.String(); !strings.Contains(plan, "ORDER BY") || !strings.Contains(plan, "last_value DESC") || !strings.Contains(plan, "LIMIT 1") {
			t.Errorf("%s: plan does not take the copy furthest along:\n%s", q, plan)
		}
	}
	for _, q := range []string{
		"SELECT last_value + 1 FROM orders_order_id_seq",
		"SELECT last_value FROM orders_order_id_seq WHERE is_called",
		"SELECT o.customer_id, s.last_value FROM orders o, orders_order_id_seq s",
		"SELECT (SELECT last_value FROM orders_order_id_seq)",
	} {
		if _, rt, err := route(r, q, nil, ""); sqlState(err) != "0A000" {
			t.Errorf("%s: %v %v, %v; want 0A000", q, rt.Kind, rt.Shards, err)
		}
	}
	for q, want := range map[string][]string{
		"SELECT last_value FROM misc_id_seq":                                    {"s0"},
		"/* shard: s1 */ SELECT last_value, is_called FROM orders_order_id_seq": {"s1"},
		"/* shard: s1 */ SELECT last_value + 1 FROM orders_order_id_seq":        {"s1"},
	} {
		if _, rt, err := route(r, q, nil, ""); err != nil || !slices.Equal(rt.Shards, want) {
			t.Errorf("%s: %v %v, %v; want %v", q, rt.Kind, rt.Shards, err, want)
		}
	}
	if _, rt, err := route(r, "SELECT last_value FROM products_product_id_seq", nil, ""); err != nil || rt.Merge == MergePlan {
		t.Errorf("a reference table's sequence: %v %v %v, %v; want one copy", rt.Kind, rt.Shards, rt.Merge, err)
	}
}
