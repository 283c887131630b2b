package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestRoundedFloats: with extra_float_digits below 1, Postgres prints
// real and double precision values rounded, and so do the shards to the
// proxy. A merge that computes with, compares or evaluates such values
// would then work on rounded numbers where Postgres works on exact ones:
// 1/3 on each of two shards sums to 0.666666666666666 from the shards'
// text, where Postgres prints 0.666666666666667. The proxy refuses those
// merges (0A000 with a hint) and still streams the values themselves.
func TestRoundedFloats(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "two_phase_commit: true\n", Body: `
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  thirds: {key: id, strategy: by_id}
default_shard: s0
`})
	ctx := context.Background()
	admin := f.Connect(t)
	mustExec(t, admin, "CREATE TABLE thirds (id int PRIMARY KEY, x float8, r float4)")
	// One row on each shard: keep the first id of each.
	mustExec(t, admin, "INSERT INTO thirds VALUES (1, 1.0/3, 1.0/3), (2, 1.0/3, 1.0/3), (3, 1.0/3, 1.0/3), (4, 1.0/3, 1.0/3), (5, 1.0/3, 1.0/3)")
	var keep [2]int
	for i, sh := range []string{"s0", "s1"} {
		if err := f.Direct(t, sh).QueryRow(ctx, "SELECT min(id) FROM thirds").Scan(&keep[i]); err != nil {
			t.Fatalf("%s: %v", sh, err)
		}
	}
	mustExec(t, admin, fmt.Sprintf("DELETE FROM thirds WHERE id NOT IN (%d, %d)", keep[0], keep[1]))
	// The oracle: the same rows in one table on one Postgres.
	oracle := f.Direct(t, "s0").PgConn()
	if _, err := oracle.Exec(ctx, "CREATE TABLE thirds_all AS SELECT i AS id, (1.0/3)::float8 AS x, (1.0/3)::float4 AS r FROM generate_series(1, 2) i").ReadAll(); err != nil {
		t.Fatal(err)
	}
	proxy := f.Connect(t).PgConn()

	text := func(c *pgconn.PgConn, sql string) (string, error) {
		res := c.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
		if res.Err != nil {
			return "", res.Err
		}
		if len(res.Rows) != 1 || len(res.Rows[0]) != 1 {
			t.Fatalf("%s: %d rows", sql, len(res.Rows))
		}
		return string(res.Rows[0][0]), nil
	}
	set := func(v string) {
		for _, c := range []*pgconn.PgConn{proxy, oracle} {
			if _, err := c.Exec(ctx, "SET extra_float_digits = "+v).ReadAll(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Default digits: the shards' text is exact, and the merge equals
	// Postgres'.
	for _, q := range []string{"SELECT sum(x) FROM %s", "SELECT avg(x) FROM %s", "SELECT sum(r) FROM %s", "SELECT max(x) FROM %s"} {
		want, err := text(oracle, fmt.Sprintf(q, "thirds_all"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := text(proxy, fmt.Sprintf(q, "thirds"))
		if err != nil || got != want {
			t.Errorf("%s with extra_float_digits 1: %q, %v; Postgres %q", q, got, err, want)
		}
	}

	set("0")
	want, err := text(oracle, "SELECT sum(x) FROM thirds_all")
	if err != nil || want != "0.666666666666667" {
		t.Fatalf("Postgres' sum under extra_float_digits 0: %q, %v", want, err)
	}
	refused := []string{
		"SELECT sum(x) FROM thirds",
		"SELECT avg(x) FROM thirds",
		"SELECT sum(r) FROM thirds",
		"SELECT min(x) FROM thirds",
		"SELECT id FROM thirds ORDER BY x, id",
		"SELECT x, count(*) FROM thirds GROUP BY x",
		"SELECT DISTINCT x FROM thirds",
		"SELECT count(DISTINCT x) FROM thirds",
		"SELECT count(*) FROM thirds HAVING sum(x) > 0.6",
		"SELECT round(sum(x)::numeric, 20) FROM thirds",
		"SELECT id, lag(x) OVER (ORDER BY id) FROM thirds",
	}
	for _, q := range refused {
		_, err := text(proxy, q)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" || !strings.Contains(pgErr.Message, "extra_float_digits") {
			t.Errorf("%s under extra_float_digits 0: %v, want 0A000 for extra_float_digits, with a hint", q, err)
		}
	}
	// Nothing computed: the values stream through as the shards print
	// them, which is what Postgres prints.
	res := proxy.ExecParams(ctx, "SELECT x FROM thirds", nil, nil, nil, nil).Read()
	if res.Err != nil || len(res.Rows) != 2 || string(res.Rows[0][0]) != "0.333333333333333" {
		t.Errorf("SELECT x under extra_float_digits 0: %v %q", res.Err, res.Rows)
	}
	// Binary results: Postgres sends floats exactly whatever the digits;
	// a merged value converted from the shards' rounded text would not be.
	res = proxy.ExecParams(ctx, "SELECT x FROM thirds ORDER BY id", nil, nil, nil, []int16{1}).Read()
	var pgErr *pgconn.PgError
	if !errors.As(res.Err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
		t.Errorf("binary merged float8 under extra_float_digits 0: %v, want 0A000 with a hint", res.Err)
	}
	// The session goes on; at the default again, the sum merges.
	set("1")
	if got, err := text(proxy, "SELECT sum(x) FROM thirds"); err != nil || got != "0.6666666666666666" {
		t.Errorf("sum after SET extra_float_digits = 1: %q, %v", got, err)
	}

	// SET LOCAL, for the transaction only: sent alone, or in one Query
	// with BEGIN (which also has shards that join later replay it). A
	// set_config(..., true) already keeps other shards from joining.
	for _, local := range []string{"BEGIN; SET LOCAL extra_float_digits = 0", "BEGIN", "SET LOCAL extra_float_digits = -1",
		"BEGIN; SELECT set_config('extra_float_digits', '-2', true)"} {
		if _, err := proxy.Exec(ctx, local).ReadAll(); err != nil {
			t.Fatalf("%s: %v", local, err)
		}
		if local == "BEGIN" {
			continue
		}
		_, err := text(proxy, "SELECT sum(x) FROM thirds")
		want := "extra_float_digits"
		if strings.Contains(local, "set_config") {
			want = "cannot join"
		}
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || !strings.Contains(pgErr.Message, want) {
			t.Errorf("sum after %s: %v, want 0A000 (%s)", local, err, want)
		}
		if _, err := proxy.Exec(ctx, "ROLLBACK").ReadAll(); err != nil {
			t.Fatal(err)
		}
		if got, err := text(proxy, "SELECT sum(x) FROM thirds"); err != nil || got != "0.6666666666666666" {
			t.Errorf("sum after the transaction of %s: %q, %v", local, got, err)
		}
	}
}

// TestSetLocalInBatchReplayed: a SET LOCAL sent in one Query with other
// statements (here with BEGIN) reaches the shards that join the
// transaction later, as one sent alone does.
func TestSetLocalInBatchReplayed(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "two_phase_commit: true\n", Body: `
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  spread: {key: id, strategy: by_id}
default_shard: s0
`})
	ctx := context.Background()
	admin := f.Connect(t)
	mustExec(t, admin, "CREATE TABLE spread (id int PRIMARY KEY)")
	mustExec(t, admin, "INSERT INTO spread VALUES (1), (2), (3), (4), (5), (6), (7), (8)")
	if directCount(t, f, "s0", "spread", "true") == 0 || directCount(t, f, "s1", "spread", "true") == 0 {
		t.Fatal("want rows on both shards")
	}
	proxy := f.Connect(t).PgConn()
	for _, batch := range []string{"BEGIN; SET LOCAL application_name = 'batched'", "BEGIN; SELECT 1; SET LOCAL application_name = 'batched'"} {
		if _, err := proxy.Exec(ctx, batch).ReadAll(); err != nil {
			t.Fatalf("%s: %v", batch, err)
		}
		res := proxy.ExecParams(ctx, "SELECT DISTINCT current_setting('application_name') FROM spread", nil, nil, nil, nil).Read()
		if res.Err != nil {
			t.Fatalf("%s, then a statement on both shards: %v", batch, res.Err)
		}
		if len(res.Rows) != 1 || string(res.Rows[0][0]) != "batched" {
			var got []string
			for _, r := range res.Rows {
				got = append(got, string(r[0]))
			}
			t.Errorf("%s: the shards' application_name is %q, want only \"batched\"", batch, got)
		}
		if _, err := proxy.Exec(ctx, "COMMIT").ReadAll(); err != nil {
			t.Fatal(err)
		}
	}
}
