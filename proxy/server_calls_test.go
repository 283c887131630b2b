package proxy_test

import (
	"context"
	"testing"
	"time"
)

// TestReloadConfEveryShard: ALTER SYSTEM goes to every shard, and so must
// the SELECT pg_reload_conf() that makes it take effect: afterwards every
// shard runs with the new setting. The client reads one answer.
func TestReloadConfEveryShard(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	c := f.Connect(t)
	t.Cleanup(func() {
		for _, s := range []string{"s0", "s1"} {
			d := f.Direct(t, s)
			_, _ = d.Exec(ctx, "ALTER SYSTEM RESET log_min_duration_statement")
			_, _ = d.Exec(ctx, "SELECT pg_reload_conf()")
		}
	})
	mustExec(t, c, "ALTER SYSTEM SET log_min_duration_statement = '4321ms'")
	rows, err := c.Query(ctx, "SELECT pg_reload_conf()")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if rows.Err() != nil || n != 1 {
		t.Fatalf("pg_reload_conf answered %d rows, %v; want one", n, rows.Err())
	}
	for _, s := range []string{"s0", "s1"} {
		// The postmaster rereads the file when signalled; a new session
		// then starts with the setting.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var v string
			d := f.Direct(t, s)
			if err := d.QueryRow(ctx, "SHOW log_min_duration_statement").Scan(&v); err != nil {
				t.Fatal(err)
			}
			if v == "4321ms" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: log_min_duration_statement = %s after pg_reload_conf() through the proxy; want 4321ms", s, v)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
