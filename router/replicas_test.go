package router

import (
	"testing"
	"time"
)

// TestReferenceWrites: a write to a reference table that computes a
// value each copy computes on its own, or leaves a column to such a
// default, is refused; the same write with constants, a write to a
// sharded table, and a hinted one are not.
func TestReferenceWrites(t *testing.T) {
	r, _ := newTestRouter(t)
	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{
			Functions: []FunctionDef{
				{Name: "jitter", Body: "BEGIN RETURN random(); END"},
				{Name: "via", Body: "SELECT jitter() * 2"},
				{Name: "my_uuid", Volatile: true}, // a C function
				{Name: "label", Body: "SELECT upper($1)"},
				{Name: "stamp", Body: "BEGIN NEW.at := CURRENT_TIMESTAMP; RETURN NEW; END"},
			},
			Defaults: []ColumnDefault{
				{Schema: "public", Table: "products", Column: "id", Position: 1, Identity: true},
				{Schema: "public", Table: "products", Column: "at", Position: 4, Expr: "now()"},
				{Schema: "public", Table: "products", Column: "code", Position: 3, Expr: "'x'::character varying"}, // a cast, not a call
				{Schema: "public", Table: "orders", Column: "created", Position: 3, Expr: "now()"},                 // sharded: one copy
			},
			Triggers: []Trigger{{"public", "products", "stamp", "stamp", triggerDelete, ""}},
		})
	}
	refused := map[string]string{
		"INSERT INTO products VALUES (1, 'a', 'c', '2026-01-01', random())":                                                                      "random() in a write to reference table products",
		"INSERT INTO products VALUES (1, 'a', 'c', pg_catalog.now())":                                                                            "now()",
		"INSERT INTO products VALUES (1, 'a', 'c', localtimestamp)":                                                                              "LOCALTIMESTAMP",
		"INSERT INTO products VALUES (1, 'a', 'c', 'today'::date)":                                                                               "'today' as a date or time",
		"INSERT INTO products VALUES (1, 'a', 'c', '2026-01-01', via())":                                                                         "via(), which calls jitter(), which calls random,",
		"INSERT INTO products VALUES (1, my_uuid()::text, 'c', '2026-01-01')":                                                                    "my_uuid(), which is volatile",
		"INSERT INTO products (name, code, at) VALUES ('a', 'c', '2026-01-01')":                                                                  "id's identity sequence",
		"INSERT INTO products (id, name) VALUES (1, 'a')":                                                                                        "at's default now()",
		"INSERT INTO products VALUES (1, 'a', 'c')":                                                                                              "at's default now()",
		"INSERT INTO products VALUES (1, 'a', 'c', DEFAULT)":                                                                                     "at's default now()",
		"INSERT INTO products DEFAULT VALUES":                                                                                                    "id's identity sequence",
		"INSERT INTO products SELECT * FROM staging":                                                                                             "id's identity sequence", // width not known
		"UPDATE products SET at = DEFAULT":                                                                                                       "at's default now()",
		"UPDATE products SET price = price * random()":                                                                                           "random()",
		"UPDATE products SET price = 1 WHERE random() < 0.5":                                                                                     "random()",
		"UPDATE products SET price = 1 WHERE xmin = 5":                                                                                           "system column xmin",
		"UPDATE products p SET price = 1 WHERE p.ctid > '(0,1)'":                                                                                 "system column ctid",
		"UPDATE products SET price = 1 WHERE id IN (SELECT id FROM products OFFSET 3)":                                                           "LIMIT or OFFSET without ORDER BY",
		"INSERT INTO products (id, at) SELECT id, at FROM products TABLESAMPLE SYSTEM (10)":                                                      "TABLESAMPLE",
		"COPY products (name, code, at) FROM STDIN":                                                                                              "id's identity sequence",
		"COPY products FROM STDIN WHERE random() < 0.5":                                                                                          "random()",
		"WITH n AS (SELECT now() AS t) INSERT INTO products SELECT 1, 'a', 'c', t FROM n":                                                        "now()",
		"MERGE INTO products p USING (VALUES (1, 'a')) s(id, name) ON p.id = s.id WHEN NOT MATCHED THEN INSERT (id, name) VALUES (s.id, s.name)": "at's default now()",
		"MERGE INTO products p USING (VALUES (1, 'a')) s(id, name) ON p.id = s.id WHEN MATCHED THEN UPDATE SET at = DEFAULT":                     "at's default now()",
		"INSERT INTO products (id, name, at) SELECT 9, string_agg(name, ','), '2026-01-01' FROM products":                                        "string_agg() without ORDER BY",
		"UPDATE products p SET price = r FROM (SELECT id, row_number() OVER () AS r FROM products) n WHERE n.id = p.id":                          "row_number() over a window without ORDER BY",
		"DELETE FROM products WHERE id = 1":                                                                                                      "trigger stamp on products runs stamp(), which calls current_timestamp",
		"ALTER TABLE products ADD COLUMN seen timestamptz DEFAULT clock_timestamp()":                                                             "adding a column with default clock_timestamp()",
		"EXPLAIN ANALYZE INSERT INTO products VALUES (1, 'a', 'c', now())":                                                                       "now()",
		"EXPLAIN (ANALYZE, BUFFERS) UPDATE products SET price = random()":                                                                        "random()",
		"ALTER TABLE products ADD COLUMN n serial":                                                                                               "adding a serial column",
		"INSERT INTO products VALUES (1, 'a', 'c', 'now')":                                                                                       "'now' without a cast",
		"UPDATE products SET at = ' Today '":                                                                                                     "' Today ' without a cast",
		"UPDATE products SET price = 1 WHERE at < 'tomorrow'":                                                                                    "'tomorrow' without a cast",
	}
	checkRefusals(t, r, refused, []string{
		"INSERT INTO products VALUES (1, 'a', 'c', '2026-01-01')",
		"INSERT INTO products (id, name, at) VALUES (1, label('a'), '2026-01-01')",
		"INSERT INTO products (id, at) VALUES (1, '2026-01-01') RETURNING now(), random()",
		"INSERT INTO products VALUES (1, 'now'::text, 'c', '2026-01-01')", // the word, cast as the hint says
		"UPDATE products SET name = 'nowhere'",
		"INSERT INTO orders (customer_id, created) VALUES (1, 'now')", // sharded: one copy
		"UPDATE products SET price = 1 WHERE at < '2026-01-01'::timestamptz",
		"UPDATE products SET price = 1 WHERE id IN (SELECT id FROM products ORDER BY id LIMIT 3)",
		"COPY products FROM STDIN",
		"INSERT INTO orders (customer_id, total) VALUES (1, random())", // one row, one copy
		"UPDATE orders SET created = DEFAULT WHERE customer_id = 1",
		"SELECT random(), now() FROM products",
		"INSERT INTO products (id, name, at) SELECT 9, string_agg(name, ',' ORDER BY id), '2026-01-01' FROM products",
		"UPDATE products p SET price = r FROM (SELECT id, row_number() OVER (ORDER BY id) AS r FROM products) n WHERE n.id = p.id",
		"UPDATE products SET price = (SELECT count(*) FROM products)",
		"/* shard: s1 */ INSERT INTO products VALUES (1, 'a', 'c', now())",
		"ALTER TABLE products ALTER COLUMN at SET DEFAULT clock_timestamp()", // the rows stay as they are
		"ALTER TABLE products ADD COLUMN note text DEFAULT 'x'",
		"EXPLAIN INSERT INTO products VALUES (1, 'a', 'c', now())", // planned, not run
		"EXPLAIN (ANALYZE false) UPDATE products SET price = random()",
	})

	// A parameter cast to a date/time type is checked when bound.
	const bound = "INSERT INTO products VALUES ($1, 'a', 'c', $2::timestamptz)"
	if _, _, err := route(r, bound, []string{"1", " Now "}, ""); !isFeatureNotSupported(err) {
		t.Errorf("%s with 'Now': %v; want 0A000", bound, err)
	}
	if _, _, err := route(r, bound, []string{"1", "2026-01-01"}, ""); err != nil {
		t.Errorf("%s: %v", bound, err)
	}

	// A bare 'now' literal in an extended-protocol statement is in its
	// parse tree; a bare bound parameter is any text the application
	// sends (a product named "Today"), whose type the proxy does not know.
	const literal = "INSERT INTO products VALUES ($1, 'a', 'c', 'now')"
	if _, _, err := route(r, literal, []string{"1"}, ""); !isFeatureNotSupported(err) {
		t.Errorf("%s: %v; want 0A000", literal, err)
	}
	const bare = "UPDATE products SET name = $1 WHERE id = 1"
	if _, _, err := route(r, bare, []string{"Today"}, ""); err != nil {
		t.Errorf("%s with 'Today': %v", bare, err)
	}

	// CREATE and ALTER TABLE through the proxy take effect at once.
	for _, tc := range []struct{ ddl, write string }{
		{"CREATE TABLE products (id int, name text, seq bigserial)", "INSERT INTO products (id, name) VALUES (1, 'a')"},
		{"ALTER TABLE products ALTER COLUMN name SET DEFAULT gen_random_uuid()::text", "INSERT INTO products (id, seq) VALUES (1, 2)"},
	} {
		if _, _, err := route(r, tc.ddl, nil, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := route(r, tc.write, nil, ""); !isFeatureNotSupported(err) {
			t.Errorf("%s after %s: %v; want 0A000", tc.write, tc.ddl, err)
		}
	}
	if _, _, err := route(r, "ALTER TABLE products ALTER COLUMN name DROP DEFAULT", nil, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := route(r, "INSERT INTO products (id, seq) VALUES (1, 2)", nil, ""); err != nil {
		t.Errorf("after DROP DEFAULT: %v", err)
	}
	if _, _, err := route(r, "DROP TABLE products", nil, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := route(r, "INSERT INTO products (id) VALUES (1)", nil, ""); err != nil {
		t.Errorf("after DROP TABLE: %v", err)
	}
}

// TestReferenceRowLocks: FOR UPDATE through a customer on s1 locked s1's
// copy of products, which a transaction locking the same product through
// a customer on s0 does not see: both went on, and the second's UPDATE
// overwrote the first's. A lock of a reference table must include the
// default shard's copy, where reads of reference tables alone run.
func TestReferenceRowLocks(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	refused := map[string]string{
		"SELECT * FROM orders o JOIN products p ON p.id = o.product_id WHERE o.customer_id = {c1} FOR UPDATE":     "lock reference table products on shard s1 only",
		"SELECT * FROM orders o JOIN products p ON p.id = o.product_id WHERE o.customer_id = {c1} FOR SHARE OF p": "products",
		"SELECT * FROM orders o, LATERAL (SELECT * FROM products) p WHERE o.customer_id = {c1} FOR NO KEY UPDATE": "products",
		"SELECT * FROM sessions s JOIN products p ON true WHERE s.token = '{r1}' FOR UPDATE SKIP LOCKED":          "products",
	}
	checkRefusals(t, r, withKeys(keys, refused), []string{
		keys.Replace("SELECT * FROM orders o JOIN products p ON p.id = o.product_id WHERE o.customer_id = {c1} FOR UPDATE OF o"),
		keys.Replace("SELECT * FROM orders o JOIN products p ON p.id = o.product_id WHERE o.customer_id = {c0} FOR UPDATE"), // s0: the default shard
		keys.Replace("SELECT * FROM orders WHERE customer_id = {c1} AND total > (SELECT price FROM products WHERE id = 1) FOR UPDATE"),
		"SELECT * FROM products WHERE id = 1 FOR UPDATE",
		keys.Replace("SELECT * FROM orders o JOIN products p ON true WHERE o.customer_id = {c1}"),
	})
}

// TestWritesThroughReferenceViews: a view over a reference table is not
// in the map, so UPDATE cheap SET price = 5 went to the default shard and
// changed that copy alone (5.00 on s0, 2.50 on s1 on make run). A write
// through such a view is refused; reading it is exact on any one shard.
func TestWritesThroughReferenceViews(t *testing.T) {
	r, _ := newTestRouter(t)
	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{Views: []ViewDep{
			{"public", "cheap", "public", "products"},
			{"public", "cheaper", "public", "cheap"}, // through another view
			{"public", "mixed", "public", "products"}, {"public", "mixed", "public", "orders"},
		}})
	}
	if _, _, err := route(r, "CREATE VIEW named AS SELECT p.id, p.price FROM products p", nil, ""); err != nil {
		t.Fatal(err)
	}
	checkRefusals(t, r, map[string]string{
		"UPDATE cheap SET price = 5 WHERE id = 1":     "UPDATE through view cheap, which reads reference table products, would change the default shard's copy only",
		"DELETE FROM cheaper WHERE id = 1":            "DELETE through view cheaper",
		"INSERT INTO cheap (id, price) VALUES (1, 2)": "INSERT through view cheap",
		"UPDATE named SET price = 5":                  "view named, which reads reference table products",
		"UPDATE mixed SET price = 5":                  "which reads sharded table orders",
		"COPY cheap FROM STDIN":                       "COPY through view cheap",
	}, []string{
		"SELECT * FROM cheap WHERE id = 1",
		"SELECT * FROM cheaper",
		"UPDATE products SET price = 5 WHERE id = 1",
		"/* shard: s1 */ UPDATE cheap SET price = 5",
		"DROP VIEW cheap",
	})
}

// TestAnyCopy: a plain read of reference tables alone may use any
// shard's copy; a lock, a function, or an unmapped table keep it on the
// default shard.
func TestAnyCopy(t *testing.T) {
	r, _ := newTestRouter(t)
	for sql, want := range map[string]bool{
		"SELECT name FROM products WHERE id = 1":                                     true,
		"SELECT count(*), max(price) FROM products p JOIN products q ON p.id = q.id": true,
		"SELECT name FROM products WHERE id = 1 FOR UPDATE":                          false,
		"SELECT upper(name) FROM products":                                           false,
		"SELECT p.name FROM products p JOIN notes n ON n.id = p.id":                  false,
		"SELECT name INTO copy FROM products":                                        false,
	} {
		if _, rt, err := route(r, sql, nil, ""); err != nil || rt.AnyCopy != want || rt.Kind != RouteDefault && rt.Kind != RouteAny {
			t.Errorf("%s: %s, AnyCopy %v; want %v", sql, formatRoute(rt, err), rt.AnyCopy, want)
		}
	}
}
