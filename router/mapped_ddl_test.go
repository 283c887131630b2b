package router

import (
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestMappedTableDDL: renaming or moving a mapped table, or renaming or
// dropping its key column, is refused (the map would name what no longer
// exists, and the new name would be read as unmapped); other DDL on it,
// and any on unmapped tables and children, routes as before, as does the
// refused DDL under a shard hint.
func TestMappedTableDDL(t *testing.T) {
	r, _ := newTestRouter(t)
	for sql, want := range map[string]string{
		"ALTER TABLE orders RENAME TO orders_old":               "sharded table orders",
		"ALTER TABLE IF EXISTS public.orders RENAME TO o":       "renaming it",
		"ALTER TABLE products RENAME TO goods":                  "reference table products",
		"ALTER TABLE orders SET SCHEMA archive":                 "moving it to schema archive",
		"ALTER TABLE app.audit SET SCHEMA public":               "sharded table app.audit",
		"ALTER TABLE orders RENAME COLUMN customer_id TO cid":   "renaming its shard key column customer_id",
		"ALTER TABLE orders RENAME Customer_Id TO cid":          "shard key column",
		"ALTER TABLE orders ADD COLUMN x int, DROP customer_id": "dropping its shard key column customer_id",
		`ALTER TABLE "MixedCase" RENAME TO lower_case`:          `sharded table "MixedCase"`,
	} {
		_, _, err := route(r, sql, nil, "")
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "0A000" || !strings.Contains(pe.Message, want) || !strings.Contains(pe.Hint, "reload") {
			t.Errorf("%s: want 0A000 saying %q with a hint, got %v", sql, want, err)
		}
		if _, rt, err := route(r, "/* shard: s1 */ "+sql, nil, ""); err != nil || len(rt.Shards) != 1 || rt.Shards[0] != "s1" {
			t.Errorf("/* shard: s1 */ %s: %v %v", sql, rt.Shards, err)
		}
	}
	for _, sql := range []string{
		"ALTER TABLE orders RENAME COLUMN total TO amount",
		"ALTER TABLE orders ALTER COLUMN customer_id TYPE bigint",
		"ALTER TABLE orders ALTER COLUMN customer_id SET NOT NULL",
		"ALTER TABLE orders DROP COLUMN note",
		"ALTER TABLE orders RENAME CONSTRAINT orders_pkey TO orders_pk",
		"ALTER TABLE products RENAME COLUMN customer_id TO c", // a reference table has no key
		"ALTER TABLE misc RENAME TO misc2",
		"ALTER TABLE other.orders RENAME TO o2", // another schema's table
		"ALTER VIEW orders_view RENAME TO v2",
	} {
		if _, _, err := route(r, sql, nil, ""); err != nil {
			t.Errorf("%s: %v", sql, err)
		}
	}
}
