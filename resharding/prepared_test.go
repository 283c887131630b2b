package resharding_test

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/resharding"
)

// TestJobWaitsForPreparedTransaction: a transaction prepared on a source
// shard (PREPARE TRANSACTION by a client, or a two-phase commit of the
// proxies left in doubt) holds no backend, so the proxies' pause does not
// wait for it, and logical decoding sends its writes only when it
// commits. Cut over around it, its COMMIT PREPARED came after the streams
// stopped: its write reached the old owner only, and the deletion of the
// moved rows (which waited for its row lock, inside the pause) removed
// it there. The job must not cut over while a source holds one; it waits
// for it to end and says so in its status.
func TestJobWaitsForPreparedTransaction(t *testing.T) {
	c := resharding.NewCluster(t)
	cur, curText := c.LoadMap(t, "current.yaml")
	next, nextText := c.LoadMap(t, "target.yaml")
	resharding.SeedExample(t, c, cur)
	ctx := context.Background()
	curStrats, nextStrats := resharding.BuildStrats(t, cur), resharding.BuildStrats(t, next)
	var cust int64
	var from, to string
	for k := int64(1); k <= 300 && cust == 0; k++ {
		a, err1 := resharding.Owner(ctx, curStrats, cur, "customers", strconv.FormatInt(k, 10))
		b, err2 := resharding.Owner(ctx, nextStrats, next, "customers", strconv.FormatInt(k, 10))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if a != b {
			cust, from, to = k, a, b
		}
	}
	if cust == 0 {
		t.Fatal("the target map moves no customer")
	}
	id, _, err := resharding.Create(ctx, curText, nextText, nil)
	if err != nil {
		t.Fatal(err)
	}
	gid := "reshard_test_" + c.DB // gids are per server
	src := c.Conn(t, from)
	t.Cleanup(func() { c.Conn(t, from).Exec(context.Background(), "ROLLBACK PREPARED '"+gid+"'") })
	log := slog.New(slog.NewTextHandler(testLog{t, "job"}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	done := make(chan error, 1)
	go func() {
		done <- resharding.Run(ctx, cur.Metadata.DSN, id, resharding.WithHook(resharding.Options{BatchRows: 100, Logger: log}, func(p string) error {
			if p != "verified" {
				return nil
			}
			// After the slots were made (which waits for prepared
			// transactions), before the cutover.
			_, err := src.Exec(ctx, "BEGIN; UPDATE customers SET name = 'prepared' WHERE customer_id = "+strconv.FormatInt(cust, 10)+
				"; PREPARE TRANSACTION '"+gid+"'")
			return err
		}))
	}()
	// Until the job waits for the prepared transaction, or cut over and
	// deletes the moved rows on its shard (waiting for its row lock).
	meta, watch := c.Conn(t, "meta"), c.Conn(t, from)
	var jobErr error
	ended := false
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job neither waited for the prepared transaction nor cut over")
		}
		select {
		case jobErr = <-done:
			ended = true
		default:
		}
		if ended {
			break
		}
		var blocked int
		if err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DELETE%'").Scan(&blocked); err != nil {
			t.Fatal(err)
		}
		st, err := resharding.LoadStatus(ctx, meta, id)
		if err != nil {
			t.Fatal(err)
		}
		if blocked > 0 || strings.Contains(st.Message, gid) {
			t.Logf("phase %s: %s (deletes waiting for a lock: %d)", st.Phase, st.Message, blocked)
			break
		}
	}
	if _, err := c.Conn(t, from).Exec(ctx, "COMMIT PREPARED '"+gid+"'"); err != nil {
		t.Fatal(err)
	}
	if !ended {
		jobErr = <-done
	}
	if jobErr != nil {
		t.Fatalf("Run: %v", jobErr)
	}
	var name string
	if err := c.Conn(t, to).QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", cust).Scan(&name); err != nil || name != "prepared" {
		t.Errorf("customer %d on its new owner %s: %q (%v), want the prepared transaction's write", cust, to, name, err)
	}
	var n int
	if err := c.Conn(t, from).QueryRow(ctx, "SELECT count(*) FROM customers WHERE customer_id = $1", cust).Scan(&n); err != nil || n != 0 {
		t.Errorf("customer %d on its old owner %s: %d rows (%v), want 0", cust, from, n, err)
	}
}
