-- Differential transactions (proxy/differential_txn_test.go): explicit
-- transaction blocks run statement by statement on the oracle and through
-- the proxy (two_phase_commit: true, three shards). Every statement's
-- outcome must be the oracle's (command tag, columns, rows; or the same
-- SQLSTATE) and so must the transaction status after it; after each block
-- the tables it names must be equal. A block runs from BEGIN / START
-- TRANSACTION to COMMIT / END / ROLLBACK / ABORT (COMMIT AND CHAIN and
-- ROLLBACK TO do not end it); a statement outside a block is a block of
-- its own. A statement the proxy refuses with 0A000 and a hint fails its
-- transaction: both sides then roll back and the tables must be as before.
-- Same format as writes.sql.
--
-- Tables: schema.sql and wallets (as in writes.sql), plus ledger
-- (customer_id, entry, amount, memo), sharded by customer_id, with a
-- PRIMARY KEY DEFERRABLE INITIALLY DEFERRED and UNIQUE (customer_id, memo)
-- DEFERRABLE (initially immediate); and readings (at timestamptz, sensor,
-- value, note), range-sharded by at: before 2024-04-01 on s0, before
-- 2024-08-01 on s1, the rest on s2. Customers 7, 150, 390 are on three
-- shards under the range strategy (1-119 s0, 120-259 s1, 260- s2).

-- One shard, committed: reads see the transaction's own writes.
BEGIN;
UPDATE customers SET credit = credit + 100 WHERE customer_id = 7 RETURNING customer_id, credit;
INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES (5001, 7, 'txn', 12.34, 2) RETURNING order_id, total;
SELECT count(*), sum(total), max(order_id) FROM orders WHERE customer_id = 7;
SELECT credit FROM customers WHERE customer_id = 7;
UPDATE orders SET qty = qty + 1 WHERE customer_id = 7 AND order_id = 5001 RETURNING qty;
DELETE FROM order_items WHERE customer_id = 7 AND line = 3 RETURNING order_id;
SELECT count(*) FROM order_items WHERE customer_id = 7;
COMMIT;

-- One shard, rolled back; a merged read inside it sees its own delete.
BEGIN;
DELETE FROM orders WHERE customer_id = 7 AND order_id < 500 RETURNING order_id;
SELECT count(*) FROM orders WHERE customer_id = 7;
SELECT count(*), sum(total) FROM orders;
SELECT customer_id, count(*) FROM orders WHERE customer_id IN (7, 150, 390) GROUP BY customer_id ORDER BY customer_id;
ROLLBACK;
SELECT count(*), sum(total) FROM orders;

-- Several shards, committed: a transfer, reads of the sum inside.
BEGIN;
UPDATE customers SET credit = credit - 50 WHERE customer_id = 7 RETURNING credit;
UPDATE customers SET credit = credit + 50 WHERE customer_id = 150 RETURNING credit;
SELECT sum(credit), count(*) FROM customers;
SELECT customer_id, credit FROM customers WHERE customer_id IN (7, 150) ORDER BY customer_id;
INSERT INTO customers (customer_id, name, credit) VALUES (5001, 'txn-a', 1), (5002, 'txn-b', 2), (5003, 'txn-c', 3), (12, 'dup?', 0) ON CONFLICT (customer_id) DO NOTHING;
SELECT count(*), sum(credit) FROM customers WHERE customer_id > 5000;
SELECT customer_id, name FROM customers WHERE customer_id >= 5001 ORDER BY customer_id;
COMMIT;

-- Several shards, rolled back.
BEGIN;
DELETE FROM orders WHERE customer_id IN (7, 150, 390) RETURNING customer_id, order_id;
UPDATE events SET amount = 0 WHERE stream IN ('acct-1', 'zz-9', '日本-3') RETURNING stream, seq;
SELECT count(*), sum(total) FROM orders;
SELECT sum(amount), count(amount) FROM events;
INSERT INTO customers (customer_id, name) VALUES (5101, 'gone'), (5102, 'gone'), (5103, 'gone');
SELECT count(*) FROM customers;
ROLLBACK;
SELECT count(*) FROM customers WHERE customer_id > 5100;

-- Keyless writes and the reference table inside a transaction.
BEGIN;
UPDATE orders SET qty = qty + 1 WHERE status = 'paid';
SELECT sum(qty), count(*) FROM orders WHERE status = 'paid';
SELECT status, count(*), sum(qty) FROM orders GROUP BY status ORDER BY status;
UPDATE products SET price = price + 1 WHERE product_id <= 5 RETURNING product_id, price;
SELECT sum(price) FROM products;
SELECT sum(i.qty * p.price) FROM order_items i JOIN products p USING (product_id) WHERE i.customer_id = 7;
SELECT sum(i.qty * p.price) FROM order_items i JOIN products p USING (product_id);
COMMIT;

-- A multi-shard read first, then writes.
BEGIN;
SELECT count(*) FROM events;
UPDATE events SET kind = 'first-read' WHERE stream = 'acct-1' AND seq <= 5;
SELECT kind, count(*) FROM events WHERE kind = 'first-read' GROUP BY kind;
UPDATE events SET kind = 'first-read' WHERE stream = 'zz-9' AND seq <= 5;
SELECT stream, seq, kind FROM events WHERE kind = 'first-read' ORDER BY stream, seq;
COMMIT;

-- Savepoints: rolled back to, released, on shards that joined before and
-- after them.
BEGIN;
UPDATE customers SET name = 'sp0' WHERE customer_id = 7;
SAVEPOINT a;
UPDATE customers SET name = 'sp1' WHERE customer_id = 150;
INSERT INTO orders (order_id, customer_id, status) VALUES (5002, 390, 'sp');
SELECT customer_id, name FROM customers WHERE customer_id IN (7, 150) ORDER BY customer_id;
ROLLBACK TO SAVEPOINT a;
SELECT customer_id, name FROM customers WHERE customer_id IN (7, 150, 390) ORDER BY customer_id;
SELECT count(*) FROM orders WHERE order_id = 5002;
SAVEPOINT b;
UPDATE customers SET name = 'sp2' WHERE customer_id = 390;
RELEASE SAVEPOINT b;
SELECT name FROM customers WHERE customer_id = 390;
COMMIT;

BEGIN;
SAVEPOINT s1;
UPDATE customers SET name = 'late' WHERE customer_id = 150;
ROLLBACK TO s1;
UPDATE customers SET name = 'kept' WHERE customer_id = 390 RETURNING name;
SELECT customer_id, name FROM customers WHERE customer_id IN (150, 390) ORDER BY customer_id;
COMMIT;

BEGIN;
UPDATE wallets SET balance = 1 WHERE customer_id = 7;
SAVEPOINT outer_sp;
UPDATE wallets SET balance = 2 WHERE customer_id = 150;
SAVEPOINT inner_sp;
UPDATE wallets SET balance = 3 WHERE customer_id IN (7, 150, 390);
SELECT customer_id, wallet_id, balance FROM wallets WHERE customer_id IN (7, 150, 390) ORDER BY 1, 2;
ROLLBACK TO SAVEPOINT inner_sp;
SELECT customer_id, wallet_id, balance FROM wallets WHERE customer_id IN (7, 150, 390) ORDER BY 1, 2;
RELEASE SAVEPOINT outer_sp;
SELECT sum(balance) FROM wallets;
ROLLBACK TO SAVEPOINT inner_sp;
ROLLBACK;

-- The same savepoint name twice, and ROLLBACK TO keeps the savepoint.
BEGIN;
SAVEPOINT x;
UPDATE customers SET region_id = 1 WHERE customer_id = 12;
SAVEPOINT x;
UPDATE customers SET region_id = 2 WHERE customer_id = 260;
ROLLBACK TO SAVEPOINT x;
UPDATE customers SET region_id = 3 WHERE customer_id = 150;
ROLLBACK TO SAVEPOINT x;
SELECT customer_id, region_id FROM customers WHERE customer_id IN (12, 150, 260) ORDER BY customer_id;
RELEASE x;
ROLLBACK TO x;
COMMIT;

-- Errors mid-transaction: the rest fails with 25P02 until the end, and
-- COMMIT of a failed transaction answers ROLLBACK.
BEGIN;
UPDATE customers SET name = 'err' WHERE customer_id = 7;
INSERT INTO customers (customer_id, name) VALUES (150, 'duplicate');
SELECT 1;
UPDATE customers SET name = 'after' WHERE customer_id = 390;
SELECT count(*) FROM customers;
COMMIT;

BEGIN;
UPDATE customers SET name = 'err2' WHERE customer_id = 7;
UPDATE customers SET name = 'err2' WHERE customer_id = 150;
UPDATE orders SET qty = qty / (qty - 19) WHERE qty >= 18;
UPDATE customers SET name = 'after' WHERE customer_id = 390;
ROLLBACK;

BEGIN;
INSERT INTO orders (order_id, customer_id, status) VALUES (5003, 7, 'a'), (5003, 150, 'b'), (5003, 390, 'c');
INSERT INTO orders (order_id, customer_id, status) VALUES (5004, 12, 'ok'), (5003, 390, 'dup');
SAVEPOINT too_late;
END;

-- Statements that read no table, first in a transaction, run beside it
-- until a keyed statement picks its shard; an error in one fails the
-- transaction all the same (it did not, in both protocols), and SHOW sees
-- SET LOCAL.
BEGIN;
SELECT 1 + 1 AS two, current_setting('DateStyle');
SELECT 1 / 0;
SELECT 1;
UPDATE customers SET credit = credit + 1 WHERE customer_id = 150 RETURNING credit;
COMMIT;
SELECT credit FROM customers WHERE customer_id = 150;

BEGIN;
SET LOCAL statement_timeout = '7s';
SHOW statement_timeout;
SELECT current_setting('statement_timeout'), 40 + 2 AS answer;
UPDATE customers SET credit = credit + 1 WHERE customer_id = 150 RETURNING credit;
SHOW statement_timeout;
SELECT 'x' || 1 / 0;
UPDATE customers SET credit = credit + 1 WHERE customer_id = 7;
ROLLBACK;

-- An error rolled back to a savepoint: the transaction goes on.
BEGIN;
UPDATE customers SET credit = 1 WHERE customer_id = 7;
SAVEPOINT before_error;
INSERT INTO customers (customer_id) VALUES (150);
SELECT count(*) FROM customers;
ROLLBACK TO SAVEPOINT before_error;
UPDATE customers SET credit = 2 WHERE customer_id = 150;
SELECT customer_id, credit FROM customers WHERE customer_id IN (7, 150) ORDER BY customer_id;
SAVEPOINT second;
UPDATE customers SET credit = credit * 1e12 WHERE customer_id IN (7, 150, 390) AND credit IS NOT NULL;
ROLLBACK TO second;
SELECT sum(credit) FROM customers WHERE customer_id IN (7, 150, 390);
COMMIT;

-- Writes on several shards, then an error on one of them.
BEGIN;
INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) VALUES (7, 5001, 1, 3, 2, 4.5), (150, 5005, 1, 4, 1, 9.999), (390, 5006, 2, 5, 1, 1);
SELECT count(*), sum(price) FROM order_items;
INSERT INTO order_items (customer_id, order_id, line) VALUES (390, 5006, 2);
ROLLBACK;
SELECT count(*), sum(price) FROM order_items;

-- Deferred constraints: checked at COMMIT (PREPARE TRANSACTION on each
-- shard of a cross-shard transaction).
BEGIN;
INSERT INTO ledger (customer_id, entry, amount) VALUES (7, 1, 10);
SELECT count(*) FROM ledger WHERE customer_id = 7 AND entry = 1;
COMMIT;

BEGIN;
INSERT INTO ledger (customer_id, entry, amount) VALUES (7, 901, 1);
INSERT INTO ledger (customer_id, entry, amount) VALUES (150, 1, 1);
INSERT INTO ledger (customer_id, entry, amount) VALUES (390, 902, 1);
SELECT count(*), sum(amount) FROM ledger;
COMMIT;

BEGIN;
INSERT INTO ledger (customer_id, entry, amount) VALUES (150, 903, 1), (150, 903, 2), (7, 903, 3);
UPDATE ledger SET entry = 904 WHERE customer_id = 150 AND entry = 903 AND amount = 2;
SELECT customer_id, entry, amount FROM ledger WHERE entry IN (903, 904) ORDER BY 1, 2;
COMMIT;

BEGIN;
UPDATE ledger SET entry = 3 - entry WHERE customer_id IN (7, 150, 390) AND entry IN (1, 2) RETURNING customer_id, entry;
COMMIT;

BEGIN;
INSERT INTO ledger (customer_id, entry, amount) VALUES (390, 905, 1), (390, 905, 2);
SET CONSTRAINTS ALL IMMEDIATE;
ROLLBACK;

-- SET CONSTRAINTS lasts for the transaction on every shard of it, also
-- on those that join after it (the proxy ran it on one backend only: a
-- duplicate it deferred failed at once, one it made immediate passed).
BEGIN;
INSERT INTO ledger (customer_id, entry, memo) VALUES (150, 920, 'memo-n');
SET CONSTRAINTS ledger_memo DEFERRED;
INSERT INTO ledger (customer_id, entry, memo) VALUES (150, 921, 'memo-n');
ROLLBACK;

BEGIN;
SET CONSTRAINTS ALL DEFERRED;
INSERT INTO ledger (customer_id, entry, memo) VALUES (150, 922, 'memo-x'), (150, 923, 'memo-x');
INSERT INTO ledger (customer_id, entry, memo) VALUES (7, 922, 'memo-x'), (7, 923, 'memo-x');
ROLLBACK;

BEGIN;
INSERT INTO ledger (customer_id, entry, memo) VALUES (7, 924, 'memo-y');
SET CONSTRAINTS ALL IMMEDIATE;
INSERT INTO ledger (customer_id, entry) VALUES (150, 924), (150, 924);
ROLLBACK;

BEGIN;
SET CONSTRAINTS ALL IMMEDIATE;
INSERT INTO ledger (customer_id, entry) VALUES (390, 925), (390, 925);
ROLLBACK;

BEGIN;
INSERT INTO ledger (customer_id, entry, memo) VALUES (390, 908, 'memo-d');
INSERT INTO ledger (customer_id, entry, memo) VALUES (390, 909, 'memo-d');
ROLLBACK;

BEGIN;
INSERT INTO ledger (customer_id, entry, memo) VALUES (390, 910, 'memo-f');
SET CONSTRAINTS ALL DEFERRED;
INSERT INTO ledger (customer_id, entry, memo) VALUES (390, 911, 'memo-f');
COMMIT;

-- TRUNCATE and writes to the reference table, rolled back.
BEGIN;
TRUNCATE ledger;
SELECT count(*) FROM ledger;
INSERT INTO ledger (customer_id, entry, amount) VALUES (7, 1, 1);
UPDATE products SET name = 'rolled back' WHERE product_id = 1;
SELECT name FROM products WHERE product_id = 1;
ROLLBACK;
SELECT count(*), sum(amount) FROM ledger;

-- Writing CTEs, INSERT ... SELECT and upserts reading the transaction's
-- own rows.
BEGIN;
INSERT INTO orders (order_id, customer_id, status, total, qty) VALUES (5010, 150, 'cte', 5, 1), (5011, 390, 'cte', 6, 2);
WITH x AS (UPDATE orders SET qty = qty + 10 WHERE customer_id = 150 AND status = 'cte' RETURNING order_id, qty) SELECT count(*), sum(qty) FROM x;
INSERT INTO order_items (customer_id, order_id, line, product_id, qty, price) SELECT customer_id, order_id, 7, 1, qty, total FROM orders WHERE status = 'cte' RETURNING customer_id, order_id, qty;
SELECT o.order_id, i.line, i.qty FROM orders o JOIN order_items i ON i.customer_id = o.customer_id AND i.order_id = o.order_id WHERE o.status = 'cte' ORDER BY 1, 2;
INSERT INTO orders (order_id, customer_id, qty) VALUES (5010, 150, 1), (5011, 390, 1) ON CONFLICT (customer_id, order_id) DO UPDATE SET qty = orders.qty + EXCLUDED.qty RETURNING order_id, qty;
COMMIT;

-- COMMIT AND CHAIN, ABORT. START TRANSACTION answers its own tag (the
-- proxy answered BEGIN).
START TRANSACTION;
UPDATE customers SET email = 'chain@example.com' WHERE customer_id = 7;
COMMIT AND CHAIN;
UPDATE customers SET email = 'chain@example.com' WHERE customer_id = 150;
SELECT count(*) FROM customers WHERE email = 'chain@example.com';
ABORT;
SELECT customer_id FROM customers WHERE email = 'chain@example.com';

BEGIN;
UPDATE customers SET email = 'chain2@example.com' WHERE customer_id = 390;
ROLLBACK AND CHAIN;
UPDATE customers SET email = 'chain2@example.com' WHERE customer_id = 12;
COMMIT;
SELECT customer_id FROM customers WHERE email = 'chain2@example.com';

-- Empty and read-only transactions.
BEGIN;
COMMIT;
BEGIN READ ONLY;
SELECT count(*) FROM orders WHERE customer_id = 7;
SELECT count(*) FROM orders;
UPDATE customers SET name = 'ro' WHERE customer_id = 7;
ROLLBACK;

-- SET LOCAL and SET inside transactions: replayed on every shard the
-- transaction touches, undone at its end.
BEGIN;
SET LOCAL TimeZone = 'America/St_Johns';
INSERT INTO events (stream, seq, event_id, at) VALUES ('tz-a', 1, '00000000-0000-0000-0000-0000000000a1', '2024-05-01 12:00'), ('acct-1', 30001, '00000000-0000-0000-0000-0000000000a2', '2024-05-01 12:00');
UPDATE events SET at = '2024-06-01 08:00' WHERE stream IN ('zz-9', '日本-3') AND seq = 1 RETURNING stream, at;
SELECT stream, seq, at FROM events WHERE at IN ('2024-05-01 12:00', '2024-06-01 08:00') ORDER BY stream, seq;
COMMIT;
SHOW TimeZone;

BEGIN;
SET DateStyle = 'SQL, DMY';
UPDATE customers SET signup = '03/04/2024' WHERE customer_id IN (7, 150) RETURNING signup;
ROLLBACK;
SHOW DateStyle;
UPDATE customers SET signup = '03/04/2024' WHERE customer_id = 390 RETURNING signup;

-- The timestamptz-keyed table.
BEGIN;
INSERT INTO readings (at, sensor, value, note) VALUES ('2024-03-31 23:59:59.999999+00', 9, 1.5, 'edge'), ('2024-04-01 00:00:00+00', 9, 2.5, 'edge'), ('2024-12-31 23:00:00-05', 9, 3.5, 'edge');
SELECT count(*), sum(value) FROM readings WHERE sensor = 9;
UPDATE readings SET value = value * 2 WHERE at = '2024-04-01 02:00:00+02' RETURNING at, sensor, value;
DELETE FROM readings WHERE at = '2025-01-01 04:00:00+00' AND sensor = 9 RETURNING note;
COMMIT;

BEGIN;
DELETE FROM readings WHERE at < '2024-02-01' RETURNING sensor;
UPDATE readings SET note = 'later' WHERE at >= '2024-10-01';
SELECT count(*), min(at), max(at) FROM readings;
ROLLBACK;

-- Row locks inside a transaction.
BEGIN;
SELECT order_id FROM orders WHERE customer_id = 7 AND qty = 3 ORDER BY order_id FOR UPDATE;
UPDATE orders SET note = 'locked' WHERE customer_id = 7 AND qty = 3;
SELECT customer_id, order_id FROM orders WHERE customer_id IN (150, 390) AND qty = 3 ORDER BY order_id, customer_id FOR UPDATE;
UPDATE orders SET note = 'locked' WHERE customer_id IN (150, 390) AND qty = 3 RETURNING customer_id, order_id;
COMMIT;

-- A REPEATABLE READ transaction may touch one shard only.
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT count(*) FROM orders WHERE customer_id = 7;
UPDATE customers SET name = 'rr' WHERE customer_id = 7;
SELECT name FROM customers WHERE customer_id = 7;
COMMIT;

BEGIN ISOLATION LEVEL REPEATABLE READ;
UPDATE customers SET name = 'rr2' WHERE customer_id = 7;
UPDATE customers SET name = 'rr2' WHERE customer_id = 390;
COMMIT;
