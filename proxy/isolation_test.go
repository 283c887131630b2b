package proxy_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestCrossShardIsolation: a REPEATABLE READ or SERIALIZABLE transaction
// that spanned two shards ran as two transactions, each isolated on its
// own shard: one snapshot per shard, no serial order across them, and no
// error. Now a statement that would read or write tables on a second
// shard is refused (0A000) and the transaction fails, as after any error;
// nothing it did is kept. At READ COMMITTED, or on one shard, such
// transactions work, also when a table-less statement ran elsewhere.
func TestCrossShardIsolation(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	upd := func(id int64) string {
		return fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", id)
	}
	credit := func(id int64) int {
		var n int
		if err := c.QueryRow(ctx, "SELECT credit FROM customers WHERE customer_id = $1", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := credit(f.a)
	for _, tc := range []struct {
		name  string
		steps []string
	}{
		{"BEGIN ISOLATION LEVEL SERIALIZABLE", []string{"BEGIN ISOLATION LEVEL SERIALIZABLE", upd(f.a), upd(f.b)}},
		{"repeatable read, a multi-shard first statement", []string{"BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT sum(credit) FROM customers"}},
		{"SET TRANSACTION", []string{"BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", upd(f.a), upd(f.b)}},
		{"default_transaction_isolation", []string{"SET default_transaction_isolation = 'repeatable read'", "BEGIN", upd(f.a), upd(f.b)}},
		{"back to the first shard", []string{"BEGIN ISOLATION LEVEL REPEATABLE READ", "SELECT now()", upd(f.b), "SELECT 1", upd(f.a)}},
	} {
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
			var err error
			last := len(tc.steps) - 1
			for i, q := range tc.steps {
				err = execIn(ctx, c, mode, q)
				if i < last && err != nil {
					t.Fatalf("%s: %s: %v", tc.name, q, err)
				}
			}
			if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "transaction cannot read or write tables on shards") {
				t.Errorf("%s (%v): %v; want 0A000", tc.name, mode, err)
			}
			if err := execIn(ctx, c, mode, "SELECT 1"); sqlState(err) != "25P02" {
				t.Errorf("%s: after the refusal: %v; want 25P02", tc.name, err)
			}
			mustExec(t, c, "ROLLBACK")
			mustExec(t, c, "RESET default_transaction_isolation")
			if got := credit(f.a); got != before {
				t.Fatalf("%s: credit of %d is %d, want %d: the refused transaction kept a write", tc.name, f.a, got, before)
			}
		}
	}

	// The first statement of a new connection (nothing routed before it
	// on the session), in the simple protocol and as a cursor: refused too.
	for _, q := range []string{"SELECT sum(credit) FROM customers", "DECLARE c CURSOR FOR SELECT credit FROM customers"} {
		fresh := f.Connect(t)
		err := execIn(ctx, fresh, pgx.QueryExecModeSimpleProtocol, "BEGIN ISOLATION LEVEL REPEATABLE READ")
		if err == nil {
			err = execIn(ctx, fresh, pgx.QueryExecModeSimpleProtocol, q)
		}
		if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "transaction cannot read or write tables on shards") {
			t.Errorf("%s, first on its connection: %v; want 0A000", q, err)
		}
		mustExec(t, fresh, "ROLLBACK")
	}

	// BEGIN ISOLATION LEVEL in a Query sent whole to one shard: a shard
	// that joins later got a plain BEGIN (READ COMMITTED), so the
	// transaction spanned shards unrefused.
	if err := execIn(ctx, c, pgx.QueryExecModeSimpleProtocol, "BEGIN ISOLATION LEVEL REPEATABLE READ; "+upd(f.a)); err != nil {
		t.Fatal(err)
	}
	if err := execIn(ctx, c, pgx.QueryExecModeSimpleProtocol, upd(f.b)); sqlState(err) != "0A000" {
		t.Errorf("second shard of a REPEATABLE READ transaction begun in a whole Query: %v; want 0A000", err)
	}
	mustExec(t, c, "ROLLBACK")

	// One shard at SERIALIZABLE, two at READ COMMITTED: as on Postgres.
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{upd(f.a), upd(f.a)} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tx.Exec(ctx, upd(f.b)); sqlState(err) != "0A000" {
		t.Errorf("pgx serializable transaction on a second shard: %v; want 0A000", err)
	}
	_ = tx.Rollback(ctx)
	tx, err = c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{upd(f.a), upd(f.b)} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if got := credit(f.a); got != before+1 {
		t.Errorf("credit of %d is %d, want %d", f.a, got, before+1)
	}
	// Table-less statements may open the transaction on another shard
	// (the extended protocol's SELECT now() does): they read nothing there.
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, q := range []string{"BEGIN ISOLATION LEVEL SERIALIZABLE", "SELECT now()", "SHOW transaction_isolation", upd(f.b), upd(f.b), "SELECT 1", "COMMIT"} {
			if err := execIn(ctx, c, mode, q); err != nil {
				t.Fatalf("%v: %s: %v", mode, q, err)
			}
		}
	}
	f.checkClean(t)
}

// TestSetLocalBeforeAnyShard: SET LOCAL (and SET TRANSACTION) sent
// before the transaction touched a shard was dropped in the extended
// protocol: the setting never reached a shard. In the simple protocol, a
// SHOW right after it read another backend and showed the session's
// value. Both now see the setting, as on Postgres.
func TestSetLocalBeforeAnyShard(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	c := f.Connect(t)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		show := func(name string) string {
			var v string
			if err := c.QueryRow(ctx, "SHOW "+name, mode).Scan(&v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		for _, q := range []string{"BEGIN", "SET LOCAL statement_timeout = '1234ms'", "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"} {
			if err := execIn(ctx, c, mode, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if v := show("statement_timeout"); v != "1234ms" {
			t.Errorf("%v: statement_timeout after SET LOCAL is %q, want 1234ms", mode, v)
		}
		if err := execIn(ctx, c, mode, fmt.Sprintf("UPDATE customers SET credit = credit WHERE customer_id = %d", f.b)); err != nil {
			t.Fatal(err)
		}
		if v := show("transaction_isolation"); v != "repeatable read" {
			t.Errorf("%v: transaction_isolation is %q, want repeatable read", mode, v)
		}
		mustExec(t, c, "COMMIT")
		if v := show("statement_timeout"); v != "0" {
			t.Errorf("%v: SET LOCAL outlived its transaction: %q", mode, v)
		}
	}
	f.checkClean(t)
}

// TestSessionSequences: currval() and lastval() read what nextval() last
// gave in the backend's session. Outside a transaction block, under
// transaction pooling, that backend may have served another client since,
// so the value could be that client's: they are refused there (0A000).
// In a transaction they read the transaction's own nextval().
func TestSessionSequences(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE notes (id serial PRIMARY KEY, body text)")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		mustExec(t, c, "INSERT INTO notes (body) VALUES ('a')")
		for _, q := range []string{"SELECT currval('notes_id_seq')", "SELECT lastval()", "INSERT INTO notes (id, body) VALUES (currval('notes_id_seq') + 100, 'b')"} {
			if err := execIn(ctx, c, mode, q); sqlState(err) != "0A000" {
				t.Errorf("%v: %s outside a transaction: %v; want 0A000", mode, q, err)
			}
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var id, cur, last int64
		if err := tx.QueryRow(ctx, "INSERT INTO notes (body) VALUES ('c') RETURNING id", mode).Scan(&id); err != nil {
			t.Fatal(err)
		}
		if err := tx.QueryRow(ctx, "SELECT currval('notes_id_seq'), lastval()", mode).Scan(&cur, &last); err != nil || cur != id || last != id {
			t.Errorf("%v: in the transaction, currval %d and lastval %d (%v); want %d", mode, cur, last, err, id)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Before any shard: run in the transaction, which then reads nextval's value.
	mustExec(t, c, "BEGIN")
	var n, cur int64
	if err := c.QueryRow(ctx, "SELECT nextval('notes_id_seq')").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT currval('notes_id_seq')").Scan(&cur); err != nil || cur != n {
		t.Errorf("currval after nextval in one transaction: %d, %v; want %d", cur, err, n)
	}
	mustExec(t, c, "COMMIT")
}

// TestReferenceReadsInTransaction: a read of a reference table inside a
// transaction on s1 went to the default shard, bringing s0 into the
// transaction (without two-phase commit: refused as cross-shard). Every
// shard has a copy, so a plain read now uses the transaction's own shard;
// a row lock still takes the default shard's copy.
func TestReferenceReadsInTransaction(t *testing.T) {
	f := startTxnFixture(t, defaultBody)
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "INSERT INTO products VALUES (1, 'tea')")
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, fmt.Sprintf("UPDATE customers SET credit = credit - 1 WHERE customer_id = %d", f.b), mode); err != nil {
			t.Fatal(err)
		}
		var name string
		var n int64
		if err := tx.QueryRow(ctx, "SELECT p.name, count(*) FROM products p WHERE p.id = $1 GROUP BY p.name", mode, 1).Scan(&name, &n); err != nil || name != "tea" {
			t.Errorf("%v: reference read in a transaction on s1: %q, %v; want tea", mode, name, err)
		}
		if _, err := tx.Exec(ctx, "SELECT name FROM products WHERE id = 1 FOR UPDATE", mode); sqlState(err) != "0A000" {
			t.Errorf("%v: row lock of a reference table from s1 without two-phase commit: %v; want 0A000 (it takes s0's copy)", mode, err)
		}
		_ = tx.Rollback(ctx)
	}
}
