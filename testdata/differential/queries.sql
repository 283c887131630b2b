-- Differential queries (proxy/differential_test.go): each runs on the oracle
-- and through the proxy; results must be identical. Queries with a
-- top-level ORDER BY are compared in order and must therefore have a total
-- order (they end with a unique key); others are compared as multisets.
-- A statement ends with ";" at the end of a line; "; -- args: a b" gives
-- bind parameters (then it runs as unnamed and as named prepared statement).

-- Plain union of rows (no ORDER BY).
SELECT * FROM customers;
SELECT * FROM orders;
SELECT * FROM order_items;
SELECT * FROM events;
SELECT order_id, total FROM orders WHERE total > 500;
SELECT name, email FROM customers WHERE country = 'JP';
SELECT * FROM orders WHERE note IS NULL;
SELECT stream, seq FROM events WHERE payload = '';
SELECT customer_id, name FROM customers WHERE name LIKE '%é%' OR name LIKE '%日本%';
SELECT 1 AS one FROM orders WHERE qty > 18;
SELECT order_id, total * 2 AS double_total, upper(status) FROM orders WHERE qty < 3;
SELECT * FROM events WHERE at >= '2024-06-01';
SELECT event_id, amount FROM events WHERE amount IS NOT NULL;
SELECT customer_id, vip, signup FROM customers WHERE vip IS NULL;
SELECT o.order_id, o.customer_id FROM orders o WHERE o.customer_id IN (1, 2, 3, 150, 300, 399);
SELECT customer_id, credit FROM customers WHERE credit < 0;
SELECT status, shipped, note FROM orders WHERE customer_id <> 7 AND shipped;
SELECT * FROM order_items WHERE product_id IS NULL OR qty IS NULL;

-- ORDER BY: directions, NULLS FIRST/LAST, every type, keys in and out of the select list.
SELECT order_id, total FROM orders ORDER BY total DESC NULLS LAST, order_id;
SELECT order_id, total FROM orders ORDER BY total ASC NULLS FIRST, order_id;
SELECT order_id, total FROM orders ORDER BY total, order_id;
SELECT order_id, total FROM orders ORDER BY total DESC, order_id DESC;
SELECT order_id FROM orders ORDER BY created_at, order_id;
SELECT order_id AS id, total AS t FROM orders ORDER BY t DESC, id;
SELECT customer_id, order_id, total FROM orders ORDER BY 3, 2;
SELECT customer_id, order_id, total FROM orders ORDER BY 1 DESC, 2 DESC;
SELECT order_id, qty FROM orders ORDER BY qty * total DESC NULLS LAST, order_id;
SELECT order_id, qty * 2 AS q2 FROM orders ORDER BY qty * 2, order_id;
SELECT customer_id, name FROM customers ORDER BY name, customer_id;
SELECT customer_id, name FROM customers ORDER BY name DESC, customer_id DESC;
SELECT customer_id, name FROM customers ORDER BY name NULLS FIRST, customer_id;
SELECT customer_id, email FROM customers ORDER BY email NULLS FIRST, customer_id;
SELECT customer_id, email FROM customers ORDER BY email DESC NULLS LAST, customer_id;
SELECT customer_id, vip FROM customers ORDER BY vip, customer_id;
SELECT customer_id, vip FROM customers ORDER BY vip DESC NULLS LAST, customer_id;
SELECT customer_id, signup FROM customers ORDER BY signup, customer_id;
SELECT customer_id, signup FROM customers ORDER BY signup DESC NULLS LAST, customer_id DESC;
SELECT order_id, created_at FROM orders ORDER BY created_at DESC, order_id;
SELECT order_id, created_at FROM orders ORDER BY created_at NULLS FIRST, order_id;
SELECT event_id, stream FROM events ORDER BY event_id;
SELECT event_id, stream FROM events ORDER BY event_id DESC;
SELECT order_id, qty FROM orders ORDER BY qty, order_id;
SELECT order_id, qty FROM orders ORDER BY qty DESC NULLS LAST, order_id;
SELECT customer_id, order_id FROM orders ORDER BY customer_id DESC, order_id DESC;
SELECT stream, seq, amount FROM events ORDER BY amount, stream, seq;
SELECT stream, seq, amount FROM events ORDER BY amount DESC NULLS LAST, stream DESC, seq;
SELECT order_id, discount FROM orders ORDER BY discount DESC NULLS FIRST, order_id;
SELECT customer_id, credit FROM customers ORDER BY credit NULLS FIRST, customer_id;
SELECT order_id, status, shipped, total FROM orders ORDER BY status, shipped DESC, total, order_id;
SELECT customer_id, country, credit FROM customers ORDER BY country DESC NULLS LAST, credit ASC NULLS FIRST, customer_id;
SELECT customer_id FROM customers ORDER BY lower(name), customer_id;
SELECT order_id, total FROM orders WHERE status = 'paid' ORDER BY total, order_id;
SELECT stream, seq, kind FROM events ORDER BY stream, seq;
SELECT stream, seq FROM events ORDER BY stream DESC, seq DESC;
SELECT stream, seq, payload FROM events ORDER BY length(payload) NULLS FIRST, stream, seq;
SELECT * FROM orders ORDER BY order_id;
SELECT * FROM customers ORDER BY 1 DESC;
SELECT * FROM events ORDER BY at, event_id;
SELECT o.order_id, o.total FROM orders o ORDER BY o.total, o.order_id;
SELECT order_id, CASE WHEN shipped THEN 'yes' WHEN NOT shipped THEN 'no' END AS s FROM orders ORDER BY s NULLS FIRST, order_id;
SELECT order_id FROM orders ORDER BY CASE WHEN status = 'paid' THEN 0 ELSE 1 END, order_id DESC;
SELECT order_id, ship_date FROM orders ORDER BY ship_date, order_id;
SELECT customer_id, order_id, line, price FROM order_items ORDER BY price DESC NULLS LAST, order_id, line;
SELECT customer_id, region_id FROM customers ORDER BY region_id, customer_id;
SELECT order_id, note FROM orders WHERE note IS NOT NULL ORDER BY note, order_id;
SELECT name FROM customers WHERE name IS NOT NULL ORDER BY name COLLATE "C";
SELECT customer_id, order_id FROM orders WHERE customer_id IN (7, 100, 250, 399) ORDER BY order_id;
SELECT order_id, total, qty FROM orders ORDER BY total + qty DESC NULLS LAST, order_id;

-- LIMIT / OFFSET, with and without ORDER BY.
SELECT order_id, total FROM orders ORDER BY total DESC NULLS LAST, order_id LIMIT 10;
SELECT order_id, total FROM orders ORDER BY total DESC NULLS LAST, order_id LIMIT 10 OFFSET 20;
SELECT order_id FROM orders ORDER BY order_id LIMIT 50 OFFSET 2990;
SELECT order_id FROM orders ORDER BY order_id OFFSET 5000;
SELECT order_id FROM orders ORDER BY order_id DESC OFFSET 2995;
SELECT order_id FROM orders ORDER BY order_id LIMIT 0;
SELECT order_id FROM orders ORDER BY order_id LIMIT ALL;
SELECT customer_id FROM customers ORDER BY customer_id LIMIT NULL OFFSET 390;
SELECT order_id FROM orders ORDER BY created_at DESC NULLS LAST, order_id FETCH FIRST 5 ROWS ONLY;
SELECT order_id FROM orders ORDER BY qty, order_id OFFSET 3 ROWS FETCH NEXT 4 ROWS ONLY;
SELECT name, customer_id FROM customers ORDER BY name DESC NULLS FIRST, customer_id LIMIT 7 OFFSET 1;
SELECT event_id FROM events ORDER BY event_id LIMIT 3;
SELECT stream, seq FROM events ORDER BY at DESC NULLS FIRST, stream, seq LIMIT 25;
SELECT 'x' AS c FROM orders LIMIT 7;
SELECT status FROM orders WHERE order_id IN (1, 2, 3, 1500, 2999) LIMIT 100;
SELECT * FROM orders LIMIT 0;
SELECT order_id FROM orders WHERE order_id < 0 ORDER BY order_id LIMIT 5;
SELECT order_id FROM orders ORDER BY order_id LIMIT $1 OFFSET $2; -- args: 10 5
SELECT order_id, total FROM orders ORDER BY total DESC NULLS LAST, order_id LIMIT $1; -- args: 3
SELECT order_id, qty FROM orders WHERE qty > $1 ORDER BY qty, order_id LIMIT $2; -- args: 5 20
SELECT order_id FROM orders ORDER BY order_id OFFSET $1; -- args: 2995
SELECT order_id FROM orders ORDER BY order_id LIMIT $1; -- args: 0
SELECT customer_id, name FROM customers ORDER BY name, customer_id LIMIT $1 OFFSET $2; -- args: 5 395
SELECT count(*) FROM orders WHERE total > $1; -- args: 100
SELECT customer_id, order_id FROM orders WHERE customer_id IN ($1, $2, $3) ORDER BY order_id; -- args: 7 150 300
SELECT status, count(*) FROM orders WHERE qty >= $1 GROUP BY status ORDER BY status LIMIT $2; -- args: 3 4
SELECT stream, seq FROM events WHERE stream IN ($1, $2, $3) ORDER BY stream, seq LIMIT $4; -- args: acct-1 日本-3 zz-9 40

-- Aggregates without GROUP BY.
SELECT count(*) FROM orders;
SELECT count(*) FROM customers;
SELECT count(*) FROM order_items;
SELECT count(*) FROM events;
SELECT count(total) FROM orders;
SELECT count(email) FROM customers;
SELECT count(1) FROM events WHERE payload IS NOT NULL;
SELECT count(DISTINCT customer_id) FROM orders;
SELECT count(DISTINCT status) FROM orders;
SELECT count(DISTINCT stream) FROM events;
SELECT count(DISTINCT kind) FROM events;
SELECT count(DISTINCT customer_id) FROM events;
SELECT count(DISTINCT name) FROM customers;
SELECT sum(DISTINCT qty), avg(DISTINCT qty), count(DISTINCT qty) FROM orders;
SELECT status, sum(DISTINCT total), avg(DISTINCT total) FROM orders GROUP BY status ORDER BY status NULLS FIRST;
SELECT sum(DISTINCT discount) FILTER (WHERE shipped), avg(DISTINCT discount) FILTER (WHERE NOT shipped) FROM orders;
SELECT sum(DISTINCT customer_id), avg(DISTINCT customer_id) FROM orders WHERE qty > 10;
SELECT kind, sum(DISTINCT amount) FROM events GROUP BY kind HAVING sum(DISTINCT amount) > 10 ORDER BY 2 DESC NULLS LAST, 1;
SELECT region_id, avg(DISTINCT credit) FROM customers GROUP BY region_id ORDER BY 1 NULLS FIRST;
SELECT sum(qty) FROM orders;
SELECT sum(customer_id) FROM orders;
SELECT sum(total) FROM orders;
SELECT sum(discount) FROM orders;
SELECT sum(amount) FROM events;
SELECT sum(price) FROM order_items;
SELECT min(qty), max(qty) FROM orders;
SELECT min(customer_id), max(customer_id) FROM events;
SELECT min(total), max(total) FROM orders;
SELECT min(amount), max(amount) FROM events;
SELECT min(name), max(name) FROM customers;
SELECT min(signup), max(signup) FROM customers;
SELECT min(created_at), max(created_at) FROM orders;
SELECT min(stream), max(stream) FROM events;
SELECT avg(qty) FROM orders;
SELECT avg(customer_id) FROM orders;
SELECT avg(total) FROM orders;
SELECT avg(discount) FROM orders;
SELECT avg(amount) FROM events;
SELECT avg(credit) FROM customers;
SELECT bool_and(shipped), bool_or(shipped) FROM orders;
SELECT bool_and(vip), bool_or(vip) FROM customers;
SELECT bool_and(active), bool_or(active) FROM products;
SELECT count(*), count(total), sum(total), min(total), max(total), avg(total) FROM orders;
SELECT count(*) AS n, sum(qty) AS "Total Qty", avg(qty) AS "平均" FROM orders;
SELECT count(*) FROM orders WHERE shipped;
SELECT count(*), sum(total) FROM orders WHERE customer_id IN (1, 7, 200, 333);
SELECT sum(qty) FROM orders WHERE qty IS NULL;
SELECT count(*) FROM orders WHERE customer_id = 7;
SELECT max(total) FROM orders WHERE status = 'shipped' AND created_at < '2024-07-01';
SELECT min(note), max(note) FROM orders;
SELECT sum(qty), sum(total), avg(discount) FROM orders WHERE customer_id <> 7;
SELECT bool_or(qty > 19), bool_and(qty > 0) FROM orders;

-- TABLESAMPLE: a FROM item like any other (at 100%, so that it can be compared).
SELECT count(*), sum(total) FROM orders TABLESAMPLE BERNOULLI (100);
SELECT * FROM orders TABLESAMPLE SYSTEM (100) REPEATABLE (3) WHERE customer_id = 7;
SELECT o.order_id, i.line FROM orders o TABLESAMPLE BERNOULLI (100) JOIN order_items i USING (customer_id, order_id) WHERE i.qty > 3;

-- FILTER stays on the shards' partials; avg's hidden count takes it too.
SELECT count(*) FILTER (WHERE status = 'paid'), count(*) FROM orders;
SELECT sum(total) FILTER (WHERE shipped), avg(total) FILTER (WHERE shipped), avg(total) FROM orders;
SELECT min(created_at) FILTER (WHERE qty > 10), max(note) FILTER (WHERE note IS NOT NULL), bool_and(shipped) FILTER (WHERE qty < 5) FROM orders;
SELECT count(DISTINCT customer_id) FILTER (WHERE total > 100) FROM orders;
SELECT count(DISTINCT CASE WHEN shipped THEN status END) FROM orders;
SELECT avg(qty) FILTER (WHERE false), count(*) FILTER (WHERE false) FROM orders;
SELECT status, count(*) FILTER (WHERE shipped) AS s, avg(total) FILTER (WHERE qty > $1) FROM orders GROUP BY status HAVING sum(qty) FILTER (WHERE shipped) > $2 ORDER BY status NULLS FIRST; -- args: 3 10

-- Aggregates over empty sets.
SELECT count(*), sum(total), avg(total), min(total), max(total), bool_and(shipped) FROM orders WHERE status = 'nope';
SELECT count(*) FROM orders WHERE order_id < 0;
SELECT count(DISTINCT status) FROM orders WHERE false;
SELECT bool_or(shipped) FROM orders WHERE false;
SELECT max(total) FROM orders WHERE order_id < 0;
SELECT avg(amount), sum(amount), count(amount) FROM events WHERE stream = 'no-such-stream';

-- GROUP BY, HAVING, ORDER BY aggregates.
SELECT status, count(*) FROM orders GROUP BY status;
SELECT count(*) FROM orders GROUP BY status;
SELECT status, count(*), sum(total), avg(total), min(total), max(total) FROM orders GROUP BY status ORDER BY status;
SELECT status, min(note) AS n, max(note) AS x FROM orders WHERE note = '' GROUP BY status;
SELECT status, count(*) FROM orders GROUP BY 1 ORDER BY 1;
SELECT status, shipped, count(*) FROM orders GROUP BY status, shipped ORDER BY status, shipped;
SELECT status, shipped, qty, count(*), sum(total) FROM orders GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;
SELECT customer_id, count(*) FROM orders GROUP BY customer_id ORDER BY customer_id;
SELECT customer_id, count(*) FROM orders GROUP BY customer_id ORDER BY count(*) DESC, customer_id LIMIT 5;
SELECT customer_id, sum(total), avg(qty) FROM orders GROUP BY customer_id;
-- Grouped by the shard key: the shards finish every group (any aggregate, expressions over them).
SELECT customer_id, string_agg(status, ',' ORDER BY order_id) AS s, sum(total) * 2 AS t FROM orders GROUP BY customer_id ORDER BY t DESC NULLS LAST, customer_id LIMIT 10;
SELECT customer_id, count(*) + 1 AS c, round(avg(total), 1) FROM orders GROUP BY customer_id HAVING count(*) > 5 ORDER BY c DESC, customer_id;
SELECT o.customer_id, max(total) - min(total), array_agg(DISTINCT status ORDER BY status) FROM orders o GROUP BY 1;
SELECT name, count(*) FROM customers GROUP BY name ORDER BY name;
SELECT country, count(*), avg(credit) FROM customers GROUP BY country ORDER BY country NULLS FIRST;
SELECT vip, count(*), min(signup), max(signup) FROM customers GROUP BY vip ORDER BY vip;
SELECT signup, count(*) FROM customers GROUP BY signup ORDER BY count(*) DESC, signup NULLS FIRST LIMIT 10;
SELECT date_trunc('month', created_at) AS month, count(*), sum(total) FROM orders GROUP BY 1 ORDER BY 1;
SELECT region_id, count(*) FROM customers GROUP BY region_id ORDER BY region_id DESC NULLS LAST;
SELECT status, count(*) FROM orders GROUP BY status HAVING count(*) > 100 ORDER BY status;
SELECT status, sum(total) FROM orders GROUP BY status HAVING sum(total) > 10000 ORDER BY sum(total) DESC, status;
SELECT customer_id, count(*) FROM orders GROUP BY customer_id HAVING count(*) >= 12 ORDER BY customer_id;
SELECT status FROM orders GROUP BY status HAVING max(qty) > 19 ORDER BY status;
SELECT status, avg(total) FROM orders GROUP BY status HAVING avg(total) > 490 ORDER BY status;
SELECT status, count(*) FROM orders GROUP BY status ORDER BY count(*) DESC, status;
SELECT status, sum(total) FROM orders GROUP BY status ORDER BY sum(total) DESC NULLS LAST, status;
SELECT status, avg(qty) FROM orders GROUP BY status ORDER BY avg(qty), status;
SELECT status FROM orders GROUP BY status ORDER BY max(total), status;
SELECT status, count(DISTINCT customer_id) FROM orders GROUP BY status ORDER BY status;
-- Aggregates not merged from partials are gathered: the shards return their inputs as arrays, Postgres runs the aggregate over all of them.
SELECT array_agg(order_id ORDER BY order_id) FROM orders WHERE qty > 15;
SELECT status, string_agg(note, ',' ORDER BY order_id) FROM orders GROUP BY status ORDER BY status NULLS FIRST;
SELECT string_agg(DISTINCT status, '|' ORDER BY status) FROM orders;
SELECT stddev(total), variance(qty), stddev_pop(qty), var_samp(total) FROM orders;
SELECT status, stddev(total) FROM orders GROUP BY status HAVING stddev(total) > 10 ORDER BY stddev(total) DESC, status;
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total), percentile_disc(0.9) WITHIN GROUP (ORDER BY qty) FROM orders;
SELECT status, mode() WITHIN GROUP (ORDER BY qty DESC) FROM orders GROUP BY status ORDER BY 1 NULLS LAST;
SELECT count(DISTINCT status) FILTER (WHERE shipped), count(*) FROM orders;
SELECT count(DISTINCT status), count(DISTINCT qty), sum(DISTINCT qty) FROM orders;
SELECT shipped, count(DISTINCT customer_id), count(DISTINCT status) FROM orders GROUP BY shipped ORDER BY shipped NULLS FIRST;
SELECT kind, bit_or(seq), bit_and(seq), bool_or(amount > 10) FROM events GROUP BY kind ORDER BY kind NULLS FIRST;
SELECT jsonb_agg(order_id ORDER BY order_id) FILTER (WHERE qty = 7), array_agg(DISTINCT qty ORDER BY qty) FROM orders;
SELECT status, string_agg(note, ', ' ORDER BY note NULLS FIRST, order_id) || '!' FROM orders WHERE note <> '' GROUP BY status ORDER BY 1;
SELECT c.country, array_agg(o.order_id ORDER BY o.total DESC NULLS LAST, o.order_id) FROM customers c JOIN orders o ON o.customer_id = c.customer_id WHERE o.qty > 17 GROUP BY c.country ORDER BY 1 NULLS FIRST;
SELECT count(*) FILTER (WHERE false), string_agg(status, ',' ORDER BY order_id) FROM orders WHERE qty > 1000;
SELECT status, string_agg(note, ',' ORDER BY note COLLATE "C" DESC, order_id) FROM orders WHERE note <> '' GROUP BY status HAVING max(note) COLLATE "C" > 'a' ORDER BY 1;
SELECT order_id, jsonb_build_object('bb', qty, 'a', 12345678901234567890123, 'c', 1.50) AS j, json_build_object('z', 1, 'a', 2.0) FROM orders ORDER BY order_id LIMIT 3;
-- Arrays across shards: sorted, merged, grouped, DISTINCT and min/max element by element, NULL elements above values.
SELECT status, array_agg(qty ORDER BY qty, order_id) AS a FROM orders GROUP BY status ORDER BY a, status NULLS FIRST;
SELECT customer_id, array_agg(DISTINCT status ORDER BY status) AS s FROM orders GROUP BY customer_id ORDER BY s DESC NULLS LAST, customer_id LIMIT 15;
SELECT DISTINCT array_agg(qty ORDER BY qty) FILTER (WHERE qty > 17) FROM orders GROUP BY customer_id;
SELECT max(ARRAY[qty, order_id]), min(ARRAY[status]), max(ARRAY[note]) FROM orders;
SELECT ARRAY[qty % 3, 1] AS a, count(*) FROM orders GROUP BY 1 ORDER BY 1;
SELECT order_id, ARRAY[note, status] AS a FROM orders ORDER BY a NULLS FIRST, order_id LIMIT 20;
SELECT order_id, ARRAY[[qty], [customer_id]] AS m FROM orders ORDER BY m DESC, order_id LIMIT 10;
SELECT order_id, ARRAY[total, qty] FROM orders WHERE qty > $1 ORDER BY 2, 1 LIMIT 25; -- args: 10
-- Set operations of arms not colocated, and nested ones: the shards return every arm's rows, one Postgres runs the set operations.
SELECT status FROM orders INTERSECT SELECT status FROM orders WHERE qty > 5;
SELECT customer_id FROM orders INTERSECT SELECT customer_id FROM events;
SELECT o.customer_id FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id AND o.qty > 19 EXCEPT SELECT customer_id FROM order_items;
SELECT customer_id FROM orders EXCEPT (SELECT customer_id FROM customers UNION ALL SELECT customer_id FROM order_items);
(SELECT customer_id FROM orders UNION SELECT customer_id FROM order_items) UNION ALL SELECT customer_id FROM customers;
SELECT status, shipped FROM orders EXCEPT ALL SELECT status, shipped FROM orders WHERE qty < 10 ORDER BY 1 NULLS FIRST, 2 NULLS FIRST;
-- ... arms with subqueries each shard answers whole (correlated on the shard key, or over reference tables).
SELECT qty FROM order_items i WHERE i.qty >= (SELECT avg(x.qty) FROM order_items x WHERE x.customer_id = i.customer_id) INTERSECT SELECT qty FROM order_items WHERE customer_id = 12 ORDER BY 1;
SELECT status FROM orders o WHERE EXISTS (SELECT 1 FROM products p WHERE p.product_id = o.qty AND p.price > 50) EXCEPT ALL SELECT status FROM orders WHERE customer_id IN (SELECT customer_id FROM customers WHERE vip);
SELECT customer_id FROM customers c WHERE c.credit >= (SELECT avg(x.credit) FROM customers x WHERE x.customer_id = c.customer_id) EXCEPT SELECT customer_id FROM orders WHERE qty > 15 ORDER BY 1 LIMIT 20;
SELECT qty FROM orders INTERSECT ALL SELECT qty FROM order_items ORDER BY 1 DESC NULLS LAST LIMIT 7 OFFSET 1;
SELECT * FROM customers WHERE vip EXCEPT SELECT * FROM customers WHERE country = 'JP';
SELECT total::text FROM orders WHERE qty > 15 INTERSECT SELECT note FROM orders UNION ALL SELECT kind FROM events WHERE kind LIKE 'p%';
SELECT customer_id FROM orders WHERE qty > $1 INTERSECT SELECT customer_id FROM order_items WHERE qty > $2 ORDER BY 1 LIMIT $3; -- args: 10 15 5
-- Window functions: the shards return the values they read, one Postgres runs the windows over all rows.
SELECT order_id, row_number() OVER (ORDER BY order_id) FROM orders;
SELECT order_id, sum(total) OVER () FROM orders;
SELECT order_id, rank() OVER (PARTITION BY status ORDER BY total, order_id) FROM orders;
SELECT order_id, lag(total) OVER (ORDER BY order_id), lead(status, 2, 'none') OVER (ORDER BY order_id) FROM orders;
SELECT order_id, ntile(4) OVER (ORDER BY total, order_id) FROM orders;
SELECT stream, seq, count(*) OVER (PARTITION BY kind) FROM events;
SELECT order_id, total, sum(total) OVER (PARTITION BY customer_id ORDER BY order_id ROWS BETWEEN 2 PRECEDING AND CURRENT ROW) AS running FROM orders ORDER BY running DESC NULLS LAST, order_id LIMIT 10;
SELECT order_id, row_number() OVER (ORDER BY total DESC NULLS LAST, order_id) AS rn FROM orders WHERE qty > 5 ORDER BY rn LIMIT 5 OFFSET 2;
SELECT status, count(*), rank() OVER (ORDER BY count(*) DESC, status) FROM orders GROUP BY status;
SELECT status, sum(total) * 100 / sum(sum(total)) OVER () AS pct FROM orders GROUP BY status HAVING count(*) > 1 ORDER BY status NULLS FIRST;
SELECT DISTINCT status, count(*) OVER (PARTITION BY status) FROM orders ORDER BY 1 NULLS FIRST;
SELECT customer_id, first_value(order_id) OVER (PARTITION BY customer_id ORDER BY created_at, order_id) FROM orders WHERE customer_id < 40 ORDER BY 1, 2;
SELECT order_id, percent_rank() OVER (ORDER BY qty), cume_dist() OVER (ORDER BY qty), dense_rank() OVER (ORDER BY qty) FROM orders WHERE customer_id % 5 = 0;
SELECT row_number() OVER () IS NOT NULL FROM orders WHERE qty > 17;
SELECT order_id, count(*) FILTER (WHERE shipped) OVER (ORDER BY order_id) FROM orders WHERE qty = $1; -- args: 4
SELECT order_id, avg(qty) OVER (PARTITION BY status), note FROM orders WHERE note LIKE '%"%' OR note LIKE '%\%' OR note = '' OR note IS NULL;
SELECT status, string_agg(note, ',' ORDER BY order_id) AS notes, count(*) OVER () FROM orders WHERE qty > 16 GROUP BY status ORDER BY 1 NULLS FIRST;
SELECT qty % 3 AS m, stddev(total), rank() OVER (ORDER BY qty % 3 DESC) FROM orders GROUP BY 1 ORDER BY 1;
SELECT order_id, ARRAY[qty, customer_id] AS a, lag(ARRAY[note]) OVER (ORDER BY order_id) FROM orders WHERE qty > 18 ORDER BY order_id;
-- Expressions over aggregates: Postgres evaluates them over the merged aggregates (an Evaluate node).
SELECT sum(total) * 2 FROM orders;
SELECT count(*) + 1 FROM orders;
SELECT status, sum(qty)::numeric / count(*) FROM orders GROUP BY status;
SELECT max(total) - min(total) FROM orders;
SELECT status, sum(total) FROM orders GROUP BY status ORDER BY sum(total) * 2, status;
SELECT status, round(avg(total), 2) AS a, count(*) * 100.0 / 7 FROM orders GROUP BY status ORDER BY a DESC NULLS LAST, status;
SELECT coalesce(max(total), 0), coalesce(sum(discount), -1) FROM orders WHERE qty > 1000;
SELECT avg(total)::int, sum(qty)::float8 / nullif(count(qty), 0) FROM orders;
SELECT status, round(avg(total), 3)::numeric(12,2) AS a, (count(*) * 1.5)::numeric(8,1), max(status)::varchar(3) FROM orders GROUP BY status ORDER BY a, status NULLS FIRST;
SELECT upper(status) || ':' || count(*) AS label FROM orders GROUP BY status ORDER BY label;
SELECT status, length(status) + count(*) FROM orders GROUP BY status ORDER BY 1 NULLS FIRST;
SELECT shipped, CASE WHEN count(*) > 100 THEN 'many' WHEN shipped THEN 'few shipped' ELSE 'few' END FROM orders GROUP BY shipped;
SELECT status, greatest(max(qty), 10), least(min(total), 100) FROM orders GROUP BY status ORDER BY status NULLS LAST;
SELECT status, count(*) FILTER (WHERE shipped)::numeric / count(*) AS share FROM orders GROUP BY status ORDER BY share DESC, status;
SELECT status, count(*) FROM orders GROUP BY status HAVING sum(total) > 2 * min(total) + 1000 ORDER BY status;
SELECT status, count(*) FROM orders GROUP BY status HAVING avg(qty) BETWEEN 9 AND 11 OR count(*) < 20 ORDER BY status;
SELECT customer_id % 7 AS k, count(*) FROM orders GROUP BY 1 HAVING count(*) % 2 = 0 ORDER BY max(total) - min(total) DESC, k;
SELECT status, count(*) FROM orders GROUP BY status HAVING bool_or(shipped) AND max(note) IS NOT NULL ORDER BY 1;
SELECT status, sum(total) / count(DISTINCT customer_id) FROM orders GROUP BY status ORDER BY status;
SELECT count(DISTINCT qty) * 2, sum(DISTINCT qty) + 1, avg(DISTINCT qty) - 1 FROM orders;
SELECT c.country, round(sum(o.total) / count(*), 3) FROM customers c JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.country ORDER BY c.country NULLS FIRST;
SELECT date_trunc('month', created_at) AS m, to_char(sum(total), 'FM999999990.00') FROM orders GROUP BY 1 ORDER BY 1 NULLS LAST LIMIT 5;
SELECT kind, sum(amount) / nullif(count(amount), 0) FROM events GROUP BY kind ORDER BY kind NULLS FIRST;
SELECT status, count(*) * $1 FROM orders GROUP BY status HAVING sum(qty) > $2 ORDER BY status; -- args: 3 100
SELECT DISTINCT count(*) % 3 FROM orders GROUP BY customer_id ORDER BY 1;
SELECT status, count(*) / 0 FROM orders WHERE false GROUP BY status;
SELECT shipped, count(DISTINCT status) FROM orders GROUP BY shipped ORDER BY shipped;
SELECT status, bool_and(shipped), bool_or(shipped) FROM orders GROUP BY status ORDER BY status;
SELECT kind, count(*), sum(amount), avg(amount), min(amount), max(amount) FROM events GROUP BY kind ORDER BY kind;
SELECT stream, count(*), max(seq) FROM events GROUP BY stream ORDER BY stream;
SELECT stream, count(*) FROM events GROUP BY stream ORDER BY count(*) DESC, stream LIMIT 3;
SELECT customer_id, count(*) FROM events GROUP BY customer_id ORDER BY customer_id NULLS FIRST;
SELECT status, count(*) FROM orders WHERE false GROUP BY status;
SELECT status, count(*) FROM orders WHERE customer_id IN (7, 8, 9, 300) GROUP BY status ORDER BY status;
SELECT qty, count(*) FROM orders GROUP BY qty ORDER BY qty NULLS FIRST;
SELECT discount, count(*) FROM orders GROUP BY discount ORDER BY discount;
SELECT amount, count(*) FROM events GROUP BY amount ORDER BY count(*) DESC, amount NULLS FIRST LIMIT 10;
SELECT count(*), status FROM orders GROUP BY status ORDER BY 2;
SELECT product_id, sum(qty), count(*) FROM order_items GROUP BY product_id ORDER BY product_id NULLS LAST;
SELECT note, count(*) FROM orders GROUP BY note ORDER BY note NULLS FIRST;

-- DISTINCT and DISTINCT ON.
SELECT DISTINCT status FROM orders;
SELECT DISTINCT status FROM orders ORDER BY status;
SELECT DISTINCT country FROM customers ORDER BY country NULLS FIRST;
SELECT DISTINCT status, shipped FROM orders ORDER BY 1, 2;
SELECT DISTINCT customer_id FROM orders ORDER BY 1;
SELECT DISTINCT name FROM customers;
SELECT DISTINCT qty FROM orders ORDER BY qty DESC NULLS LAST;
SELECT DISTINCT discount FROM orders;
SELECT DISTINCT kind FROM events ORDER BY kind;
SELECT DISTINCT signup FROM customers ORDER BY signup LIMIT 5;
SELECT DISTINCT qty FROM orders ORDER BY qty LIMIT 5;
SELECT DISTINCT status FROM orders WHERE false;
SELECT DISTINCT ON (customer_id) customer_id, order_id, total FROM orders ORDER BY customer_id, total DESC NULLS LAST, order_id;
SELECT DISTINCT ON (status) status, order_id FROM orders ORDER BY status, created_at, order_id;
SELECT DISTINCT ON (country) country, customer_id, name FROM customers ORDER BY country NULLS FIRST, customer_id;
SELECT DISTINCT ON (kind) kind, stream, seq FROM events ORDER BY kind, at DESC, stream, seq;
SELECT DISTINCT ON (qty) qty, order_id FROM orders ORDER BY qty, order_id DESC LIMIT 5;
SELECT DISTINCT ON (stream) stream, seq, kind FROM events ORDER BY stream, seq DESC;

-- IN-lists spanning shards.
SELECT * FROM customers WHERE customer_id IN (1, 100, 200, 300, 400);
SELECT * FROM customers WHERE customer_id IN (1, 100, 200, 300, 400) ORDER BY customer_id DESC;
SELECT * FROM events WHERE stream IN ('acct-1', '日本-3', 'zz-9', 'Straße-2', '🎉-4') ORDER BY stream, seq;
SELECT customer_id, count(*) FROM orders WHERE customer_id IN (7, 8, 9, 10, 11, 12) GROUP BY customer_id ORDER BY customer_id;
SELECT DISTINCT status FROM orders WHERE customer_id IN (5, 50, 500, 150) ORDER BY status;
SELECT * FROM orders WHERE customer_id = ANY ('{3, 30, 130, 230, 330}') ORDER BY order_id;
SELECT count(*) FROM orders WHERE customer_id NOT IN (7, 8);

-- Joins: colocated (same strategy, on the shard key) and with the reference table.
SELECT o.order_id, i.line, i.qty FROM orders o JOIN order_items i ON i.customer_id = o.customer_id AND i.order_id = o.order_id;
SELECT o.order_id, i.line, i.qty FROM orders o JOIN order_items i ON i.customer_id = o.customer_id AND i.order_id = o.order_id ORDER BY o.order_id, i.line;
SELECT c.customer_id, o.order_id FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id ORDER BY c.customer_id, o.order_id NULLS FIRST;
SELECT c.country, count(o.order_id) FROM customers c JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.country ORDER BY 1 NULLS FIRST;
SELECT c.name, o.total, o.order_id FROM customers c JOIN orders o USING (customer_id) WHERE o.total > 900 ORDER BY o.total DESC, o.order_id;
SELECT i.order_id, i.line, p.name FROM order_items i JOIN products p ON p.product_id = i.product_id ORDER BY i.order_id, i.line;
SELECT i.order_id, i.line, p.name FROM order_items i LEFT JOIN products p ON p.product_id = i.product_id WHERE p.product_id IS NULL;
SELECT o.status, p.category, sum(i.qty) FROM orders o JOIN order_items i ON i.customer_id = o.customer_id AND i.order_id = o.order_id JOIN products p ON p.product_id = i.product_id GROUP BY 1, 2 ORDER BY 1, 2;
SELECT o.status, count(i.line), sum(i.qty * i.price) FROM orders o JOIN order_items i ON i.customer_id = o.customer_id AND i.order_id = o.order_id GROUP BY o.status ORDER BY 1;
SELECT p.category, sum(i.qty) FROM order_items i JOIN products p USING (product_id) GROUP BY p.category ORDER BY p.category NULLS FIRST;
SELECT c.customer_id, c.name, count(o.order_id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.customer_id, c.name ORDER BY count(o.order_id) DESC, c.customer_id LIMIT 10;
SELECT c.customer_id, o.order_id FROM customers c JOIN orders o ON o.customer_id = c.customer_id WHERE c.customer_id IN (7, 150, 390) ORDER BY 1, 2;
SELECT DISTINCT p.name FROM order_items i JOIN products p ON p.product_id = i.product_id WHERE i.customer_id = 7 ORDER BY 1;

-- Subqueries correlated on the shard key: they read only the enclosing row's
-- shard, so their aggregates, LIMIT and DISTINCT run whole there.
SELECT order_id FROM orders o WHERE total > (SELECT avg(total) FROM orders o2 WHERE o2.customer_id = o.customer_id);
SELECT o.customer_id, o.order_id, (SELECT max(qty) FROM order_items i WHERE i.customer_id = o.customer_id AND i.order_id = o.order_id) AS mq FROM orders o ORDER BY o.customer_id, o.order_id LIMIT 40;
SELECT count(*) FROM customers c WHERE (SELECT count(*) FROM orders o WHERE o.customer_id = c.customer_id) > 2;
SELECT c.customer_id, (SELECT o.order_id FROM orders o WHERE o.customer_id = c.customer_id ORDER BY o.total DESC NULLS LAST, o.order_id LIMIT 1) AS top FROM customers c;
SELECT count(*) FROM orders o WHERE o.order_id IN (SELECT DISTINCT i.order_id FROM order_items i WHERE i.customer_id = o.customer_id AND i.qty > 2);
SELECT c.country, count(*) FROM customers c WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.customer_id GROUP BY o.status HAVING count(*) > 1) GROUP BY c.country;
SELECT customer_id, order_id FROM orders o WHERE qty = (SELECT max(qty) FROM orders o2 WHERE o2.customer_id = $1 AND o2.customer_id = o.customer_id); -- args: 7

-- key IN (SELECT key ...) of one strategy: a semi-join that stays on each row's shard.
SELECT count(*) FROM orders WHERE customer_id IN (SELECT customer_id FROM customers WHERE vip);
SELECT order_id FROM orders o WHERE o.customer_id NOT IN (SELECT c.customer_id FROM customers c WHERE c.credit > 1000) ORDER BY order_id LIMIT 20;
SELECT c.customer_id, c.customer_id IN (SELECT customer_id FROM orders WHERE qty > 18) AS big FROM customers c ORDER BY 1 LIMIT 30;
SELECT count(*), sum(total) FROM orders WHERE customer_id = ANY (SELECT customer_id FROM order_items WHERE qty = 5) AND status = 'paid';
SELECT status, count(*) FROM orders WHERE customer_id IN (SELECT DISTINCT customer_id FROM customers WHERE country = 'DE') GROUP BY status ORDER BY 1 NULLS FIRST;

-- Aggregates of the subquery's own level (not the outer query's).
SELECT count(*) FROM orders o WHERE total > (SELECT max(p.price) FROM products p WHERE p.price < o.total);
SELECT order_id, (SELECT count(*)) AS one FROM orders WHERE qty > 15;
SELECT order_id FROM orders WHERE total > (SELECT avg(price) FROM products);
SELECT order_id, (SELECT sum(x) FROM (VALUES (o.total), (o.qty)) v(x)) AS s FROM orders o WHERE qty > 15;
SELECT order_id, (SELECT sum(g) FROM generate_series(1, o.qty) g) AS s FROM orders o WHERE qty > 15;
SELECT order_id, (SELECT max(price) FROM (SELECT * FROM products) p) AS m FROM orders WHERE qty > 15;

-- The reference table alone: its rows must come from one shard, never from all.
SELECT * FROM products;
SELECT * FROM products ORDER BY product_id;
SELECT count(*) FROM products;
SELECT category, count(*), sum(price) FROM products GROUP BY 1 ORDER BY 1 NULLS LAST;
SELECT DISTINCT category FROM products;

-- Empty results.
SELECT * FROM orders WHERE false;
SELECT * FROM orders WHERE order_id < 0 ORDER BY order_id;
SELECT customer_id, name FROM customers WHERE name = 'nobody' ORDER BY name, customer_id;
SELECT * FROM events WHERE stream = 'no-such-stream';

-- Range and OR predicates on the shard key (peers routed these to one shard).
SELECT customer_id, name FROM customers WHERE customer_id >= 1;
SELECT order_id FROM orders WHERE customer_id BETWEEN 100 AND 300 ORDER BY order_id;
SELECT customer_id, credit FROM customers WHERE customer_id > 115 AND customer_id < 125 ORDER BY customer_id;
SELECT stream, seq FROM events WHERE stream >= 'f' AND stream < 'h' ORDER BY stream, seq;
SELECT stream, seq FROM events WHERE stream > 'r' ORDER BY stream, seq;
SELECT customer_id, name FROM customers WHERE customer_id = 7 OR customer_id = 300 ORDER BY customer_id;
-- An integer literal beyond int8 compares as numeric: no row, no error.
SELECT customer_id FROM customers WHERE customer_id = 9223372036854775808;
SELECT customer_id FROM customers WHERE customer_id IN (7, -9223372036854775809) ORDER BY customer_id;
SELECT order_id FROM orders WHERE customer_id = 7 OR status = 'paid' ORDER BY order_id;
SELECT count(*) FROM orders WHERE customer_id < 200;
SELECT customer_id, name FROM customers WHERE customer_id = $1 OR customer_id = $2 ORDER BY customer_id; -- args: 7 300
SELECT order_id, status FROM orders WHERE customer_id IN ($1, $2) AND status = $3 ORDER BY order_id; -- args: 7 250 paid
SELECT order_id FROM orders WHERE customer_id >= $1 ORDER BY order_id LIMIT $2; -- args: 390 20

-- UNION ALL of SELECTs over sharded tables: a concatenation.
SELECT customer_id FROM orders WHERE qty > 18 UNION ALL SELECT customer_id FROM order_items WHERE qty = 5;
SELECT stream AS s FROM events WHERE kind = 'paid' UNION ALL SELECT status FROM orders WHERE qty = 1;

-- UNION and ORDER BY / LIMIT over UNION [ALL]: each shard runs the whole
-- statement; the proxy merges the sorted streams, removes duplicates across
-- shards and applies the LIMIT.
SELECT status FROM orders UNION SELECT kind FROM events;
SELECT customer_id FROM orders UNION ALL SELECT customer_id FROM customers ORDER BY 1;
SELECT customer_id, status FROM orders WHERE qty > 15 UNION SELECT customer_id, country FROM customers ORDER BY 2 DESC NULLS LAST, 1 LIMIT 25 OFFSET 5;
SELECT o.customer_id AS k FROM orders o UNION SELECT i.customer_id FROM order_items i WHERE i.qty = 5 ORDER BY k DESC LIMIT 10;
SELECT stream AS s FROM events UNION ALL SELECT status FROM orders UNION ALL SELECT name FROM customers ORDER BY s NULLS FIRST LIMIT 30;
SELECT total FROM orders WHERE customer_id = 7 UNION SELECT credit FROM customers WHERE customer_id < 50;
SELECT customer_id FROM orders UNION SELECT customer_id FROM order_items ORDER BY 1 LIMIT $1 OFFSET $2; -- args: 5 3

-- INTERSECT and EXCEPT whose arms select the shard key of one strategy:
-- every row's occurrences are on its key's shard.
SELECT customer_id FROM orders INTERSECT SELECT customer_id FROM order_items;
SELECT customer_id FROM customers EXCEPT SELECT customer_id FROM orders;
SELECT customer_id, status FROM orders INTERSECT ALL SELECT customer_id, status FROM orders WHERE qty > 5 ORDER BY 1, 2 NULLS FIRST LIMIT 20;
SELECT customer_id FROM order_items EXCEPT ALL SELECT customer_id FROM orders WHERE shipped ORDER BY 1 DESC LIMIT 15;
SELECT c.country, c.customer_id FROM customers c EXCEPT SELECT 'DE', o.customer_id FROM orders o WHERE o.qty > 10 ORDER BY 2 LIMIT 25;
-- A user-defined aggregate (schema.sql), gathered like any aggregate the
-- proxy cannot merge itself.
SELECT sum_of(total) FROM orders;
SELECT status, sum_of(qty), count(*) FROM orders GROUP BY status ORDER BY status NULLS FIRST;
SELECT country, sum_of(credit) FROM customers GROUP BY country HAVING sum_of(credit) > 100 ORDER BY 1 NULLS FIRST;
SELECT sum_of(total) / count(*) FROM orders WHERE shipped;
-- Views over sharded tables (schema.sql), read as their queries.
SELECT count(*), sum(total) FROM shipped_orders;
SELECT status, count(*) FROM shipped_orders GROUP BY status ORDER BY status NULLS FIRST;
SELECT order_id, total FROM shipped_orders ORDER BY total DESC NULLS LAST, order_id LIMIT 5;
SELECT count(*), max(amount) FROM big_shipped;
SELECT cust, amount FROM big_shipped WHERE cust = 3 ORDER BY amount;
SELECT DISTINCT status FROM shipped_orders ORDER BY 1 NULLS LAST;
-- Joins on a shard key passed out of a subquery in FROM (or a view read
-- as one): colocated like a join of the tables themselves.
SELECT c.name, s.total FROM customers c JOIN shipped_orders s ON s.customer_id = c.customer_id ORDER BY 1, 2 NULLS FIRST LIMIT 7;
SELECT c.country, count(s.order_id) FROM customers c LEFT JOIN shipped_orders s ON s.customer_id = c.customer_id GROUP BY c.country ORDER BY 1 NULLS FIRST;
SELECT count(*) FROM customers c JOIN big_shipped b ON b.cust = c.customer_id WHERE c.vip;
SELECT count(*), sum(x.qty) FROM (SELECT customer_id, qty FROM orders WHERE qty > 3) x JOIN (SELECT customer_id AS k FROM customers WHERE vip) y ON y.k = x.customer_id;
SELECT count(*) FROM (SELECT customer_id FROM orders) a JOIN (SELECT customer_id FROM order_items) b USING (customer_id);
SELECT c.customer_id, s.n FROM customers c JOIN (SELECT customer_id, order_id AS n FROM orders) s(k, n) ON s.k = c.customer_id ORDER BY 1, 2 LIMIT 9;
SELECT count(*) FROM customers c WHERE c.customer_id IN (SELECT s.customer_id FROM shipped_orders s WHERE s.total > 50);
SELECT count(*) FROM (SELECT customer_id FROM customers) a WHERE EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = a.customer_id AND o.qty > 10);
SELECT count(*) FROM customers c WHERE c.customer_id NOT IN (SELECT s.customer_id FROM (SELECT customer_id FROM orders WHERE qty > 5) s);
SELECT count(*), sum(i.qty) FROM (SELECT * FROM orders WHERE qty > 2) o JOIN order_items i ON i.customer_id = o.customer_id AND i.order_id = o.order_id;
SELECT c.name, count(o.*) FROM (SELECT c.* FROM customers c WHERE c.vip) c LEFT JOIN orders o ON o.customer_id = c.customer_id GROUP BY c.name ORDER BY 1 NULLS FIRST, 2;
-- A key condition on a column a subquery or view passes out routes to
-- that key's shard.
SELECT order_id, total FROM shipped_orders WHERE customer_id = 3 ORDER BY order_id;
SELECT count(*), sum(amount) FROM big_shipped WHERE cust IN (2, 5, 9);
SELECT s.total FROM (SELECT * FROM orders WHERE qty > 1) s WHERE s.customer_id = 4 ORDER BY 1 NULLS LAST;
SELECT count(*) FROM (SELECT customer_id AS k, total FROM orders) s WHERE k = 6 OR k = 7;
-- Partitions of order_items (schema.sql), read by name: routed as
-- order_items, merged across shards, colocated with orders.
SELECT count(*), sum(qty) FROM order_items_first;
SELECT line, count(*), sum(price) FROM order_items_rest GROUP BY line ORDER BY line;
SELECT customer_id, order_id, line, qty FROM order_items_rest WHERE customer_id = 7 ORDER BY order_id, line LIMIT 12;
SELECT o.status, count(*) FROM orders o JOIN order_items_first i ON i.customer_id = o.customer_id AND i.order_id = o.order_id GROUP BY o.status ORDER BY 1 NULLS FIRST;
SELECT product_id, count(*) FROM order_items_rest i JOIN products p USING (product_id) GROUP BY product_id ORDER BY 2 DESC, 1 LIMIT 5;
SELECT count(*) FROM ONLY order_items_first WHERE customer_id IN (3, 7, 11);
-- Keys cast alike to a type that keeps them apart (an integer has one text
-- form) still join colocated.
SELECT count(*), sum(i.qty) FROM orders o JOIN order_items i ON i.customer_id::text = o.customer_id::text AND i.order_id = o.order_id;
SELECT c.country, count(*) FROM customers c JOIN orders o ON o.customer_id::numeric = c.customer_id::numeric GROUP BY 1 ORDER BY 1 NULLS FIRST;
