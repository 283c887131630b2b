package proxy_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestResetAndDiscard: RESET returns to the startup message's values, as
// on Postgres; SQL DEALLOCATE acts on the session's prepared statements
// (a name can be prepared again); DISCARD ALL resets the session without
// touching the pooled backends, whose prepared statements other clients
// share.
func TestResetAndDiscard(t *testing.T) {
	f, ids := accountsFixture(t)
	ctx := context.Background()
	c, err := f.ConnectWith(t, map[string]string{"application_name": "startup-app"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	simple := pgx.QueryExecModeSimpleProtocol
	show := func(name string) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, "SHOW "+name, simple).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	exec := func(sql string) error {
		_, err := c.Exec(ctx, sql, simple)
		return err
	}

	for _, reset := range []string{"RESET application_name", "RESET ALL", "SET application_name TO DEFAULT"} {
		if err := exec("SET application_name = 'changed'"); err != nil {
			t.Fatal(err)
		}
		if err := exec(reset); err != nil {
			t.Fatal(err)
		}
		if v := show("application_name"); v != "startup-app" {
			t.Fatalf("after %s: application_name %q, want the startup value", reset, v)
		}
	}

	// DEALLOCATE, then the same name again.
	const q = "SELECT id FROM accounts WHERE id = $1"
	for _, dealloc := range []string{"DEALLOCATE s1", "DEALLOCATE ALL", "DEALLOCATE PREPARE ALL"} {
		if _, err := c.Prepare(ctx, "s1", q); err != nil {
			t.Fatalf("prepare s1 (before %s): %v", dealloc, err)
		}
		if err := exec(dealloc); err != nil {
			t.Fatal(err)
		}
	}
	if err := exec("DEALLOCATE nosuch"); sqlState(err) != "26000" {
		t.Fatalf("DEALLOCATE of an unknown statement: %v, want 26000", err)
	}

	// DISCARD ALL: settings back to startup, statements gone, and another
	// client's prepared statement on the same backends still works.
	other := f.Connect(t)
	if _, err := other.Prepare(ctx, "shared", q); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Prepare(ctx, "shared", q); err != nil {
		t.Fatal(err)
	}
	if err := exec("SET search_path = pg_catalog"); err != nil {
		t.Fatal(err)
	}
	if err := exec("DISCARD ALL"); err != nil {
		t.Fatal(err)
	}
	if v := show("search_path"); v != `"$user", public` {
		t.Fatalf("search_path after DISCARD ALL: %q", v)
	}
	if _, err := c.Prepare(ctx, "shared", q); err != nil {
		t.Fatalf("prepare after DISCARD ALL: %v", err)
	}
	for range 20 { // whichever backend serves it
		var id int64
		if err := other.QueryRow(ctx, "shared", ids["s0"]).Scan(&id); err != nil || id != ids["s0"] {
			t.Fatalf("another client's prepared statement after DISCARD ALL: %d, %v", id, err)
		}
	}
	if err := exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	if err := exec("DISCARD ALL"); sqlState(err) != "25001" {
		t.Fatalf("DISCARD ALL in a transaction block: %v, want 25001", err)
	}
}
