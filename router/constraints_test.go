package router

import "testing"

// TestUniqueWithoutKey: a uniqueness constraint on a sharded table that
// leaves out the shard key would hold on each shard alone, so it is
// refused, as is an ON CONFLICT target without the key; with the key, or
// on a reference or unmapped table, they are not.
func TestUniqueWithoutKey(t *testing.T) {
	r, _ := newTestRouter(t)
	refused := map[string]string{
		"CREATE TABLE orders (order_id bigint PRIMARY KEY, customer_id int)":                                                                    "PRIMARY KEY on sharded table orders without its shard key customer_id",
		"CREATE TABLE orders (customer_id int, email text UNIQUE)":                                                                              "UNIQUE constraint on sharded table orders",
		"CREATE TABLE orders (customer_id int, order_id int, PRIMARY KEY (order_id))":                                                           "PRIMARY KEY",
		"CREATE TABLE orders (customer_id int, a int, UNIQUE (a) INCLUDE (customer_id))":                                                        "UNIQUE constraint",
		"ALTER TABLE orders ADD CONSTRAINT o_u UNIQUE (order_id)":                                                                               "UNIQUE constraint",
		"ALTER TABLE public.orders ADD PRIMARY KEY (order_id)":                                                                                  "PRIMARY KEY",
		"ALTER TABLE orders ADD COLUMN code text UNIQUE":                                                                                        "UNIQUE constraint",
		"CREATE UNIQUE INDEX ON orders (order_id)":                                                                                              "unique index on sharded table orders",
		"CREATE UNIQUE INDEX o_i ON orders ((customer_id + 0), order_id)":                                                                       "unique index",
		"CREATE UNIQUE INDEX ON sessions (lower(token))":                                                                                        "shard key token",
		"CREATE TABLE app.audit (id int, at tstzrange, EXCLUDE USING gist (at WITH &&))":                                                        "EXCLUDE constraint on sharded table app.audit",
		"CREATE TABLE app.audit (id int, at tstzrange, EXCLUDE USING gist (id WITH <>, at WITH &&))":                                            "EXCLUDE constraint",
		"INSERT INTO orders (customer_id, email) VALUES (1, 'a') ON CONFLICT (email) DO NOTHING":                                                "ON CONFLICT (email) on sharded table orders without its shard key customer_id",
		"WITH x AS (INSERT INTO orders (customer_id, code) VALUES (1, 'a') ON CONFLICT (code) DO UPDATE SET n = 1 RETURNING 1) SELECT * FROM x": "ON CONFLICT (code)",
	}
	checkRefusals(t, r, refused, []string{
		"CREATE TABLE orders (customer_id int PRIMARY KEY, total int)",
		"CREATE TABLE orders (customer_id int, order_id bigint, PRIMARY KEY (customer_id, order_id), UNIQUE (order_id, customer_id))",
		"ALTER TABLE orders ADD CONSTRAINT o_u UNIQUE (customer_id, order_id)",
		"CREATE UNIQUE INDEX ON orders (order_id, customer_id) WHERE total > 0",
		"CREATE INDEX ON orders (order_id)",
		"CREATE TABLE products (id int PRIMARY KEY, sku text UNIQUE)", // reference
		"CREATE UNIQUE INDEX ON products (sku)",
		"CREATE TABLE notes (id int PRIMARY KEY)", // unmapped
		"CREATE TABLE app.audit (id int, at tstzrange, EXCLUDE USING gist (id WITH =, at WITH &&))",
		"ALTER TABLE orders ADD CONSTRAINT o_pk PRIMARY KEY USING INDEX o_idx",
		"/* shard: s1 */ CREATE UNIQUE INDEX ON orders (order_id)", // hinted: one shard, as asked
		"INSERT INTO orders (customer_id, email) VALUES (1, 'a') ON CONFLICT (email, customer_id) DO NOTHING",
		"INSERT INTO orders (customer_id, email) VALUES (1, 'a') ON CONFLICT ON CONSTRAINT orders_email DO NOTHING",
		"INSERT INTO orders (customer_id, email) VALUES (1, 'a') ON CONFLICT DO NOTHING",
		"INSERT INTO products (id, sku) VALUES (1, 'a') ON CONFLICT (sku) DO NOTHING",
	})
}
