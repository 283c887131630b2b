package router

import (
	"slices"
	"testing"
)

// TestServerCallsEveryShard: pg_reload_conf() and the statistics resets
// act on the whole server, so a SELECT of no table that calls one goes to
// every shard (as ALTER SYSTEM does), answered once; with a table, or a
// hint, the tables or the hint decide.
func TestServerCallsEveryShard(t *testing.T) {
	r, _ := newTestRouter(t)
	all := []string{"s0", "s1", "s2"}
	for _, q := range []string{
		"SELECT pg_reload_conf()",
		"SELECT pg_catalog.pg_reload_conf()",
		"SELECT pg_stat_reset()",
		"SELECT pg_stat_reset_shared('bgwriter')",
		"SELECT pg_rotate_logfile()",
	} {
		_, rt, err := route(r, q, nil, "")
		if err != nil || rt.Kind != RouteBroadcast || !slices.Equal(rt.Shards, all) || rt.Merge != MergeFirst {
			t.Errorf("%s: %v %v merge %v, %v; want every shard, one answer", q, rt.Kind, rt.Shards, rt.Merge, err)
		}
	}
	for q, want := range map[string]RouteKind{
		"/* shard: s1 */ SELECT pg_reload_conf()": RouteHint,
		"SELECT pg_switch_wal()":                  RouteAny, // an LSN: each shard's differs
		"SELECT pg_reload_conf() FROM products":   RouteDefault,
	} {
		if _, rt, err := route(r, q, nil, ""); err != nil || rt.Kind != want {
			t.Errorf("%s: %v %v, %v; want %v", q, rt.Kind, rt.Shards, err, want)
		}
	}
}
