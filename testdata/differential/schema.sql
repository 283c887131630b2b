-- Schema of the differential suite (proxy/differential_test.go). It runs
-- unchanged on the oracle and, through the proxy, on every shard (DDL is
-- broadcast). customers, orders and order_items are sharded by customer_id
-- with one strategy (colocated), events by its text key stream, products is
-- a reference table. No foreign keys: the shards are independent servers.
-- Statements are separated by ";" at the end of a line.

CREATE TABLE customers (
    customer_id int8 PRIMARY KEY,
    name        text,
    email       text,
    country     text,
    credit      numeric(12,2),
    vip         bool,
    signup      date,
    region_id   int4
);

CREATE TABLE orders (
    order_id    int8 NOT NULL,
    customer_id int8 NOT NULL,
    status      text,
    total       numeric(14,2),
    qty         int4,
    discount    numeric,
    created_at  timestamptz,
    shipped     bool,
    note        text,
    ship_date   date,
    PRIMARY KEY (customer_id, order_id)
);

CREATE TABLE order_items (
    customer_id int8 NOT NULL,
    order_id    int8 NOT NULL,
    line        int4 NOT NULL,
    product_id  int4,
    qty         int4,
    price       numeric(10,3),
    PRIMARY KEY (customer_id, order_id, line)
) PARTITION BY RANGE (line);
-- Partitions of a sharded table are not in the shard map: the proxy
-- routes them as order_items (queries.sql reads them by name).
CREATE TABLE order_items_first PARTITION OF order_items FOR VALUES FROM (MINVALUE) TO (2);
CREATE TABLE order_items_rest PARTITION OF order_items FOR VALUES FROM (2) TO (MAXVALUE);

CREATE TABLE products (
    product_id int4 PRIMARY KEY,
    name       text,
    category   text,
    price      numeric(10,2),
    active     bool
);

CREATE TABLE events (
    stream      text NOT NULL,
    seq         int8 NOT NULL,
    event_id    uuid NOT NULL,
    customer_id int8,
    kind        text,
    payload     text,
    at          timestamptz,
    amount      numeric,
    PRIMARY KEY (stream, seq)
);

-- A user-defined aggregate, called without aggregate syntax: the proxy
-- must read sum_of(x) as an aggregate (it learns CREATE AGGREGATE), not
-- as a scalar function whose per-shard values it would concatenate.
CREATE AGGREGATE sum_of(numeric) (sfunc = numeric_add, stype = numeric);

-- Views over a sharded table: not in the shard map, they would be read on
-- the default shard alone. A SELECT reads them as their query
-- (queries.sql); writes through them are refused (refusals.sql).
CREATE VIEW shipped_orders AS SELECT order_id, customer_id, status, total, qty FROM orders WHERE shipped;
CREATE VIEW big_shipped (cust, amount) AS SELECT customer_id, total FROM shipped_orders WHERE total > 100;
