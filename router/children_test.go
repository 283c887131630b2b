package router

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestChildTables: a partition or inheritance child of a mapped table is
// not in the map, so the router sent it to the default shard alone: a
// count over orders_2024 read one shard's part, and an INSERT into it
// put every row there. Children (at any depth) learned from the shards'
// catalogs or from DDL through the proxy route as the mapped table they
// descend from.
func TestChildTables(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keysOn(t, strats["by_customer"])
	shardOf := func(sql string) Route {
		t.Helper()
		_, rt, err := route(r, sql, nil, "")
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return rt
	}
	want := func(sql string, kind RouteKind, shards ...string) {
		t.Helper()
		rt := shardOf(sql)
		if rt.Kind != kind || len(shards) > 0 && !slices.Equal(rt.Shards, shards) {
			t.Errorf("%s: %v %v (%s); want %v %v", sql, rt.Kind, rt.Shards, rt.Reason, kind, shards)
		}
	}
	const count = "SELECT count(*) FROM orders_2024_q1"
	want(count, RouteDefault)

	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{Inherits: []Inherit{
			{"public", "orders_2024", "public", "orders"},
			{"public", "orders_2024_q1", "public", "orders_2024"}, // two levels down
			{"public", "cheap", "public", "products"},             // of a reference table
			{"public", "misc_child", "public", "misc"},            // of an unmapped table
			{"public", "events", "public", "orders"},              // mapped itself: its own entry wins
		}})
	}
	if rt := shardOf(count); rt.Kind != RouteAll || rt.Merge != MergePlan || !slices.Equal(rt.Shards, []string{"s0", "s1"}) {
		t.Errorf("%s: %v %v %v; want every shard of by_customer, merged", count, rt.Kind, rt.Shards, rt.Merge)
	}
	for shard, k := range keys {
		want("SELECT * FROM orders_2024 WHERE customer_id = "+k, RouteSingle, shard)
		want("INSERT INTO orders_2024_q1 (customer_id, total) VALUES ("+k+", 1)", RouteSingle, shard)
		want("UPDATE public.orders_2024 SET total = 0 WHERE customer_id = "+k, RouteSingle, shard)
	}
	want("SELECT * FROM orders o JOIN orders_2024 p ON p.customer_id = o.customer_id", RouteAll, "s0", "s1")
	want("ALTER TABLE orders_2024 ADD COLUMN note text", RouteBroadcast)
	want("SELECT * FROM cheap", RouteDefault)
	want("INSERT INTO cheap VALUES (1)", RouteBroadcast)
	want("SELECT * FROM misc_child", RouteDefault)
	want("SELECT * FROM events WHERE id = 5", RouteSingle)
	if _, _, err := routeWith(r, count, nil, Args{CustomSearchPath: true}); !isFeatureNotSupported(err) {
		t.Errorf("unqualified child under a custom search_path: %v; want 0A000", err)
	}

	// DDL through the proxy: known at once, and forgotten at once.
	ddl := func(sql string) {
		t.Helper()
		if _, _, err := route(r, sql, nil, ""); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	ddl("CREATE TABLE orders_2025 PARTITION OF orders FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
	want("SELECT count(*) FROM orders_2025", RouteAll, "s0", "s1")
	ddl("ALTER TABLE orders DETACH PARTITION orders_2025")
	want("SELECT count(*) FROM orders_2025", RouteDefault)
	ddl("ALTER TABLE orders ATTACH PARTITION orders_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')")
	want("SELECT count(*) FROM orders_2025", RouteAll, "s0", "s1")
	ddl("CREATE TABLE app.audit_old () INHERITS (app.audit)")
	want("SELECT * FROM app.audit_old WHERE id = 5", RouteSingle)
	want("SELECT * FROM audit_old WHERE id = 5", RouteDefault) // public's, not app's
	ddl("ALTER TABLE orders_2025 RENAME TO orders_y2025")
	want("SELECT count(*) FROM orders_y2025", RouteAll, "s0", "s1")
	want("SELECT count(*) FROM orders_2025", RouteDefault)
	ddl("ALTER TABLE orders_y2025 RENAME TO orders_2025")
	ddl("DROP TABLE orders_2024_q1, orders_2025")
	want(count, RouteDefault)
	want("SELECT count(*) FROM orders_2025", RouteDefault)
	want("SELECT count(*) FROM orders_2024", RouteAll)

	// A view over a child reads a sharded table; a function that reads
	// a child is refused.
	r.CatalogChecked("s0", now.Add(time.Second), ShardCatalog{
		Inherits:  []Inherit{{"public", "orders_2024", "public", "orders"}},
		Views:     []ViewDep{{"public", "v2024", "public", "orders_2024"}},
		Functions: []FunctionDef{{Name: "count_2024", Body: "SELECT count(*) FROM orders_2024"}},
	})
	if _, _, err := route(r, "SELECT * FROM v2024", nil, ""); !isFeatureNotSupported(err) || !strings.Contains(err.Error(), "orders_2024") {
		t.Errorf("view over a child: %v; want 0A000", err)
	}
	if _, _, err := route(r, "SELECT count_2024()", nil, ""); !isFeatureNotSupported(err) || !strings.Contains(err.Error(), "orders_2024") {
		t.Errorf("function over a child: %v; want 0A000", err)
	}
}

func isFeatureNotSupported(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "0A000"
}
