-- Statements the proxy must refuse with SQLSTATE 0A000 (and a hint) on the
-- differential suite's tables (schema.sql): each needs cross-shard
-- semantics that concatenating or re-aggregating per-shard results cannot
-- give exactly. Every one is valid SQL: the oracle runs it (inside a
-- rolled-back transaction). Same format as queries.sql.

-- Window functions the proxy cannot hand to one Postgres: a named WINDOW
-- clause, SELECT *, and values that are not of a built-in scalar type.
SELECT order_id, sum(total) OVER w FROM orders WINDOW w AS (PARTITION BY status);
SELECT *, row_number() OVER (ORDER BY order_id) FROM orders;
SELECT order_id, row_number() OVER (ORDER BY order_id), o FROM orders o;

-- Joins of tables that are not colocated on the join key.
SELECT o.order_id, e.kind FROM orders o JOIN events e ON e.customer_id = o.customer_id;
SELECT c.customer_id FROM customers c JOIN events e ON e.seq = c.customer_id;
SELECT o.order_id, i.line FROM orders o JOIN order_items i ON i.order_id = o.order_id;
SELECT count(*) FROM orders a JOIN orders b ON a.order_id = b.order_id;
SELECT c.customer_id, e.stream FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id;
SELECT o.order_id FROM orders o WHERE EXISTS (SELECT 1 FROM events e WHERE e.customer_id = o.customer_id);
SELECT * FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = c.customer_id);
SELECT c.customer_id, x.n FROM customers c, LATERAL (SELECT count(*) AS n FROM events e WHERE e.customer_id = c.customer_id) x;

-- Subqueries that aggregate across shards.
SELECT * FROM customers WHERE credit > (SELECT avg(credit) FROM customers);
SELECT customer_id FROM orders WHERE total = (SELECT max(total) FROM orders);
SELECT (SELECT count(*) FROM orders) AS n;
SELECT customer_id FROM orders GROUP BY customer_id HAVING count(*) > (SELECT avg(qty) FROM orders);
WITH t AS (SELECT status, count(*) AS c FROM orders GROUP BY status) SELECT * FROM t;
SELECT order_id FROM orders o WHERE total > (SELECT avg(amount) FROM events e WHERE e.customer_id = o.customer_id);
-- An aggregate of the outer query written inside a subquery: the outer query aggregates.
SELECT (SELECT max(o.total)) FROM orders o;
SELECT (SELECT max(total) FROM products LIMIT 1) AS m FROM orders;
SELECT (SELECT max(p.price) + max(o.total) FROM products p) AS m FROM orders o;
-- ... also when the subquery reads no table: its VALUES, function or CTE lacks the column.
SELECT (SELECT sum(total) FROM (VALUES (1)) v(x)) AS m FROM orders;
SELECT (SELECT sum(total) FROM generate_series(1, 1) g) AS m FROM orders;
WITH c AS (SELECT 1 AS z) SELECT (SELECT sum(total) FROM c) AS m FROM orders;
SELECT (SELECT sum(total) FROM (SELECT * FROM products ORDER BY product_id LIMIT 1) p) AS m FROM orders;
SELECT EXISTS (SELECT 1 FROM products p GROUP BY p.category HAVING max(o.qty) > 3) AS e FROM orders o;
SELECT order_id FROM orders o WHERE total > (SELECT avg(total) FROM orders o2 WHERE o2.customer_id = o.customer_id OR o2.qty > 5);
SELECT count(*) FROM (SELECT DISTINCT status FROM orders) s;

-- Data-modifying WITH: the shards' writes would not be one transaction.
WITH x AS (UPDATE orders SET note = note RETURNING order_id) SELECT count(*) FROM x;

-- Row locks across shards.
SELECT * FROM orders FOR UPDATE;
SELECT * FROM customers WHERE vip FOR SHARE;
SELECT order_id FROM orders ORDER BY order_id LIMIT 5 FOR UPDATE;
SELECT * FROM events FOR UPDATE SKIP LOCKED;

-- Set operations whose result depends on rows of other shards.
SELECT status FROM orders UNION SELECT name FROM products;
SELECT name FROM products WHERE price < 50 UNION ALL SELECT name FROM customers WHERE country = 'DE';
SELECT status FROM orders INTERSECT SELECT status FROM orders WHERE qty > (SELECT avg(qty) FROM orders);
SELECT status FROM orders EXCEPT (SELECT status FROM orders ORDER BY 1 LIMIT 2);

-- LIMIT whose row count depends on ties across shards.
SELECT total FROM orders ORDER BY total DESC NULLS LAST FETCH FIRST 3 ROWS WITH TIES;

-- Expressions over aggregates that an Evaluate node cannot take.
SELECT count(*) + (SELECT count(*) FROM products) FROM orders;
SELECT status, generate_series(1, count(*)::int) FROM orders GROUP BY status;
SELECT c.customer_id, count(DISTINCT o.status) + length(c.name) FROM customers c JOIN orders o USING (customer_id) GROUP BY c.customer_id;

-- Aggregates gathered whole (their inputs as arrays) over values that
-- unnest would not give back as they were: rows and arrays.
SELECT json_agg(o) FROM orders o;
SELECT status, array_agg(ARRAY[qty, 1] ORDER BY order_id) FROM orders GROUP BY status;

-- Grouping sets.
SELECT status, count(*) FROM orders GROUP BY GROUPING SETS ((status), ());
SELECT status, count(*) FROM orders GROUP BY ROLLUP (status);
SELECT status, shipped, count(*) FROM orders GROUP BY CUBE (status, shipped);

-- Session state that a pooled backend would hand to the next client
-- (router/pooling.go): session advisory locks, set_config(..., false),
-- temporary relations that outlive the transaction.
SELECT pg_advisory_lock(42);
SELECT pg_try_advisory_lock_shared(1, 2);
SELECT pg_advisory_unlock_all();
SELECT order_id FROM orders WHERE pg_try_advisory_lock(order_id) AND customer_id = 7;
SELECT set_config('application_name', 'x', false);
SELECT set_config('application_name', 'x', 1 > 0);
CREATE TEMP TABLE scratch (x int);
CREATE TEMPORARY VIEW scratch_v AS SELECT 1 AS one;
SELECT * INTO TEMP scratch_t FROM orders WHERE customer_id = 7;
DECLARE held_c CURSOR WITH HOLD FOR SELECT order_id FROM orders WHERE customer_id = 7;

-- key IN (subquery) whose set needs other shards' rows.
SELECT count(*) FROM orders WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY credit DESC NULLS LAST, customer_id LIMIT 5);
SELECT count(*) FROM orders WHERE customer_id IN (SELECT region_id FROM customers);
SELECT count(*) FROM orders WHERE customer_id IN (SELECT count(*) FROM customers GROUP BY country);
SELECT count(*) FROM orders WHERE customer_id IN (SELECT customer_id FROM events);
SELECT c.customer_id, o.order_id NOT IN (SELECT i.order_id FROM order_items i WHERE i.qty > 4) AS x FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id AND o.qty > 100;
SELECT c.customer_id, o.customer_id NOT IN (SELECT i.customer_id FROM order_items i WHERE i.qty > 4) AS x FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id AND o.qty > 100;
SELECT count(*) FROM orders o WHERE o.customer_id NOT IN (SELECT o2.customer_id FROM customers c2 LEFT JOIN orders o2 ON o2.customer_id = c2.customer_id AND o2.qty > 19);

-- Writes through a view over a sharded table (schema.sql), an aggregate
-- inside the subquery a view is read as, and joins on a column that a
-- subquery in FROM computes or reads from an outer join's nullable side.
UPDATE shipped_orders SET status = 'x' WHERE total > 100;
SELECT count(*) FROM (SELECT status, count(*) FROM shipped_orders GROUP BY status) s;
SELECT count(*) FROM customers c JOIN (SELECT customer_id + 0 AS cid FROM orders) s ON s.cid = c.customer_id;
SELECT count(*) FROM customers c WHERE c.customer_id NOT IN (SELECT i.customer_id FROM orders o LEFT JOIN order_items i ON i.order_id = o.order_id AND i.qty > 100);
SELECT count(*) FROM customers c LEFT JOIN (SELECT customer_id FROM orders WHERE qty > 100) s ON s.customer_id = c.customer_id WHERE s.customer_id NOT IN (SELECT customer_id FROM order_items WHERE qty > 100);
SELECT count(*) FROM (SELECT *, 0 AS z FROM orders) o(a, b) JOIN customers c ON c.customer_id = o.a;
SELECT o.order_id, i.line FROM orders o JOIN order_items_rest i ON i.order_id = o.order_id;
SELECT count(*) FROM orders o JOIN order_items i ON i.customer_id::varchar(1) = o.customer_id::varchar(1);

-- A CTE that reads a sharded table meets the rows of the level that names
-- it: its tables must be joined to them by equal shard keys, as a
-- subquery's are (the proxy ran these on both customers' shards, each
-- finding one of them, and returned nothing).
WITH s AS (SELECT credit FROM customers WHERE customer_id = 150) SELECT c.customer_id, s.credit FROM customers c, s WHERE c.customer_id = 7;
WITH s AS (SELECT customer_id FROM orders WHERE qty > 5) SELECT count(*) FROM customers c WHERE c.customer_id IN (SELECT customer_id FROM s) AND c.customer_id < 0 OR c.customer_id IN (SELECT o.customer_id FROM orders o, s WHERE o.qty = 1);
