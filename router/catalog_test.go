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
		r.ViewsChecked(s, now, deps)
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
	r.ViewsChecked("s0", later, nil)
	r.ViewsChecked("s1", later, nil)
	r.ViewsChecked("s2", now, nil) // began before the CREATE
	if !refused("SELECT * FROM open_orders") {
		t.Error("open_orders forgotten before every shard was read after its CREATE")
	}
	r.ViewsChecked("s2", later, nil) // every shard read after it: gone
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
	r.ViewsChecked("s0", later, deps)
	r2, _ := newTestRouter(t)
	r2.Adopt(r)
	if _, _, err := route(r2, "SELECT * FROM v2", nil, ""); err == nil {
		t.Error("the adopting router does not refuse v2")
	}
}
