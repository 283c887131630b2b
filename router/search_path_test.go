package router

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/config"
)

// TestLoginSchemaResolution: an unqualified name is the table in the
// schema named after the shards' login user when the map has one there
// ("$user" comes first in the default search_path), else public's; with
// shards that log in as different users it is refused.
func TestLoginSchemaResolution(t *testing.T) {
	build := func(users ...string) *Router {
		cfg := &config.Config{
			Strategies: []config.Strategy{{Name: "h", Type: config.StrategyHash, KeyType: config.KeyInt, Shards: []string{"s0", "s1"}}},
			Tables: []config.Table{
				{Name: "alice.items", Key: "id", Strategy: "h"},
				{Name: "notes", Key: "id", Strategy: "h"},
			},
			DefaultShard: "s0",
		}
		for i, u := range users {
			cfg.Shards = append(cfg.Shards, config.Shard{Name: []string{"s0", "s1"}[i], DSN: "postgres://" + u + "@127.0.0.1:5432/db"})
		}
		return routerFor(t, cfg)
	}
	kind := func(r *Router, sql string) (RouteKind, error) {
		_, rt, err := route(r, sql, nil, "")
		return rt.Kind, err
	}

	r := build("alice", "alice")
	if !r.MapsLoginSchema() {
		t.Error("MapsLoginSchema: false")
	}
	for _, q := range []string{"SELECT * FROM items", "SELECT * FROM alice.items", "SELECT * FROM notes"} {
		if k, err := kind(r, q); err != nil || k != RouteAll {
			t.Errorf("%s: %v, %v; want all shards", q, k, err)
		}
	}
	if k, err := kind(r, "SELECT * FROM items WHERE alice.items.id = 1"); err != nil || k != RouteSingle {
		t.Errorf("key as alice.items.id: %v, %v; want one shard", k, err)
	}

	// Logged in as bob, "$user" is bob: items is public's (not mapped).
	r = build("bob", "bob")
	if r.MapsLoginSchema() {
		t.Error("MapsLoginSchema: true")
	}
	if k, err := kind(r, "SELECT * FROM items"); err != nil || k != RouteDefault {
		t.Errorf("items as bob: %v, %v; want the default shard", k, err)
	}

	r = build("alice", "bob")
	_, err := kind(r, "SELECT * FROM items")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
		t.Errorf("items with two login users: %v, want 0A000 with a hint", err)
	}
	if k, err := kind(r, "SELECT * FROM alice.items"); err != nil || k != RouteAll {
		t.Errorf("alice.items with two login users: %v, %v", k, err)
	}
}
