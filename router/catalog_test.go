package router

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardedViews: a view over a sharded table is not in the map, so
// the router would read it on the default shard alone. Views that read
// a sharded table, directly or through other views, are refused (0A000)
// except with a shard hint; the router learns them from CREATE VIEW
// analysed here and from each shard's catalog report.
func TestShardedViews(t *testing.T) {
	r, _ := newTestRouter(t)
	refused := func(sql string) bool {
		t.Helper()
		_, _, err := route(r, sql, nil, "")
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "0A000" && strings.Contains(pgErr.Message, "view") {
			if pgErr.Hint == "" {
				t.Errorf("%s: no hint", sql)
			}
			return true
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return false
	}
	if refused("SELECT count(*) FROM big_orders") {
		t.Fatal("refused before anything was learned")
	}

	// From the shards' catalogs: big_orders reads orders, v2 reads
	// big_orders, cheap reads products (a reference table), misc reads
	// an unmapped table.
	now := time.Now()
	deps := []ViewDep{
		{"public", "big_orders", "public", "orders"},
		{"public", "v2", "public", "big_orders"},
		{"public", "cheap", "public", "products"},
		{"public", "misc", "public", "unmapped"},
	}
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{Views: deps})
	}
	for _, q := range []string{"SELECT count(*) FROM big_orders", "SELECT * FROM v2 WHERE customer_id = 1",
		"SELECT o.id FROM products p JOIN big_orders o ON o.product_id = p.id",
		"DECLARE c CURSOR FOR SELECT * FROM big_orders", "COPY (SELECT * FROM v2) TO STDOUT",
		"UPDATE big_orders SET status = 'x'"} {
		if !refused(q) {
			t.Errorf("%s: not refused", q)
		}
	}
	for _, q := range []string{"SELECT * FROM cheap", "SELECT * FROM misc", "/* shard: s1 */ SELECT count(*) FROM big_orders",
		"ALTER VIEW big_orders RENAME COLUMN id TO order_id", "COMMENT ON VIEW big_orders IS 'x'"} {
		if refused(q) {
			t.Errorf("%s: refused", q)
		}
	}

	// DROP VIEW through the proxy: at once.
	if _, err := r.ParseQuery("DROP VIEW big_orders CASCADE"); err != nil {
		t.Fatal(err)
	}
	if refused("SELECT count(*) FROM big_orders") {
		t.Error("big_orders refused after DROP VIEW")
	}

	// CREATE VIEW through the proxy: at once, and kept until every
	// shard's catalog has been read after it.
	if _, err := r.ParseQuery("CREATE VIEW open_orders AS SELECT * FROM orders WHERE status = 'open'"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ParseQuery("CREATE VIEW open_cheap AS SELECT o.* FROM open_orders o JOIN products p ON p.id = o.product_id"); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"SELECT * FROM open_orders", "SELECT * FROM open_cheap"} {
		if !refused(q) {
			t.Errorf("%s: not refused after CREATE VIEW", q)
		}
	}
	later := time.Now().Add(time.Second)
	r.CatalogChecked("s0", later, ShardCatalog{})
	r.CatalogChecked("s1", later, ShardCatalog{})
	r.CatalogChecked("s2", now, ShardCatalog{}) // began before the CREATE
	if !refused("SELECT * FROM open_orders") {
		t.Error("open_orders forgotten before every shard was read after its CREATE")
	}
	r.CatalogChecked("s2", later, ShardCatalog{}) // every shard read after it: gone
	if refused("SELECT * FROM open_orders") {
		t.Error("open_orders still refused though no shard has it")
	}

	// CREATE OR REPLACE VIEW over no sharded table forgets it.
	if _, err := r.ParseQuery("CREATE VIEW w AS SELECT * FROM orders"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ParseQuery("CREATE OR REPLACE VIEW w AS SELECT 1 AS one"); err != nil {
		t.Fatal(err)
	}
	if refused("SELECT * FROM w") {
		t.Error("w refused after CREATE OR REPLACE VIEW without sharded tables")
	}

	// A reloaded router adopts what this one learned.
	r.CatalogChecked("s0", later, ShardCatalog{Views: deps})
	r2, _ := newTestRouter(t)
	r2.Adopt(r)
	if _, _, err := route(r2, "SELECT * FROM v2", nil, ""); err == nil {
		t.Error("the adopting router does not refuse v2")
	}
}

// TestInlinedViews: a SELECT reads a plain view over a sharded table as
// the view's query, a subquery the router routes and merges.
func TestInlinedViews(t *testing.T) {
	r, _ := newTestRouter(t)
	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{Views: []ViewDep{
			{"public", "big_orders", "public", "orders"},
			{"public", "bigger", "public", "big_orders"},
			{"app", "recent", "public", "orders"},
		}, ViewDefs: []ViewDef{
			{"public", "big_orders", " SELECT orders.id, orders.customer_id, orders.total\n   FROM orders\n  WHERE orders.total > 10::numeric;"},
			{"public", "bigger", " SELECT big_orders.id\n   FROM big_orders\n  WHERE big_orders.total > 100::numeric;"},
			{"app", "recent", " SELECT orders.id FROM orders;"},
		}})
	}
	shardSQL := func(sql string) string {
		t.Helper()
		_, rt, err := route(r, sql, nil, "")
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if rt.Plan == nil {
			return ""
		}
		return leaf(rt.Plan.Root).SQL.Render(func(int) string { return "?" })
	}
	if got := shardSQL("SELECT count(*) FROM big_orders"); !strings.Contains(got, "FROM (SELECT orders.id") || !strings.Contains(got, "big_orders") {
		t.Errorf("count(*) FROM big_orders: shard SQL %q", got)
	}
	if got := shardSQL("SELECT b.id FROM bigger b ORDER BY b.id"); !strings.Contains(got, "FROM (SELECT big_orders.id FROM (SELECT orders.id") {
		t.Errorf("view over a view: shard SQL %q", got)
	}
	// A key condition on the view's key column routes to that key's
	// shard, as on the table.
	for _, q := range []string{"SELECT * FROM big_orders WHERE customer_id = 7",
		"SELECT * FROM (SELECT * FROM orders) s WHERE s.customer_id = 7", "SELECT * FROM (SELECT customer_id AS k FROM orders) s WHERE k = 7"} {
		if _, rt, err := route(r, q, nil, ""); err != nil || rt.Kind != RouteSingle {
			t.Errorf("%s: %s; want one shard", q, formatRoute(rt, err))
		}
	}
	// Concatenation needs no plan: the shards read the view themselves.
	if _, rt, err := route(r, "SELECT * FROM big_orders WHERE total > 50", nil, ""); err != nil || rt.Kind != RouteAll || rt.Plan != nil {
		t.Errorf("plain read: %s", formatRoute(rt, err))
	}
	// Refused: an aggregate inside the view's query is a subquery
	// aggregate; app.recent is not public's, unqualified; a CTE of the
	// same name is the CTE.
	for _, q := range []string{"SELECT * FROM recent", "UPDATE big_orders SET total = 0"} {
		if _, _, err := route(r, q, nil, ""); err == nil {
			t.Errorf("%s: not refused", q)
		}
	}
	if _, rt, err := route(r, "SELECT count(*) FROM app.recent", nil, ""); err != nil || rt.Plan == nil {
		t.Errorf("app.recent: %s", formatRoute(rt, err))
	}
	if _, rt, err := route(r, "WITH big_orders AS (SELECT 1 AS one) SELECT * FROM big_orders", nil, ""); err != nil || rt.Kind == RouteAll {
		t.Errorf("CTE named like the view: %s", formatRoute(rt, err))
	}
	// Under a custom search_path, an unqualified view name is refused.
	if _, _, err := routeWith(r, "SELECT count(*) FROM big_orders", nil, Args{CustomSearchPath: true}); err == nil {
		t.Error("unqualified view under a custom search_path: not refused")
	}

	// CREATE VIEW through the proxy, without *: inlined at once, with
	// its column names.
	if _, err := r.ParseQuery("CREATE VIEW totals (who, amount) AS SELECT customer_id, total FROM orders"); err != nil {
		t.Fatal(err)
	}
	if got := shardSQL("SELECT sum(amount) FROM totals WHERE who > 3"); !strings.Contains(got, "totals(who, amount)") {
		t.Errorf("sum over totals: shard SQL %q", got)
	}
}

// TestRenamedView: ALTER VIEW ... RENAME through the proxy moves what
// the router knows of the view to its new name at once; left to the
// next health check, the new name would read the default shard alone.
func TestRenamedView(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, time.Now(), ShardCatalog{
			Views:    []ViewDep{{"public", "big_orders", "public", "orders"}},
			ViewDefs: []ViewDef{{"public", "big_orders", " SELECT orders.id, orders.customer_id FROM orders;"}},
		})
	}
	if _, _, err := route(r, "ALTER VIEW big_orders RENAME TO big2", nil, ""); err != nil {
		t.Fatal(err)
	}
	if _, rt, err := route(r, "SELECT count(*) FROM big2", nil, ""); err != nil || rt.Kind != RouteAll || rt.Merge != MergePlan {
		t.Errorf("the renamed view: %v %v, %v; want read as its query on every shard", rt.Kind, rt.Merge, err)
	}
	if _, rt, err := route(r, "SELECT count(*) FROM big_orders", nil, ""); err != nil || rt.Kind != RouteDefault {
		t.Errorf("the old name: %v, %v; want an unknown relation (default shard)", rt.Kind, err)
	}
}

// TestRefusalNamesView: a construct the router cannot merge inside a
// view read as its query is reported as in the view, not "in a
// subquery" the user never wrote.
func TestRefusalNamesView(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, time.Now(), ShardCatalog{
			Views:    []ViewDep{{"public", "statuses", "public", "orders"}},
			ViewDefs: []ViewDef{{"public", "statuses", " SELECT DISTINCT orders.status FROM orders;"}},
		})
	}
	for q, want := range map[string]string{
		"SELECT count(*) FROM statuses":                               "DISTINCT in view statuses over a sharded table",
		"SELECT count(*) FROM (SELECT DISTINCT status FROM orders) s": "DISTINCT in a subquery over a sharded table",
	} {
		_, _, err := route(r, q, nil, "")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, want) {
			t.Errorf("%s: %v; want 0A000 saying %q", q, err, want)
		}
	}
}

// TestLearnedHeldWhileOpen: what DDL analysed here made is held while a
// transaction that made something is open (LearningOpened), and after it
// ends (LearningClosed) until every shard has a report from a check begun
// after that end; a check begun before COMMIT could not see it. A report
// from a check begun before the shard's last one is ignored.
func TestLearnedHeldWhileOpen(t *testing.T) {
	r, _ := newTestRouter(t)
	// known: the view is read as a view over orders (on every shard, or
	// refused when its definition is not known), not as an unmapped
	// table on the default shard.
	known := func(sql string) bool {
		t.Helper()
		_, rt, err := route(r, sql, nil, "")
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "0A000" && strings.Contains(pgErr.Message, "view") {
			return true
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return len(rt.Shards) > 1
	}
	stmt := func(sql string) *Statement {
		t.Helper()
		parts, err := r.ParseQuery(sql)
		if err != nil || len(parts) != 1 {
			t.Fatalf("%s: %v", sql, err)
		}
		return parts[0].Stmt
	}
	for _, c := range []struct {
		sql                  string
		learns, catalogAfter bool
	}{
		{"CREATE VIEW big AS SELECT id, total FROM orders WHERE total > 10", true, false},
		{"CREATE VIEW star AS SELECT * FROM orders", true, true},
		{"CREATE VIEW cheap AS SELECT * FROM products", true, false}, // a reference table's: no definition needed
		{"DROP VIEW nothing", true, false},
		{"CREATE INDEX ON orders (total)", true, false},
		{"SELECT count(*) FROM orders", false, false},
		{"ROLLBACK", false, false},
	} {
		if st := stmt(c.sql); st.Learns != c.learns || st.CatalogAfter != c.catalogAfter {
			t.Errorf("%s: Learns %v, CatalogAfter %v; want %v, %v", c.sql, st.Learns, st.CatalogAfter, c.learns, c.catalogAfter)
		}
	}

	shards := []string{"s0", "s1", "s2"}
	report := func(at time.Time, cat ShardCatalog) {
		for _, s := range shards {
			r.CatalogChecked(s, at, cat)
		}
	}
	r.LearningOpened()
	stmt("CREATE VIEW open_orders AS SELECT id FROM orders WHERE status = 'open'")
	report(time.Now(), ShardCatalog{}) // the transaction has not committed
	if !known("SELECT * FROM open_orders") {
		t.Fatal("open_orders let go while its transaction is open")
	}
	before := time.Now()
	r.LearningClosed()
	report(before, ShardCatalog{})
	if !known("SELECT * FROM open_orders") {
		t.Fatal("open_orders let go by a check begun before its transaction ended")
	}
	report(time.Now(), ShardCatalog{}) // no shard has it: the transaction rolled back
	if known("SELECT * FROM open_orders") {
		t.Fatal("open_orders still known after every shard was read")
	}

	// A reloaded router shares the count and the time: a transaction
	// opened on the old router holds what the new one adopted, until it
	// ends there.
	r.LearningOpened()
	stmt("CREATE VIEW reloaded AS SELECT id FROM orders")
	r2, _ := newTestRouter(t)
	r2.Adopt(r)
	onR2 := func(at time.Time) {
		for _, s := range shards {
			r2.CatalogChecked(s, at, ShardCatalog{})
		}
	}
	knownOn2 := func() bool {
		_, rt, err := route(r2, "SELECT * FROM reloaded", nil, "")
		return err == nil && len(rt.Shards) > 1
	}
	onR2(time.Now())
	if !knownOn2() {
		t.Fatal("the reloaded router let go of a view whose transaction is open on the old one")
	}
	before = time.Now()
	r.LearningClosed()
	onR2(before)
	if !knownOn2() {
		t.Fatal("the reloaded router let go of a view by a check begun before its transaction ended")
	}
	onR2(time.Now())
	if knownOn2() {
		t.Fatal("the reloaded router still knows a view no shard has")
	}

	deps := []ViewDep{{"public", "late", "public", "orders"}}
	newer := time.Now().Add(time.Hour)
	report(newer, ShardCatalog{Views: deps})
	report(newer.Add(-time.Minute), ShardCatalog{}) // began earlier, ended later
	if !known("SELECT * FROM late") {
		t.Error("an older report replaced a newer one")
	}
	defer func() {
		if recover() == nil {
			t.Error("LearningClosed without LearningOpened did not panic")
		}
	}()
	r.LearningClosed()
}
