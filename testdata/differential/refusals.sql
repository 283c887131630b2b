-- Statements the proxy must refuse with SQLSTATE 0A000 (and a hint) on the
-- differential suite's tables (schema.sql). Every one is valid SQL: the
-- oracle runs it (inside a rolled-back transaction). Same format as
-- queries.sql. A SELECT the merge cannot answer is gathered instead
-- (gathered.sql); what stays here cannot be: it writes, locks or leaves
-- session state behind, or the merge refuses it while running.

-- An aggregate gathered whole (its inputs as arrays) over arrays, which
-- unnest would not give back as they were.
SELECT status, array_agg(ARRAY[qty, 1] ORDER BY order_id) FROM orders GROUP BY status;

-- Writes whose rows depend on other shards' rows.
UPDATE orders SET note = 'x' WHERE total > (SELECT avg(total) FROM orders);
DELETE FROM orders WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY credit DESC NULLS LAST, customer_id LIMIT 5);
UPDATE orders o SET qty = e.seq FROM events e WHERE e.customer_id = o.customer_id;

-- Data-modifying WITH: the shards' writes would not be one transaction.
WITH x AS (UPDATE orders SET note = note RETURNING order_id) SELECT count(*) FROM x;

-- Row locks across shards (also on a gathered statement: the rows locked
-- would be copies).
SELECT * FROM orders FOR UPDATE;
SELECT * FROM customers WHERE vip FOR SHARE;
SELECT order_id FROM orders ORDER BY order_id LIMIT 5 FOR UPDATE;
SELECT * FROM events FOR UPDATE SKIP LOCKED;
SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders) FOR UPDATE;
SELECT o.order_id FROM orders o JOIN events e ON e.customer_id = o.customer_id FOR SHARE OF o;

-- Session state that a pooled backend would hand to the next client
-- (router/pooling.go): session advisory locks, set_config(..., false)
-- where the proxy cannot carry it as SET (a computed value: see
-- router/setconfig.go), temporary relations that outlive the transaction.
SELECT pg_advisory_lock(42);
SELECT pg_try_advisory_lock_shared(1, 2);
SELECT pg_advisory_unlock_all();
SELECT order_id FROM orders WHERE pg_try_advisory_lock(order_id) AND customer_id = 7;
SELECT set_config('application_name', lower('X'), false);
SELECT set_config('application_name', 'x', 1 > 0);
CREATE TEMP TABLE scratch (x int);
CREATE TEMPORARY VIEW scratch_v AS SELECT 1 AS one;
SELECT * INTO TEMP scratch_t FROM orders WHERE customer_id = 7;
DECLARE held_c CURSOR WITH HOLD FOR SELECT order_id FROM orders WHERE customer_id = 7;

-- A write through a view over a sharded table.
UPDATE shipped_orders SET status = 'x' WHERE total > 100;

-- Tables made from sharded rows, and writes that would move or spread rows.
CREATE TABLE orders_copy AS SELECT * FROM orders;
SELECT * INTO orders_copy2 FROM orders;
INSERT INTO orders (order_id, customer_id) SELECT order_id + 100000, customer_id + 1 FROM orders;
UPDATE orders SET customer_id = customer_id + 1 WHERE order_id = 1;
DELETE FROM customers c USING orders o WHERE o.total > 990 AND o.order_id = c.customer_id;
DELETE FROM orders WHERE total > (SELECT avg(total) FROM orders);
UPDATE customers SET credit = (SELECT max(total) FROM orders);
SELECT * FROM orders o JOIN customers c ON c.customer_id = o.qty FOR UPDATE OF c;
SELECT pg_advisory_lock(order_id) FROM orders WHERE customer_id = 7;

-- The size of a sharded table: one shard's answer would be a part of it.
SELECT pg_size_pretty(pg_total_relation_size('orders'));
SELECT pg_table_size('public.ORDERS'::regclass) > 0, pg_indexes_size('"customers"') > 0;
SELECT pg_relation_size('orders', 'main') > 0 FROM customers WHERE customer_id = 7;
