CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE orders (customer_id bigint, order_id bigint, amount numeric(12,2), note text,
  PRIMARY KEY (customer_id, order_id));
CREATE TABLE events (id bigint PRIMARY KEY, kind text, payload text);
CREATE TABLE products (sku bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2));
