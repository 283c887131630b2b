package proxy_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// Explicit collations on a C database: a statement's own COLLATE clause
// (on a select-list expression, in ORDER BY, GROUP BY, DISTINCT, inside an
// aggregate's argument or a FROM subquery) decides how Postgres compares
// that text, and the proxy must not merge it by its bytes instead. Each
// statement runs through the proxy and on an unsharded oracle holding the
// same rows: the proxy answers what the oracle answers, or refuses with
// 0A000 where it cannot; the statements marked refuse were answered wrongly
// before (the shards' few rows each looked byte-sorted), those marked same
// must not be refused.

const collateBody = `strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  customers: {key: customer_id, strategy: by_customer}
  orders:    {key: customer_id, strategy: by_customer}
default_shard: s0
`

const collateSchema = `CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text, email text);
CREATE TABLE orders (order_id bigint, customer_id bigint, status text);
INSERT INTO customers (customer_id, name, email) VALUES (3001, 'qqa', 'a@x'), (3003, 'QQA', 'B@x'), (3002, 'QQB', 'c@x'), (3004, 'zzz', 'D@x'), (3005, 'Zzz', 'e@x');
INSERT INTO orders VALUES (1, 3001, 'open'), (2, 3002, 'Open'), (3, 3003, 'closed'), (4, 3004, 'Closed'), (5, 3005, 'b')`

type collateCase struct {
	sql     string
	want    string // same: the oracle's answer; refuse: 0A000; either: one or the other
	ordered bool   // compare the rows in order (else as sorted multisets)
}

func collateFixture(t *testing.T) (px, oracle *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	f := startFixture(t, fixtureOptions{Shards: 2, Body: collateBody})
	px = f.Connect(t)
	oracle, err := pgx.Connect(ctx, f.Meta.DSN(f.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oracle.Close(context.Background()) })
	var icu bool
	if err := oracle.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'en-x-icu')`).Scan(&icu); err != nil || !icu {
		t.Skipf("the test servers have no ICU collations (%v)", err)
	}
	for _, c := range []*pgx.Conn{px, oracle} {
		for _, stmt := range strings.Split(collateSchema, ";\n") {
			if _, err := c.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}
	return px, oracle
}

func checkCollateCases(t *testing.T, px, oracle *pgx.Conn, cases []collateCase) {
	t.Helper()
	for _, tc := range cases {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			want, wantCols, err := rowsText(t, oracle, mode, tc.sql)
			if err != nil {
				t.Fatalf("oracle: %s: %v", tc.sql, err)
			}
			got, gotCols, err := rowsText(t, px, mode, tc.sql)
			if err != nil {
				if sqlState(err) == "0A000" && tc.want != "same" {
					continue
				}
				t.Errorf("%s (%v): %v, want %s", tc.sql, mode, err, tc.want)
				continue
			}
			if tc.want == "refuse" {
				t.Errorf("%s (%v): answered %q, want 0A000 (Postgres answers %q)", tc.sql, mode, got, want)
				continue
			}
			if !tc.ordered {
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) || !slices.Equal(gotCols, wantCols) {
				t.Errorf("%s (%v): %q %q, Postgres answers %q %q", tc.sql, mode, gotCols, got, wantCols, want)
			}
		}
	}
}

const inRange = " FROM customers WHERE customer_id BETWEEN 3001 AND 3005"

// TestExplicitCollation: the statements of the bug report and their
// relatives, on a C database where no column has a collation of its own.
func TestExplicitCollation(t *testing.T) {
	px, oracle := collateFixture(t)
	checkCollateCases(t, px, oracle, []collateCase{
		// The report's four wrong answers.
		{sql: `SELECT name` + inRange + ` ORDER BY name COLLATE "en-x-icu" LIMIT 1`, want: "refuse"},
		{sql: `SELECT max(name COLLATE "en-x-icu"), min(name COLLATE "en-x-icu")` + inRange, want: "refuse"},
		{sql: `SELECT count(DISTINCT name COLLATE ci)` + inRange, want: "refuse"},
		{sql: `SELECT lower(min(name)), count(*)` + inRange + ` GROUP BY name COLLATE ci`, want: "refuse"},
		// Relatives: every place the proxy compares text.
		{sql: `SELECT name COLLATE "en-x-icu" AS n` + inRange + ` ORDER BY n LIMIT 1`, want: "refuse"},
		{sql: `SELECT name COLLATE "en-x-icu" AS n` + inRange + ` ORDER BY 1 LIMIT 1`, want: "refuse"},
		{sql: `SELECT name` + inRange + ` ORDER BY lower(name) COLLATE "en-x-icu" DESC LIMIT 1`, want: "refuse"},
		{sql: `SELECT upper(name COLLATE "en-x-icu") AS u` + inRange + ` ORDER BY u LIMIT 1`, want: "refuse"},
		{sql: `SELECT count(*)` + inRange + ` GROUP BY name COLLATE ci`, want: "refuse"},
		{sql: `SELECT DISTINCT name COLLATE ci` + inRange, want: "refuse"},
		{sql: `SELECT count(*) FROM (SELECT DISTINCT name COLLATE ci` + inRange + `) d`, want: "either"},
		{sql: `SELECT DISTINCT ON (name COLLATE ci) customer_id` + inRange + ` ORDER BY name COLLATE ci, customer_id`, want: "refuse"},
		{sql: `SELECT name COLLATE ci FROM customers WHERE customer_id IN (3001, 3002) UNION SELECT name FROM customers WHERE customer_id IN (3003, 3004)`, want: "refuse"},
		{sql: `SELECT name COLLATE ci FROM customers WHERE customer_id IN (3001, 3002) INTERSECT SELECT name FROM customers WHERE customer_id IN (3003, 3004)`, want: "refuse"},
		{sql: `SELECT max(name COLLATE "en-x-icu") AS m` + inRange + ` HAVING max(name COLLATE "en-x-icu") > 'q'`, want: "refuse"},
		{sql: `SELECT lower(name) COLLATE "en-x-icu" AS l, count(*)` + inRange + ` GROUP BY 1 HAVING lower(name) COLLATE "en-x-icu" < 'z'`, want: "refuse"},
		{sql: `SELECT name COLLATE "en-x-icu" AS n, row_number() OVER ()` + inRange + ` ORDER BY n`, want: "refuse"},
		{sql: `SELECT n FROM (SELECT name COLLATE "en-x-icu" AS n` + inRange + `) s ORDER BY n LIMIT 1`, want: "refuse"},
		{sql: `WITH s AS (SELECT name COLLATE "en-x-icu" AS n` + inRange + `) SELECT n FROM s ORDER BY n LIMIT 1`, want: "either", ordered: true},
		{sql: `SELECT max(n) FROM (SELECT name COLLATE "en-x-icu" AS n` + inRange + `) s`, want: "refuse"},

		// What the proxy compares exactly: it must answer.
		{sql: `SELECT name` + inRange + ` ORDER BY name COLLATE "C" LIMIT 2`, want: "same", ordered: true},
		{sql: `SELECT name` + inRange + ` ORDER BY name COLLATE pg_catalog."POSIX" DESC LIMIT 2`, want: "same", ordered: true},
		{sql: `SELECT max(name COLLATE "C"), min(name COLLATE "C")` + inRange, want: "same"},
		{sql: `SELECT max(name), min(name)` + inRange, want: "same"},
		{sql: `SELECT count(DISTINCT name COLLATE "C")` + inRange, want: "same"},
		{sql: `SELECT name COLLATE "C" AS n, count(*)` + inRange + ` GROUP BY 1 ORDER BY 1`, want: "same", ordered: true},
		{sql: `SELECT (name COLLATE "en-x-icu") COLLATE "C" AS n` + inRange + ` ORDER BY n LIMIT 2`, want: "same", ordered: true},
		{sql: `SELECT name` + inRange + ` AND name COLLATE ci = 'QQA' ORDER BY customer_id LIMIT 3`, want: "same", ordered: true},
		{sql: `SELECT length(name COLLATE "en-x-icu") AS l, customer_id` + inRange + ` ORDER BY l, customer_id LIMIT 2`, want: "same", ordered: true},
		{sql: `SELECT string_agg(name, ',' ORDER BY name COLLATE "en-x-icu", customer_id)` + inRange, want: "same"},
		{sql: `SELECT name, rank() OVER (ORDER BY name COLLATE "en-x-icu")` + inRange + ` ORDER BY 2, 1`, want: "same", ordered: true},
		{sql: `SELECT status FROM orders ORDER BY status LIMIT 3`, want: "same", ordered: true},
	})
}

// TestCollatedColumnExact: a column with a collation of its own concerns
// only the result columns that are that column (the shards'
// RowDescriptions name each plain column's table and attribute) or
// expressions the proxy cannot trace: the other columns still merge, and a
// column with a nondeterministic collation is neither grouped nor
// deduplicated by its bytes.
func TestCollatedColumnExact(t *testing.T) {
	px, oracle := collateFixture(t)
	ctx := context.Background()
	for _, c := range []*pgx.Conn{px, oracle} {
		for _, stmt := range []string{
			`ALTER TABLE customers ALTER COLUMN email TYPE text COLLATE "en-x-icu"`,
			`ALTER TABLE orders ADD COLUMN tag text COLLATE ci`,
			// The customers' names: qqa = QQA and zzz = Zzz under ci.
			`UPDATE orders SET tag = 'qqa' WHERE customer_id = 3001`,
			`UPDATE orders SET tag = 'QQB' WHERE customer_id = 3002`,
			`UPDATE orders SET tag = 'QQA' WHERE customer_id = 3003`,
			`UPDATE orders SET tag = 'zzz' WHERE customer_id = 3004`,
			`UPDATE orders SET tag = 'Zzz' WHERE customer_id = 3005`,
			`CREATE VIEW customer_emails AS SELECT customer_id, email, name FROM customers`,
		} {
			if _, err := c.Exec(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", stmt, err)
			}
		}
	}
	checkCollateCases(t, px, oracle, []collateCase{
		// Refused before, although no collated column is compared.
		{sql: `SELECT status FROM orders ORDER BY status LIMIT 3`, want: "same", ordered: true},
		{sql: `SELECT name FROM customers ORDER BY name, customer_id LIMIT 3`, want: "same", ordered: true},
		{sql: `SELECT max(name COLLATE "C"), max(email COLLATE "C") FROM customers`, want: "same"},
		{sql: `SELECT n FROM (SELECT name AS n FROM customers) s ORDER BY n DESC LIMIT 2`, want: "same", ordered: true},
		{sql: `SELECT name FROM customer_emails ORDER BY name LIMIT 2`, want: "same", ordered: true},
		{sql: `SELECT status, count(*) > 0 AS some FROM orders GROUP BY status ORDER BY status`, want: "same", ordered: true},
		{sql: `SELECT DISTINCT status FROM orders`, want: "same"},
		{sql: `SELECT email FROM customers ORDER BY email COLLATE "C" LIMIT 2`, want: "same", ordered: true},
		// The collated columns themselves, and what the proxy cannot trace.
		{sql: `SELECT email FROM customers ORDER BY email LIMIT 2`, want: "refuse"},
		{sql: `SELECT e FROM (SELECT email AS e FROM customers) s ORDER BY e LIMIT 2`, want: "refuse"},
		{sql: `SELECT email FROM customer_emails ORDER BY email LIMIT 2`, want: "refuse"},
		{sql: `SELECT max(email) FROM customers`, want: "refuse"},
		{sql: `SELECT max(name) FROM customers`, want: "refuse"},
		{sql: `SELECT count(DISTINCT tag) FROM orders`, want: "refuse"},
		{sql: `SELECT lower(min(tag)), count(*) FROM orders GROUP BY tag`, want: "refuse"},
		{sql: `SELECT DISTINCT tag FROM orders`, want: "refuse"},
		{sql: `SELECT count(DISTINCT tag COLLATE "C") FROM orders`, want: "same"},
	})
}
