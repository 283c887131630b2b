package router

import (
	"slices"
	"testing"
)

// TestDefaultShardCalls: NOTIFY and pg_notify() go to the default shard,
// where listeners connect, and pg_cancel_backend() and
// pg_terminate_backend() where pg_stat_activity is read, unless a hint
// names another; called over sharded rows they are refused.
func TestDefaultShardCalls(t *testing.T) {
	r, _ := newTestRouter(t)
	for q, want := range map[string][]string{
		"NOTIFY ch":                                   {"s0"},
		"NOTIFY ch, 'payload'":                        {"s0"},
		"SELECT pg_notify('ch', 'x')":                 {"s0"},
		"SELECT pg_notify('ch', name) FROM products":  {"s0"},
		"/* shard: s2 */ NOTIFY ch":                   {"s2"},
		"/* shard: s2 */ SELECT pg_notify('ch', 'x')": {"s2"},
		"SELECT pg_terminate_backend(4321)":           {"s0"},
		"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'batch'": {"s0"},
	} {
		_, rt, err := route(r, q, nil, "")
		if err != nil || !slices.Equal(rt.Shards, want) || rt.AnyCopy {
			t.Errorf("%s: %v %v (any copy %v), %v; want %v", q, rt.Kind, rt.Shards, rt.AnyCopy, err, want)
		}
	}
	if _, rt, err := route(r, "SELECT pg_notify('ch', 'x')", nil, "s1"); err != nil || !slices.Equal(rt.Shards, []string{"s1"}) {
		t.Errorf("with SET shardproxy.shard = s1: %v %v, %v; want s1", rt.Kind, rt.Shards, err)
	}
	for _, q := range []string{
		"SELECT pg_notify('ch', status) FROM orders WHERE customer_id = 1",
		"SELECT pg_terminate_backend(o.customer_id) FROM orders o",
	} {
		if _, rt, err := route(r, q, nil, ""); sqlState(err) != "0A000" {
			t.Errorf("%s: %v %v, %v; want 0A000", q, rt.Kind, rt.Shards, err)
		}
	}
	if _, rt, err := route(r, "LISTEN ch", nil, ""); err != nil || rt.Kind != RouteAny {
		t.Errorf("LISTEN: %v, %v (the proxy refuses it)", rt.Kind, err)
	}
}
