package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/proxy"
)

// TestCommitVisibility: a transaction committed across shards is seen
// whole or not at all, as on one Postgres server, while transfers between
// customers on different shards commit with two-phase commit:
//   - a sum over every shard (one merged SELECT, simple and extended
//     protocol, in and out of a transaction, and one gathered SELECT)
//     always finds the total;
//   - a client that saw a transaction's row on one shard finds its row on
//     the other shard in its next statement.
//
// Without the commit gate (visibility.go) a statement could take its
// snapshot on s0 after COMMIT PREPARED reached s0 and on s1 before it
// reached s1.
//
// "no window wait" makes every commit phase taint the read windows it
// overlaps at once, so that SELECTs take their snapshots again (and may
// give up with 40001, which its readers retry, as clients should).
func TestCommitVisibility(t *testing.T) {
	t.Run("default", func(t *testing.T) { checkCommitVisibility(t, false) })
	t.Run("no window wait", func(t *testing.T) {
		defer proxy.SetCommitWindowWait(0)()
		checkCommitVisibility(t, true)
	})
	// Outside a transaction, a SELECT goes as the client sent it while no
	// commit ran lately; a commit overlapping it then cancels its legs.
	t.Run("statements as sent", func(t *testing.T) {
		defer proxy.SetCommitWindowWait(0)()
		defer proxy.SetCommitQuietAfter(0)()
		checkCommitVisibility(t, true)
	})
}

func checkCommitVisibility(t *testing.T, retakes bool) {
	f := startTxnFixture(t, strings.Replace(twoPCBody, "tables:\n", "tables:\n  marks: {key: customer_id, strategy: by_customer}\n", 1))
	ctx := context.Background()
	setup := f.Connect(t)
	if _, err := setup.Exec(ctx, "CREATE TABLE marks (customer_id bigint NOT NULL, n bigint NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	var total int
	if err := setup.QueryRow(ctx, "SELECT sum(credit) FROM customers").Scan(&total); err != nil {
		t.Fatal(err)
	}
	keys := map[string][]int64{}
	for _, sh := range []string{"s0", "s1"} {
		rows, _ := f.Direct(t, sh).Query(ctx, "SELECT customer_id FROM customers ORDER BY 1")
		ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil || len(ids) < 2 {
			t.Fatalf("customers on %s: %v %v", sh, ids, err)
		}
		keys[sh] = ids
	}
	const transfers = 1500
	var (
		done      atomic.Bool
		wg        sync.WaitGroup
		failures  = make(chan error, 100)
		sums      atomic.Int64
		followups atomic.Int64
		gaveUp    atomic.Int64
		before    = f.Server.Stats().Commits
	)
	fail := func(err error) {
		select {
		case failures <- err:
		default:
		}
	}
	// Writers: move one credit between a customer on s0 and one on s1; the
	// first writer also records its transaction number on both shards.
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := f.Connect(t)
			for i := 1; i <= transfers/2 && !done.Load(); i++ {
				// Each pair moves a credit one way, then back.
				p := i / 2
				from, to := keys["s0"][p%len(keys["s0"])], keys["s1"][(p+w)%len(keys["s1"])]
				if i%2 == 0 {
					from, to = to, from
				}
				err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
					tag, err := tx.Exec(ctx, "UPDATE customers SET credit = credit - 1 WHERE customer_id = $1 AND credit > 0", from)
					if err != nil || tag.RowsAffected() == 0 {
						return errors.Join(err, errors.New("no credit to move"))
					}
					if _, err := tx.Exec(ctx, "UPDATE customers SET credit = credit + 1 WHERE customer_id = $1", to); err != nil {
						return err
					}
					if w == 0 {
						_, err = tx.Exec(ctx, "INSERT INTO marks VALUES ($1, $3), ($2, $3)", keys["s0"][0], keys["s1"][0], i)
					}
					return err
				})
				if err != nil {
					fail(fmt.Errorf("transfer %d: %w", i, err))
					return
				}
			}
		}()
	}
	writers := make(chan struct{})
	go func() { wg.Wait(); close(writers) }()

	var readers sync.WaitGroup
	for _, how := range []string{"simple", "extended", "in a transaction", "gathered"} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			c := f.Connect(t)
			mode := pgx.QueryExecModeSimpleProtocol
			if how != "simple" {
				mode = pgx.QueryExecModeCacheStatement
			}
			for !done.Load() {
				var sum int
				var err error
				if how == "in a transaction" {
					// The merge runs on the transaction's backends, where a
					// retake syncs the legs rather than cancel them.
					err = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
						return tx.QueryRow(ctx, "SELECT sum(credit) FROM customers").Scan(&sum)
					})
				} else if how == "gathered" {
					// One Postgres over every shard's rows (plan_build_gather.go),
					// read in one statement per shard inside the read window.
					err = c.QueryRow(ctx, "SELECT sum(c.credit) FROM customers c WHERE c.credit >= (SELECT min(credit) FROM customers)", mode).Scan(&sum)
				} else {
					err = c.QueryRow(ctx, "SELECT sum(credit) FROM customers", mode).Scan(&sum)
				}
				var pgErr *pgconn.PgError
				if retakes && errors.As(err, &pgErr) && pgErr.Code == "40001" {
					gaveUp.Add(1)
					continue
				}
				if err != nil {
					fail(fmt.Errorf("sum (%s): %w", how, err))
					return
				}
				if sum != total {
					fail(fmt.Errorf("sum (%s) over the shards = %d, want %d: a transfer seen on one shard only", how, sum, total))
					return
				}
				sums.Add(1)
			}
		}()
	}
	readers.Add(1)
	go func() {
		defer readers.Done()
		c := f.Connect(t)
		for !done.Load() {
			var n int64
			if err := c.QueryRow(ctx, "SELECT coalesce(max(n), 0) FROM marks WHERE customer_id = $1", keys["s0"][0]).Scan(&n); err != nil {
				fail(fmt.Errorf("mark on s0: %w", err))
				return
			}
			var found bool
			if err := c.QueryRow(ctx, "SELECT $2::bigint = 0 OR EXISTS (SELECT FROM marks WHERE customer_id = $1 AND n = $2)", keys["s1"][0], n).Scan(&found); err != nil {
				fail(fmt.Errorf("mark on s1: %w", err))
				return
			}
			if !found {
				fail(fmt.Errorf("transaction %d was seen on s0, and then not on s1", n))
				return
			}
			followups.Add(1)
		}
	}()

	select {
	case <-writers:
	case err := <-failures:
		fail(err) // put back for the report below
	}
	done.Store(true)
	wg.Wait()
	readers.Wait()
	close(failures)
	for err := range failures {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	var final int
	if err := setup.QueryRow(ctx, "SELECT sum(credit) FROM customers").Scan(&final); err != nil || final != total {
		t.Fatalf("final sum %d (%v), want %d", final, err, total)
	}
	after := f.Server.Stats().Commits
	t.Logf("%d transfers; %d sums and %d follow-up reads, all consistent; %d statements waited for a commit, %d snapshots retaken, %d sums gave up (40001)",
		transfers, sums.Load(), followups.Load(), after.Waits-before.Waits, after.Retakes-before.Retakes, gaveUp.Load())
	if sums.Load() < 10 || followups.Load() < 10 {
		t.Fatalf("readers barely ran: %d sums, %d follow-ups", sums.Load(), followups.Load())
	}
	if after.Waits == before.Waits {
		t.Fatal("no statement waited for a commit: the readers never met a commit phase")
	}
	if retakes && after.Retakes == before.Retakes {
		t.Fatal("no snapshot was retaken although commit phases did not wait for read windows")
	}
}
