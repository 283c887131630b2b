package router

import (
	"testing"
)

// TestKeyCastJoins: a join on keys cast alike to a type that keeps
// distinct keys distinct (an integer has one text form, a uuid one
// canonical text) equates the keys, and stays colocated; a cast that
// can make two keys equal (text to integer, a truncating varchar(n), a
// float) does not, and such a join across shards is refused.
func TestKeyCastJoins(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, q := range []string{
		"SELECT count(*) FROM orders o JOIN order_items i ON i.customer_id::text = o.customer_id::text",
		"SELECT count(*) FROM orders o JOIN order_items i ON CAST(i.customer_id AS varchar) = CAST(o.customer_id AS varchar)",
		"SELECT count(*) FROM orders o, order_items i WHERE o.customer_id::numeric = i.customer_id::numeric",
	} {
		if _, rt, err := route(r, q, nil, ""); err != nil || rt.Kind != RouteAll {
			t.Errorf("%s: %v %v; want every shard, colocated", q, rt.Kind, err)
		}
	}
	for _, q := range []string{
		"SELECT count(*) FROM orders o JOIN order_items i ON i.customer_id::varchar(1) = o.customer_id::varchar(1)",
		"SELECT count(*) FROM orders o JOIN order_items i ON i.customer_id::float4 = o.customer_id::float4",
		"SELECT count(*) FROM orders o JOIN order_items i ON i.customer_id::text = o.customer_id::varchar",
		"SELECT count(*) FROM sessions a JOIN sessions b ON a.token::int = b.token::int",
		"SELECT count(*) FROM orders o JOIN events e ON o.customer_id::text = e.id::text", // two strategies
	} {
		if _, _, err := route(r, q, nil, ""); !isFeatureNotSupported(err) {
			t.Errorf("%s: %v; want 0A000", q, err)
		}
	}
}
