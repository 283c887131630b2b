package router

import (
	"slices"
	"testing"
)

// TestCtidOneShard: a statement reading ctid runs on one shard (by its
// key, a hint, or an unmapped or reference table read) or is refused.
func TestCtidOneShard(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, q := range []string{
		"DELETE FROM orders WHERE ctid = '(0,1)'",
		"UPDATE orders SET status = 'x' WHERE ctid = $1",
		"SELECT * FROM orders WHERE ctid = '(0,1)'",
		"SELECT o.ctid, o.status FROM orders o",
		"SELECT * FROM orders WHERE customer_id IN (1, 2, 3, 4, 5, 6) AND ctid = '(0,1)'",
		"DELETE FROM orders a USING orders b WHERE a.customer_id = b.customer_id AND a.CTID < b.ctid",
	} {
		params := []string(nil)
		if slices.Contains([]byte(q), '$') {
			params = []string{"(0,1)"}
		}
		if _, rt, err := route(r, q, params, ""); sqlState(err) != "0A000" {
			t.Errorf("%s: %v %v, %v; want 0A000", q, rt.Kind, rt.Shards, err)
		}
	}
	// One shard each; the last reads no ctid (a string is not a column).
	for _, q := range []string{
		"DELETE FROM orders WHERE ctid = '(0,1)' AND customer_id = 1",
		"/* shard: s1 */ DELETE FROM orders WHERE ctid = '(0,1)'",
		"SELECT ctid FROM products",
		"DELETE FROM misc WHERE ctid = '(0,1)'",
	} {
		if _, rt, err := route(r, q, nil, ""); err != nil || len(rt.Shards) != 1 {
			t.Errorf("%s: %v %v, %v; want one shard", q, rt.Kind, rt.Shards, err)
		}
	}
	if _, rt, err := route(r, "SELECT status FROM orders WHERE status = 'ctid'", nil, ""); err != nil || len(rt.Shards) != 2 {
		t.Errorf("a string 'ctid': %v %v, %v; want every shard", rt.Kind, rt.Shards, err)
	}
}
