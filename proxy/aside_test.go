package proxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestAsideStatements: inside BEGIN, before a keyed statement picks the
// transaction's shard, a statement that reads no table and changes
// nothing runs beside the transaction (aside.go) in both protocols, so
// that a transaction on another shard than the default one still works
// without two-phase commit; an error in it fails the transaction; and a
// statement that may change something (a user function, DO) runs in the
// transaction, so that ROLLBACK undoes it.
func TestAsideStatements(t *testing.T) {
	f := startTxnFixture(t, defaultBody)
	ctx := context.Background()
	c := f.Connect(t)
	if f.b == 0 {
		t.Fatal("no customer on s1")
	}
	credit := func() int {
		var n int
		if err := f.Direct(t, "s1").QueryRow(ctx, "SELECT credit FROM customers WHERE customer_id = $1", f.b).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	update := "UPDATE customers SET credit = credit + 1 WHERE customer_id = $1"
	modes := map[string]pgx.QueryExecMode{"simple": pgx.QueryExecModeSimpleProtocol, "extended": pgx.QueryExecModeCacheStatement,
		"describe": pgx.QueryExecModeDescribeExec}
	for name, mode := range modes {
		t.Run(name, func(t *testing.T) {
			before := credit()
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var tz string
			var n int
			if err := tx.QueryRow(ctx, "SELECT current_setting('TimeZone'), $1::int + 1", mode, 41).Scan(&tz, &n); err != nil || n != 42 {
				t.Fatalf("table-less read: %v, %d", err, n)
			}
			if _, err := tx.Exec(ctx, "SET LOCAL statement_timeout = '7s'", mode); err != nil {
				t.Fatal(err)
			}
			var timeout string
			if err := tx.QueryRow(ctx, "SHOW statement_timeout", mode).Scan(&timeout); err != nil || timeout != "7s" {
				t.Fatalf("SHOW after SET LOCAL: %q, %v; want 7s", timeout, err)
			}
			// Its shard is s1: the reads above did not pin it to s0.
			if _, err := tx.Exec(ctx, update, mode, f.b); err != nil {
				t.Fatalf("keyed statement for s1 after table-less reads: %v", err)
			}
			if err := tx.QueryRow(ctx, "SHOW statement_timeout", mode).Scan(&timeout); err != nil || timeout != "7s" {
				t.Fatalf("SHOW after SET LOCAL, on the transaction's shard: %q, %v; want 7s", timeout, err)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			if got := credit(); got != before+1 {
				t.Errorf("credit %d, want %d", got, before+1)
			}

			// An error beside the transaction fails it.
			tx, err = c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "SELECT 1 / $1::int", mode, 0); sqlState(err) != "22012" {
				t.Fatalf("SELECT 1/0: %v, want 22012", err)
			}
			if _, err := tx.Exec(ctx, update, mode, f.b); sqlState(err) != "25P02" {
				t.Errorf("statement after the error: %v, want 25P02", err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if got := credit(); got != before+1 {
				t.Errorf("credit %d after the failed transaction, want %d", got, before+1)
			}
		})
	}

	// What may change something runs in the transaction: ROLLBACK undoes it.
	for _, q := range []string{
		"CREATE TABLE unmapped_log (n int)",
		"SET check_function_bodies = off",
		"CREATE FUNCTION log_one() RETURNS int LANGUAGE sql AS 'INSERT INTO unmapped_log VALUES (1) RETURNING n'",
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for name, mode := range modes {
		for _, q := range []string{"SELECT log_one()", "DO $$ BEGIN INSERT INTO unmapped_log VALUES (2); END $$"} {
			tx, err := c.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, q, mode); err != nil {
				t.Fatalf("%s (%s): %v", q, name, err)
			}
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			var n int
			if err := f.Direct(t, "s0").QueryRow(ctx, "SELECT count(*) FROM unmapped_log").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				t.Fatalf("%s (%s) in a rolled-back transaction left %d rows", q, name, n)
			}
		}
	}
}

// TestExtendedAfterSimpleRefusal: a statement the proxy refuses in the
// simple protocol fails the transaction on its backend (an abort the
// proxy sends ahead); an extended-protocol ROLLBACK next must not read
// that abort's reply as its own.
func TestExtendedAfterSimpleRefusal(t *testing.T) {
	f := startTxnFixture(t, defaultBody)
	ctx := context.Background()
	c := f.Connect(t)
	simple := pgx.QueryExecModeSimpleProtocol
	if _, err := c.Exec(ctx, "BEGIN", simple); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "UPDATE customers SET credit = credit + 1 WHERE customer_id = 1", simple); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Exec(ctx, "SELECT set_config('app.x', lower('Y'), false)", simple); sqlState(err) != "0A000" {
		t.Fatalf("set_config(..., false): %v, want 0A000", err)
	}
	if err := c.PgConn().ExecParams(ctx, "ROLLBACK", nil, nil, nil, nil).Read().Err; err != nil {
		t.Fatalf("extended ROLLBACK after the refusal: %v", err)
	}
	if s := c.PgConn().TxStatus(); s != 'I' {
		t.Errorf("transaction status %q after ROLLBACK, want 'I'", s)
	}
	var n int
	if err := c.QueryRow(ctx, "SELECT credit FROM customers WHERE customer_id = 1").Scan(&n); err != nil || n != 100 {
		t.Errorf("credit %d, %v; want 100 (rolled back)", n, err)
	}
}
