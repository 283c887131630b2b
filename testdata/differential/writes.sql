-- Differential writes (proxy/differential_writes_test.go): each statement
-- runs, in this order, on the oracle and through the proxy; the command
-- tag, the result columns and the RETURNING rows (as a multiset) must be
-- identical, and afterwards so must the contents of every table the
-- statement names. A statement the proxy refuses with 0A000 and a hint is
-- skipped on the oracle and must change nothing; one that fails must fail
-- on both with the same SQLSTATE and change nothing. Same format as
-- queries.sql ("; -- args: a b" gives bind parameters).
--
-- Tables: schema.sql, plus wallets (customer_id, wallet_id, label,
-- balance, tags text[], limits numeric[], attrs jsonb, updated_at), sharded
-- by customer_id, UNIQUE (customer_id, label). Under the range strategy
-- customers 1-119 are on s0, 120-259 on s1, 260- on s2; the directory
-- strategy places customer 7 on s1, 1-5 on s2, 400 on s0, stream acct-1 on
-- s2, 日本-3 on s0, zz-9 on s1. Nothing volatile (now(), random()), and
-- every UPDATE ... FROM matches at most one row per target row (the
-- oracle self-check replays the file on rows in reverse physical order).

-- Point writes by key.
UPDATE customers SET name = name || ' (vip)' WHERE customer_id = 7;
UPDATE orders SET qty = qty + 1 WHERE customer_id = 7 AND order_id % 10 = 3 RETURNING order_id, qty;
UPDATE events SET amount = amount * 2 WHERE stream = 'acct-1' AND seq <= 20 RETURNING seq, amount;
UPDATE customers SET credit = credit + 10 WHERE customer_id = $1 RETURNING customer_id, credit; -- args: 260
UPDATE events SET payload = $2 WHERE stream = $1 AND seq <= 3 RETURNING *; -- args: zz-9 replaced
DELETE FROM orders WHERE customer_id = $1 AND order_id = $2 RETURNING order_id, total; -- args: 7 3
DELETE FROM customers WHERE customer_id = 131 RETURNING customer_id, name, signup;

-- IN lists and arrays spanning shards.
UPDATE customers SET vip = NOT vip WHERE customer_id IN (7, 150, 390) RETURNING customer_id, vip;
DELETE FROM orders WHERE customer_id IN (1, 2, 3, 200, 399) AND status = 'cancelled' RETURNING order_id, customer_id, status;
UPDATE events SET kind = upper(kind) WHERE stream IN ('acct-1', 'zz-9', '日本-3', 'Box-2', 'émile-4') AND kind IS NOT NULL RETURNING stream, seq, kind;
UPDATE orders SET note = 'any-param' WHERE customer_id = ANY ($1::int8[]) AND qty = 4 RETURNING order_id; -- args: {12,390}
DELETE FROM wallets WHERE customer_id IN (11, 111, 222, 333) AND wallet_id = 2 RETURNING customer_id, label, tags;

-- The key written other ways: a router that misreads these writes on the
-- wrong shards or too few of them.
UPDATE customers SET country = 'XX' WHERE customer_id = 3 + 4 RETURNING customer_id;
UPDATE customers SET country = 'YY' WHERE customer_id = '150';
UPDATE customers SET name = 'plus' WHERE customer_id = $1 RETURNING customer_id; -- args: +0150
UPDATE orders SET discount = 0 WHERE NOT (customer_id = 7) AND discount < 0 RETURNING customer_id, order_id;
UPDATE orders SET qty = 0 WHERE customer_id = 7 OR qty = 20 RETURNING customer_id, order_id;
UPDATE orders SET note = 'not true' WHERE (customer_id = 7) IS NOT TRUE AND qty = 8 RETURNING order_id;
UPDATE orders SET note = 'ne any' WHERE customer_id <> ANY (ARRAY[7, 150]) AND qty = 5 RETURNING order_id;
UPDATE events SET kind = 'escaped' WHERE stream = E'acct\x2d1' AND seq < 5 RETURNING seq;
UPDATE events SET kind = 'unicode' WHERE stream = U&'zz\002d9' AND seq < 8 RETURNING seq;
DELETE FROM order_items WHERE (customer_id, line) IN ((7, 1), (150, 2), (390, 1)) AND qty = 5 RETURNING customer_id, order_id, line;
UPDATE customers SET region_id = 9 WHERE customer_id BETWEEN 100 AND 130 RETURNING customer_id;
DELETE FROM customers WHERE customer_id = 400 AND name = 'no such name' RETURNING customer_id;

-- Keyless: every shard.
UPDATE orders SET status = 'archived' WHERE created_at < '2024-01-15' RETURNING order_id, customer_id;
DELETE FROM orders WHERE total IS NULL AND (qty IS NULL OR qty < 5) RETURNING *;
UPDATE order_items SET price = round(price * 1.1, 3) WHERE qty >= 4;
DELETE FROM events WHERE payload = '' RETURNING stream, seq;
UPDATE customers SET signup = signup + 1, email = lower(email) WHERE vip AND signup IS NOT NULL;
UPDATE order_items_rest SET qty = 9 WHERE product_id = 17 RETURNING customer_id, order_id, line;
UPDATE order_items SET line = line + 10 WHERE line = 1 AND product_id = 20 RETURNING customer_id, order_id, line;

-- Subqueries, joins and CTEs on colocated tables (equal customer_id).
UPDATE customers c SET credit = (SELECT COALESCE(sum(o.total), 0) FROM orders o WHERE o.customer_id = c.customer_id) WHERE c.region_id = 3 RETURNING customer_id, credit;
UPDATE orders o SET qty = (SELECT count(*) FROM order_items i WHERE i.customer_id = o.customer_id AND i.order_id = o.order_id) WHERE o.status = 'new';
DELETE FROM orders o WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.customer_id = o.customer_id AND i.order_id = o.order_id) AND o.shipped IS FALSE AND o.qty > 10 RETURNING order_id;
UPDATE orders SET note = 'from-vip' WHERE customer_id IN (SELECT customer_id FROM customers WHERE vip AND country = 'JP');
UPDATE customers SET vip = false WHERE customer_id = 7 OR EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = customers.customer_id AND o.qty = 19) RETURNING customer_id;
WITH s AS (SELECT customer_id, region_id FROM customers) UPDATE orders o SET qty = s.region_id FROM s WHERE s.customer_id = o.customer_id AND o.qty = 17 RETURNING o.order_id, o.qty;
WITH s AS (SELECT customer_id FROM orders WHERE qty = 16) UPDATE wallets SET label = NULL WHERE customer_id IN (SELECT customer_id FROM s) RETURNING customer_id, wallet_id;
UPDATE orders o SET note = c.country FROM customers c WHERE c.customer_id = o.customer_id AND c.country = 'DE' RETURNING o.order_id, o.note;
UPDATE customers c SET credit = s.total FROM (SELECT customer_id, sum(total) AS total FROM orders GROUP BY customer_id) s WHERE s.customer_id = c.customer_id AND c.customer_id IN (12, 150, 300);
DELETE FROM order_items i USING orders o WHERE o.customer_id = i.customer_id AND o.order_id = i.order_id AND o.status = 'returned' RETURNING i.*;
UPDATE orders o SET note = 'no wallet' FROM customers c LEFT JOIN wallets w ON w.customer_id = c.customer_id AND w.wallet_id = 1 WHERE c.customer_id = o.customer_id AND w.customer_id IS NULL AND o.qty = 14 RETURNING o.order_id;

-- The reference table read by writes of sharded tables.
UPDATE order_items i SET price = p.price FROM products p WHERE p.product_id = i.product_id AND i.price IS NULL RETURNING i.customer_id, i.order_id, i.line, i.price;
UPDATE order_items SET qty = qty * 2 WHERE product_id IN (SELECT product_id FROM products WHERE category = 'food');
DELETE FROM order_items WHERE product_id NOT IN (SELECT product_id FROM products) RETURNING customer_id, order_id, line, product_id;
WITH s AS (SELECT name FROM products WHERE product_id = 3) UPDATE customers SET name = s.name FROM s WHERE customer_id = 390 RETURNING customers.name;

-- RETURNING: columns, expressions, *.
UPDATE orders SET total = total * 2 WHERE customer_id IN (150, 390) AND qty > 15 RETURNING *;
UPDATE customers SET credit = credit - 1 WHERE country = 'BR' RETURNING customer_id, credit * 2 AS doubled, upper(name) AS uname, credit IS NULL AS no_credit;
DELETE FROM events WHERE kind = 'refunded' AND amount > 1000 RETURNING *, amount + 1 AS next;
UPDATE orders SET status = 'x' WHERE customer_id = 7 AND order_id < 50 RETURNING order_id, (SELECT name FROM customers c WHERE c.customer_id = orders.customer_id) AS cname;

-- INSERT ... VALUES, one row and rows of several shards.
INSERT INTO customers (customer_id, name, email, country, credit, vip, signup, region_id) VALUES (401, 'New', 'new@example.com', 'FR', 12.50, true, '2024-05-01', 1);
INSERT INTO customers (customer_id, name, credit) VALUES (131, 'back', -1.5), (402, '日本', 0), (-5, '', 99.99) RETURNING *;
INSERT INTO orders (order_id, customer_id, status, total, qty, discount, created_at, shipped, note, ship_date) VALUES
    (3001, 7, 'new', 10.5, 1, 0.5, '2024-07-01 10:00:00+00', false, 'n1', '2024-07-02'),
    (3002, 150, 'new', 20, 2, NULL, '2024-07-01 11:30:00.123456+02', NULL, NULL, NULL),
    (3003, 390, 'paid', 99.99, 3, 1.25, NULL, true, 'ß', '2024-12-31') RETURNING order_id, customer_id, total, created_at;
INSERT INTO orders VALUES (3004, 12, 'new', 1.00, 1, 0, '2024-03-03 03:03:03+00', false, 'no column list', '2024-03-04');
INSERT INTO customers (customer_id, name) VALUES (400 + 7, 'expression key') RETURNING customer_id;
INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) VALUES (7, 3001, 1, 3, 2, 4.5), (150, 3002, 1, 4, 1, 9.999), (150, 3002, 2, NULL, NULL, NULL), (390, 3003, 5, 51, 1, 0.001);
INSERT INTO events (stream, seq, event_id, customer_id, kind, payload, at, amount) VALUES
    ('new-ü', 1, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 401, 'created', 'π', '2024-08-01 00:00:00+00', 1.5),
    ('acct-1', 10001, '00000000-0000-0000-0000-000000000001', NULL, NULL, NULL, NULL, NULL),
    ('日本-3', 10001, 'ffffffff-ffff-ffff-ffff-ffffffffffff', 7, 'noted', '', '2024-02-29 23:59:59.999999+00', -0.5) RETURNING stream, seq, event_id;
INSERT INTO customers (customer_id, name) VALUES ($1, $2), ($3, $4) RETURNING customer_id, name; -- args: -1 negative 410 positive
INSERT INTO events (stream, seq, event_id, kind) VALUES ($1, $2, $3, $4), ($5, $2, $3, $4); -- args: zz-9 10001 11111111-2222-3333-4444-555555555555 paid Box-2
INSERT INTO wallets (customer_id, wallet_id, label, balance, tags, limits, attrs, updated_at) VALUES
    (7, 99, 'extra', 1.5, '{x,"y z",NULL,"a,b"}', '{1.50,NaN,-0.001}', '{"a": [1, 2, {"b": null}], "n": 0}', '2024-01-01 00:00:00+00'),
    (401, 1, NULL, NULL, '{}', NULL, '[]', NULL),
    (150, 99, 'extra', 0, ARRAY['one', 'two'], ARRAY[1, 2.5]::numeric[], jsonb_build_object('k', 'v', 'n', 3), '2024-12-31 23:59:59.5+00') RETURNING *;
INSERT INTO wallets (customer_id, wallet_id) VALUES (7, 80), ('7', 81), (150, 80), ('0390', 80), (-0, 80) RETURNING customer_id, wallet_id;

-- Errors: each must fail alike and change nothing on any shard.
INSERT INTO customers (customer_id, name) VALUES (7, 'duplicate');
INSERT INTO customers (customer_id, name) VALUES (411, 'ok'), (150, 'duplicate'), (-2, 'ok'), (260, 'duplicate');
INSERT INTO orders (order_id, customer_id) VALUES (3005, NULL);
UPDATE orders SET qty = qty / (qty - 19) WHERE qty >= 18;
UPDATE customers SET credit = credit * 1e12 WHERE customer_id IN (7, 150, 390) AND credit IS NOT NULL;
INSERT INTO orders (order_id, customer_id, qty) VALUES (3001, 7, 1), (3001, 7, 2) ON CONFLICT (customer_id, order_id) DO UPDATE SET qty = EXCLUDED.qty;

-- INSERT ... SELECT.
INSERT INTO orders (order_id, customer_id, status, total, qty) SELECT order_id + 100000, customer_id, 'copy', total, qty FROM orders WHERE customer_id = 260 RETURNING order_id, customer_id;
INSERT INTO orders (order_id, customer_id, status, total, qty, note) SELECT order_id + 200000, customer_id, status, total, qty, 'copy2' FROM orders WHERE total > 990;
INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) SELECT o.customer_id, o.order_id, 9, 1, o.qty, o.total FROM orders o WHERE o.note = 'copy2' RETURNING customer_id, order_id;
INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) SELECT 7, 3001, product_id + 10, product_id, 1, price FROM products WHERE product_id <= 3;
INSERT INTO wallets (customer_id, wallet_id, label, balance, tags, attrs) SELECT customer_id, 50, 'from ' || country, credit, ARRAY[country], jsonb_build_object('vip', vip) FROM customers WHERE region_id = 7;
INSERT INTO customers (customer_id, name) SELECT $1, $2 WHERE NOT EXISTS (SELECT 1 FROM customers WHERE customer_id = $1); -- args: 433 parameter
INSERT INTO customers (customer_id, credit) SELECT customer_id, sum(total) FROM orders WHERE customer_id IN (12, 260) GROUP BY customer_id ON CONFLICT (customer_id) DO UPDATE SET credit = EXCLUDED.credit RETURNING customer_id, credit;
INSERT INTO customers (customer_id, name, credit) SELECT customer_id + 1000, name, credit FROM customers WHERE customer_id IN (7, 150);
INSERT INTO wallets (customer_id, wallet_id) SELECT product_id, 90 FROM products WHERE product_id <= 5;

-- ON CONFLICT (every unique constraint includes the key).
INSERT INTO customers (customer_id, name, credit) VALUES (7, 'seven', 1), (150, 'x', 2), (434, 'new', 3) ON CONFLICT (customer_id) DO UPDATE SET credit = customers.credit + EXCLUDED.credit, name = EXCLUDED.name RETURNING customer_id, name, credit;
INSERT INTO customers (customer_id, name) VALUES (7, 'x'), (436, 'y') ON CONFLICT DO NOTHING RETURNING customer_id;
INSERT INTO orders (order_id, customer_id, status) VALUES (3001, 7, 'upsert') ON CONFLICT (customer_id, order_id) DO UPDATE SET status = EXCLUDED.status || '-' || orders.status WHERE orders.shipped IS NOT TRUE RETURNING order_id, status;
INSERT INTO orders (order_id, customer_id, qty) VALUES (3002, 150, 5), (3003, 390, 6), (3006, 12, 7) ON CONFLICT ON CONSTRAINT orders_pkey DO UPDATE SET qty = orders.qty + EXCLUDED.qty RETURNING *;
INSERT INTO orders (order_id, customer_id) VALUES (3001, 7) ON CONFLICT (customer_id, order_id) DO UPDATE SET customer_id = EXCLUDED.customer_id RETURNING customer_id, order_id;
INSERT INTO wallets (customer_id, wallet_id, label, balance, tags) VALUES (7, 100, 'extra', 1, '{upserted}'), (150, 100, 'fresh', 2, NULL) ON CONFLICT (customer_id, label) DO UPDATE SET balance = wallets.balance + EXCLUDED.balance, tags = wallets.tags || EXCLUDED.tags RETURNING wallet_id, label, balance, tags;
INSERT INTO events (stream, seq, event_id, amount) VALUES ('acct-1', 1, '00000000-0000-0000-0000-0000000000aa', 5), ('Box-2', 1, '00000000-0000-0000-0000-0000000000bb', 6) ON CONFLICT (stream, seq) DO UPDATE SET amount = COALESCE(events.amount, 0) + EXCLUDED.amount RETURNING stream, seq, amount;

-- The reference table: every copy must change alike.
INSERT INTO products (product_id, name, category, price, active) VALUES (51, 'new-51', 'tools', 5.00, true), (52, 'ñu-52', NULL, 0.01, NULL) RETURNING *;
UPDATE products SET price = price * 1.05 WHERE category = 'food' RETURNING product_id, price;
UPDATE products SET name = upper(name), active = NOT active WHERE product_id IN (SELECT product_id FROM products ORDER BY price DESC, product_id LIMIT 3);
INSERT INTO products (product_id, name, price) VALUES (51, 'again', 1) ON CONFLICT (product_id) DO UPDATE SET name = EXCLUDED.name || '/' || products.name;
INSERT INTO products (product_id, name, category, price, active) SELECT product_id + 100, name || '-copy', category, price, active FROM products WHERE category = 'tools';
UPDATE products p SET price = p.price + q.price FROM products q WHERE q.product_id = p.product_id + 1 AND p.product_id < 5 RETURNING p.product_id, p.price;
UPDATE products SET price = (SELECT max(total) FROM orders WHERE customer_id = 7) WHERE product_id = 4;
UPDATE products SET active = false WHERE product_id IN (SELECT product_id FROM order_items WHERE qty >= 5);

-- Writing CTEs on one shard.
WITH x AS (UPDATE orders SET qty = qty + 100 WHERE customer_id = 12 RETURNING order_id, qty) SELECT count(*), sum(qty) FROM x;
WITH d AS (DELETE FROM order_items WHERE customer_id = 390 AND line = 2 RETURNING *) SELECT count(*) AS n FROM d;
WITH x AS (UPDATE customers SET credit = 0 WHERE customer_id = 999999 RETURNING *) SELECT count(*) FROM x;
WITH n AS (INSERT INTO orders (order_id, customer_id, status) VALUES (3010, 150, 'cte') RETURNING *) SELECT order_id, status FROM n;

-- SET from expressions: CASE, COALESCE, arithmetic, strings, dates.
UPDATE orders SET status = CASE WHEN total > 500 THEN 'big' WHEN total IS NULL THEN 'unknown' ELSE status END WHERE customer_id IN (7, 390);
UPDATE customers SET name = initcap(replace(name, 'e', 'E')), email = split_part(email, '@', 1) || '@shard.example' WHERE region_id = 5;
UPDATE orders SET total = round(total / 3, 2), discount = discount * -1, qty = abs(qty - 10), note = left(COALESCE(note, '') || '|' || COALESCE(status, '∅'), 12) WHERE shipped IS NULL RETURNING order_id, total, discount, qty, note;
UPDATE order_items SET price = price * qty, qty = NULL WHERE line = 3 AND customer_id IN (7, 12, 390);

-- jsonb, arrays, timestamptz.
UPDATE wallets SET attrs = attrs || '{"tier": "gold"}' WHERE customer_id IN (7, 150, 260) AND jsonb_typeof(attrs) = 'object' RETURNING customer_id, wallet_id, attrs;
UPDATE wallets SET tags = array_append(tags, 'new'), limits = limits || 5.5::numeric WHERE balance > 1500;
UPDATE wallets SET attrs = jsonb_set(attrs, '{n}', to_jsonb(balance)) WHERE attrs ? 'n' AND balance IS NOT NULL;
DELETE FROM wallets WHERE 'closed' = ANY (tags) RETURNING *;
UPDATE wallets SET tags = ARRAY(SELECT DISTINCT u FROM unnest(tags) u WHERE u IS NOT NULL ORDER BY 1), limits = NULL WHERE customer_id IN (12, 13, 14);
UPDATE wallets SET updated_at = updated_at + interval '1 month 2 days', limits[1] = 0, tags[2] = 'second' WHERE attrs @> '{"tier": "gold"}' RETURNING customer_id, updated_at, limits, tags;

-- Session settings the proxy must replay on every shard a write reaches
-- (the tables are read back on other connections, in ISO style).
SET TimeZone = 'America/St_Johns';
UPDATE events SET at = '2024-05-01 12:00' WHERE stream IN ('zz-9', 'acct-1') AND seq = 2 RETURNING stream, at;
UPDATE orders SET ship_date = created_at::date WHERE customer_id IN (7, 150) AND qty = 2 RETURNING ship_date;
INSERT INTO events (stream, seq, event_id, at) VALUES ('tz-1', 1, '00000000-0000-0000-0000-0000000000dd', '2024-03-10 02:30'), ('acct-1', 20001, '00000000-0000-0000-0000-0000000000ee', 'epoch') RETURNING at;
RESET TimeZone;
SET DateStyle = 'SQL, DMY';
UPDATE customers SET signup = '03/04/2024' WHERE customer_id IN (7, 150) RETURNING signup;
INSERT INTO orders (order_id, customer_id, ship_date, created_at) VALUES (7001, 12, '05/06/2024', '05/06/2024 10:00:00 UTC'), (7002, 390, '07/08/2024', NULL) RETURNING ship_date, created_at;
RESET DateStyle;

-- Writes that need rows of other shards, or keys of another strategy: the
-- proxy must refuse them (or run them right); the tables are compared
-- either way.
UPDATE events e SET kind = 'vip' WHERE e.customer_id IN (SELECT customer_id FROM customers WHERE vip);
UPDATE customers SET credit = (SELECT max(total) FROM orders);
UPDATE orders SET note = 'sub7' WHERE qty = (SELECT region_id FROM customers WHERE customer_id = 7);
UPDATE orders SET customer_id = customer_id + 1 WHERE order_id = 3001;
UPDATE orders SET customer_id = 7 WHERE customer_id = 7 AND order_id = 3001 RETURNING customer_id, order_id;

-- CTEs that read sharded tables: their tables meet the rows of the level
-- that names them, so they must be joined to them by equal shard keys,
-- as a subquery in FROM must (the proxy used to run the first five on
-- both customers' shards, each finding one of them).
WITH s AS (SELECT credit FROM customers WHERE customer_id = 150) UPDATE customers SET credit = s.credit FROM s WHERE customer_id = 7 RETURNING customers.credit;
WITH s AS (SELECT region_id FROM customers WHERE customer_id = 150) UPDATE orders SET note = 'cte2' WHERE customer_id = 7 AND qty = (SELECT region_id FROM s) RETURNING order_id;
WITH s AS (SELECT customer_id FROM customers WHERE vip) DELETE FROM events WHERE customer_id IN (SELECT customer_id FROM s) RETURNING stream, seq;
WITH s AS (SELECT customer_id, region_id FROM customers) UPDATE orders o SET note = 'ctej' FROM s WHERE s.region_id = o.qty AND s.customer_id = 12 RETURNING o.order_id;
WITH s AS (SELECT credit FROM customers WHERE customer_id = 150) SELECT c.customer_id, s.credit FROM customers c, s WHERE c.customer_id = 7;
WITH s AS (SELECT customer_id, credit FROM customers) UPDATE orders o SET note = 'cte-joined' FROM s WHERE s.customer_id = o.customer_id AND s.credit > 100 RETURNING o.order_id;
WITH s AS (SELECT customer_id, credit FROM customers WHERE customer_id = 7) UPDATE orders o SET note = 'cte-7' FROM s WHERE s.customer_id = o.customer_id RETURNING o.order_id;

-- Casts that change a key's value: a type modifier truncates
-- ('acct-10'::varchar(6) is 'acct-1', '1500'::varchar(3)::int8 is 150) and
-- bpchar drops trailing blanks. The proxy used to route by the value as
-- written: wrong rows updated, rows stored on another shard than their
-- key's, a duplicate primary key on two shards. Such a predicate no longer
-- narrows the route, and such a key in INSERT VALUES is refused.
UPDATE events SET kind = 'trunc' WHERE stream::varchar(6) = 'acct-1' RETURNING stream, seq;
UPDATE events SET kind = 'trunc2' WHERE stream::varchar(6) IN ('acct-1', 'zz-9') RETURNING stream, seq;
UPDATE events e SET kind = 'prefix' WHERE EXISTS (SELECT 1 FROM events e2 WHERE e2.stream::varchar(4) = e.stream::varchar(4) AND e2.seq = 250) RETURNING stream, seq;
UPDATE events SET kind = 'v10' WHERE stream = 'acct-10'::varchar(6) RETURNING stream, seq;
UPDATE events SET kind = 'v10p' WHERE stream = $1::varchar(6) RETURNING stream, seq; -- args: acct-10
UPDATE events SET kind = 'pad' WHERE stream = 'zz-9  '::char(8) RETURNING stream, seq;
DELETE FROM events WHERE stream = 'Box-2 '::bpchar RETURNING stream, seq;
UPDATE customers SET name = 'vc' WHERE customer_id = '150'::varchar(2)::int8 RETURNING customer_id;
INSERT INTO events (stream, seq, event_id) VALUES ('trunc-12345'::varchar(7), 1, '00000000-0000-0000-0000-000000000002');
INSERT INTO events (stream, seq, event_id) VALUES ('gap-1 '::bpchar, 1, '00000000-0000-0000-0000-000000000003');
INSERT INTO events (stream, seq, event_id) VALUES ($1::varchar(3), 1, '00000000-0000-0000-0000-000000000004'); -- args: abcdef
INSERT INTO customers (customer_id, name) VALUES ('4567'::varchar(3)::int8, 'trunc int');
INSERT INTO customers (customer_id, name) VALUES ('1500'::varchar(3)::int8, 'duplicate of 150');
INSERT INTO events (stream, seq, event_id) VALUES ('zz-9xyz'::varchar(4), 1, '00000000-0000-0000-0000-000000000005');
UPDATE events SET stream = 'acct-1'::varchar(4) WHERE stream = 'acct-1' AND seq = 1 RETURNING stream, seq;
UPDATE customers SET name = 'plain cast' WHERE customer_id = '150'::int8 RETURNING customer_id;

-- Keys no row has: under the directory strategy no shard owns them. Such
-- an UPDATE or DELETE changes nothing, and is described as Postgres
-- describes it (RETURNING columns); the extended protocol refused it
-- (0A000) and the simple one left out the RETURNING description.
DELETE FROM customers WHERE customer_id = 999999;
UPDATE customers SET name = 'x' WHERE customer_id = 999999;
DELETE FROM customers WHERE customer_id = 999999 RETURNING *;
UPDATE customers SET name = 'y' WHERE customer_id = 999998 RETURNING customer_id, name;
DELETE FROM customers WHERE customer_id = $1 RETURNING customer_id; -- args: 999997
UPDATE customers SET name = $2 WHERE customer_id = $1; -- args: 999996 z
DELETE FROM orders WHERE customer_id = 999999 AND no_such_column = 1;
