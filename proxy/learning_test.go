package proxy_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestLearnedAtCommit: the router learns what DDL through the proxy
// creates and drops when it analyses it, and holds a created view or
// function until the shards' catalogs show it. It let go at the first
// health check, even one that ran before the DDL's transaction committed:
// a view made in a transaction that outlived a check was then unknown
// after COMMIT, and read as an unmapped table, on the default shard alone
// (a count of one shard's rows, silently), until the next check. A DROP
// VIEW that failed (a view depends on it) or was rolled back left the view
// unknown the same way. Now nothing made is let go while a transaction
// that made something is open, and the session reads the shards' catalogs
// when what it learned may be wrong (an error, a rollback) or incomplete
// (a view made with *), before its next statement.
func TestLearnedAtCommit(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 1h\ntwo_phase_commit: true\n"})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE orders (customer_id int PRIMARY KEY, total int)")
	for i := 1; i <= 20; i++ {
		mustExec(t, c, "INSERT INTO orders VALUES ($1, $2)", i, i*10)
	}
	if directCount(t, f, "s0", "orders", "true") == 20 {
		t.Fatal("want rows on both shards")
	}
	count := func(sql string, want int64) {
		t.Helper()
		var n int64
		if err := c.QueryRow(ctx, sql).Scan(&n); err != nil || n != want {
			t.Errorf("%s: %d, %v; want %d", sql, n, err, want)
		}
	}
	refused := func(c *pgx.Conn, sql string) {
		t.Helper()
		_, err := c.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "0A000" || pgErr.Hint == "" {
			t.Errorf("%s: %v; want 0A000 with a hint", sql, err)
		}
	}
	// inTx runs stmts in one transaction with a health check of every
	// shard between them and COMMIT, in the simple protocol (pgx Exec
	// without arguments) or the extended one (pgconn.ExecParams).
	inTx := func(extended bool, stmts ...string) {
		t.Helper()
		for _, sql := range append(append([]string{"BEGIN"}, stmts...), "COMMIT") {
			if sql == "COMMIT" {
				f.Server.CheckShardsNow(ctx)
			}
			var err error
			if extended {
				err = c.PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read().Err
			} else {
				_, err = c.Exec(ctx, sql)
			}
			if err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
	}

	// Made in a transaction that a health check ran in.
	inTx(false, "CREATE VIEW v_simple AS SELECT customer_id, total FROM orders")
	count("SELECT count(*) FROM v_simple", 20)
	inTx(true, "CREATE VIEW v_extended AS SELECT customer_id, total FROM orders WHERE total > 50")
	count("SELECT count(*) FROM v_extended", 15)
	inTx(false, "CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM orders'")
	refused(c, "SELECT order_count()") // its body would count one shard's rows
	// A later check still knows them (the catalogs now show them).
	f.Server.CheckShardsNow(ctx)
	count("SELECT count(*) FROM v_simple", 20)
	refused(c, "SELECT order_count()")

	// A DROP VIEW that fails, or is rolled back, leaves the view known.
	mustExec(t, c, "CREATE VIEW v_over AS SELECT customer_id FROM v_simple")
	if _, err := c.Exec(ctx, "DROP VIEW v_simple"); err == nil {
		t.Fatal("DROP VIEW v_simple succeeded; want it to fail (v_over depends on it)")
	}
	count("SELECT count(*) FROM v_simple", 20)
	count("SELECT count(*) FROM v_over", 20)
	mustExec(t, c, "BEGIN")
	mustExec(t, c, "DROP VIEW v_simple CASCADE")
	mustExec(t, c, "ROLLBACK")
	count("SELECT count(*) FROM v_simple", 20)
	count("SELECT count(*) FROM v_over", 20)
	mustExec(t, c, "BEGIN")
	mustExec(t, c, "SAVEPOINT a")
	mustExec(t, c, "DROP VIEW v_over")
	mustExec(t, c, "ROLLBACK TO a")
	mustExec(t, c, "COMMIT")
	count("SELECT count(*) FROM v_over", 20)
	// One that commits is gone: the name may become an unmapped table.
	mustExec(t, c, "DROP VIEW v_over")
	mustExec(t, c, "CREATE TABLE v_over (n int)")
	count("SELECT count(*) FROM v_over", 0)

	// A view made with * is known when its transaction ends: within it,
	// reading it is refused (its columns are the catalog's to spell out).
	mustExec(t, c, "BEGIN")
	mustExec(t, c, "CREATE VIEW v_star AS SELECT * FROM orders WHERE total <= 50")
	refused(c, "SELECT count(*) FROM v_star")
	mustExec(t, c, "ROLLBACK")
	inTx(false, "CREATE VIEW v_star AS SELECT * FROM orders WHERE total <= 50")
	count("SELECT count(*) FROM v_star", 5)
	mustExec(t, c, "CREATE VIEW v_star_auto AS SELECT * FROM orders")
	count("SELECT count(*) FROM v_star_auto", 20)
}
