-- Demo schema for `make run` (bin/shardproxy dev). Loaded on every shard:
-- customers, orders and order_items are sharded by customer_id with one
-- strategy, so a customer's rows are colocated; products is a reference
-- table (a full copy on every shard).

CREATE TABLE customers (
    customer_id bigint PRIMARY KEY,
    name        text,
    email       text
);

CREATE TABLE orders (
    order_id    bigint,
    customer_id bigint,
    status      text,
    total       numeric(12,2),
    created_at  timestamptz DEFAULT now(),
    PRIMARY KEY (customer_id, order_id)
);

CREATE TABLE order_items (
    customer_id bigint,
    order_id    bigint,
    line        int,
    product_id  bigint,
    qty         int,
    price       numeric(12,2),
    PRIMARY KEY (customer_id, order_id, line)
);

CREATE TABLE products (
    product_id bigint PRIMARY KEY,
    name       text,
    price      numeric(12,2)
);
