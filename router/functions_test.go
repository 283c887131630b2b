package router

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardedFunctions: a function whose body reads a sharded table runs
// where the statement calling it goes and sees that shard's rows only, so
// a statement calling one is refused (0A000) unless a shard hint says
// where to run it. The router learns bodies from CREATE FUNCTION
// analysed here and from each shard's catalog report, and follows calls
// from one function to another.
func TestShardedFunctions(t *testing.T) {
	r, _ := newTestRouter(t)
	refused := func(sql, want string) bool {
		t.Helper()
		_, _, err := route(r, sql, nil, "")
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "0A000" && strings.Contains(pgErr.Message, "shardproxy cannot tell which shards") {
			if !strings.Contains(pgErr.Message, want) {
				t.Errorf("%s: message %q does not say %q", sql, pgErr.Message, want)
			}
			if !strings.Contains(pgErr.Hint, "/* shard: name */") {
				t.Errorf("%s: hint %q", sql, pgErr.Hint)
			}
			return true
		}
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return false
	}
	if refused("SELECT * FROM orders_of(7)", "") {
		t.Fatal("refused before the function was known")
	}

	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{
			Views: []ViewDep{{"public", "big_orders", "public", "orders"}},
			Functions: []FunctionDef{
				{Name: "orders_of", Body: "SELECT * FROM public.orders WHERE customer_id = $1"},
				{Name: "total_of", Body: "BEGIN RETURN (SELECT sum(total) FROM orders_of(c)); END"}, // through orders_of
				{Name: "dyn", Body: "BEGIN EXECUTE format('SELECT count(*) FROM %I', 'Sessions'); END"},
				{Name: "via_view", Body: "SELECT count(*) FROM big_orders"},
				{Name: "price", Body: "SELECT price FROM products WHERE id = $1"},
				{Name: "log_price", Body: "BEGIN INSERT INTO price_log SELECT * FROM products; UPDATE ONLY app.prices SET x = 1; END"}, // writes unmapped tables       // reads a reference table
				{Name: "reprice", Body: "UPDATE products SET price = price * $1"},                                                      // writes one
				{Name: "mixed", Body: `SELECT count(*) FROM "MixedCase"`},                                                              // quoted, as configured
				{Name: "folded", Body: `SELECT count(*) FROM mixedcase`},                                                               // another table
				{Name: "helper", Body: "SELECT $1 * 2 -- orders_total is another word"},                                                // no word of a sharded table
			},
		})
	}
	for q, want := range map[string]string{
		"SELECT * FROM orders_of(7)": "orders_of() reads sharded table orders",
		"SELECT total_of(7)":         "total_of() calls orders_of(), which reads sharded table orders",
		"SELECT dyn()":               "dyn() reads sharded table sessions",
		"SELECT via_view()":          "via_view() reads view big_orders over sharded table orders",
		"SELECT reprice(1.1)":        "reprice() writes reference table products",
		`SELECT mixed()`:             `mixed() reads sharded table "MixedCase"`,
		"SELECT id, total_of(customer_id) FROM orders WHERE customer_id = 1": "total_of()",
		"UPDATE orders SET total = total_of(1) WHERE customer_id = 1":        "total_of()",
		"INSERT INTO orders (customer_id, total) VALUES (1, total_of(1))":    "total_of()",
		"CALL orders_of(7)":                                   "orders_of()",
		"SELECT public.orders_of(7)":                          "orders_of()",
		"COPY (SELECT orders_of(1)) TO STDOUT":                "orders_of()",
		"CREATE TABLE t AS SELECT * FROM orders_of(1)":        "orders_of()",
		"DO $$BEGIN INSERT INTO orders VALUES (1, 2); END$$":  "DO block reads sharded table orders",
		"DO $$BEGIN PERFORM total_of(1); END$$":               "DO block calls total_of()",
		"DO $$BEGIN DELETE FROM products WHERE id = 1; END$$": "DO block writes reference table products",
	} {
		if !refused(q, want) {
			t.Errorf("%s: not refused", q)
		}
	}
	for _, q := range []string{
		"SELECT price(1)", "SELECT log_price()", "SELECT helper(2)", "SELECT folded()", "SELECT * FROM orders WHERE customer_id = 1",
		"/* shard: s1 */ SELECT * FROM orders_of(7)", "DO $$BEGIN PERFORM price(1); END$$",
		"DROP FUNCTION IF EXISTS helper(int)", "ALTER FUNCTION orders_of(int) OWNER TO x",
	} {
		if refused(q, "") {
			t.Errorf("%s: refused", q)
		}
	}
	if _, _, err := route(r, "SELECT * FROM orders_of(7)", nil, "s1"); err != nil {
		t.Errorf("SET shardproxy.shard: %v", err)
	}

	// Created through the proxy: known at once. Dropped: forgotten at
	// once, also from the shards' reports.
	if refused(`CREATE FUNCTION count_events() RETURNS bigint LANGUAGE sql AS $$SELECT count(*) FROM events$$`, "") {
		t.Error("CREATE FUNCTION refused") // it is DDL, sent to every shard
	}
	if !refused("SELECT count_events()", "count_events() reads sharded table events") {
		t.Error("a function created through the proxy is not known")
	}
	if !refused("SELECT 1 FROM products WHERE count_events() > 0", "count_events()") {
		t.Error("count_events in WHERE not refused")
	}
	if refused("DROP FUNCTION count_events(), orders_of(int)", "") {
		t.Error("DROP FUNCTION refused")
	}
	for _, q := range []string{"SELECT count_events()", "SELECT * FROM orders_of(7)"} {
		if refused(q, "") {
			t.Errorf("%s: refused after DROP", q)
		}
	}
	// total_of read orders through orders_of: that dropped, its own
	// body has no sharded table left.
	if refused("SELECT total_of(7)", "") {
		t.Error("total_of refused after orders_of was dropped")
	}

	// A report without a function forgets it: dropped on the shards
	// directly.
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now.Add(time.Second), ShardCatalog{})
	}
	if refused("SELECT dyn()", "") {
		t.Error("dyn refused after the shards stopped reporting it")
	}
}

func TestReadBody(t *testing.T) {
	b := readBody(`SELECT x FROM "Odd Name", Public.Orders o -- orders_2 'lit'` + "\nWHERE $1 = 2éé")
	for _, want := range []string{"select", "x", "from", "Odd Name", "public", "orders", "o", "orders_2", "lit", "where"} {
		if !b.words[want] {
			t.Errorf("%q missing from %v", want, b.words)
		}
	}
	if b.words["Orders"] || b.words["1"] || b.words["2éé"] {
		t.Errorf("unquoted words not folded, or a word read from a number: %v", b.words)
	}
	if b := readBody(`"unterminated`); !b.words["unterminated"] {
		t.Errorf("unterminated quote: %v", b.words)
	}
	b = readBody(`BEGIN
		INSERT INTO app.log VALUES (1); update ONLY Products SET n = 1;
		DELETE FROM "Odd"; MERGE INTO m USING s ON true WHEN MATCHED THEN DELETE;
		TRUNCATE TABLE t1; TRUNCATE t2; COPY c FROM STDIN;
		EXECUTE 'insert into dyn select 1';
		SELECT * FROM inserted_rows FOR UPDATE; -- "update" then no table: harmless
	END`)
	want := []string{"app.log", "products", "Odd", "m", "t1", "t2", "c", "dyn"}
	for _, w := range want {
		if !b.writes[w] {
			t.Errorf("write target %q missing from %v", w, b.writes)
		}
	}
	if b.writes["inserted_rows"] || b.writes["s"] || b.writes["only"] {
		t.Errorf("read tables taken for write targets: %v", b.writes)
	}
}

// TestTriggerWrites: a trigger runs on the shard its row is written on,
// so a write that fires one whose function writes a reference table (its
// copies diverge), a sharded table of another strategy (the row lands
// on the wrong shard), or, from a reference table, a sharded one (once
// per shard) is refused. Writes to a table of the same strategy follow
// the row's key, and are not.
func TestTriggerWrites(t *testing.T) {
	r, _ := newTestRouter(t)
	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{
			Functions: []FunctionDef{
				{Name: "take_stock", Body: "BEGIN UPDATE products SET stock = stock - NEW.qty WHERE id = NEW.product_id; RETURN NEW; END"},
				{Name: "history", Body: "BEGIN INSERT INTO order_items (customer_id, note) VALUES (NEW.customer_id, 'x'); RETURN NEW; END"},
				{Name: "emit", Body: "BEGIN PERFORM emit_event(NEW.id); RETURN NEW; END"}, // through a call
				{Name: "emit_event", Body: "INSERT INTO public.events (id) VALUES ($1)"},
				{Name: "price_changed", Body: "BEGIN INSERT INTO orders (customer_id) VALUES (0); RETURN NEW; END"},
				{Name: "stamp", Body: "BEGIN NEW.at := now(); RETURN NEW; END"},
			},
			Triggers: []Trigger{
				{"public", "order_items", "stock", "take_stock", triggerInsert | triggerUpdate, ""},
				{"public", "orders", "hist", "history", triggerUpdate, ""},
				{"public", "orders", "ev", "emit", triggerDelete, ""},
				{"public", "products", "pc", "price_changed", triggerUpdate, ""},
				{"public", "sessions", "st", "stamp", triggerInsert, ""},
				{"public", "events", "ev_log", "", triggerInsert, "CREATE RULE ev_log AS ON INSERT TO public.events DO ALSO INSERT INTO products (id) VALUES (new.id);"},
			},
		})
	}
	refused := map[string]string{
		"INSERT INTO order_items (customer_id, product_id, qty) VALUES (1, 2, 3)":                 "trigger stock on order_items runs take_stock(), which writes reference table products on the row's shard only",
		"UPDATE order_items SET qty = 2 WHERE customer_id = 1":                                    "trigger stock",
		"COPY order_items (customer_id, qty) FROM STDIN":                                          "trigger stock",
		"DELETE FROM orders WHERE customer_id = 1":                                                "emit(), which writes events, sharded by by_id, on the shard of the row of orders (sharded by by_customer)",
		"UPDATE products SET price = 2 WHERE id = 1":                                              "writes sharded table orders once for each shard's copy of products",
		"WITH d AS (DELETE FROM orders WHERE customer_id = 1 RETURNING *) SELECT count(*) FROM d": "trigger ev",
		"INSERT INTO products (id) VALUES (1) ON CONFLICT (id) DO UPDATE SET price = 2":           "trigger pc", // can fire the UPDATE trigger
	}
	for sql, want := range refused {
		_, _, err := route(r, sql, nil, "")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, want) {
			t.Errorf("%s: %v; want 0A000 saying %q", sql, err, want)
		}
	}
	for _, sql := range []string{
		"UPDATE orders SET total = 1 WHERE customer_id = 1", // history: same strategy
		"INSERT INTO orders (customer_id) VALUES (1)",       // no INSERT trigger
		"INSERT INTO sessions (token) VALUES ('a')",         // writes nothing
		"DELETE FROM order_items WHERE customer_id = 1",     // stock fires on INSERT and UPDATE only
		"UPDATE events SET x = 1 WHERE id = 5",              // ev_log is an INSERT rule
		"SELECT * FROM order_items",
		"/* shard: s1 */ INSERT INTO order_items (customer_id, product_id, qty) VALUES (1, 2, 3)",
	} {
		if _, _, err := route(r, sql, nil, ""); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}

	// CREATE and DROP TRIGGER or RULE through the proxy take effect at once.
	for _, tc := range []struct{ create, write, drop string }{
		{"CREATE TRIGGER stock_del AFTER DELETE ON order_items FOR EACH ROW EXECUTE FUNCTION take_stock()",
			"DELETE FROM order_items WHERE customer_id = 1", "DROP TRIGGER stock_del ON order_items"},
		{"CREATE RULE audit AS ON UPDATE TO sessions DO ALSO DELETE FROM products WHERE id = 'x'",
			"UPDATE sessions SET x = 1 WHERE token = 'a'", "DROP RULE audit ON sessions"},
	} {
		if _, _, err := route(r, tc.create, nil, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := route(r, tc.write, nil, ""); !isFeatureNotSupported(err) {
			t.Errorf("%s after %s: %v; want 0A000", tc.write, tc.create, err)
		}
		if _, _, err := route(r, tc.drop, nil, ""); err != nil {
			t.Fatal(err)
		}
		if _, _, err := route(r, tc.write, nil, ""); err != nil {
			t.Errorf("%s after %s: %v", tc.write, tc.drop, err)
		}
	}
}
