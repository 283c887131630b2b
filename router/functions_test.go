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
				{"orders_of", "SELECT * FROM public.orders WHERE customer_id = $1"},
				{"total_of", "BEGIN RETURN (SELECT sum(total) FROM orders_of(c)); END"}, // through orders_of
				{"dyn", "BEGIN EXECUTE format('SELECT count(*) FROM %I', 'Sessions'); END"},
				{"via_view", "SELECT count(*) FROM big_orders"},
				{"price", "SELECT price FROM products WHERE id = $1"},       // reads a reference table
				{"reprice", "UPDATE products SET price = price * $1"},       // writes one
				{"mixed", `SELECT count(*) FROM "MixedCase"`},               // quoted, as configured
				{"folded", `SELECT count(*) FROM mixedcase`},                // another table
				{"helper", "SELECT $1 * 2 -- orders_total is another word"}, // no word of a sharded table
			},
		})
	}
	for q, want := range map[string]string{
		"SELECT * FROM orders_of(7)": "orders_of() reads sharded table orders",
		"SELECT total_of(7)":         "total_of() calls orders_of(), which reads sharded table orders",
		"SELECT dyn()":               "dyn() reads sharded table sessions",
		"SELECT via_view()":          "via_view() reads view big_orders over sharded table orders",
		"SELECT reprice(1.1)":        "reprice() may write reference table products (UPDATE)",
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
		"DO $$BEGIN DELETE FROM products WHERE id = 1; END$$": "DO block may write reference table products (DELETE)",
	} {
		if !refused(q, want) {
			t.Errorf("%s: not refused", q)
		}
	}
	for _, q := range []string{
		"SELECT price(1)", "SELECT helper(2)", "SELECT folded()", "SELECT * FROM orders WHERE customer_id = 1",
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

func TestWordsOf(t *testing.T) {
	w := wordsOf(`SELECT x FROM "Odd Name", Public.Orders o -- orders_2 'lit'` + "\nWHERE $1 = 2éé")
	for _, want := range []string{"select", "x", "from", "Odd Name", "public", "orders", "o", "orders_2", "lit", "where", "2éé"} {
		if want == "2éé" {
			if w[want] {
				t.Errorf("%q: a word starting with a digit", want)
			}
			continue
		}
		if !w[want] {
			t.Errorf("%q missing from %v", want, w)
		}
	}
	if w["Orders"] || w["1"] {
		t.Errorf("unquoted words not folded or numbers kept: %v", w)
	}
	if w := wordsOf(`"unterminated`); !w["unterminated"] {
		t.Errorf("unterminated quote: %v", w)
	}
}
