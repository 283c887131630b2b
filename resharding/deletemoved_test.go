package resharding_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/resharding"
)

// moveJob is the set-up of the tests here: the example cluster seeded
// with the current map, a proxy on it, an app connection through it,
// and a job created (not run) to the target map, which moves customer
// cust from shard from to shard to.
type moveJob struct {
	c        *resharding.Cluster
	cur      *config.Config
	app      *pgx.Conn
	id       int64
	cust     int64
	from, to string
}

func startMoveJob(t *testing.T) moveJob {
	t.Helper()
	ctx := context.Background()
	m := moveJob{c: resharding.NewCluster(t)}
	var curText, nextText string
	m.cur, curText = m.c.LoadMap(t, "current.yaml")
	_, nextText = m.c.LoadMap(t, "target.yaml")
	resharding.SeedExample(t, m.c, m.cur)
	m.cust, m.from, m.to = movedCustomer(t, m.c)
	p := startProxy(t, m.c, m.cur, "proxy-a")
	app, err := pgx.Connect(ctx, fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", p.addr, m.c.DB))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { app.Close(context.Background()) })
	m.app = app
	if m.id, _, err = resharding.Create(ctx, curText, nextText, nil); err != nil {
		t.Fatal(err)
	}
	return m
}

// movedCustomer is a customer the example's target map moves, with its
// old and new owner.
func movedCustomer(t *testing.T, c *resharding.Cluster) (cust int64, from, to string) {
	t.Helper()
	cur, _ := c.LoadMap(t, "current.yaml")
	next, _ := c.LoadMap(t, "target.yaml")
	ctx := context.Background()
	curStrats, nextStrats := resharding.BuildStrats(t, cur), resharding.BuildStrats(t, next)
	for k := int64(1); k <= 300; k++ {
		a, err1 := resharding.Owner(ctx, curStrats, cur, "customers", strconv.FormatInt(k, 10))
		b, err2 := resharding.Owner(ctx, nextStrats, next, "customers", strconv.FormatInt(k, 10))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if a != b {
			return k, a, b
		}
	}
	t.Fatal("the target map moves no customer")
	return 0, "", ""
}

// countCustomers is a keyless read through the proxy: a scatter over
// every shard of the map the proxy serves. A 40001 (routed on the map a
// cutover replaced) is retried, as drivers do.
func countCustomers(ctx context.Context, app *pgx.Conn) (int, error) {
	for {
		var n int
		err := app.QueryRow(ctx, "SELECT count(*) FROM customers").Scan(&n)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "40001" {
			return n, err
		}
	}
}

// TestSlowDeleteOfMovedRowsKeepsReadsHeld: the cutover deletes the moved
// rows from their old shards inside the pause, after the switch. When
// that takes longer than the bound plus the proxies' margin (a big table;
// here a row lock held on a source), the proxies must not end the pause
// on their own while the job is still deleting: the moved rows are then
// on their old and their new owner, and a keyless read counts them
// twice. The job renews the pause while it works; the read waits until
// the deletion committed and sees every customer once. The proxies used
// to resume at the bound plus the margin whatever the job was doing.
func TestSlowDeleteOfMovedRowsKeepsReadsHeld(t *testing.T) {
	m := startMoveJob(t)
	c, cur, app, id, cust, from := m.c, m.cur, m.app, m.id, m.cust, m.from
	ctx := context.Background()
	if n, err := countCustomers(ctx, app); err != nil || n != 300 {
		t.Fatalf("before the job: %d customers (%v)", n, err)
	}
	// A transaction on the source, beside the proxies, locks a moved
	// row once the proxies paused: the job's DELETE there waits for it.
	locker := c.Conn(t, from)
	defer locker.Exec(context.Background(), "ROLLBACK")
	log := slog.New(slog.NewTextHandler(testLog{t, "job"}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	pausedAt := make(chan time.Time, 1)
	locked := false // on the job's goroutine
	done := make(chan error, 1)
	go func() {
		done <- resharding.Run(ctx, cur.Metadata.DSN, id, resharding.WithHook(resharding.Options{BatchRows: 100, Logger: log}, func(p string) error {
			if p != "cutover-paused" || locked {
				return nil
			}
			locked = true
			pausedAt <- time.Now()
			_, err := locker.Exec(ctx, "BEGIN; SELECT FROM customers WHERE customer_id = "+strconv.FormatInt(cust, 10)+" FOR UPDATE")
			return err
		}))
	}()
	watch := c.Conn(t, from)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the job's DELETE on the source never waited for the lock")
		}
		select {
		case err := <-done:
			t.Fatalf("the job ended before it deleted: %v", err)
		default:
		}
		var blocked int
		if err := watch.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DELETE%'").Scan(&blocked); err != nil {
			t.Fatal(err)
		}
		if blocked > 0 {
			break
		}
	}
	paused := <-pausedAt
	read := make(chan error, 1)
	var got int
	go func() {
		rctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		var err error
		got, err = countCustomers(rctx, app)
		read <- err
	}()
	// Well past the default bound (2s) plus the proxies' margin, counted
	// from the pause: a proxy that resumes on its own has done so.
	time.Sleep(time.Until(paused.Add(2*time.Second + resharding.PauseMargin + 2*time.Second)))
	var readErr error
	early := false // the read returned while the job still deleted
	select {
	case readErr = <-read:
		early = true
	default:
	}
	if _, err := locker.Exec(ctx, "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !early {
		select {
		case readErr = <-read:
		case <-time.After(30 * time.Second):
			t.Fatal("the keyless read is still held after the job ended")
		}
	}
	if readErr != nil || got != 300 {
		t.Errorf("a keyless read during the deletion of the moved rows: %d customers (%v), want 300 (returned before the deletion ended: %v)", got, readErr, early)
	}
	if n, err := countCustomers(ctx, app); err != nil || n != 300 {
		t.Errorf("after the job: %d customers (%v), want 300", n, err)
	}
}

// TestJobDeadAfterSwitchFencesSources: a job that stops after its switch
// but before it deleted the moved rows from their old shards (killed,
// or its DELETE failed) leaves those rows on two shards. The proxies end
// the pause when it goes quiet, on the new map, but a statement on a
// source shard must fail with 55000 naming the job rather than count
// the moved rows twice; shards that are no source serve on. Resuming the
// job deletes them, and the proxies serve the sources again. The proxies
// used to resume on the new map and answer keyless reads with every moved
// row twice until someone resumed the job.
func TestJobDeadAfterSwitchFencesSources(t *testing.T) {
	m := startMoveJob(t)
	cur, app, id, cust, to := m.cur, m.app, m.id, m.cust, m.to
	ctx := context.Background()
	errStop := errors.New("stopped by the test after the switch")
	log := slog.New(slog.NewTextHandler(testLog{t, "job"}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	err := resharding.Run(ctx, cur.Metadata.DSN, id, resharding.WithHook(resharding.Options{BatchRows: 100, Logger: log}, func(p string) error {
		if p == "cutover-switched" {
			return errStop
		}
		return nil
	}))
	if !errors.Is(err, errStop) {
		t.Fatalf("Run: %v, want the hook's error", err)
	}
	// Held until the proxy gives up on the job, then refused.
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := countCustomers(rctx, app)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "55000" {
		t.Fatalf("a keyless read after the job died past its switch: %d customers (%v), want SQLSTATE 55000", n, err)
	}
	t.Logf("refused: %s (hint: %s)", pe.Message, pe.Hint)
	if to == "s2" {
		// s2 is no source: the moved customer's read by key is served there.
		var name string
		if err := app.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", cust).Scan(&name); err != nil {
			t.Errorf("a read by key on the new shard s2: %v", err)
		}
	}
	// Resumed, the job deletes the moved rows (cleanup) and the proxy
	// serves the sources again, every customer once.
	if err := resharding.Run(ctx, cur.Metadata.DSN, id, resharding.Options{BatchRows: 100, Logger: log}); err != nil {
		t.Fatalf("resume: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		n, err := countCustomers(ctx, app)
		if err == nil {
			if n != 300 {
				t.Fatalf("after the resumed job: %d customers, want 300", n)
			}
			break
		}
		if !errors.As(err, &pe) || pe.Code != "55000" || time.Now().After(deadline) {
			t.Fatalf("after the resumed job: %v", err)
		}
	}
}
