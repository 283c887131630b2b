package proxy_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestSetFollowsTransactions: a SET is transactional in Postgres — a
// rollback (explicit, or of the implicit transaction of a failed
// multi-statement Query) undoes it, a commit keeps it — and through the
// proxy it must be so too, in both protocols, on one shard or two. And a
// SET sent inside a multi-statement Query, which the proxy forwards as one
// text, must follow the client and never stay on a pooled backend for the
// next client.
func TestSetFollowsTransactions(t *testing.T) {
	f, ids := accountsFixtureWith(t, fixtureOptions{Body: "two_phase_commit: true\n"})
	ctx := context.Background()
	c := f.Connect(t)
	simple := pgx.QueryExecModeSimpleProtocol
	// timeout reads statement_timeout on the backend serving shard's key.
	timeout := func(c *pgx.Conn, shard string) string {
		t.Helper()
		var v string
		q := fmt.Sprintf("SELECT current_setting('statement_timeout') FROM accounts WHERE id = %d", ids[shard])
		if err := c.QueryRow(ctx, q, simple).Scan(&v); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return v
	}
	onS0 := fmt.Sprintf("SELECT id FROM accounts WHERE id = %d", ids["s0"])
	onS1 := fmt.Sprintf("SELECT id FROM accounts WHERE id = %d", ids["s1"])

	// A client's SET in a multi-statement Query, then it leaves: the
	// backends it used go to the next clients, who must not inherit it.
	leaver := f.Connect(t)
	if _, err := leaver.Exec(ctx, "SET statement_timeout = '3s'; "+onS0+"; "+onS0, simple); err != nil {
		t.Fatal(err)
	}
	leaver.Close(ctx)
	for i := 0; i < 4; i++ {
		o := f.Connect(t)
		if v := timeout(o, "s0"); v != "0" {
			t.Errorf("client %d after the leaver: statement_timeout = %q, want 0", i, v)
		}
		o.Close(ctx)
	}

	steps := []struct {
		name  string
		stmts []string
		mode  pgx.QueryExecMode
		fails bool
		want  string
	}{
		{"rolled back", []string{"BEGIN", "SET statement_timeout = '7s'", onS0, "ROLLBACK"}, simple, false, "0"},
		{"one Query", []string{"SET statement_timeout = '9s'; " + onS0}, simple, false, "9s"},
		{"rolled back before a shard", []string{"BEGIN", "SET statement_timeout = '11s'", "ROLLBACK"}, simple, false, "9s"},
		{"committed in one Query", []string{"BEGIN; SET statement_timeout = '13s'; COMMIT"}, simple, false, "13s"},
		{"rolled back in one Query", []string{"BEGIN; SET statement_timeout = '15s'; ROLLBACK"}, simple, false, "13s"},
		{"failed Query", []string{"SET statement_timeout = '17s'; SELECT 1 / 0 FROM accounts WHERE id = " + fmt.Sprint(ids["s0"])}, simple, true, "13s"},
		{"failed transaction", []string{"BEGIN", "SET statement_timeout = '18s'", onS0, "SELECT 1/0", "COMMIT"}, simple, true, "13s"},
		{"extended, rolled back", []string{"BEGIN", "SET statement_timeout = '19s'", onS0, "ROLLBACK"}, pgx.QueryExecModeExec, false, "13s"},
		{"extended, committed", []string{"BEGIN", "SET statement_timeout = '21s'", onS0, "COMMIT"}, pgx.QueryExecModeExec, false, "21s"},
		{"two shards, rolled back", []string{"BEGIN", onS0, "SET statement_timeout = '23s'", onS1, "ROLLBACK"}, simple, false, "21s"},
		{"two shards, committed", []string{"BEGIN", onS0, "SET statement_timeout = '25s'", onS1, "COMMIT"}, simple, false, "25s"},
		{"rolled back to a savepoint", []string{"BEGIN", onS0, "SAVEPOINT a", "SET statement_timeout = '27s'", "ROLLBACK TO a", "COMMIT"}, simple, false, "25s"},
		{"savepoint released", []string{"BEGIN", onS0, "SAVEPOINT a", "SET statement_timeout = '29s'", "RELEASE a", "COMMIT"}, simple, false, "29s"},
		{"extended, rolled back to a savepoint", []string{"BEGIN", onS0, "SAVEPOINT B", "SET statement_timeout = '31s'", "ROLLBACK TO SAVEPOINT b", "COMMIT"}, pgx.QueryExecModeExec, false, "29s"},
		{"failed, rolled back to a savepoint", []string{"BEGIN", onS0, "SAVEPOINT c", "SET statement_timeout = '33s'", "SELECT 1/0", "ROLLBACK TO c", "COMMIT"}, simple, true, "29s"},
		{"savepoint before a shard", []string{"BEGIN", "SAVEPOINT d", "SET statement_timeout = '35s'", "ROLLBACK TO d", onS1, "COMMIT"}, simple, false, "29s"},
	}
	for _, st := range steps {
		failed := false
		for _, q := range st.stmts {
			if _, err := c.Exec(ctx, q, st.mode); err != nil {
				failed = true
				if !st.fails {
					t.Fatalf("%s: %s: %v", st.name, q, err)
				}
			}
		}
		if failed != st.fails {
			t.Fatalf("%s: failed = %v", st.name, failed)
		}
		for _, shard := range []string{"s0", "s1"} {
			if v := timeout(c, shard); v != st.want {
				t.Errorf("%s: statement_timeout on %s = %q, want %q", st.name, shard, v, st.want)
			}
		}
	}
	// pgx.Batch: one pipeline, one Sync. Outside BEGIN it is an implicit
	// transaction: an error anywhere in it undoes its SET.
	batches := []struct {
		name  string
		stmts []string
		fails bool
		want  string
	}{
		{"batch", []string{"SET statement_timeout = '37s'", onS0}, false, "37s"},
		{"failed batch", []string{"SET statement_timeout = '39s'", onS0, "SELECT 1/0"}, true, "37s"},
		{"batch rolled back", []string{"BEGIN", onS0, "SET statement_timeout = '41s'", "ROLLBACK"}, false, "37s"},
		{"batch committed", []string{"BEGIN", onS0, "SET statement_timeout = '43s'", "COMMIT"}, false, "43s"},
	}
	for _, bt := range batches {
		b := &pgx.Batch{}
		for _, q := range bt.stmts {
			b.Queue(q)
		}
		err := c.SendBatch(ctx, b).Close()
		if (err != nil) != bt.fails {
			t.Fatalf("%s: %v", bt.name, err)
		}
		for _, shard := range []string{"s0", "s1"} {
			if v := timeout(c, shard); v != bt.want {
				t.Errorf("%s: statement_timeout on %s = %q, want %q", bt.name, shard, v, bt.want)
			}
		}
	}
	// The shard hint is a setting too. With it, count(*) sees one shard's
	// account; without, both.
	hint := func() string {
		t.Helper()
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM accounts", simple).Scan(&n); err != nil {
			t.Fatal(err)
		}
		var shown string
		if err := c.QueryRow(ctx, "SHOW shardproxy.shard", simple).Scan(&shown); err != nil {
			t.Fatal(err)
		}
		if routed := map[int]string{1: "s1", 2: ""}[n]; shown != routed {
			t.Fatalf("SHOW shardproxy.shard = %q, but count(*) saw %d shards", shown, n)
		}
		var extended string // pgx's default: Parse, Describe, Bind, Execute
		if err := c.QueryRow(ctx, "SHOW shardproxy.shard").Scan(&extended); err != nil || extended != shown {
			t.Fatalf("SHOW shardproxy.shard, extended protocol: %q, %v; simple: %q", extended, err, shown)
		}
		return shown
	}
	for _, h := range []struct {
		stmts []string
		want  string
	}{
		{[]string{"BEGIN", "SET shardproxy.shard = 's1'", "ROLLBACK"}, ""},
		{[]string{"BEGIN", "SET shardproxy.shard = 's1'", "COMMIT"}, "s1"},
		{[]string{"BEGIN", onS1, "SAVEPOINT h", "RESET shardproxy.shard", "ROLLBACK TO h", "COMMIT"}, "s1"},
		{[]string{"BEGIN", onS1, "RESET shardproxy.shard", "ROLLBACK"}, "s1"},
		{[]string{"RESET shardproxy.shard"}, ""},
	} {
		for _, q := range h.stmts {
			if _, err := c.Exec(ctx, q, simple); err != nil {
				t.Fatalf("%v: %s: %v", h.stmts, q, err)
			}
		}
		if v := hint(); v != h.want {
			t.Errorf("%v: shardproxy.shard = %q, want %q", h.stmts, v, h.want)
		}
	}
	c.Close(ctx)

	// Every backend the session used is back in its pool; a new client
	// must see the default on each of them.
	for i := 0; i < 6; i++ {
		o := f.Connect(t)
		for _, shard := range []string{"s0", "s1"} {
			if v := timeout(o, shard); v != "0" {
				t.Errorf("client %d: statement_timeout on %s = %q: another client's SET stayed on a pooled backend", i, shard, v)
			}
		}
		o.Close(ctx)
	}
}

// TestRoleDoesNotStay: SET ROLE in a multi-statement Query marks the
// backend unknown; the reset before its next client must clear the role
// too, which RESET ALL does not.
func TestRoleDoesNotStay(t *testing.T) {
	f, ids := accountsFixture(t)
	ctx := context.Background()
	c := f.Connect(t)
	for _, shard := range []string{"s0", "s1"} { // roles belong to each server
		d := f.Direct(t, shard)
		mustExec(t, d, "CREATE ROLE shardproxy_reader")
		mustExec(t, d, "GRANT SELECT ON accounts TO shardproxy_reader")
		d.Close(ctx)
	}
	q := fmt.Sprintf("SELECT current_user FROM accounts WHERE id = %d", ids["s0"])
	res, err := c.PgConn().Exec(ctx, "SET ROLE shardproxy_reader; "+q).ReadAll()
	if err != nil || len(res) != 2 || len(res[1].Rows) != 1 || string(res[1].Rows[0][0]) != "shardproxy_reader" {
		t.Fatalf("the session's own role: %v, %v", res, err)
	}
	var who string
	c.Close(ctx) // at once: the backend goes back with its settings unknown
	for i := 0; i < 4; i++ {
		o := f.Connect(t)
		if err := o.QueryRow(ctx, q, pgx.QueryExecModeSimpleProtocol).Scan(&who); err != nil {
			t.Fatal(err)
		}
		if who == "shardproxy_reader" {
			t.Errorf("client %d runs as the previous client's role", i)
		}
		o.Close(ctx)
	}
}
