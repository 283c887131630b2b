package proxy_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestTransactionScopedFunctions: inside BEGIN, statements that read no
// table but act on their transaction run in it, not beside it. An advisory
// xact lock is held on the default shard until COMMIT (one lock space for
// every client). set_config(..., true) reaches every shard the transaction
// touches in the simple protocol (replayed like SET LOCAL); where it cannot
// (the extended protocol's parameters, a transaction already on two
// shards) the statement that would miss it is refused with 0A000.
func TestTransactionScopedFunctions(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	update := func(id int64) string {
		return fmt.Sprintf("UPDATE customers SET credit = credit WHERE customer_id = %d", id)
	}
	setting := func(t *testing.T, c *pgx.Conn, mode pgx.QueryExecMode) string {
		t.Helper()
		var v string
		if err := c.QueryRow(ctx, "SELECT coalesce(current_setting('shardproxy_test.who', true), '')", mode).Scan(&v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	locks := func(t *testing.T) int {
		t.Helper()
		var n int
		if err := f.Direct(t, "s0").QueryRow(ctx,
			"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242 AND granted").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("set_config replayed/simple", func(t *testing.T) {
		c := f.Connect(t)
		simple := pgx.QueryExecModeSimpleProtocol
		var got string
		if err := execIn(ctx, c, simple, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if err := c.QueryRow(ctx, "SELECT set_config('shardproxy_test.who', 'me', true)", simple).Scan(&got); err != nil || got != "me" {
			t.Fatalf("set_config: %q, %v", got, err)
		}
		for _, id := range []int64{f.b, f.a} { // s1 starts the transaction, s0 joins it
			if err := execIn(ctx, c, simple, update(id)); err != nil {
				t.Fatal(err)
			}
			if v := setting(t, c, simple); v != "me" {
				t.Fatalf("after %s: the setting on that shard is %q, want me", update(id), v)
			}
		}
		if err := execIn(ctx, c, simple, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		if v := setting(t, c, simple); v != "" {
			t.Fatalf("set_config(..., true) outlived its transaction: %q", v)
		}
	})

	t.Run("set_config pins/extended", func(t *testing.T) {
		c := f.Connect(t)
		ext := pgx.QueryExecModeExec
		if err := execIn(ctx, c, ext, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		if err := execIn(ctx, c, ext, "SELECT set_config('shardproxy_test.who', 'me', true)"); err != nil {
			t.Fatal(err)
		}
		if v := setting(t, c, ext); v != "me" {
			t.Fatalf("the setting in its transaction is %q, want me", v)
		}
		if err := execIn(ctx, c, ext, update(f.a)); err != nil { // s0: where it runs
			t.Fatal(err)
		}
		if err := execIn(ctx, c, ext, update(f.b)); sqlState(err) != "0A000" {
			t.Fatalf("s1 joining after set_config(..., true) in the extended protocol: %v, want 0A000", err)
		}
		if err := execIn(ctx, c, ext, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
	})

	for _, mode := range txnModes {
		t.Run("two shards already/"+mode.String(), func(t *testing.T) {
			c := f.Connect(t)
			for _, q := range []string{"BEGIN", update(f.a), update(f.b)} {
				if err := execIn(ctx, c, mode, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if err := execIn(ctx, c, mode, "SELECT set_config('shardproxy_test.who', 'me', true)"); sqlState(err) != "0A000" {
				t.Fatalf("set_config(..., true) in a transaction on two shards: %v, want 0A000", err)
			}
			if err := execIn(ctx, c, mode, "ROLLBACK"); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("advisory xact lock/"+mode.String(), func(t *testing.T) {
			c := f.Connect(t)
			for _, q := range []string{"BEGIN", "SELECT pg_advisory_xact_lock(4242)"} {
				if err := execIn(ctx, c, mode, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			if n := locks(t); n != 1 {
				t.Fatalf("%d advisory locks held on the default shard inside the transaction, want 1", n)
			}
			if err := execIn(ctx, c, mode, "COMMIT"); err != nil {
				t.Fatal(err)
			}
			if n := locks(t); n != 0 {
				t.Fatalf("%d advisory locks left after COMMIT", n)
			}
		})
	}
	f.checkClean(t)
}
