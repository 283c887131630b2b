package router

import (
	"slices"
	"testing"
	"time"
)

// TestIndexStatementsFollowTheirTable: ALTER INDEX, REINDEX INDEX, DROP
// INDEX and COMMENT ON INDEX go where the index's table is, as the
// shards' catalogs or CREATE INDEX through the proxy tell; an index
// neither has shown goes to every shard, never to the default one alone.
// A composite type goes to every shard, as other types do.
func TestIndexStatementsFollowTheirTable(t *testing.T) {
	r, _ := newTestRouter(t)
	all := []string{"s0", "s1", "s2"}
	want := func(sql string, kind RouteKind, shards []string) {
		t.Helper()
		_, rt, err := route(r, sql, nil, "")
		if err != nil || rt.Kind != kind || !slices.Equal(rt.Shards, shards) {
			t.Errorf("%s: %v %v (%s), %v; want %v %v", sql, rt.Kind, rt.Shards, rt.Reason, err, kind, shards)
		}
	}
	// (Analysing a RENAME or DROP is learning it: those come last.)
	stmts := func(idx string) []string {
		return []string{
			"ALTER INDEX IF EXISTS " + idx + " SET (fillfactor = 70)",
			"ALTER INDEX " + idx + " ALTER COLUMN 1 SET STATISTICS 100",
			"REINDEX INDEX " + idx,
			"COMMENT ON INDEX " + idx + " IS 'x'",
		}
	}
	// Nothing known yet: every shard (a missing index fails loudly there).
	for _, q := range stmts("misc_a_idx") {
		want(q, RouteBroadcast, all)
	}

	now := time.Now()
	for _, s := range all {
		r.CatalogChecked(s, now, ShardCatalog{Indexes: []Owned{
			{"public", "orders_pkey", "public", "orders"},
			{"public", "products_pkey", "public", "products"},
			{"public", "misc_a_idx", "public", "misc"},
		}})
	}
	for _, q := range stmts("orders_pkey") {
		want(q, RouteBroadcast, all)
	}
	for _, q := range stmts("public.products_pkey") {
		want(q, RouteBroadcast, all)
	}
	for _, q := range stmts("misc_a_idx") { // an unmapped table's: where the table is
		want(q, RouteDefault, []string{"s0"})
	}
	want("DROP INDEX misc_a_idx, orders_pkey", RouteBroadcast, all)
	want("DROP INDEX misc_a_idx, never_seen_idx", RouteBroadcast, all)
	for _, s := range all { // those DROPs were learnt: report the indexes again
		r.CatalogChecked(s, time.Now(), ShardCatalog{Indexes: []Owned{
			{"public", "orders_pkey", "public", "orders"},
			{"public", "misc_a_idx", "public", "misc"},
		}})
	}
	want("DROP INDEX misc_a_idx", RouteDefault, []string{"s0"})
	want("ALTER TABLE orders_pkey RENAME TO orders_pk", RouteBroadcast, all)
	want("ALTER INDEX orders_pk RENAME TO orders_pkey", RouteBroadcast, all)
	want("ALTER INDEX orders_pkey RENAME TO orders_pk", RouteBroadcast, all)

	// CREATE INDEX through the proxy is known at once, renamed and
	// dropped with its statements.
	route(r, "CREATE INDEX misc_b_idx ON misc (b)", nil, "")
	want("REINDEX INDEX misc_b_idx", RouteDefault, []string{"s0"})
	route(r, "ALTER INDEX misc_b_idx RENAME TO misc_c_idx", nil, "")
	want("REINDEX INDEX misc_c_idx", RouteDefault, []string{"s0"})
	want("REINDEX INDEX misc_b_idx", RouteBroadcast, all)
	route(r, "DROP INDEX misc_c_idx", nil, "")
	want("REINDEX INDEX misc_c_idx", RouteBroadcast, all)
	route(r, "CREATE INDEX orders_note_idx ON orders (note)", nil, "")
	want("ALTER INDEX orders_note_idx SET (fillfactor = 50)", RouteBroadcast, all)

	for _, q := range []string{
		"CREATE TYPE pair AS (a int, b text)",
		"ALTER TYPE pair ADD ATTRIBUTE c int",
		"ALTER TYPE pair RENAME ATTRIBUTE a TO z",
		"ALTER TYPE pair DROP ATTRIBUTE c",
		"DROP TYPE pair",
	} {
		want(q, RouteBroadcast, all)
	}
	want("CREATE TABLE misc2 (a int)", RouteDefault, []string{"s0"}) // tables still as before
	want("ALTER TABLE misc RENAME TO misc3", RouteDefault, []string{"s0"})
}

// TestTableObjectDDL: DROP and COMMENT ON of a trigger, rule, policy or
// constraint go where its table is; schema objects the tables of every
// shard may use (operator classes, statistics, servers ...) go to every
// shard, not to any one.
func TestTableObjectDDL(t *testing.T) {
	r, _ := newTestRouter(t)
	all := []string{"s0", "s1", "s2"}
	for sql, want := range map[string][]string{
		"DROP TRIGGER trg ON misc":                                             {"s0"},
		"DROP RULE IF EXISTS r ON public.misc":                                 {"s0"},
		"DROP POLICY p ON misc":                                                {"s0"},
		"DROP TRIGGER trg ON orders":                                           all,
		"DROP POLICY p ON products":                                            all,
		"COMMENT ON TRIGGER trg ON misc IS 'x'":                                {"s0"},
		"COMMENT ON CONSTRAINT c ON misc IS 'x'":                               {"s0"},
		"COMMENT ON CONSTRAINT c ON orders IS 'x'":                             all,
		"COMMENT ON POLICY p ON misc IS 'x'":                                   {"s0"},
		"COMMENT ON RULE r ON orders IS 'x'":                                   all,
		"COMMENT ON CONSTRAINT c ON DOMAIN d IS 'x'":                           all,
		"ALTER STATISTICS st SET STATISTICS 10":                                all,
		"CREATE OPERATOR FAMILY of USING btree":                                all,
		"ALTER OPERATOR === (int, int) SET (join = NONE)":                      all,
		"CREATE SERVER srv FOREIGN DATA WRAPPER postgres_fdw":                  all,
		"CREATE USER MAPPING FOR app SERVER srv":                               all,
		"IMPORT FOREIGN SCHEMA public FROM SERVER srv INTO s":                  all,
		"ALTER TEXT SEARCH CONFIGURATION c ALTER MAPPING FOR word WITH simple": all,
		"ALTER EXTENSION e ADD FUNCTION f()":                                   all,
		// The table made or changed decides, not one it references or
		// copies (LIKE orders made the unmapped misc2 on every shard).
		"CREATE TABLE misc2 (LIKE orders INCLUDING ALL)":             {"s0"},
		"CREATE TABLE misc2 (a int REFERENCES products)":             {"s0"},
		"ALTER TABLE misc ADD FOREIGN KEY (a) REFERENCES orders":     {"s0"},
		"CREATE TABLE order_items (customer_id int REFERENCES misc)": all,
		"CREATE TABLE misc_child () INHERITS (orders)":               all,
	} {
		_, rt, err := route(r, sql, nil, "")
		if err != nil || !slices.Equal(rt.Shards, want) {
			t.Errorf("%s: %v %v (%s), %v; want %v", sql, rt.Kind, rt.Shards, rt.Reason, err, want)
		}
	}
	// A view over a reference table is on every shard: so go its ALTER,
	// COMMENT and DROP (they went to the default shard).
	for _, sql := range []string{
		"CREATE VIEW pv AS SELECT * FROM products",
		"ALTER VIEW pv RENAME TO pv2",
		"COMMENT ON VIEW pv2 IS 'x'",
		"ALTER VIEW pv2 ALTER COLUMN name SET DEFAULT 'n'",
		"DROP VIEW pv2",
	} {
		if _, rt, err := route(r, sql, nil, ""); err != nil || !slices.Equal(rt.Shards, all) {
			t.Errorf("%s: %v %v (%s), %v; want %v", sql, rt.Kind, rt.Shards, rt.Reason, err, all)
		}
	}
}
