package router

import "testing"

// TestMergeAndUpsertKeys: MERGE was routed as maintenance of its tables,
// to every shard, so WHEN NOT MATCHED THEN INSERT put the row on each;
// ON CONFLICT DO UPDATE SET key = ... moved a row to another shard's key
// while it stayed on this one. Both are now refused where they cannot
// be exact, and run where they can.
func TestMergeAndUpsertKeys(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	refused := map[string]string{
		"MERGE INTO orders o USING (VALUES (1, 2)) v(c, i) ON o.customer_id = v.c WHEN NOT MATCHED THEN INSERT (customer_id, id) VALUES (v.c, v.i)": "MERGE into sharded table orders is not supported",
		"MERGE INTO products p USING orders o ON p.id = o.id WHEN MATCHED THEN DELETE":                                                              "MERGE into products reads sharded table orders",
		"MERGE INTO notes n USING orders o ON n.id = o.id WHEN NOT MATCHED THEN INSERT VALUES (o.id)":                                               "MERGE into notes reads sharded table orders",
		"MERGE INTO products p USING notes n ON p.id = n.id WHEN MATCHED THEN DELETE":                                                               "MERGE into reference table products reads table notes, which is not on every shard",
		"MERGE INTO products p USING (VALUES (1)) v(i) ON p.id = v.i WHEN MATCHED THEN UPDATE SET price = random()":                                 "random()",
		"INSERT INTO orders (customer_id, id) VALUES ({c0}, 1) ON CONFLICT (customer_id, id) DO UPDATE SET customer_id = {c1}":                      "updating the shard key column customer_id",
		"INSERT INTO orders (customer_id, id) VALUES ({c0}, 1) ON CONFLICT (customer_id, id) DO UPDATE SET customer_id = EXCLUDED.customer_id + 1":  "ON CONFLICT DO UPDATE setting the shard key column customer_id",
		"INSERT INTO orders (customer_id, id) VALUES ({c0}, 1) ON CONFLICT (customer_id, id) DO UPDATE SET (customer_id, note) = ({c0}, 'x')":       "ON CONFLICT DO UPDATE setting the shard key",
	}
	checkRefusals(t, r, withKeys(keys, refused), []string{
		"MERGE INTO products p USING (VALUES (1, 'x')) v(i, n) ON p.id = v.i WHEN MATCHED THEN UPDATE SET name = v.n WHEN NOT MATCHED THEN INSERT (id, name) VALUES (v.i, v.n)",
		"MERGE INTO notes n USING products p ON n.id = p.id WHEN NOT MATCHED THEN INSERT VALUES (p.id)",
		keys.Replace("/* shard_key: orders = {c1} */ MERGE INTO orders o USING (VALUES ({c1}, 2)) v(c, i) ON o.customer_id = v.c WHEN NOT MATCHED THEN INSERT (customer_id, id) VALUES (v.c, v.i)"),
		keys.Replace("INSERT INTO orders (customer_id, id) VALUES ({c0}, 1) ON CONFLICT (customer_id, id) DO UPDATE SET customer_id = EXCLUDED.customer_id, note = 'x'"),
		keys.Replace("INSERT INTO orders (customer_id, id) VALUES ({c0}, 1) ON CONFLICT (customer_id, id) DO UPDATE SET customer_id = {c0b}"), // same shard
	})
	for sql, want := range map[string]RouteKind{
		"MERGE INTO products p USING (VALUES (1)) v(i) ON p.id = v.i WHEN MATCHED THEN DELETE": RouteBroadcast,
		"MERGE INTO notes n USING products p ON n.id = p.id WHEN MATCHED THEN DELETE":          RouteDefault,
		"MERGE INTO notes n USING (VALUES (1)) v(i) ON n.id = v.i WHEN MATCHED THEN DELETE":    RouteDefault,
	} {
		if _, rt, err := route(r, sql, nil, ""); err != nil || rt.Kind != want {
			t.Errorf("%s: %s; want %v", sql, formatRoute(rt, err), want)
		}
	}
}
