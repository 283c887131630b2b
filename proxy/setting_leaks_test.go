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
	return accountsFixtureWith(t, fixtureOptions{Pool: "{size: 1, acquire_timeout: 5s}", Body: "two_phase_commit: true\n"})
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

// TestSettingMadeByUnseenCodeStaysOffPool: a setting made inside a DO
// block, a procedure or a user function is beyond what the proxy can
// follow; it must not stay on the pooled backend for the next client.
// The client's own session keeps it for the rest of its transaction (the
// same backend) and then forgets it (README: it cannot follow the client
// to other backends).
func TestSettingMadeByUnseenCodeStaysOffPool(t *testing.T) {
	f, ids := leakFixture(t)
	ctx := context.Background()
	simple := pgx.QueryExecModeSimpleProtocol
	setup := f.Connect(t)
	mustExec(t, setup, `CREATE PROCEDURE set_zone(z text) LANGUAGE plpgsql AS $$
BEGIN PERFORM set_config('TimeZone', z, false); END $$`)
	mustExec(t, setup, `CREATE FUNCTION zone_to(z text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN EXECUTE format('SET TimeZone = %L', z); RETURN z; END $$`)
	mustExec(t, setup, `CREATE FUNCTION zone_sql(z text) RETURNS text LANGUAGE sql AS $$
SELECT set_config('TimeZone', z, false) $$`)
	want := settingOn(t, setup, simple, ids, "s0", "TimeZone")
	setup.Close(ctx)
	if want == "Asia/Kolkata" {
		t.Fatal("the servers' TimeZone is the one the test sets")
	}
	const z = "'Asia/Kolkata'"
	account := fmt.Sprint(ids["s0"])
	cases := []struct {
		name string
		stmt string
	}{
		{"DO set_config", "DO $$ BEGIN PERFORM set_config('TimeZone', " + z + ", false); END $$"},
		{"DO EXECUTE", "DO $$ BEGIN EXECUTE 'set timezone = ''Asia/Kolkata'''; END $$"},
		{"CALL", "CALL set_zone(" + z + ")"},
		{"function", "SELECT zone_to(" + z + ")"},
		{"SQL function over a table", "SELECT zone_sql(" + z + ") FROM accounts WHERE id = " + account},
		{"function on every shard", "SELECT zone_sql(" + z + ") FROM accounts"},
		{"DO in a multi-statement Query", "SELECT 1 FROM accounts WHERE id = " + account + "; DO $$ BEGIN PERFORM set_config('TimeZone', " + z + ", false); END $$"},
	}
	for _, mode := range []pgx.QueryExecMode{simple, pgx.QueryExecModeExec} {
		for _, tc := range cases {
			for _, inTx := range []bool{false, true} {
				t.Run(fmt.Sprintf("%s/%v/tx=%v", tc.name, mode, inTx), func(t *testing.T) {
					c := f.Connect(t)
					defer c.Close(ctx)
					if inTx {
						mustExec(t, c, "BEGIN")
					}
					if _, err := c.Exec(ctx, tc.stmt, mode); err != nil {
						t.Fatalf("%s: %v", tc.stmt, err)
					}
					if inTx {
						// Its transaction's backend: as on Postgres.
						if v := settingOn(t, c, mode, ids, "s0", "TimeZone"); v != "Asia/Kolkata" {
							t.Errorf("in its transaction: TimeZone %q, want Asia/Kolkata", v)
						}
						mustExec(t, c, "COMMIT")
					}
					// The session forgets it.
					if v := settingOn(t, c, mode, ids, "s0", "TimeZone"); v != want {
						t.Errorf("its session afterwards: TimeZone %q, want %q", v, want)
					}
					// The client leaves after making it again; the next
					// client gets the same backend.
					if _, err := c.Exec(ctx, tc.stmt, mode); err != nil {
						t.Fatalf("%s: %v", tc.stmt, err)
					}
					c.Close(ctx)
					o := f.Connect(t)
					defer o.Close(ctx)
					var v string
					if err := o.QueryRow(ctx, "SELECT current_setting('TimeZone')", mode).Scan(&v); err != nil || v != want {
						t.Errorf("next client: TimeZone %q (%v), want %q", v, err, want)
					}
					if v := settingOn(t, o, mode, ids, "s1", "TimeZone"); v != want {
						t.Errorf("next client, on s1: TimeZone %q, want %q", v, want)
					}
				})
			}
		}
	}
}

// TestSetseedRefused: setseed() seeds the random() of the backend it runs
// on, which goes back to the pool: the next client's random() followed
// the seeded sequence, and the client's own next random() ran on
// whichever backend, unseeded. It is refused with 0A000, in and out of a
// transaction block; the next client's random() is not seeded.
func TestSetseedRefused(t *testing.T) {
	f, ids := leakFixture(t)
	ctx := context.Background()
	direct := f.Direct(t, "s0")
	var seeded float64
	if err := direct.QueryRow(ctx, "SELECT random() FROM (SELECT setseed(0.42)) s").Scan(&seeded); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, q := range []string{
			"SELECT setseed(0.42)",
			"SELECT pg_catalog.setseed(0.42)",
			fmt.Sprintf("SELECT setseed(0.42) FROM accounts WHERE id = %d", ids["s0"]),
			"SELECT setseed(0.42) FROM accounts",
		} {
			for _, inTx := range []bool{false, true} {
				c := f.Connect(t)
				if inTx {
					mustExec(t, c, "BEGIN")
				}
				_, err := c.Exec(ctx, q, mode)
				wantSQLState(t, err, "0A000")
				c.Close(ctx)
				o := f.Connect(t)
				var r float64
				if err := o.QueryRow(ctx, "SELECT random()", mode).Scan(&r); err != nil {
					t.Fatal(err)
				}
				if r == seeded {
					t.Errorf("%s (%v, in a transaction: %v): the next client's random() followed the seed", q, mode, inTx)
				}
				o.Close(ctx)
			}
		}
	}
}
