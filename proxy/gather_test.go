package proxy_test

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// TestGatherCancel: a gathered statement (plan_build_gather.go) runs its
// evaluation on one shard after reading every shard's rows; a client's
// cancel reaches that evaluation, in both protocols, and the connection
// goes on.
func TestGatherCancel(t *testing.T) {
	f, _, _ := scatterFixture(t, "")
	c := connectCancelling(t, f)
	act := watchActivity(t, f)
	before := f.Server.Stats().Gathered
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
		t.Run(mode.String(), func(t *testing.T) {
			marker := "gather_cancel_" + mode.String()
			// Only the evaluation sleeps: the shards' statement reads rows.
			act.cancelMidway(t, c, mode, marker, "SELECT count(*) FROM customers c WHERE c.visits >= (SELECT min(visits) FROM customers) AND pg_sleep(0.5) IS NOT NULL AND '"+marker+"' <> ''")
			var n int
			if err := c.QueryRow(context.Background(), "SELECT count(*) FROM customers WHERE visits > (SELECT avg(visits) FROM customers)", mode).Scan(&n); err != nil || n == 0 {
				t.Fatalf("after cancel: %d, %v", n, err)
			}
			if got := f.Server.Stats().Gathered - before; got < 2 {
				t.Errorf("%d gathered statements counted, want the cancelled one and the next", got)
			}
			before = f.Server.Stats().Gathered
		})
	}
	// A client that vanishes mid-evaluation: the evaluation stops too.
	t.Run("disconnect", func(t *testing.T) {
		gone := f.Connect(t)
		marker := "gather_gone"
		go func() {
			_, _ = gone.Exec(context.Background(), "SELECT count(*) FROM customers c WHERE c.visits >= (SELECT min(visits) FROM customers) AND pg_sleep(0.5) IS NOT NULL AND '"+marker+"' <> ''")
		}()
		act.wait(t, marker, true)
		_ = gone.PgConn().Conn().Close()
		act.wait(t, marker, false)
	})
}

// TestGatherTableDiffers: gathered rows travel as row text, read back by
// the evaluating shard's row type, so every shard's table must have the
// same columns in the same order. A shard whose table was made by hand
// with two columns swapped (same types) is refused, never read as the
// other columns.
func TestGatherTableDiffers(t *testing.T) {
	f := startFixture(t, fixtureOptions{Body: `
strategies:
  by_k: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  pairs: {key: k, strategy: by_k}
default_shard: s0
`})
	ctx := context.Background()
	if _, err := f.Direct(t, "s0").Exec(ctx, "CREATE TABLE pairs (k int PRIMARY KEY, a int, b int)"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Direct(t, "s1").Exec(ctx, "CREATE TABLE pairs (k int PRIMARY KEY, b int, a int)"); err != nil {
		t.Fatal(err)
	}
	c := f.Connect(t)
	for k := 1; k <= 20; k++ {
		mustExec(t, c, "INSERT INTO pairs (k, a, b) VALUES ($1, 1, 2)", k)
	}
	const q = "SELECT count(*) FROM pairs WHERE a < (SELECT avg(b) FROM pairs)"
	var n int
	err := c.QueryRow(ctx, q).Scan(&n)
	if sqlState(err) != "0A000" || !strings.Contains(err.Error(), "tables differ") {
		t.Fatalf("%s: %d, %v; want 0A000 naming the difference", q, n, err)
	}
	// Made alike, the statement is gathered and counts every row.
	for _, sh := range []string{"s0", "s1"} {
		if _, err := f.Direct(t, sh).Exec(ctx, "CREATE TABLE pairs_new (k int PRIMARY KEY, a int, b int); INSERT INTO pairs_new SELECT k, a, b FROM pairs; DROP TABLE pairs; ALTER TABLE pairs_new RENAME TO pairs"); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.QueryRow(ctx, q).Scan(&n); err != nil || n != 20 {
		t.Fatalf("%s: %d, %v; want 20", q, n, err)
	}
}

// TestGatherSetting: SET shardproxy.gather = off keeps the merge's
// refusals for the session, SET LOCAL for the transaction, and both
// follow a rollback as any setting does.
func TestGatherSetting(t *testing.T) {
	_, px, _ := scatterFixture(t, "two_phase_commit: true\n")
	ctx := context.Background()
	const q = "SELECT count(*) FROM customers WHERE visits > (SELECT avg(visits) FROM customers)"
	gathered := func(step string) {
		t.Helper()
		for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeCacheStatement} {
			var n int
			if err := px.QueryRow(ctx, q, mode).Scan(&n); err != nil || n == 0 {
				t.Errorf("%s (%v): %d, %v; want the gathered count", step, mode, n, err)
			}
		}
	}
	refused := func(step string) {
		t.Helper()
		var n int
		if err := px.QueryRow(ctx, q).Scan(&n); sqlState(err) != "0A000" {
			t.Errorf("%s: %d, %v; want 0A000", step, n, err)
		}
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := px.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	gathered("default")
	exec("SET shardproxy.gather = off")
	refused("SET off")
	exec("SET shardproxy.gather TO on")
	gathered("SET on")
	exec("BEGIN")
	exec("SET LOCAL shardproxy.gather = 'false'")
	refused("SET LOCAL off")
	exec("ROLLBACK")
	gathered("after the transaction")
	exec("BEGIN")
	exec("SET shardproxy.gather = off")
	exec("ROLLBACK")
	gathered("SET off rolled back")
	exec("SET shardproxy.gather = off")
	exec("RESET shardproxy.gather")
	gathered("RESET")
}
