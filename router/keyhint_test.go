package router

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestShardKeyHint: /* shard_key: table = value */ runs a statement on
// the shard that holds value as a key of table, for statements the
// router cannot route by themselves (a function that reads the key's
// rows) without the client knowing shard names.
func TestShardKeyHint(t *testing.T) {
	r, strats := newTestRouter(t)
	want := func(sql, shard string) {
		t.Helper()
		_, rt, err := route(r, sql, nil, "")
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if rt.Kind != RouteHint || len(rt.Shards) != 1 || rt.Shards[0] != shard {
			t.Errorf("%s: %v %v (%s); want hinted to %s", sql, rt.Kind, rt.Shards, rt.Reason, shard)
		}
	}
	// The same text with another key goes to that key's shard (the plan
	// cache keeps the hint in its key).
	for shard, k := range keysOn(t, strats["by_customer"]) {
		want("/* shard_key: orders = "+k+" */ SELECT orders_of("+k+")", shard)
		want("/* shard_key: orders = "+k+" */ SELECT orders_of(1)", shard)
		want("/*SHARD_KEY:public.order_items='"+k+"'*/ CALL place_order(1)", shard)
		want(`/* shard_key: "MixedCase" = `+k+` */ SELECT 1`, shard)
	}
	for shard, k := range keysOn(t, strats["ring"]) {
		want("/* shard_key: sessions = '"+k+"' */ SELECT 1", shard)
	}
	for shard, k := range keysOn(t, strats["by_id"]) {
		want("/* shard_key: app.audit = "+k+" */ SELECT 1", shard)
	}
	want("/* shard_key: tenant_data = 'acme' */ SELECT 1", "s2")

	for sql, code := range map[string]string{
		"/* shard_key: products = 1 */ SELECT 1":            "42704", // a reference table
		"/* shard_key: nosuch = 1 */ SELECT 1":              "42704",
		"/* shard_key: mixedcase = 1 */ SELECT 1":           "42704", // folded: not "MixedCase"
		"/* shard_key: orders = abc */ SELECT 1":            "22P02",
		"/* shard_key: tenant_data = 'initech' */ SELECT 1": "0A000", // no shard holds it yet
	} {
		_, _, err := route(r, sql, nil, "")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != code {
			t.Errorf("%s: %v; want %s", sql, err, code)
		}
	}
}
