package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestNotifyReachesListeners: LISTEN cannot go through a transaction
// pooler, so listeners connect to the default shard, which the refusal
// of LISTEN names; every NOTIFY and pg_notify() through the proxy is
// sent there, in both protocols, also inside a transaction (one on
// another shard too, with 2PC). One that could not be sent there (a
// transaction on another shard without 2PC, a pg_notify() over sharded
// rows) fails rather than notify no listener.
func TestNotifyReachesListeners(t *testing.T) {
	for _, twoPhase := range []bool{false, true} {
		name := "without 2PC"
		top := ""
		if twoPhase {
			name, top = "with 2PC", "two_phase_commit: true\n"
		}
		t.Run(name, func(t *testing.T) { testNotify(t, top) })
	}
}

func testNotify(t *testing.T, top string) {
	f := startFixture(t, fixtureOptions{Top: top})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE customers (customer_id int PRIMARY KEY, name text)")
	for k := 1; k <= 20; k++ {
		mustExec(t, c, "INSERT INTO customers VALUES ($1, 'c')", k)
	}
	var onS1 int
	if err := f.Direct(t, "s1").QueryRow(ctx, "SELECT min(customer_id) FROM customers").Scan(&onS1); err != nil {
		t.Fatal(err)
	}

	_, err := c.Exec(ctx, "LISTEN ch")
	if sqlState(err) != "0A000" || !strings.Contains(hintOf(err), "default shard (s0)") {
		t.Fatalf("LISTEN through the proxy: %v (hint %q), want 0A000 naming the default shard", err, hintOf(err))
	}
	listener := f.Direct(t, "s0")
	mustExec(t, listener, "LISTEN ch")
	expect := func(payload string) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(wctx)
		if err != nil || n.Payload != payload {
			t.Fatalf("listener on s0: %v, %v; want payload %q", n, err, payload)
		}
	}

	mustExec(t, c, "NOTIFY ch, 'plain'")
	expect("plain")
	if _, err := c.Exec(ctx, "SELECT pg_notify($1, $2)", "ch", "extended"); err != nil {
		t.Fatal(err)
	}
	expect("extended")
	for _, q := range []string{"BEGIN", "SELECT pg_notify('ch', 'in a transaction')", "COMMIT"} {
		mustExec(t, c, q)
	}
	expect("in a transaction")

	// A transaction on s1 that notifies: the NOTIFY runs on s0, where
	// the listeners are, a second shard. Without 2PC that is refused.
	// With it, s0 changed nothing, so it needs no PREPARE (which a
	// transaction that notified cannot take): it commits after s1
	// (onephase.go), and the notification comes with the commit.
	twoPhase := strings.Contains(top, "two_phase_commit: true")
	mustExec(t, c, "BEGIN")
	mustExec(t, c, "UPDATE customers SET name = 'n' WHERE customer_id = $1", onS1)
	_, err = c.Exec(ctx, "NOTIFY ch, 'with s1'")
	want := "n"
	if twoPhase {
		if err != nil {
			t.Fatalf("NOTIFY in a transaction on s1: %v", err)
		}
		mustExec(t, c, "COMMIT")
		expect("with s1")
	} else {
		if sqlState(err) != "0A000" {
			t.Fatalf("NOTIFY in a transaction on s1 without 2PC: %v, want 0A000", err)
		}
		mustExec(t, c, "ROLLBACK")
		want = "c"
	}
	var name string
	if err := c.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", onS1).Scan(&name); err != nil || name != want {
		t.Errorf("the transaction's update: %q, %v; want %q", name, err, want)
	}

	_, err = c.Exec(ctx, "SELECT pg_notify('ch', name) FROM customers WHERE customer_id = $1", onS1)
	if sqlState(err) != "0A000" {
		t.Errorf("pg_notify over sharded rows: %v, want 0A000", err)
	}
	// Nothing else arrived meanwhile.
	mustExec(t, c, "NOTIFY ch, 'last'")
	expect("last")
}

// TestTerminateBackendDefaultShard: the pid a client passes to
// pg_terminate_backend() comes from pg_stat_activity, which the proxy
// answers from the default shard; so the call runs there, even in a
// transaction on another shard (where the same number is some other
// session, or none), or fails.
func TestTerminateBackendDefaultShard(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	mustExec(t, c, "CREATE TABLE customers (customer_id int PRIMARY KEY, name text)")
	for k := 1; k <= 20; k++ {
		mustExec(t, c, "INSERT INTO customers VALUES ($1, 'c')", k)
	}
	var onS1 int
	if err := f.Direct(t, "s1").QueryRow(ctx, "SELECT min(customer_id) FROM customers").Scan(&onS1); err != nil {
		t.Fatal(err)
	}
	victim := f.Direct(t, "s0")
	mustExec(t, victim, "SET application_name = 'victim'")
	var pid int
	if err := c.QueryRow(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = 'victim'").Scan(&pid); err != nil {
		t.Fatal(err)
	}

	mustExec(t, c, "BEGIN")
	mustExec(t, c, "UPDATE customers SET name = 'n' WHERE customer_id = $1", onS1)
	var done bool
	err := c.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&done)
	_, _ = c.Exec(ctx, "ROLLBACK")
	if err == nil {
		t.Fatalf("pg_terminate_backend in a transaction on s1 answered %v: it ran on s1, where pid %d is not the victim", done, pid)
	}
	if err := victim.Ping(ctx); err != nil {
		t.Fatalf("victim gone after a refused call: %v", err)
	}

	if err := c.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&done); err != nil || !done {
		t.Fatalf("pg_terminate_backend: %v, %v", done, err)
	}
	if err := victim.Ping(ctx); err == nil {
		t.Error("victim still there after pg_terminate_backend through the proxy")
	}
}
