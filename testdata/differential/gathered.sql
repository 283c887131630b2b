-- Statements the merge cannot answer from the shards' own results, which
-- the proxy answers by gathering (router/plan_build_gather.go): the rows of
-- every sharded table the statement reads come from the shards in one
-- statement per shard, and one Postgres runs the statement over them.
-- Each must equal the oracle's result (proxy/differential_test.go, subtest
-- "gathered"). Same format as queries.sql.

-- Once refused (refusals.sql): joins not on the shard keys, aggregates
-- and LIMIT in subqueries, an aggregate of the outer query in a subquery,
-- set operations over other shards' rows, WITH TIES, GROUPING SETS,
-- named windows, SELECT * with windows.
SELECT order_id, sum(total) OVER w FROM orders WINDOW w AS (PARTITION BY status);
SELECT *, row_number() OVER (ORDER BY order_id) FROM orders;
SELECT o.order_id, e.kind FROM orders o JOIN events e ON e.customer_id = o.customer_id;
SELECT c.customer_id FROM customers c JOIN events e ON e.seq = c.customer_id;
SELECT o.order_id, i.line FROM orders o JOIN order_items i ON i.order_id = o.order_id;
SELECT count(*) FROM orders a JOIN orders b ON a.order_id = b.order_id;
SELECT c.customer_id, e.stream FROM customers c LEFT JOIN events e ON e.customer_id = c.customer_id;
SELECT o.order_id FROM orders o WHERE EXISTS (SELECT 1 FROM events e WHERE e.customer_id = o.customer_id);
SELECT * FROM customers c WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = c.customer_id);
SELECT c.customer_id, x.n FROM customers c, LATERAL (SELECT count(*) AS n FROM events e WHERE e.customer_id = c.customer_id) x;
SELECT * FROM customers WHERE credit > (SELECT avg(credit) FROM customers);
SELECT customer_id FROM orders WHERE total = (SELECT max(total) FROM orders);
SELECT (SELECT count(*) FROM orders) AS n;
SELECT customer_id FROM orders GROUP BY customer_id HAVING count(*) > (SELECT avg(qty) FROM orders);
WITH t AS (SELECT status, count(*) AS c FROM orders GROUP BY status) SELECT * FROM t;
SELECT order_id FROM orders o WHERE total > (SELECT avg(amount) FROM events e WHERE e.customer_id = o.customer_id);
SELECT (SELECT max(o.total)) FROM orders o;
SELECT (SELECT max(total) FROM products LIMIT 1) AS m FROM orders;
SELECT (SELECT max(p.price) + max(o.total) FROM products p) AS m FROM orders o;
SELECT (SELECT sum(total) FROM (VALUES (1)) v(x)) AS m FROM orders;
SELECT (SELECT sum(total) FROM generate_series(1, 1) g) AS m FROM orders;
WITH c AS (SELECT 1 AS z) SELECT (SELECT sum(total) FROM c) AS m FROM orders;
SELECT (SELECT sum(total) FROM (SELECT * FROM products ORDER BY product_id LIMIT 1) p) AS m FROM orders;
SELECT EXISTS (SELECT 1 FROM products p GROUP BY p.category HAVING max(o.qty) > 3) AS e FROM orders o;
SELECT order_id FROM orders o WHERE total > (SELECT avg(total) FROM orders o2 WHERE o2.customer_id = o.customer_id OR o2.qty > 5);
SELECT count(*) FROM (SELECT DISTINCT status FROM orders) s;
SELECT status FROM orders UNION SELECT name FROM products;
SELECT name FROM products WHERE price < 50 UNION ALL SELECT name FROM customers WHERE country = 'DE';
SELECT status FROM orders INTERSECT SELECT status FROM orders WHERE qty > (SELECT avg(qty) FROM orders);
SELECT status FROM orders EXCEPT (SELECT status FROM orders ORDER BY 1 LIMIT 2);
SELECT total FROM orders ORDER BY total DESC NULLS LAST FETCH FIRST 3 ROWS WITH TIES;
SELECT count(*) + (SELECT count(*) FROM products) FROM orders;
SELECT status, generate_series(1, count(*)::int) FROM orders GROUP BY status;
SELECT json_agg(o ORDER BY order_id) FROM orders o;
SELECT status, count(*) FROM orders GROUP BY GROUPING SETS ((status), ());
SELECT status, count(*) FROM orders GROUP BY ROLLUP (status);
SELECT status, shipped, count(*) FROM orders GROUP BY CUBE (status, shipped);
SELECT count(*) FROM orders WHERE customer_id IN (SELECT customer_id FROM customers ORDER BY credit DESC NULLS LAST, customer_id LIMIT 5);
SELECT count(*) FROM orders WHERE customer_id IN (SELECT region_id FROM customers);
SELECT count(*) FROM orders WHERE customer_id IN (SELECT count(*) FROM customers GROUP BY country);
SELECT count(*) FROM orders WHERE customer_id IN (SELECT customer_id FROM events);
SELECT c.customer_id, o.order_id NOT IN (SELECT i.order_id FROM order_items i WHERE i.qty > 4) AS x FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id AND o.qty > 100;
SELECT c.customer_id, o.customer_id NOT IN (SELECT i.customer_id FROM order_items i WHERE i.qty > 4) AS x FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id AND o.qty > 100;
SELECT count(*) FROM orders o WHERE o.customer_id NOT IN (SELECT o2.customer_id FROM customers c2 LEFT JOIN orders o2 ON o2.customer_id = c2.customer_id AND o2.qty > 19);
SELECT count(*) FROM (SELECT status, count(*) FROM shipped_orders GROUP BY status) s;
SELECT count(*) FROM customers c JOIN (SELECT customer_id + 0 AS cid FROM orders) s ON s.cid = c.customer_id;
SELECT count(*) FROM customers c WHERE c.customer_id NOT IN (SELECT i.customer_id FROM orders o LEFT JOIN order_items i ON i.order_id = o.order_id AND i.qty > 100);
SELECT count(*) FROM customers c LEFT JOIN (SELECT customer_id FROM orders WHERE qty > 100) s ON s.customer_id = c.customer_id WHERE s.customer_id NOT IN (SELECT customer_id FROM order_items WHERE qty > 100);
SELECT count(*) FROM (SELECT *, 0 AS z FROM orders) o(a, b) JOIN customers c ON c.customer_id = o.a;
SELECT count(*) FROM orders o JOIN order_items i ON i.customer_id::varchar(1) = o.customer_id::varchar(1);
WITH s AS (SELECT credit FROM customers WHERE customer_id = 150) SELECT c.customer_id, s.credit FROM customers c, s WHERE c.customer_id = 7;
WITH s AS (SELECT customer_id FROM orders WHERE qty > 5) SELECT count(*) FROM customers c WHERE c.customer_id IN (SELECT customer_id FROM s) AND c.customer_id < 0 OR c.customer_id IN (SELECT o.customer_id FROM orders o, s WHERE o.qty = 1);
-- A whole row with window functions, and partitions of a sharded table.
SELECT order_id, row_number() OVER (ORDER BY order_id), row_to_json(o) FROM orders o;
SELECT o.order_id, i.line FROM orders o JOIN order_items_rest i ON i.order_id = o.order_id;
SELECT count(*) FROM orders o WHERE o.order_id IN (SELECT order_id FROM order_items_rest);

-- Ordered results (compared in order), bind parameters, reference tables.
SELECT order_id, total FROM orders WHERE total > (SELECT avg(total) FROM orders) ORDER BY total DESC, order_id;
SELECT customer_id, name FROM customers WHERE customer_id IN (SELECT customer_id FROM orders GROUP BY 1 HAVING count(*) > $1) ORDER BY customer_id; -- args: 8
SELECT o.order_id, p.name FROM orders o JOIN order_items i ON i.order_id = o.order_id JOIN products p ON p.product_id = i.product_id WHERE o.qty > $1 ORDER BY o.order_id, p.name, i.line; -- args: 17
SELECT status, count(*), sum(total) FROM orders WHERE qty < $1 GROUP BY ROLLUP (status) ORDER BY status NULLS FIRST; -- args: 10
SELECT status, shipped, count(*), grouping(status, shipped) FROM orders GROUP BY CUBE (status, shipped) ORDER BY 1, 2, 4;
SELECT order_id, sum(total) OVER w, rank() OVER w FROM orders WINDOW w AS (PARTITION BY status ORDER BY order_id) ORDER BY order_id;
SELECT e.kind, count(*) FROM events e JOIN customers c ON c.customer_id = e.customer_id WHERE c.country = 'DE' GROUP BY 1 ORDER BY 1;
SELECT c.customer_id, (SELECT count(*) FROM events e WHERE e.customer_id = c.customer_id) AS n FROM customers c ORDER BY n DESC, c.customer_id LIMIT 10;
SELECT * FROM orders WHERE total >= ALL (SELECT total FROM orders WHERE total IS NOT NULL) ORDER BY order_id;
WITH RECURSIVE r(n, t) AS (SELECT 1, (SELECT min(total) FROM orders) UNION ALL SELECT n + 1, (SELECT min(total) FROM orders WHERE total > r.t) FROM r WHERE n < 5) SELECT n, t FROM r ORDER BY n;
SELECT a.customer_id, b.customer_id FROM customers a JOIN customers b ON a.email = b.email AND a.customer_id < b.customer_id ORDER BY 1, 2;
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total), count(*) FILTER (WHERE total > (SELECT avg(total) FROM orders)) FROM orders;
SELECT s.status, s.n, s.n * 100 / sum(s.n) OVER () AS pct FROM (SELECT status, count(*) AS n FROM orders GROUP BY status) s ORDER BY s.n DESC, s.status;
SELECT o.* FROM orders AS o(id, cust) WHERE o.id IN (SELECT max(order_id) FROM orders GROUP BY customer_id) AND o.cust < 20 ORDER BY o.id;
SELECT count(*) FROM orders o LEFT JOIN events e ON e.seq = o.order_id WHERE e.stream IS NULL;

-- Filters the shards apply before gathering (pushableFilters): top-level
-- AND terms on one occurrence, never on an outer join's nullable side, and
-- unqualified columns only where the statement reads one table.
SELECT count(*) FROM customers c LEFT JOIN orders o ON o.order_id = c.customer_id WHERE o.status IS NULL;
SELECT count(*) FROM customers c LEFT JOIN orders o ON o.order_id = c.customer_id WHERE o.status IS NULL AND c.vip;
SELECT count(*) FROM orders o RIGHT JOIN customers c ON o.order_id = c.customer_id WHERE o.total IS NULL AND c.country = 'DE';
SELECT count(*), count(o.order_id), count(c.customer_id) FROM orders o FULL JOIN customers c ON o.order_id = c.customer_id WHERE o.qty IS NULL OR c.credit > 0;
SELECT o.order_id FROM orders o WHERE o.total > $1 AND o.order_id IN (SELECT max(order_id) FROM orders GROUP BY status) ORDER BY 1; -- args: 100
SELECT o.order_id FROM orders o WHERE NOT (o.status = 'paid' OR o.qty > 10) AND o.total < (SELECT avg(total) FROM orders) ORDER BY 1;
SELECT order_id FROM orders WHERE status = 'new' AND total BETWEEN 100 AND 900 AND total > (SELECT avg(total) FROM orders WHERE status = 'new') ORDER BY 1;
SELECT c.customer_id FROM customers c WHERE EXISTS (SELECT 1 FROM orders WHERE order_id = c.customer_id AND qty > credit) ORDER BY 1;
SELECT e.stream, e.seq FROM events e JOIN orders o ON o.order_id = e.seq WHERE e.kind IN ('created', 'paid') AND o.note LIKE '%gift%' AND e.amount IS NOT NULL ORDER BY 1, 2;
SELECT a.id_, b.order_id FROM orders AS a(id_, cust) JOIN orders b ON b.order_id = a.cust WHERE a.cust < 50 AND b.status <> 'x' ORDER BY 1, 2;
