package proxy_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/proxy"
)

// TestCrossShardOnePhase: a transaction that spans shards uses two-phase
// commit only among the shards it changed (onephase.go). The counters
// tell which way it committed; the shards' rows tell that it did.
func TestCrossShardOnePhase(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	a, b := f.a, f.b // on s0 and s1
	upd := func(id int64, delta int) string {
		return fmt.Sprintf("UPDATE customers SET credit = credit + %d WHERE customer_id = %d", delta, id)
	}
	read := func(id int64) string { return fmt.Sprintf("SELECT credit FROM customers WHERE customer_id = %d", id) }
	insertOrder := fmt.Sprintf("INSERT INTO orders VALUES (%d, 1)", a)
	tests := []struct {
		name     string
		steps    []string
		code     string // SQLSTATE of the last step ("" = it succeeds)
		want     map[int64]int
		twoPhase int64 // two-phase commits expected
		onePhase int64 // commits without it expected
	}{
		{name: "write on one shard, read on the other",
			steps: []string{"BEGIN", upd(a, 1), read(b), "COMMIT"}, want: map[int64]int{a: 1}, onePhase: 1},
		{name: "read on one shard, then write on the other",
			steps: []string{"BEGIN", read(a), upd(b, 2), "COMMIT"}, want: map[int64]int{b: 2}, onePhase: 1},
		{name: "write, then a count over every shard",
			steps: []string{"BEGIN", upd(b, 3), "SELECT count(*) FROM customers", "COMMIT"}, want: map[int64]int{b: 3}, onePhase: 1},
		{name: "reads only",
			steps: []string{"BEGIN", read(a), read(b), "COMMIT"}, onePhase: 1},
		{name: "writes on both",
			steps: []string{"BEGIN", upd(a, 1), upd(b, 1), "COMMIT"}, want: map[int64]int{a: 1, b: 1}, twoPhase: 1},
		{name: "a row lock is a change",
			steps: []string{"BEGIN", upd(a, 4), read(b) + " FOR UPDATE", "COMMIT"}, want: map[int64]int{a: 4}, twoPhase: 1},
		{name: "a change the proxy cannot see is found by asking",
			steps: []string{"BEGIN", upd(a, 6), "SELECT txid_current() /* shard: s1 */", "COMMIT"}, want: map[int64]int{a: 6}, twoPhase: 1},
		{name: "a write rolled back to a savepoint still counts",
			steps: []string{"BEGIN", upd(a, 1), "SAVEPOINT sp", upd(b, 9), "ROLLBACK TO sp", "COMMIT"}, want: map[int64]int{a: 1}, twoPhase: 1},
		{name: "the only writer fails at COMMIT: the readers roll back too",
			steps: []string{"BEGIN", read(b), insertOrder, insertOrder, "COMMIT"}, code: "23505"},
		{name: "SERIALIZABLE prepares its readers",
			steps: []string{"BEGIN ISOLATION LEVEL SERIALIZABLE", "SELECT 1 /* shard: s1 */", upd(a, 5), "COMMIT"},
			want:  map[int64]int{a: 5}, twoPhase: 1},
	}
	for _, mode := range txnModes {
		for _, tc := range tests {
			t.Run(mode.String()+"/"+tc.name, func(t *testing.T) {
				before, stats := f.credits(t), proxy.TwoPCStats()
				c := f.Connect(t)
				for i, sql := range tc.steps {
					err := execIn(ctx, c, mode, sql)
					want := ""
					if i == len(tc.steps)-1 {
						want = tc.code
					}
					if got := sqlState(err); got != want || want == "" && err != nil {
						t.Fatalf("%s: %v (SQLSTATE %q), want SQLSTATE %q", sql, err, got, want)
					}
				}
				for id, credit := range f.credits(t) {
					if want := before[id] + tc.want[id]; credit != want {
						t.Errorf("customer %d: credit %d, want %d", id, credit, want)
					}
				}
				after := proxy.TwoPCStats()
				if d := after.Committed - stats.Committed; d != tc.twoPhase {
					t.Errorf("two-phase commits: %d, want %d", d, tc.twoPhase)
				}
				if d := after.OnePhase - stats.OnePhase; d != tc.onePhase {
					t.Errorf("commits without two-phase commit: %d, want %d", d, tc.onePhase)
				}
				if n, per := f.count(t, "SELECT count(*) FROM orders"); n != 0 {
					t.Errorf("orders left on the shards: %v", per)
				}
				var one int
				if err := c.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
					t.Fatalf("session unusable after the transaction: %v", err)
				}
				f.checkClean(t)
			})
		}
	}
}

// TestCrossShardNotifyOnReader: NOTIFY cannot be prepared, so a
// transaction that spans shards could not send one; it now can from a
// shard it changed nothing on, and the notification is delivered exactly
// when the transaction commits.
func TestCrossShardNotifyOnReader(t *testing.T) {
	f := startTxnFixture(t, twoPCBody)
	ctx := context.Background()
	listener := f.Direct(t, "s0") // NOTIFY goes to the default shard, s0
	if _, err := listener.Exec(ctx, "LISTEN onephase"); err != nil {
		t.Fatal(err)
	}
	c := f.Connect(t)
	insertOrder := fmt.Sprintf("INSERT INTO orders VALUES (%d, 1)", f.b) // on s1
	for _, step := range []struct {
		sql, code string
	}{
		{"BEGIN", ""}, {"NOTIFY onephase, 'rolled back'", ""}, {insertOrder, ""}, {insertOrder, ""}, {"COMMIT", "23505"},
		{"BEGIN", ""}, {"NOTIFY onephase, 'committed'", ""}, {insertOrder, ""}, {"COMMIT", ""},
	} {
		if _, err := c.Exec(ctx, step.sql); sqlState(err) != step.code || step.code == "" && err != nil {
			t.Fatalf("%s: %v, want SQLSTATE %q", step.sql, err, step.code)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := listener.WaitForNotification(wctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Payload != "committed" {
		t.Fatalf("first notification %q, want the committed transaction's (notifications arrive in commit order)", n.Payload)
	}
	if _, err := c.Exec(ctx, "DELETE FROM orders"); err != nil {
		t.Fatal(err)
	}
	f.checkClean(t)
}
