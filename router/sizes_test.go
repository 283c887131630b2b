package router

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardedSizeRefused: a size function naming a sharded table, by a
// literal in either protocol or by a text parameter, gets 0A000 naming
// the table and its shards; a shard hint asks for one shard's part and
// routes; reference, unmapped and oid-named tables route as before.
func TestShardedSizeRefused(t *testing.T) {
	r, _ := newTestRouter(t)
	refused := map[string]string{ // statement -> table named in the message
		"SELECT pg_total_relation_size('orders')":                                      "orders",
		"SELECT pg_size_pretty(pg_catalog.pg_table_size('public.ORDERS'::regclass))":   "orders",
		"SELECT pg_relation_size('orders', 'main') FROM orders WHERE customer_id = 7":  "orders",
		"SELECT pg_indexes_size(' app . audit ')":                                      "app.audit",
		`SELECT pg_table_size('"MixedCase"')`:                                          `"MixedCase"`,
		"SELECT 1 WHERE pg_relation_size('sessions') > 0":                              "sessions",
		"SELECT (SELECT pg_total_relation_size('tenant_data'::text::regclass))":        "tenant_data",
		"SELECT pg_table_size('products'), pg_total_relation_size('pgbench_accounts')": "pgbench_accounts",
	}
	for sql, table := range refused {
		_, _, err := route(r, sql, nil, "")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "sharded table "+table) ||
			!strings.Contains(pe.Hint, "/* shard: NAME */") {
			t.Errorf("%s: want 0A000 naming sharded table %s with a hint, got %v", sql, table, err)
		}
		if _, rt, err := route(r, sql, nil, "s1"); err != nil || len(rt.Shards) != 1 || rt.Shards[0] != "s1" {
			t.Errorf("%s with SET shardproxy.shard = s1: want s1, got %v %v", sql, rt.Shards, err)
		}
		if _, rt, err := route(r, "/* shard: s0 */ "+sql, nil, ""); err != nil || len(rt.Shards) != 1 || rt.Shards[0] != "s0" {
			t.Errorf("/* shard: s0 */ %s: want s0, got %v %v", sql, rt.Shards, err)
		}
	}
	// The hint names the table's own shards.
	if _, _, err := route(r, "SELECT pg_table_size('events')", nil, ""); err == nil || !strings.Contains(err.(*pgconn.PgError).Hint, "on s0, s1, s2") {
		t.Errorf("events: want the hint to name s0, s1, s2, got %v", err)
	}
	if _, _, err := route(r, "SELECT pg_table_size('orders')", nil, ""); err == nil || !strings.Contains(err.(*pgconn.PgError).Hint, "on s0, s1;") {
		t.Errorf("orders: want the hint to name s0, s1, got %v", err)
	}

	allowed := []string{
		"SELECT pg_total_relation_size('products')",           // reference: whole everywhere
		"SELECT pg_total_relation_size('unmapped')",           // on the default shard only
		"SELECT pg_total_relation_size('other.orders')",       // another schema's table
		`SELECT pg_total_relation_size('"Orders"')`,           // quoted: not orders
		"SELECT pg_total_relation_size('mydb.public.orders')", // Postgres rejects the database qualifier
		"SELECT pg_total_relation_size(c.oid) FROM pg_class c WHERE c.relname = 'orders'",
		"SELECT pg_column_size('orders')",
	}
	for _, sql := range allowed {
		if _, _, err := route(r, sql, nil, ""); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}

	// The extended protocol: a text parameter is read; a binary one is an
	// oid, which only a catalog can name.
	const byParam = "SELECT pg_total_relation_size($1)"
	if _, _, err := route(r, byParam, []string{"orders"}, ""); err == nil {
		t.Errorf("%s with 'orders': want 0A000", byParam)
	}
	if _, _, err := route(r, byParam, []string{"products"}, ""); err != nil {
		t.Errorf("%s with 'products': %v", byParam, err)
	}
	st, err := r.Prepare(byParam)
	if err != nil {
		t.Fatal(err)
	}
	oid := []byte{0, 0, 0x40, 0x08}
	if _, err := r.Route(t.Context(), st, Args{Params: [][]byte{oid}, Formats: []int16{1}}); err != nil {
		t.Errorf("%s with a binary oid: %v", byParam, err)
	}
}

func TestRegclassName(t *testing.T) {
	for in, want := range map[string][2]string{
		"orders":            {"", "orders"},
		"ORDERS":            {"", "orders"},
		" public . Orders ": {"public", "orders"},
		`"Orders"`:          {"", "Orders"},
		`app."a ""b"" c"`:   {"app", `a "b" c`},
		`"x.y"`:             {"", "x.y"},
		`"My Schema".t`:     {"My Schema", "t"},
		"Ünïcode":           {"", "Ünïcode"},
		"db.public.orders":  {"?", ""},
		"":                  {"?", ""},
		`"unterminated`:     {"?", ""},
		`""`:                {"?", ""},
		"a b":               {"?", ""},
		"a.":                {"?", ""},
		".a":                {"?", ""},
		`"a"b`:              {"?", ""},
	} {
		schema, rel, ok := regclassName(in)
		if want[0] == "?" {
			if ok {
				t.Errorf("regclassName(%q) = %q, %q; want not ok", in, schema, rel)
			}
			continue
		}
		if !ok || schema != want[0] || rel != want[1] {
			t.Errorf("regclassName(%q) = %q, %q, %v; want %q, %q", in, schema, rel, ok, want[0], want[1])
		}
	}
}

// TestShardedIndexSizeRefused: an index the shards' catalogs report on a
// sharded table (or a child of one) is sized as its table; indexes of
// reference and unmapped tables are not.
func TestShardedIndexSizeRefused(t *testing.T) {
	r, _ := newTestRouter(t)
	const pkey = "SELECT pg_relation_size('orders_pkey')"
	if _, _, err := route(r, pkey, nil, ""); err != nil {
		t.Fatalf("%s before any catalog check: %v", pkey, err)
	}
	now := time.Now()
	for _, s := range []string{"s0", "s1", "s2"} {
		r.CatalogChecked(s, now, ShardCatalog{
			Inherits: []Inherit{{"public", "orders_2024", "public", "orders"}},
			Indexes: []Owned{
				{"public", "orders_pkey", "public", "orders"},
				{"public", "orders_2024_placed_idx", "public", "orders_2024"},
				{"app", "audit_pkey", "app", "audit"},
				{"public", "products_pkey", "public", "products"},
				{"public", "misc_pkey", "public", "misc"},
			},
		})
	}
	for sql, table := range map[string]string{
		pkey: "orders",
		"SELECT pg_size_pretty(pg_relation_size('public.ORDERS_PKEY'))": "orders",
		"SELECT pg_relation_size('orders_2024_placed_idx')":             "orders",
		"SELECT pg_relation_size('app.audit_pkey'::regclass)":           "app.audit",
	} {
		_, _, err := route(r, sql, nil, "")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, "an index of sharded table "+table) {
			t.Errorf("%s: want 0A000 naming an index of sharded table %s, got %v", sql, table, err)
		}
	}
	for _, sql := range []string{
		"SELECT pg_relation_size('products_pkey')",
		"SELECT pg_relation_size('misc_pkey')",
		"SELECT pg_relation_size('audit_pkey')", // app's, not public's
		"/* shard: s1 */ " + pkey,
	} {
		if _, _, err := route(r, sql, nil, ""); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}
