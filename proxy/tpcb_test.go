package proxy_test

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestPgbenchTPCB runs pgbench's default TPC-B script through the proxy
// over 2 shards: accounts and history sharded by aid, branches and tellers
// reference tables. Every transaction then spans both shards (the teller
// and branch updates go to every shard) and commits with two-phase commit.
// Afterwards the money must add up on every shard: the accounts of all
// shards, the branches and tellers of each shard and the history of all
// shards hold the same total.
func TestPgbenchTPCB(t *testing.T) {
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		t.Fatal("pgbench not installed (make deps installs the Postgres client tools)")
	}
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_aid: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  pgbench_accounts: {key: aid, strategy: by_aid}
  pgbench_history:  {key: aid, strategy: by_aid}
  pgbench_branches: {reference: true}
  pgbench_tellers:  {reference: true}
default_shard: s0
two_phase_commit: true
`})
	tf := txnFixture{fixture: f}
	ctx := context.Background()

	// Load through the proxy, as a user would: pgbench -i creates the
	// tables (DDL to every shard), truncates and COPYs them in one
	// transaction that spans both shards, and the proxy splits the
	// accounts by aid.
	if out, err := exec.Command(pgbench, "-i", "-s", "1", "-q", f.DSN()).CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i through the proxy: %v\n%s", err, out)
	}
	if n, per := tf.count(t, "SELECT count(*) FROM pgbench_accounts"); n != 100000 || per["s0"] == 0 || per["s1"] == 0 {
		t.Fatalf("accounts per shard after the load: %v, want 100000 in all", per)
	}
	// The proxy finds every account where the load put it.
	c := f.Connect(t)
	for _, aid := range []int{1, 2, 3, 50000, 99999, 100000} {
		var bal int
		if err := c.QueryRow(ctx, "SELECT abalance FROM pgbench_accounts WHERE aid = $1", aid).Scan(&bal); err != nil {
			t.Fatalf("account %d through the proxy: %v", aid, err)
		}
	}

	const clients, perClient = 4, 50
	total := 0
	for _, mode := range []string{"simple", "extended", "prepared"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(pgbench, "-n", "-M", mode, "-c", fmt.Sprint(clients), "-j", "2",
				"-t", fmt.Sprint(perClient), f.DSN())
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("pgbench: %v\n%s", err, out)
			}
			processed := regexp.MustCompile(`number of transactions actually processed: (\d+)/(\d+)`).FindStringSubmatch(string(out))
			if processed == nil || processed[1] != processed[2] || processed[1] != fmt.Sprint(clients*perClient) {
				t.Fatalf("pgbench did not process every transaction:\n%s", out)
			}
			if m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindStringSubmatch(string(out)); m == nil || m[1] != "0" {
				t.Fatalf("pgbench reports failed transactions:\n%s", out)
			}
			total += clients * perClient
			t.Logf("pgbench -M %s through the proxy:\n%s", mode, strings.TrimSpace(string(out)))
		})
	}

	accounts, _ := tf.count(t, "SELECT sum(abalance) FROM pgbench_accounts")
	history, _ := tf.count(t, "SELECT coalesce(sum(delta), 0) FROM pgbench_history")
	rows, _ := tf.count(t, "SELECT count(*) FROM pgbench_history")
	_, branches := tf.count(t, "SELECT sum(bbalance) FROM pgbench_branches")
	_, tellers := tf.count(t, "SELECT sum(tbalance) FROM pgbench_tellers")
	t.Logf("accounts %d, history %d (%d rows), branches %v, tellers %v", accounts, history, rows, branches, tellers)
	if rows != int64(total) {
		t.Errorf("history has %d rows, want one per transaction (%d)", rows, total)
	}
	if history != accounts {
		t.Errorf("history sums to %d, accounts to %d", history, accounts)
	}
	for _, sh := range []string{"s0", "s1"} {
		if branches[sh] != accounts || tellers[sh] != accounts {
			t.Errorf("shard %s: branches %d, tellers %d, want %d (the accounts' total)", sh, branches[sh], tellers[sh], accounts)
		}
	}
	tf.checkClean(t)
}
