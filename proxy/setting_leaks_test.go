package proxy_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// leakFixture is accountsFixtureWith with one backend per shard, so that
// the next client certainly gets the backend the last one used: what a
// client leaves on it, the next one sees.
func leakFixture(t *testing.T) (*fixture, map[string]int64) {
	t.Helper()
	f := startFixture(t, fixtureOptions{Pool: "{size: 1, acquire_timeout: 5s}", Body: `
strategies:
  by_id: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  accounts: {key: id, strategy: by_id}
default_shard: s0
two_phase_commit: true
`})
	c := f.Connect(t)
	defer c.Close(context.Background())
	mustExec(t, c, "CREATE TABLE accounts (id bigint PRIMARY KEY, balance int NOT NULL)")
	ids := map[string]int64{}
	for sh, keys := range keysByShard(t, f, "by_id", 1) {
		ids[sh] = keys[0]
		mustExec(t, c, "INSERT INTO accounts VALUES ($1, 100)", keys[0])
	}
	return f, ids
}

// settingOn reads setting name on the backend that serves shard's account.
func settingOn(t *testing.T, c *pgx.Conn, mode pgx.QueryExecMode, ids map[string]int64, shard, name string) string {
	t.Helper()
	var v string
	q := fmt.Sprintf("SELECT current_setting('%s') FROM accounts WHERE id = %d", name, ids[shard])
	if err := c.QueryRow(context.Background(), q, mode).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

// TestSetRolledBackToSavepointWithShardJoining: a SET undone by ROLLBACK
// TO SAVEPOINT is undone on every shard, whichever joined the transaction
// before or after the SAVEPOINT and the SET, as on one Postgres; the
// session, its later transactions and the next clients of the pooled
// backends all see the setting as it was. A shard that joined after the
// savepoint was given the session's settings before its BEGIN, where
// ROLLBACK TO could not undo them: the backend kept the SET, the session
// did not, and the next clients got it.
func TestSetRolledBackToSavepointWithShardJoining(t *testing.T) {
	f, ids := leakFixture(t)
	ctx := context.Background()
	fresh := f.Connect(t)
	want := settingOn(t, fresh, pgx.QueryExecModeSimpleProtocol, ids, "s0", "TimeZone")
	fresh.Close(ctx)
	if want == "Asia/Tokyo" {
		t.Fatal("the servers' TimeZone is the one the test sets")
	}
	onS0 := fmt.Sprintf("SELECT 1 FROM accounts WHERE id = %d", ids["s0"])
	onS1 := fmt.Sprintf("SELECT 1 FROM accounts WHERE id = %d", ids["s1"])
	// shards: where the transaction is read after ROLLBACK TO (one shard
	// keeps it a one-shard transaction to its COMMIT).
	cases := []struct {
		name   string
		stmts  []string
		shards []string
	}{
		{"savepoint before any shard", []string{"BEGIN", "SAVEPOINT a", "SET TimeZone = 'Asia/Tokyo'", onS0, "ROLLBACK TO SAVEPOINT a"}, []string{"s0"}},
		{"savepoint before any shard, then two shards", []string{"BEGIN", "SAVEPOINT a", "SET TimeZone = 'Asia/Tokyo'", onS0, "ROLLBACK TO SAVEPOINT a"}, []string{"s0", "s1"}},
		{"savepoint before any shard, SET before it", []string{"BEGIN", "SET TimeZone = 'Asia/Tokyo'", "SAVEPOINT a", "SET TimeZone = 'Asia/Tokyo'", onS0, "RESET TimeZone", "ROLLBACK TO SAVEPOINT a", "SET TimeZone TO DEFAULT"}, []string{"s0"}},
		{"second shard joins after the SET", []string{"BEGIN", onS0, "SAVEPOINT a", "SET TimeZone = 'Asia/Tokyo'", onS1, "ROLLBACK TO SAVEPOINT a"}, []string{"s1", "s0"}},
		{"both shards join after the SET", []string{"BEGIN", "SAVEPOINT a", "SET TimeZone = 'Asia/Tokyo'", onS0, onS1, "ROLLBACK TO SAVEPOINT a"}, []string{"s0", "s1"}},
		{"nested savepoints", []string{"BEGIN", "SAVEPOINT a", "SET TimeZone = 'Asia/Tokyo'", "SAVEPOINT b", onS1, "ROLLBACK TO a", onS0}, []string{"s1", "s0"}},
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, tc := range cases {
			t.Run(fmt.Sprintf("%s/%v", tc.name, mode), func(t *testing.T) {
				c := f.Connect(t)
				defer c.Close(ctx)
				for _, q := range tc.stmts {
					if _, err := c.Exec(ctx, q, mode); err != nil {
						t.Fatalf("%s: %v", q, err)
					}
				}
				// In the transaction, after ROLLBACK TO.
				for _, sh := range tc.shards {
					if v := settingOn(t, c, mode, ids, sh, "TimeZone"); v != want {
						t.Errorf("in the transaction after ROLLBACK TO, on %s: TimeZone %q, want %q", sh, v, want)
					}
				}
				if _, err := c.Exec(ctx, "COMMIT", mode); err != nil {
					t.Fatal(err)
				}
				var shown string
				if err := c.QueryRow(ctx, "SHOW TimeZone", mode).Scan(&shown); err != nil || shown != want {
					t.Errorf("after COMMIT: SHOW TimeZone %q (%v), want %q", shown, err, want)
				}
				for _, sh := range []string{"s0", "s1"} {
					if v := settingOn(t, c, mode, ids, sh, "TimeZone"); v != want {
						t.Errorf("after COMMIT, on %s: TimeZone %q, want %q", sh, v, want)
					}
				}
				c.Close(ctx)
				// The next client gets the same backends.
				o := f.Connect(t)
				defer o.Close(ctx)
				for _, sh := range []string{"s0", "s1"} {
					if v := settingOn(t, o, mode, ids, sh, "TimeZone"); v != want {
						t.Errorf("next client, on %s: TimeZone %q, want %q", sh, v, want)
					}
				}
			})
		}
	}
}
