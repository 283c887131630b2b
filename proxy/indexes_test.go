package proxy_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestIndexAndTypeDDL: statements naming an index reach every shard that
// has it — those of a sharded table's index all of them, an unmapped
// table's the default shard — and a composite type is made on every
// shard, like any type a sharded table may use. Each step was wrong
// before: ALTER INDEX ... RENAME renamed the default shard's copy only
// (the next DROP INDEX then failed), DROP INDEX of an unmapped table's
// index failed on the shards without it, and CREATE TYPE ... AS (...)
// made the type on the default shard alone.
func TestIndexAndTypeDDL(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	// which lists the shards where relation (or, with typ, type) name exists.
	which := func(name string, typ bool) []string {
		t.Helper()
		q := "SELECT count(*) FROM pg_class WHERE relname = $1"
		if typ {
			q = "SELECT count(*) FROM pg_type WHERE typname = $1"
		}
		var on []string
		for _, s := range []string{"s0", "s1"} {
			var n int
			if err := f.Direct(t, s).QueryRow(ctx, q, name).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				on = append(on, s)
			}
		}
		return on
	}
	expect := func(name string, typ bool, want ...string) {
		t.Helper()
		if got := which(name, typ); !slices.Equal(got, want) {
			t.Errorf("%s is on %v; want %v", name, got, want)
		}
	}
	both := []string{"s0", "s1"}

	mustExec(t, c, "CREATE TABLE products (id int PRIMARY KEY, name text)")
	mustExec(t, c, "CREATE TABLE orders (customer_id int, order_id int, status text, note text, PRIMARY KEY (customer_id, order_id))")
	mustExec(t, c, "CREATE INDEX orders_status_idx ON orders (status)")
	mustExec(t, c, "ALTER INDEX orders_status_idx RENAME TO orders_st_idx")
	expect("orders_st_idx", false, both...)
	expect("orders_status_idx", false)
	mustExec(t, c, "REINDEX INDEX orders_st_idx")
	mustExec(t, c, "DROP INDEX orders_st_idx")
	expect("orders_st_idx", false)

	// An unnamed index: its name is the shards' to give; not yet read
	// from their catalogs (the check interval is an hour here), a
	// statement naming it goes to every shard.
	mustExec(t, c, "CREATE INDEX ON orders (note)")
	mustExec(t, c, "ALTER INDEX orders_note_idx SET (fillfactor = 50)")
	for _, s := range both {
		var opts []string
		if err := f.Direct(t, s).QueryRow(ctx, "SELECT reloptions FROM pg_class WHERE relname = 'orders_note_idx'").Scan(&opts); err != nil || !slices.Equal(opts, []string{"fillfactor=50"}) {
			t.Errorf("%s: orders_note_idx options %v, %v; want fillfactor=50", s, opts, err)
		}
	}

	mustExec(t, c, "CREATE TABLE misc (a int)") // unmapped: the default shard's
	mustExec(t, c, "CREATE INDEX misc_a_idx ON misc (a)")
	mustExec(t, c, "ALTER INDEX misc_a_idx RENAME TO misc_b_idx")
	expect("misc_b_idx", false, "s0")
	mustExec(t, c, "COMMENT ON INDEX misc_b_idx IS 'b'")
	mustExec(t, c, "DROP INDEX misc_b_idx")
	expect("misc_b_idx", false)

	mustExec(t, c, "CREATE TYPE pair AS (a int, b text)")
	expect("pair", true, both...)
	mustExec(t, c, "ALTER TYPE pair ADD ATTRIBUTE c int")
	mustExec(t, c, "CREATE TABLE customers (customer_id int PRIMARY KEY, p pair)")
	mustExec(t, c, "INSERT INTO customers VALUES (1, ROW(1, 'x', 2)), (2, ROW(2, 'y', 3)), (3, ROW(3, 'z', 4))")
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE (p).c = (p).a + 1").Scan(&n); err != nil || n != 3 {
		t.Errorf("rows with the new attribute: %d, %v; want 3", n, err)
	}
	mustExec(t, c, "DROP TABLE customers")
	mustExec(t, c, "DROP TYPE pair")
	expect("pair", true)

	// Objects of an unmapped table: DROP and COMMENT ON go to its shard
	// (they failed on the others); schema objects go to every shard (they
	// went to one).
	mustExec(t, c, "ALTER TABLE misc ADD CONSTRAINT misc_a_check CHECK (a > 0)")
	mustExec(t, c, "COMMENT ON CONSTRAINT misc_a_check ON misc IS 'positive'")
	mustExec(t, c, "CREATE POLICY misc_p ON misc USING (a > 1)")
	mustExec(t, c, "COMMENT ON POLICY misc_p ON misc IS 'p'")
	mustExec(t, c, "DROP POLICY misc_p ON misc")
	mustExec(t, c, "CREATE STATISTICS orders_stats ON status, note FROM orders")
	mustExec(t, c, "ALTER STATISTICS orders_stats SET STATISTICS 10")
	mustExec(t, c, "CREATE OPERATOR FAMILY shardproxy_of USING btree")
	// The map names orders and its key: renaming either is refused, and
	// changes nothing.
	for _, q := range []string{"ALTER TABLE orders RENAME TO orders_old", "ALTER TABLE orders RENAME COLUMN customer_id TO cid"} {
		var pe *pgconn.PgError
		if _, err := c.Exec(ctx, q); !errors.As(err, &pe) || pe.Code != "0A000" {
			t.Errorf("%s: %v; want 0A000", q, err)
		}
	}
	expect("orders", false, both...)
	expect("orders_old", false)
	mustExec(t, c, "ALTER TABLE orders RENAME COLUMN note TO remark")
	mustExec(t, c, "CREATE VIEW cheap_products AS SELECT * FROM products WHERE id < 10")
	mustExec(t, c, "ALTER VIEW cheap_products RENAME TO cheap")
	expect("cheap", false, both...)
	mustExec(t, c, "COMMENT ON VIEW cheap IS 'c'")
	mustExec(t, c, "DROP VIEW cheap")
	expect("cheap", false)
	expect("cheap_products", false)
	for _, s := range both {
		var target, families int
		if err := f.Direct(t, s).QueryRow(ctx, `SELECT (SELECT stxstattarget FROM pg_statistic_ext WHERE stxname = 'orders_stats'),
			(SELECT count(*) FROM pg_opfamily WHERE opfname = 'shardproxy_of')`).Scan(&target, &families); err != nil || target != 10 || families != 1 {
			t.Errorf("%s: statistics target %d, operator families %d, %v; want 10 and 1", s, target, families, err)
		}
	}
}

// TestSequenceDDL: pg_dump's way of writing a sharded table's serial
// column (CREATE SEQUENCE, OWNED BY, then the DEFAULT) loads through the
// proxy — the sequence is on every shard, so each shard's inserts draw
// ids — and an unmapped table's serial sequence is changed where the
// table is. Before, the sequence was made on the default shard alone, the
// DEFAULT failed on the other shard, and inserts there had no id.
func TestSequenceDDL(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	for _, q := range []string{
		"CREATE TABLE public.orders (order_id integer NOT NULL, customer_id integer NOT NULL, note text)",
		"CREATE SEQUENCE public.orders_order_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1",
		"ALTER SEQUENCE public.orders_order_id_seq OWNED BY public.orders.order_id",
		"ALTER TABLE ONLY public.orders ALTER COLUMN order_id SET DEFAULT nextval('public.orders_order_id_seq'::regclass)",
	} {
		mustExec(t, c, q)
	}
	for i := 1; i <= 20; i++ {
		mustExec(t, c, "INSERT INTO orders (customer_id) VALUES ($1)", i)
	}
	for _, s := range []string{"s0", "s1"} {
		var rows, ids int
		if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*), count(DISTINCT order_id) FROM orders").Scan(&rows, &ids); err != nil || rows == 0 || ids != rows {
			t.Errorf("%s: %d rows, %d distinct ids, %v; want some rows, each its own id", s, rows, ids, err)
		}
	}

	mustExec(t, c, "CREATE TABLE misc (id serial, a int)") // unmapped: the default shard's
	mustExec(t, c, "ALTER SEQUENCE misc_id_seq RESTART WITH 100")
	mustExec(t, c, "COMMENT ON SEQUENCE misc_id_seq IS 'm'")
	var id int
	if err := c.QueryRow(ctx, "INSERT INTO misc (a) VALUES (1) RETURNING id").Scan(&id); err != nil || id != 100 {
		t.Errorf("misc id %d, %v; want 100", id, err)
	}
	mustExec(t, c, "CREATE SEQUENCE ticket_seq START 10") // standalone: every shard
	for _, s := range []string{"s0", "s1"} {
		var n int
		if err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*) FROM pg_class WHERE relname = 'ticket_seq'").Scan(&n); err != nil || n != 1 {
			t.Errorf("%s: ticket_seq %d, %v; want it there", s, n, err)
		}
	}
	mustExec(t, c, "DROP SEQUENCE ticket_seq")
}

// TestSetvalEveryShard: pg_dump ends a table's data with setval() of its
// serial sequence. Through the proxy it sets every shard's copy, so that
// each shard's next ids follow the restored ones, and the client reads
// one answer, in both protocols. Computed from a sharded table, it is
// refused and changes nothing.
func TestSetvalEveryShard(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\n"})
	ctx := context.Background()
	c := f.Connect(t)
	for _, q := range []string{
		"CREATE TABLE public.orders (order_id integer NOT NULL, customer_id integer NOT NULL, note text)",
		"CREATE SEQUENCE public.orders_order_id_seq AS integer START WITH 1 INCREMENT BY 1 NO MINVALUE NO MAXVALUE CACHE 1",
		"ALTER SEQUENCE public.orders_order_id_seq OWNED BY public.orders.order_id",
		"ALTER TABLE ONLY public.orders ALTER COLUMN order_id SET DEFAULT nextval('public.orders_order_id_seq'::regclass)",
	} {
		mustExec(t, c, q)
	}
	// The restored rows, with their ids.
	for i := 1; i <= 20; i++ {
		mustExec(t, c, "INSERT INTO orders (order_id, customer_id) VALUES ($1, $1)", i)
	}
	lastValues := func() []int64 {
		t.Helper()
		var out []int64
		for _, s := range []string{"s0", "s1"} {
			var v int64
			if err := f.Direct(t, s).QueryRow(ctx, "SELECT last_value FROM orders_order_id_seq").Scan(&v); err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		return out
	}
	rows, err := c.Query(ctx, "SELECT pg_catalog.setval('public.orders_order_id_seq', 20, true)", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(got) != 1 || got[0] != 20 {
		t.Fatalf("setval answered %v, %v; want one row, 20", got, err)
	}
	if v := lastValues(); v[0] != 20 || v[1] != 20 {
		t.Fatalf("shards' sequences at %v after setval(20); want 20 on each", v)
	}
	for i := 1; i <= 20; i++ {
		mustExec(t, c, "INSERT INTO orders (customer_id) VALUES ($1)", i)
	}
	for _, s := range []string{"s0", "s1"} {
		var n, ids, low int
		err := f.Direct(t, s).QueryRow(ctx, "SELECT count(*), count(DISTINCT order_id), count(*) FILTER (WHERE order_id <= 20 AND order_id <> customer_id) FROM orders").Scan(&n, &ids, &low)
		if err != nil || ids != n || low != 0 {
			t.Errorf("%s: %d rows, %d distinct ids, %d new ids among the restored ones, %v", s, n, ids, low, err)
		}
	}

	var v int64
	if err := c.QueryRow(ctx, "SELECT setval($1::regclass, $2)", "orders_order_id_seq", 500).Scan(&v); err != nil || v != 500 {
		t.Fatalf("extended setval: %d, %v", v, err)
	}
	if v := lastValues(); v[0] != 500 || v[1] != 500 {
		t.Fatalf("shards' sequences at %v after setval(500); want 500 on each", v)
	}

	// Read through the proxy, the sequence is its copy furthest along.
	if _, err := f.Direct(t, "s1").Exec(ctx, "SELECT setval('orders_order_id_seq', 700, false)"); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		var last int64
		var called bool
		if err := c.QueryRow(ctx, "SELECT last_value, is_called FROM orders_order_id_seq", mode).Scan(&last, &called); err != nil || last != 700 || called {
			t.Errorf("%v: read %d, %v, %v; want s1's 700, false", mode, last, called, err)
		}
	}
	if _, err := c.Exec(ctx, "SELECT last_value + 1 FROM orders_order_id_seq"); sqlState(err) != "0A000" {
		t.Errorf("an expression over a sharded table's sequence: %v, want 0A000", err)
	}

	_, err = c.Exec(ctx, "SELECT setval('orders_order_id_seq', max(order_id)) FROM orders")
	if sqlState(err) != "0A000" {
		t.Fatalf("setval computed from a sharded table: %v, want 0A000", err)
	}
	if v := lastValues(); v[0] != 500 || v[1] != 700 {
		t.Fatalf("shards' sequences at %v after a refused setval; want 500, 700", v)
	}
}
