package router

import (
	"slices"
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
