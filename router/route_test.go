package router

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

type routeCase struct {
	name    string
	sql     string
	params  []string // nil: simple protocol
	session string   // SET shardproxy.shard value
	kind    RouteKind
	shards  []string
	merge   MergeKind
	code    string // expected SQLSTATE; "" = success
	msg     string // substring of the error message
}

func TestRoute(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	all2 := []string{"s0", "s1"}
	all3 := []string{"s0", "s1", "s2"}
	cases := []routeCase{
		// Finding the key.
		{name: "eq literal", sql: "SELECT * FROM orders WHERE customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "eq reversed", sql: "SELECT * FROM orders WHERE {c0} = customer_id", kind: RouteSingle, shards: []string{"s0"}},
		{name: "eq param", sql: "SELECT * FROM orders WHERE customer_id = $1", params: []string{"{c1}"}, kind: RouteSingle, shards: []string{"s1"}},
		{name: "cast literal", sql: "SELECT * FROM orders WHERE customer_id = '{c1}'::bigint", kind: RouteSingle, shards: []string{"s1"}},
		{name: "cast param", sql: "SELECT * FROM orders WHERE customer_id = $1::int8", params: []string{"{c1}"}, kind: RouteSingle, shards: []string{"s1"}},
		{name: "cast column same family", sql: "SELECT * FROM orders WHERE customer_id::int4 = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "cast column other family", sql: "SELECT * FROM orders WHERE customer_id::text = '{c1}'", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "negative literal", sql: "SELECT * FROM events WHERE id = -5", kind: RouteSingle, shards: []string{"s0"}},
		{name: "qualified by alias", sql: "SELECT * FROM orders o WHERE o.customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "qualified by table", sql: "SELECT * FROM orders WHERE orders.customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "schema qualified", sql: "SELECT * FROM public.orders WHERE public.orders.customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "table name hidden by alias", sql: "SELECT * FROM orders o WHERE orders.customer_id = {c1}", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "quoted identifier", sql: `SELECT * FROM "MixedCase" WHERE "id" = {c1}`, kind: RouteSingle, shards: []string{"s1"}},
		{name: "unquoted is not MixedCase", sql: `SELECT * FROM MixedCase WHERE id = {c1}`, kind: RouteDefault, shards: []string{"s0"}},
		{name: "schema table", sql: "SELECT * FROM app.audit WHERE id = 1500", kind: RouteSingle, shards: []string{"s1"}},
		{name: "other schema unlisted", sql: "SELECT * FROM other.audit WHERE id = 1500", kind: RouteDefault, shards: []string{"s0"}},
		{name: "and picks key", sql: "SELECT * FROM orders WHERE status = 'x' AND customer_id = {c1} AND total > 5", kind: RouteSingle, shards: []string{"s1"}},
		{name: "or both sides", sql: "SELECT * FROM orders WHERE customer_id = {c0} OR customer_id = {c1}", kind: RouteMulti, shards: all2, merge: MergeConcat},
		{name: "or one side free", sql: "SELECT * FROM orders WHERE customer_id = {c0} OR status = 'x'", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "or same shard", sql: "SELECT * FROM orders WHERE customer_id = {c0} OR customer_id = {c0b}", kind: RouteSingle, shards: []string{"s0"}},
		// PEERS: PgDog #639, an IN list is a set of shards.
		{name: "in list across shards", sql: "SELECT * FROM orders WHERE customer_id IN ({c0}, {c1})", kind: RouteMulti, shards: all2, merge: MergeConcat},
		{name: "in list one shard", sql: "SELECT * FROM orders WHERE customer_id IN ({c0}, {c0b})", kind: RouteSingle, shards: []string{"s0"}},
		{name: "in list params", sql: "SELECT * FROM orders WHERE customer_id IN ($1, $2, $3)", params: []string{"{c0}", "{c0b}", "{c1}"}, kind: RouteMulti, shards: all2, merge: MergeConcat},
		{name: "in list with expression", sql: "SELECT * FROM orders WHERE customer_id IN ({c0}, {c1} + 1)", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "not in", sql: "SELECT * FROM orders WHERE customer_id NOT IN ({c0})", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "any array literal", sql: "SELECT * FROM orders WHERE customer_id = ANY(ARRAY[{c0}, {c1}])", kind: RouteMulti, shards: all2, merge: MergeConcat},
		{name: "any array param", sql: "SELECT * FROM orders WHERE customer_id = ANY($1)", params: []string{"{1,2}"}, kind: RouteAll, shards: all2, merge: MergeConcat},
		// PEERS: SPQR routed `id >= 1` to one shard.
		{name: "range predicate", sql: "SELECT * FROM events WHERE id >= 1", kind: RouteAll, shards: all3, merge: MergeConcat},
		{name: "between", sql: "SELECT * FROM events WHERE id BETWEEN 1 AND 5", kind: RouteAll, shards: all3, merge: MergeConcat},
		{name: "not equal", sql: "SELECT * FROM orders WHERE customer_id <> {c0}", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "subquery value is not constant", sql: "SELECT * FROM orders WHERE customer_id = (SELECT max(id) FROM products)", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "not", sql: "SELECT * FROM orders WHERE NOT (customer_id = {c0})", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "range strategy", sql: "SELECT * FROM events WHERE id = 999", kind: RouteSingle, shards: []string{"s0"}},
		{name: "range bound half open", sql: "SELECT * FROM events WHERE id = 1000", kind: RouteSingle, shards: []string{"s1"}},
		{name: "range unbounded", sql: "SELECT * FROM events WHERE id = $1", params: []string{"9000000000"}, kind: RouteSingle, shards: []string{"s2"}},
		{name: "consistent text", sql: "SELECT * FROM sessions WHERE token = '{r2}'", kind: RouteSingle, shards: []string{"s2"}},
		{name: "consistent E string", sql: "SELECT * FROM sessions WHERE token = E'{r1}'", kind: RouteSingle, shards: []string{"s1"}},
		{name: "directory hit", sql: "SELECT * FROM tenant_data WHERE tenant = 'acme'", kind: RouteSingle, shards: []string{"s2"}},
		{name: "directory miss reads nothing", sql: "SELECT * FROM tenant_data WHERE tenant = 'nobody'", kind: RouteNone},
		{name: "directory partial miss", sql: "SELECT * FROM tenant_data WHERE tenant IN ('nobody', 'globex')", kind: RouteSingle, shards: []string{"s0"}},
		// A count over no rows is still one row: any shard answers it.
		{name: "directory miss count", sql: "SELECT count(*) FROM tenant_data WHERE tenant = 'nobody'", kind: RouteSingle, shards: []string{"s0"}},
		{name: "directory miss not exists", sql: "SELECT NOT EXISTS (SELECT 1 FROM tenant_data WHERE tenant = 'nobody')", kind: RouteSingle, shards: []string{"s0"}},
		{name: "directory miss outer join", sql: "SELECT * FROM products p LEFT JOIN tenant_data t ON t.tenant = 'nobody'", kind: RouteSingle, shards: []string{"s0"}},
		{name: "directory miss update", sql: "UPDATE tenant_data SET x = 1 WHERE tenant = $1", params: []string{"nobody"}, kind: RouteNone},
		{name: "directory insert uses fallback", sql: "INSERT INTO tenant_data (tenant, x) VALUES ('{r1}', 1)", kind: RouteSingle, shards: []string{"s1"}},
		{name: "null key reads nothing", sql: "SELECT * FROM orders WHERE customer_id = $1", params: []string{"NULL"}, kind: RouteNone},
		{name: "bad int text", sql: "SELECT * FROM orders WHERE customer_id = 'abc'", code: "22P02"},
		{name: "numeric literal compares as numeric", sql: "SELECT * FROM orders WHERE customer_id = 1.5", kind: RouteAll, shards: all2, merge: MergeConcat},
		// Beyond int8: a literal compares as numeric (no row), a string or
		// parameter fails on the shards with 22003; no one shard either way.
		{name: "literal beyond int8", sql: "SELECT * FROM orders WHERE customer_id = 9223372036854775808", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "param beyond int8", sql: "SELECT * FROM orders WHERE customer_id = $1", params: []string{"-9223372036854775809"}, kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "insert beyond int8", sql: "INSERT INTO orders (customer_id) VALUES (9223372036854775808)", code: "22003"},
		{name: "missing param", sql: "SELECT * FROM orders WHERE customer_id = $2", params: []string{"1"}, kind: RouteAll, shards: all2, merge: MergeConcat},
		// PEERS: SPQR used only the first $n per column; every parameter counts.
		{name: "every param counts", sql: "SELECT * FROM orders WHERE customer_id = $1 OR customer_id = $2", params: []string{"{c0}", "{c1}"}, kind: RouteMulti, shards: all2, merge: MergeConcat},

		// Joins, subqueries, CTEs.
		{name: "colocated join same shard", sql: "SELECT * FROM orders o JOIN order_items i ON i.customer_id = o.customer_id WHERE o.customer_id = {c1} AND i.customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "join key in ON", sql: "SELECT * FROM orders o JOIN order_items i ON i.customer_id = {c1} WHERE o.customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "join one side free", sql: "SELECT * FROM orders o JOIN order_items i USING (customer_id) WHERE o.customer_id = {c1}", kind: RouteAll, shards: all2, merge: MergeConcat},
		// Rows that meet in a join must live on one shard: cross-shard
		// pairs would be missing from the concatenation.
		{name: "join different shards", sql: "SELECT * FROM orders o, order_items i WHERE o.customer_id = {c0} AND i.customer_id = {c1}", code: "0A000", msg: "without equating their shard keys"},
		{name: "join on keys different shards", sql: "SELECT * FROM orders o JOIN order_items i ON i.customer_id = o.customer_id WHERE o.customer_id IN ({c0}, {c1})", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "left join ON does not filter preserved side", sql: "SELECT * FROM orders o LEFT JOIN order_items i ON o.customer_id = {c1} AND i.customer_id = o.customer_id", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "left join without key equality", sql: "SELECT * FROM orders o LEFT JOIN order_items i ON o.customer_id = {c1}", code: "0A000", msg: "orders and order_items"},
		{name: "self join not on key", sql: "SELECT * FROM orders a JOIN orders b ON a.id = b.parent_id", code: "0A000", msg: "joins orders with itself (a self-join or a subquery)"},
		{name: "uncorrelated subquery over the same table", sql: "SELECT count(*) FROM orders WHERE total > (SELECT avg(total) FROM orders)", code: "0A000", msg: "joins orders with itself (a self-join or a subquery)"},
		{name: "tablesample with key", sql: "SELECT * FROM orders TABLESAMPLE BERNOULLI (50) WHERE customer_id = {c0}", kind: RouteSingle, shards: []string{"s0"}},
		{name: "self join on key", sql: "SELECT * FROM orders a JOIN orders b ON a.customer_id = b.customer_id AND a.id = b.parent_id", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "correlated exists on key", sql: "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.customer_id = o.customer_id AND i.qty > 1)", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "correlated exists not on key", sql: "SELECT * FROM orders o WHERE EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = o.id)", code: "0A000", msg: "orders and order_items"},
		{name: "union all arms need no join", sql: "SELECT id FROM orders WHERE customer_id = {c0} UNION ALL SELECT id FROM events WHERE id = 1500", kind: RouteMulti, shards: all2, merge: MergeConcat},
		{name: "join different strategies across shards", sql: "SELECT * FROM orders o JOIN events e ON e.id = o.customer_id", code: "0A000", msg: "different strategies"},
		{name: "join different strategies one shard", sql: "SELECT * FROM orders o JOIN events e ON e.id = o.customer_id WHERE o.customer_id = {c0} AND e.id = 5", kind: RouteSingle, shards: []string{"s0"}},
		{name: "reference join follows sharded", sql: "SELECT * FROM orders o JOIN products p ON p.id = o.product_id WHERE o.customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "reference only read", sql: "SELECT * FROM products WHERE id = 3", kind: RouteDefault, shards: []string{"s0"}},
		{name: "unlisted table", sql: "SELECT * FROM settings", kind: RouteDefault, shards: []string{"s0"}},
		{name: "unlisted with sharded on default", sql: "SELECT * FROM settings s, orders o WHERE o.customer_id = {c0}", kind: RouteSingle, shards: []string{"s0"}},
		{name: "unlisted with sharded elsewhere", sql: "SELECT * FROM settings s, orders o WHERE o.customer_id = {c1}", code: "0A000", msg: "statement joins table settings on the default shard with sharded table orders on shard s1"},
		{name: "subquery same shard", sql: "SELECT * FROM orders WHERE customer_id = {c1} AND id IN (SELECT order_id FROM order_items WHERE customer_id = {c1})", kind: RouteSingle, shards: []string{"s1"}},
		{name: "subquery free", sql: "SELECT * FROM orders WHERE customer_id = {c1} AND id IN (SELECT order_id FROM order_items)", code: "0A000", msg: "orders and order_items"},
		{name: "cte same shard", sql: "WITH x AS (SELECT * FROM orders WHERE customer_id = {c1}) SELECT * FROM x", kind: RouteSingle, shards: []string{"s1"}},
		{name: "cte name is not a table", sql: "WITH orders AS (SELECT 1 AS customer_id) SELECT * FROM orders", kind: RouteAny},
		{name: "derived table", sql: "SELECT * FROM (SELECT * FROM orders WHERE customer_id = {c0}) s", kind: RouteSingle, shards: []string{"s0"}},
		{name: "derived table aggregate across shards", sql: "SELECT * FROM (SELECT count(*) FROM orders) s", code: "0A000", msg: "aggregate count() in a subquery"},
		{name: "nested unsharded aggregate is fine", sql: "SELECT * FROM orders WHERE total > (SELECT avg(price) FROM products)", kind: RouteAll, shards: all2, merge: MergeConcat},

		// Merging keyless reads.
		{name: "order by across shards", sql: "SELECT * FROM orders ORDER BY id", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "limit across shards", sql: "SELECT * FROM orders LIMIT 5", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "count across shards", sql: "SELECT count(*) FROM orders", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "distinct across shards", sql: "SELECT DISTINCT status FROM orders", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "group by across shards", sql: "SELECT status FROM orders GROUP BY status", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "window across shards", sql: "SELECT row_number() OVER () FROM orders", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "window clause across shards", sql: "SELECT sum(total) OVER w FROM orders WINDOW w AS (PARTITION BY status)", code: "0A000", msg: "WINDOW clause across shards"},
		{name: "for update across shards", sql: "SELECT * FROM orders FOR UPDATE", code: "0A000", msg: "FOR UPDATE across shards"},
		{name: "union across shards", sql: "SELECT id FROM orders UNION SELECT id FROM order_items", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "intersect across shards", sql: "SELECT id FROM orders INTERSECT SELECT id FROM order_items", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "intersect of a limited arm", sql: "SELECT id FROM orders INTERSECT (SELECT id FROM order_items LIMIT 3)", code: "0A000", msg: "LIMIT in a subquery"},
		{name: "intersect of colocated keys", sql: "SELECT customer_id, id FROM orders INTERSECT SELECT customer_id, qty FROM order_items", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "except of colocated keys, ordered", sql: "SELECT customer_id FROM orders EXCEPT ALL SELECT i.customer_id FROM order_items i ORDER BY 1 LIMIT 3", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "except of keys at different positions", sql: "SELECT customer_id, id FROM orders EXCEPT SELECT id, customer_id FROM order_items", kind: RouteAll, shards: all2, merge: MergePlan},
		{name: "except of an aggregating arm", sql: "SELECT customer_id FROM orders EXCEPT SELECT count(*) FROM order_items", code: "0A000", msg: "aggregate count() in a subquery"},
		{name: "key in a subquery of the key", sql: "SELECT id FROM orders WHERE customer_id IN (SELECT i.customer_id FROM order_items i WHERE qty > 1)", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "key not in a distinct subquery of the key", sql: "SELECT id FROM orders WHERE NOT customer_id = ANY (SELECT DISTINCT customer_id FROM order_items)", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "nullable key in a subquery of the key", sql: "SELECT o.id FROM order_items i LEFT JOIN orders o ON o.customer_id = i.customer_id WHERE o.customer_id NOT IN (SELECT customer_id FROM order_items WHERE qty > 1)", code: "0A000", msg: "without equating their shard keys"},
		{name: "key in a limited subquery", sql: "SELECT id FROM orders WHERE customer_id IN (SELECT customer_id FROM order_items LIMIT 3)", code: "0A000", msg: "without equating their shard keys"},
		{name: "key in a subquery of another column", sql: "SELECT id FROM orders WHERE customer_id IN (SELECT qty FROM order_items)", code: "0A000", msg: "without equating their shard keys"},
		{name: "union all across shards", sql: "SELECT id FROM orders UNION ALL SELECT id FROM order_items", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "union all with unsharded arm", sql: "SELECT id FROM orders UNION ALL SELECT 1", code: "0A000", msg: "UNION ALL"},
		{name: "order by multi keys", sql: "SELECT * FROM orders WHERE customer_id IN ({c0}, {c1}) ORDER BY id", kind: RouteMulti, shards: all2, merge: MergePlan},
		{name: "order by on one shard", sql: "SELECT * FROM orders WHERE customer_id = {c0} ORDER BY id LIMIT 3", kind: RouteSingle, shards: []string{"s0"}},
		{name: "aggregate on one shard", sql: "SELECT count(*) FROM orders WHERE customer_id = {c0}", kind: RouteSingle, shards: []string{"s0"}},
		{name: "explain routes like query", sql: "EXPLAIN SELECT * FROM orders WHERE customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "explain keyless explains the plan", sql: "EXPLAIN SELECT count(*) FROM orders", kind: RouteAll, shards: all2, merge: MergePlan},

		// Writes.
		{name: "insert single", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c1})", kind: RouteSingle, shards: []string{"s1"}},
		{name: "insert param", sql: "INSERT INTO orders (customer_id, id) VALUES ($1, $2)", params: []string{"{c0}", "7"}, kind: RouteSingle, shards: []string{"s0"}},
		{name: "insert cast", sql: "INSERT INTO orders (customer_id) VALUES ($1::bigint) ON CONFLICT DO NOTHING RETURNING id", params: []string{"{c1}"}, kind: RouteSingle, shards: []string{"s1"}},
		{name: "insert rows one shard", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, {c0b})", kind: RouteSingle, shards: []string{"s0"}},
		// PEERS: PgDog #259 broadcast a multi-row INSERT.
		{name: "insert rows two shards", sql: "INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, {c1})", kind: RouteMulti, shards: []string{"s0", "s1"}, merge: MergeSplitInsert},
		{name: "insert rows two shards in a WITH", sql: "WITH x AS (SELECT 1) INSERT INTO orders (id, customer_id) VALUES (1, {c0}), (2, {c1})", code: "0A000", msg: "multi-row INSERT spans shards s0, s1"},
		{name: "insert without columns", sql: "INSERT INTO orders VALUES (1, {c0})", code: "0A000", msg: "needs a column list"},
		{name: "insert without key column", sql: "INSERT INTO orders (id) VALUES (1)", code: "0A000", msg: "does not set shard key column customer_id"},
		{name: "insert default key", sql: "INSERT INTO orders (customer_id) VALUES (DEFAULT)", code: "0A000", msg: "constant or a parameter"},
		{name: "insert expression key", sql: "INSERT INTO orders (customer_id) VALUES (1 + 1)", code: "0A000", msg: "constant or a parameter"},
		{name: "insert null key", sql: "INSERT INTO orders (customer_id) VALUES (NULL)", code: "23502", msg: `null value in shard key column "customer_id"`},
		{name: "insert null param", sql: "INSERT INTO orders (customer_id) VALUES ($1)", params: []string{"NULL"}, code: "23502"},
		{name: "insert select colocated", sql: "INSERT INTO orders (customer_id) SELECT customer_id FROM order_items", kind: RouteAll, shards: all2, merge: MergeSumTag},
		{name: "insert select colocated keyed", sql: "INSERT INTO orders (customer_id) SELECT i.customer_id FROM order_items i WHERE i.customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "insert select limit across shards", sql: "INSERT INTO orders (customer_id) SELECT customer_id FROM order_items LIMIT 2", code: "0A000", msg: "with LIMIT or OFFSET across shards"},
		{name: "insert select limit one shard", sql: "INSERT INTO orders (customer_id) SELECT customer_id FROM order_items WHERE customer_id = {c0} LIMIT 2", kind: RouteSingle, shards: []string{"s0"}},
		{name: "insert select constant key", sql: "INSERT INTO orders (id, customer_id) SELECT 1, {c1} WHERE NOT EXISTS (SELECT 1 FROM orders WHERE customer_id = {c1} AND id = 1)", kind: RouteSingle, shards: []string{"s1"}},
		{name: "insert select param key", sql: "INSERT INTO orders (id, customer_id) SELECT 1, $1", params: []string{"{c0}"}, kind: RouteSingle, shards: []string{"s0"}},
		{name: "insert select constant key reading all shards", sql: "INSERT INTO orders (id, customer_id) SELECT id, {c1} FROM order_items", code: "0A000", msg: "with a constant shard key reads other shards"},
		{name: "insert select null key", sql: "INSERT INTO orders (id, customer_id) SELECT 1, NULL", code: "23502"},
		{name: "insert select key from another column", sql: "INSERT INTO orders (customer_id) SELECT id FROM order_items", code: "0A000", msg: "must take customer_id from the shard key"},
		{name: "insert select hinted", sql: "/* shard: s1 */ INSERT INTO orders (customer_id) SELECT customer_id FROM order_items", kind: RouteHint, shards: []string{"s1"}},
		{name: "insert unlisted", sql: "INSERT INTO settings VALUES (1)", kind: RouteDefault, shards: []string{"s0"}},
		{name: "insert reference", sql: "INSERT INTO products (id) VALUES (1)", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "insert reference from sharded", sql: "INSERT INTO products (id) SELECT id FROM orders", code: "0A000", msg: "reference table products"},
		{name: "update single", sql: "UPDATE orders SET total = 5 WHERE customer_id = {c1}", kind: RouteSingle, shards: []string{"s1"}},
		{name: "update keyless", sql: "UPDATE orders SET total = 5 WHERE status = 'x'", kind: RouteAll, shards: all2, merge: MergeSumTag},
		{name: "update multi", sql: "UPDATE orders SET total = 5 WHERE customer_id IN ({c0}, {c1}) RETURNING id", kind: RouteMulti, shards: all2, merge: MergeSumTag},
		{name: "update shard key", sql: "UPDATE orders SET customer_id = customer_id + 1 WHERE customer_id = {c1}", code: "0A000", msg: "updating the shard key column customer_id"},
		{name: "update shard key other shard", sql: "UPDATE orders SET customer_id = {c0} WHERE customer_id = {c1}", code: "0A000", msg: "updating the shard key column customer_id"},
		{name: "update shard key same value", sql: "UPDATE orders SET customer_id = $1, total = 3 WHERE customer_id = $1", params: []string{"{c1}"}, kind: RouteSingle, shards: []string{"s1"}},
		{name: "update reference", sql: "UPDATE products SET price = 2", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "delete single", sql: "DELETE FROM orders WHERE customer_id = $1", params: []string{"{c0}"}, kind: RouteSingle, shards: []string{"s0"}},
		{name: "delete keyless", sql: "DELETE FROM orders", kind: RouteAll, shards: all2, merge: MergeSumTag},
		{name: "delete using", sql: "DELETE FROM orders o USING order_items i WHERE i.customer_id = o.customer_id AND o.customer_id = {c0} AND i.customer_id = {c0}", kind: RouteSingle, shards: []string{"s0"}},
		{name: "delete reference", sql: "DELETE FROM products", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "copy to sharded", sql: "COPY orders TO STDOUT", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "copy from sharded", sql: "COPY orders FROM STDIN", kind: RouteAll, shards: all2, merge: MergeConcat},
		{name: "copy from reference", sql: "COPY products FROM STDIN", kind: RouteBroadcast, shards: all3, merge: MergeFirst},

		// DDL and utility.
		{name: "create sharded table", sql: "CREATE TABLE orders (id bigint, customer_id bigint)", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "create index", sql: "CREATE INDEX ON orders (status)", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "alter reference", sql: "ALTER TABLE products ADD COLUMN x int", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "drop two tables", sql: "DROP TABLE IF EXISTS orders, products", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "truncate", sql: "TRUNCATE order_items", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "comment", sql: "COMMENT ON TABLE orders IS 'x'", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "ddl unlisted", sql: "CREATE TABLE settings (k text)", kind: RouteDefault, shards: []string{"s0"}},
		{name: "drop unlisted", sql: "DROP TABLE settings", kind: RouteDefault, shards: []string{"s0"}},
		{name: "ddl without table", sql: "CREATE EXTENSION IF NOT EXISTS pgcrypto", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "create table as sharded", sql: "CREATE TABLE x AS SELECT * FROM orders", code: "0A000", msg: "CREATE TABLE AS"},
		{name: "select into sharded", sql: "SELECT * INTO x FROM orders WHERE customer_id = {c1}", code: "0A000", msg: "CREATE TABLE AS"},
		{name: "create table as reference", sql: "CREATE TABLE x AS SELECT * FROM products", kind: RouteDefault, shards: []string{"s0"}},
		{name: "cursor one shard", sql: "DECLARE c CURSOR FOR SELECT * FROM orders WHERE customer_id = {c1} ORDER BY id", kind: RouteSingle, shards: []string{"s1"}},
		{name: "cursor across shards", sql: "DECLARE c CURSOR FOR SELECT * FROM orders", code: "0A000", msg: "DECLARE CURSOR across shards"},
		{name: "fetch", sql: "FETCH 10 FROM c", kind: RouteAny},
		{name: "vacuum sharded", sql: "VACUUM orders", kind: RouteBroadcast, shards: all3, merge: MergeFirst},
		{name: "select 1", sql: "SELECT 1", kind: RouteAny},
		{name: "select now", sql: "SELECT now()", kind: RouteAny},
		{name: "show", sql: "SHOW search_path", kind: RouteAny},
		{name: "set", sql: "SET search_path = app", kind: RouteAny},
		{name: "begin", sql: "BEGIN ISOLATION LEVEL SERIALIZABLE", kind: RouteAny},
		{name: "do block", sql: "DO $$ BEGIN PERFORM 1; END $$", kind: RouteAny},

		// Hints.
		{name: "comment hint", sql: "SELECT count(*) FROM orders /* shard: s2 */", kind: RouteHint, shards: []string{"s2"}},
		{name: "line comment hint", sql: "-- shard: s1\nSELECT * FROM orders", kind: RouteHint, shards: []string{"s1"}},
		{name: "hint unknown shard", sql: "/* shard: nope */ SELECT 1", code: "42704", msg: `shard "nope" does not exist`},
		{name: "session hint", sql: "SELECT * FROM orders ORDER BY id", session: "s1", kind: RouteHint, shards: []string{"s1"}},
		{name: "session hint unknown", sql: "SELECT 1", session: "zz", code: "42704"},
		{name: "comment beats session", sql: "/* shard: s0 */ SELECT * FROM orders", session: "s1", kind: RouteHint, shards: []string{"s0"}},
		{name: "set hint unknown shard", sql: "SET shardproxy.shard = 'zz'", code: "42704"},

		// Two-phase commit statements of the client's own: PREPARE
		// TRANSACTION ends the transaction where it is; COMMIT and
		// ROLLBACK PREPARED go where a hint says, else the proxy looks
		// the gid up on the shards (RouteAny, PreparedReason).
		{name: "prepare transaction", sql: "PREPARE TRANSACTION 'g'", session: "s1", kind: RouteAny},
		{name: "commit prepared", sql: "COMMIT PREPARED 'g'", kind: RouteAny},
		{name: "rollback prepared", sql: "ROLLBACK PREPARED 'g'", kind: RouteAny},
		{name: "commit prepared comment hint", sql: "/* shard: s2 */ COMMIT PREPARED 'g'", kind: RouteHint, shards: []string{"s2"}},
		{name: "rollback prepared session hint", sql: "ROLLBACK PREPARED 'g'", session: "s1", kind: RouteHint, shards: []string{"s1"}},
		{name: "commit prepared hint unknown shard", sql: "/* shard: zz */ COMMIT PREPARED 'g'", code: "42704"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sql := keys.Replace(tc.sql)
			var params []string
			for _, p := range tc.params {
				params = append(params, keys.Replace(p))
			}
			_, rt, err := route(r, sql, params, tc.session)
			if got := sqlState(err); got != tc.code {
				t.Fatalf("%s\n got %s\nwant SQLSTATE %q", sql, formatRoute(rt, err), tc.code)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("%s\nerror %q does not contain %q", sql, err, tc.msg)
				}
				return
			}
			if rt.Kind != tc.kind || !slices.Equal(rt.Shards, tc.shards) || rt.Merge != tc.merge {
				t.Fatalf("%s\n got %s\nwant %s %v merge=%s", sql, formatRoute(rt, nil), tc.kind, tc.shards, tc.merge)
			}
			if rt.Reason == "" {
				t.Errorf("empty reason")
			}
		})
	}
}

func TestRouteReason(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	_, rt, err := route(r, keys.Replace("SELECT * FROM orders WHERE customer_id = {c1}"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := keys.Replace("orders.customer_id = {c1} -> hash by_customer -> s1"); rt.Reason != want {
		t.Errorf("reason %q, want %q", rt.Reason, want)
	}
	_, rt, err = route(r, "SELECT * FROM orders WHERE status = 'x'", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := "orders: no shard key in WHERE -> all shards of by_customer"; rt.Reason != want {
		t.Errorf("reason %q, want %q", rt.Reason, want)
	}
}

func TestRoutePreparedReason(t *testing.T) {
	r, _ := newTestRouter(t)
	for _, sql := range []string{"COMMIT PREPARED 'g'", "ROLLBACK PREPARED 'g'"} {
		_, rt, err := route(r, sql, nil, "")
		if err != nil {
			t.Fatal(err)
		}
		if rt.Reason != PreparedReason {
			t.Errorf("%s: reason %q, want %q", sql, rt.Reason, PreparedReason)
		}
	}
	// The gid is the statement's own, never a cached one's: the plan
	// cache lifts literals out of the simple protocol's text.
	for _, gid := range []string{"a", "b", "a"} {
		parts, err := r.ParseQuery("COMMIT PREPARED '" + gid + "'")
		if err != nil {
			t.Fatal(err)
		}
		if got := parts[0].Stmt.GID; got != gid {
			t.Errorf("COMMIT PREPARED '%s': GID %q", gid, got)
		}
	}
}

func TestRouteKeylessHint(t *testing.T) {
	r, _ := newTestRouter(t)
	_, _, err := route(r, "SELECT sum(total) OVER w FROM orders WINDOW w AS ()", nil, "")
	pe := asPg(t, err)
	if !strings.HasSuffix(pe.Hint, "add a condition on the shard key (orders.customer_id) so the statement targets one shard") {
		t.Errorf("hint %q", pe.Hint)
	}
}

// PEERS: SPQR routed only the first statement of a multi-statement Query.
func TestMultiStatementRoutesEach(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	sql := keys.Replace("UPDATE orders SET total = 1 WHERE customer_id = {c0}; UPDATE orders SET total = 2 WHERE customer_id = {c1}; SELECT 1")
	parts, err := r.ParseQuery(sql)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"s0"}, {"s1"}, nil}
	if len(parts) != len(want) {
		t.Fatalf("%d parts, want %d", len(parts), len(want))
	}
	for i, p := range parts {
		rt, err := r.Route(context.Background(), p.Stmt, Args{Params: p.Args})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rt.Shards, want[i]) {
			t.Errorf("part %d %q: shards %v, want %v", i, p.Text, rt.Shards, want[i])
		}
	}
}

func TestBinaryParams(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	st, err := r.Prepare("SELECT * FROM orders WHERE customer_id = $1 AND status = $2")
	if err != nil {
		t.Fatal(err)
	}
	k := keys.Replace("{c1}")
	var n int64
	for _, c := range k {
		n = n*10 + int64(c-'0')
	}
	bin := []byte{0, 0, 0, 0, 0, 0, 0, 0}
	for i := 7; i >= 0; i-- {
		bin[i] = byte(n)
		n >>= 8
	}
	for _, formats := range [][]int16{{1}, {1, 0}} {
		rt, err := r.Route(context.Background(), st, Args{Params: [][]byte{bin, []byte("x")}, Formats: formats})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rt.Shards, []string{"s1"}) {
			t.Errorf("formats %v: shards %v, want [s1]", formats, rt.Shards)
		}
	}
	// Per-parameter formats: $1 text.
	rt, err := r.Route(context.Background(), st, Args{Params: [][]byte{[]byte(k), bin}, Formats: []int16{0, 1}})
	if err != nil || !slices.Equal(rt.Shards, []string{"s1"}) {
		t.Errorf("text $1: %s", formatRoute(rt, err))
	}
	_, err = r.Route(context.Background(), st, Args{Params: [][]byte{{1, 2, 3}, nil}, Formats: []int16{1}})
	if got := sqlState(err); got != "22P03" {
		t.Errorf("3-byte binary int: SQLSTATE %q, want 22P03", got)
	}
	// A parameter cast in the statement has the cast's type: its bytes
	// are not the key's. A numeric 7 (ten bytes) was an error (22P03),
	// a numeric 0.00 (eight bytes) the int8 2, text "7" a 1-byte int.
	for sql, param := range map[string][]byte{
		"SELECT * FROM orders WHERE customer_id = $1::numeric":    {0, 1, 0, 0, 0, 0, 0, 0, 0, 7},
		"SELECT * FROM orders WHERE customer_id = $1::numeric ":   {0, 0, 0, 0, 0, 0, 0, 2},
		"SELECT * FROM orders WHERE customer_id = $1::text::int8": []byte("7"),
		"SELECT * FROM orders WHERE customer_id = $1::float8":     {0x40, 0x1c, 0, 0, 0, 0, 0, 0},
	} {
		st, err := r.Prepare(sql)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := r.Route(context.Background(), st, Args{Params: [][]byte{param}, Formats: []int16{1}})
		if err != nil || len(rt.Shards) < 2 {
			t.Errorf("%s with binary % x: %s, want every shard", sql, param, formatRoute(rt, err))
		}
	}
	// Cast to the key's own type: still one shard.
	st, err = r.Prepare("SELECT * FROM orders WHERE customer_id = $1::int8")
	if err != nil {
		t.Fatal(err)
	}
	if rt, err := r.Route(context.Background(), st, Args{Params: [][]byte{bin}, Formats: []int16{1}}); err != nil || !slices.Equal(rt.Shards, []string{"s1"}) {
		t.Errorf("$1::int8: %s, want [s1]", formatRoute(rt, err))
	}
}

func TestStatementKinds(t *testing.T) {
	r, _ := newTestRouter(t)
	cases := []struct {
		sql   string
		kind  Kind
		check func(*Statement) string
	}{
		{sql: "", kind: KindEmpty},
		{sql: "  -- nothing\n /* at all */ ;", kind: KindEmpty},
		{sql: "SELECT 1", kind: KindSelect},
		{sql: "VALUES (1)", kind: KindSelect},
		{sql: "INSERT INTO t VALUES (1)", kind: KindInsert},
		{sql: "UPDATE t SET a = 1", kind: KindUpdate},
		{sql: "DELETE FROM t", kind: KindDelete},
		{sql: "CREATE TABLE t (a int)", kind: KindDDL},
		{sql: "ALTER TABLE t ADD b int", kind: KindDDL},
		{sql: "DROP INDEX i", kind: KindDDL},
		{sql: "TRUNCATE t", kind: KindDDL},
		{sql: "COMMENT ON TABLE t IS 'x'", kind: KindDDL},
		{sql: "CREATE INDEX i ON t (a)", kind: KindDDL},
		{sql: "BEGIN", kind: KindBegin},
		{sql: "START TRANSACTION READ ONLY", kind: KindBegin},
		{sql: "COMMIT", kind: KindCommit},
		{sql: "END", kind: KindCommit},
		{sql: "ROLLBACK", kind: KindRollback},
		{sql: "ABORT", kind: KindRollback},
		{sql: "SAVEPOINT a", kind: KindSavepoint},
		{sql: "RELEASE SAVEPOINT a", kind: KindSavepoint},
		{sql: "ROLLBACK TO SAVEPOINT a", kind: KindSavepoint},
		{sql: "PREPARE TRANSACTION 'x'", kind: KindPrepareTransaction, check: twoPhaseIs('P', "x")},
		{sql: "COMMIT PREPARED 'x'", kind: KindPrepareTransaction, check: twoPhaseIs('C', "x")},
		{sql: "ROLLBACK PREPARED 'it''s'", kind: KindPrepareTransaction, check: twoPhaseIs('R', "it's")},
		{sql: "SET TimeZone = 'UTC'", kind: KindSet, check: setIs("timezone", "'UTC'", false)},
		{sql: "SET LOCAL statement_timeout TO 3", kind: KindSet, check: setIs("statement_timeout", "3", true)},
		{sql: "SET search_path = a, b;", kind: KindSet, check: setIs("search_path", "a, b", false)},
		{sql: "SET extra_float_digits TO DEFAULT", kind: KindSet, check: setIs("extra_float_digits", "DEFAULT", false)},
		{sql: "RESET work_mem", kind: KindSet, check: setIs("work_mem", "", false)},
		{sql: "RESET ALL", kind: KindSet, check: setIs("", "", false)},
		{sql: "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", kind: KindSet, check: setIs("transaction", "ISOLATION LEVEL SERIALIZABLE", true)},
		// SET SESSION CHARACTERISTICS is carried as the setting it sets.
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ", kind: KindSet,
			check: setIs("default_transaction_isolation", "'repeatable read'", false)},
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", kind: KindSet, check: setIs("default_transaction_read_only", "on", false)},
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION NOT DEFERRABLE", kind: KindSet, check: setIs("default_transaction_deferrable", "off", false)},
		{sql: "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE, ISOLATION LEVEL SERIALIZABLE", kind: KindSet, check: func(st *Statement) string {
			if st.err == nil {
				return "several modes accepted"
			}
			return ""
		}},
		{sql: "SET shardproxy.shard = 's1'", kind: KindShardHintSet, check: hintIs("s1")},
		{sql: "SET shardproxy.shard TO s2", kind: KindShardHintSet, check: hintIs("s2")},
		{sql: "SET shardproxy.shard TO DEFAULT", kind: KindShardHintReset},
		{sql: "RESET shardproxy.shard", kind: KindShardHintReset},
		{sql: "SHOW TimeZone", kind: KindShow},
		{sql: "COPY t FROM STDIN", kind: KindCopy},
		{sql: "PREPARE p AS SELECT 1", kind: KindPrepare},
		{sql: "EXECUTE p", kind: KindPrepare},
		{sql: "DEALLOCATE ALL", kind: KindPrepare},
		{sql: "LISTEN ch", kind: KindListen},
		{sql: "UNLISTEN *", kind: KindListen},
		{sql: "NOTIFY ch, 'x'", kind: KindListen},
		{sql: "VACUUM", kind: KindOther},
		{sql: "ANALYZE t", kind: KindOther},
		{sql: "DO $$ BEGIN END $$", kind: KindOther},
		{sql: "CALL p()", kind: KindOther},
		{sql: "EXPLAIN SELECT 1", kind: KindSelect, check: func(st *Statement) string {
			if !st.Explain {
				return "Explain not set"
			}
			return ""
		}},
		{sql: "SELECT * FROM a JOIN public.b ON true WHERE x IN (SELECT 1 FROM c)", kind: KindSelect, check: func(st *Statement) string {
			if !slices.Equal(st.Tables, []string{"a", "public.b", "c"}) {
				return "tables " + strings.Join(st.Tables, ",")
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.sql, func(t *testing.T) {
			parts, err := r.ParseQuery(tc.sql)
			if err != nil {
				t.Fatal(err)
			}
			if len(parts) != 1 {
				t.Fatalf("%d parts", len(parts))
			}
			st := parts[0].Stmt
			if st.Kind != tc.kind {
				t.Fatalf("kind %s, want %s", st.Kind, tc.kind)
			}
			if tc.check != nil {
				if msg := tc.check(st); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

func setIs(name, value string, local bool) func(*Statement) string {
	return func(st *Statement) string {
		if st.SetName != name || st.SetValue != value || st.SetLocal != local {
			return "got SetName=" + st.SetName + " SetValue=" + st.SetValue
		}
		return ""
	}
}

func twoPhaseIs(verb byte, gid string) func(*Statement) string {
	return func(st *Statement) string {
		if st.TwoPhase != verb || st.GID != gid {
			return fmt.Sprintf("TwoPhase %q GID %q", st.TwoPhase, st.GID)
		}
		return ""
	}
}

func hintIs(shard string) func(*Statement) string {
	return func(st *Statement) string {
		if st.HintShard != shard {
			return "HintShard " + st.HintShard
		}
		return ""
	}
}

// A simple Query that names $n is rejected by Postgres; the router must
// not bind its literals to those parameters.
func TestSimpleQueryWithClientParams(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	parts, err := r.ParseQuery(keys.Replace("SELECT * FROM orders WHERE customer_id = $1 OR customer_id = {c1}"))
	if err != nil {
		t.Fatal(err)
	}
	if parts[0].Args != nil {
		t.Errorf("args %q, want none", parts[0].Args)
	}
	rt, err := r.Route(context.Background(), parts[0].Stmt, Args{Params: parts[0].Args})
	if err != nil || rt.Kind != RouteAll {
		t.Errorf("got %s, want all shards (the shards report the missing parameter)", formatRoute(rt, err))
	}
}

// Literals in extended-protocol texts stay in the statement and are
// routed from the parse tree.
func TestPrepareLiteralKeys(t *testing.T) {
	r, strats := newTestRouter(t)
	keys := keyReplacer(t, strats)
	cases := []struct {
		sql    string
		shards []string
	}{
		{"SELECT * FROM orders WHERE customer_id = {c1}", []string{"s1"}},
		{"SELECT * FROM orders WHERE customer_id IN ({c0}, '{c0b}')", []string{"s0"}},
		{"INSERT INTO orders (customer_id, id) VALUES ({c1}, $1)", []string{"s1"}},
		{"SELECT * FROM events WHERE id = -3", []string{"s0"}},
		{"SELECT * FROM sessions WHERE token = E'{r2}'", []string{"s2"}},
	}
	for _, tc := range cases {
		sql := keys.Replace(tc.sql)
		t.Run(sql, func(t *testing.T) {
			st, err := r.Prepare(sql)
			if err != nil {
				t.Fatal(err)
			}
			rt, err := r.Route(context.Background(), st, Args{Params: [][]byte{[]byte("1")}})
			if err != nil || !slices.Equal(rt.Shards, tc.shards) {
				t.Errorf("got %s, want %v", formatRoute(rt, err), tc.shards)
			}
		})
	}
}
