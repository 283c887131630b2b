package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// productsFixture is the default map with two-phase commit, customers
// on both shards (keysPerShard's keys) and one row of the reference table
// products: sku 1, price 0.
func productsFixture(t *testing.T) (*fixture, *pgx.Conn, map[string]int64) {
	t.Helper()
	f := startFixture(t, fixtureOptions{Body: defaultBody + "two_phase_commit: true\n"})
	app := f.Connect(t)
	keys := keysPerShard(t, f, app)
	mustExec(t, app, "CREATE TABLE products (sku int PRIMARY KEY, price int)")
	mustExec(t, app, "INSERT INTO products VALUES (1, 0)")
	return f, app, keys
}

// TestPauseWaitsForStatementPastGate: a statement that went through the
// PAUSE gate just before it closed, and has not taken its backend yet, is
// waited for by the pause like one holding a backend. A resharding
// cutover relies on it: the pause's ack means nothing more reaches the
// source shard. The proxy used to count only sessions holding a backend,
// so PAUSE returned at once here and the statement wrote afterwards (in
// CI, a reference-table UPDATE reached s1 after the catch-up point of a
// split and never reached the new shard). Whatever PAUSE returned
// before must not reach the paused shard until RESUME: a statement past
// the gate for another shard does not hold the pause up, and one that
// takes its shards one at a time (a write to a reference table in an
// extended-protocol implicit transaction) waits at the gate for the
// paused one.
func TestPauseWaitsForStatementPastGate(t *testing.T) {
	f, app, keys := productsFixture(t)
	ctx := context.Background()
	adm := connectAdmin(t, f)

	type gateStop struct {
		shards  []string
		release chan struct{}
	}
	var mu sync.Mutex
	var armed bool
	stops := make(chan gateStop, 1)
	restore := f.Server.SetAfterGate(func(shards []string) {
		mu.Lock()
		hold := armed
		armed = false
		mu.Unlock()
		if hold {
			release := make(chan struct{})
			stops <- gateStop{slices.Clone(shards), release}
			<-release
		}
	})
	defer restore()

	n := 0
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, tc := range []struct {
			name, sql string
			args      []any
			pause     string // the shard PAUSE names
			waits     bool   // PAUSE must wait for the statement
			check     string // on the paused shard, directly: want n
		}{
			{"point write, its shard paused", "UPDATE customers SET name = $2 WHERE customer_id = $1", []any{keys["s0"]}, "s0", true,
				fmt.Sprintf("SELECT count(*) FROM customers WHERE customer_id = %d AND name = $1", keys["s0"])},
			{"reference write, one of its shards paused", "UPDATE products SET price = $1 WHERE sku = 1", nil, "s1", true,
				"SELECT count(*) FROM products WHERE price::text = $1"},
			{"point write, another shard paused", "UPDATE customers SET name = $2 WHERE customer_id = $1", []any{keys["s0"]}, "s1", false,
				fmt.Sprintf("SELECT count(*) FROM customers WHERE customer_id = %d AND name = $1", keys["s0"])},
		} {
			t.Run(fmt.Sprintf("%s/%v", tc.name, mode), func(t *testing.T) {
				n++
				val := fmt.Sprint(n)
				args := append([]any{mode}, tc.args...)
				if len(tc.args) > 0 {
					args = append(args, val)
				} else {
					args = append(args, n)
				}
				mu.Lock()
				armed = true
				mu.Unlock()
				done := make(chan error, 1)
				go func() {
					_, err := app.Exec(ctx, tc.sql, args...)
					done <- err
				}()
				var stop gateStop
				select {
				case stop = <-stops:
				case err := <-done:
					t.Fatalf("the statement ended without passing the gate: %v", err)
				}
				released := false
				release := func() {
					if !released {
						released = true
						close(stop.release)
					}
				}
				defer func() { // also when the test fails: nothing stays held
					release()
					adm.PgConn().Exec(ctx, "RESUME "+tc.pause).ReadAll()
					<-done
				}()
				paused := make(chan error, 1)
				go func() {
					_, err := adm.PgConn().Exec(ctx, "PAUSE "+tc.pause).ReadAll()
					paused <- err
				}()
				// The statement, on its way from the gate to the pool, is
				// released after PAUSE returned or after 300ms, whichever
				// comes first. Once PAUSE has returned it must not reach
				// the paused shard (only a RESUME lets it); if it does not
				// return first, it returns once the statement is done.
				pausedFirst := false
				select {
				case err := <-paused:
					if err != nil {
						t.Fatalf("PAUSE: %v", err)
					}
					pausedFirst = true
				case <-time.After(300 * time.Millisecond):
				}
				if pausedFirst && tc.waits && len(stop.shards) > 0 && slices.Contains(stop.shards, tc.pause) {
					t.Errorf("PAUSE %s returned while a statement past the gate for %v had not taken its backends", tc.pause, stop.shards)
				}
				release()
				onShard := func() int {
					var got int
					if err := f.Direct(t, tc.pause).QueryRow(ctx, tc.check, val).Scan(&got); err != nil {
						t.Fatal(err)
					}
					return got
				}
				if pausedFirst {
					select {
					case err := <-done:
						done <- err
					case <-time.After(500 * time.Millisecond):
					}
					if tc.waits && onShard() != 0 {
						t.Fatalf("the statement wrote on %s after PAUSE %s returned", tc.pause, tc.pause)
					}
				} else if err := <-paused; err != nil {
					t.Fatalf("PAUSE: %v", err)
				}
				if _, err := adm.PgConn().Exec(ctx, "RESUME "+tc.pause).ReadAll(); err != nil {
					t.Fatalf("RESUME: %v", err)
				}
				if err := <-done; err != nil {
					t.Fatalf("the statement: %v", err)
				}
				done <- nil // for the deferred clean-up
				if tc.waits && onShard() != 1 {
					t.Errorf("the write is not on %s", tc.pause)
				}
			})
		}
	}
}

// TestTransactionAcrossCutover: a transaction that began before a
// resharding cutover routes with the map it began with; a shard may not
// join it afterwards (the old map may name the old owner of a key, or
// leave out a new shard that a reference-table write must reach), so the
// statement fails with 40001 and nothing of it runs. Statements on the
// shards it already holds go on: the cutover could not have moved them.
// The proxy used to let the shard join on the old map.
func TestTransactionAcrossCutover(t *testing.T) {
	f, app, keys := productsFixture(t)
	ctx := context.Background()
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for _, join := range []struct{ name, sql string }{
			{"a key on another shard", fmt.Sprintf("UPDATE customers SET name = 'joined' WHERE customer_id = %d", keys["s1"])},
			{"a reference-table write", "UPDATE products SET price = 7 WHERE sku = 1"},
			{"a read over every shard", "SELECT count(*) FROM customers"},
		} {
			t.Run(fmt.Sprintf("%s/%v", join.name, mode), func(t *testing.T) {
				tx, err := app.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(ctx)
				if _, err := tx.Exec(ctx, "UPDATE customers SET name = 'held' WHERE customer_id = $1", mode, keys["s0"]); err != nil {
					t.Fatal(err)
				}
				rt := *f.Server.Runtime() // same pools: only the map object is new
				f.Server.CutOver(&rt)
				if _, err := tx.Exec(ctx, "SELECT name FROM customers WHERE customer_id = $1", mode, keys["s0"]); err != nil {
					t.Fatalf("a statement on the shard the transaction holds: %v", err)
				}
				_, err = tx.Exec(ctx, join.sql, mode)
				var pgErr *pgconn.PgError
				if !errors.As(err, &pgErr) || pgErr.Code != "40001" {
					t.Fatalf("%s after the cutover: %v, want 40001", join.sql, err)
				}
				if err := tx.Rollback(ctx); err != nil {
					t.Fatal(err)
				}
				for sh, q := range map[string]string{
					"s0": "SELECT count(*) FROM customers WHERE name IN ('held', 'joined')",
					"s1": "SELECT count(*) FROM customers WHERE name IN ('held', 'joined')",
				} {
					var n int
					if err := f.Direct(t, sh).QueryRow(ctx, q).Scan(&n); err != nil || n != 0 {
						t.Errorf("%s after the rollback: %d rows changed (%v)", sh, n, err)
					}
				}
				var price int
				if err := f.Direct(t, "s1").QueryRow(ctx, "SELECT price FROM products WHERE sku = 1").Scan(&price); err != nil || price != 0 {
					t.Errorf("s1 products after the rollback: price %d (%v)", price, err)
				}
				// The next transaction takes the new map and spans both shards.
				tx2, err := app.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, sh := range []string{"s0", "s1"} {
					if _, err := tx2.Exec(ctx, "SELECT name FROM customers WHERE customer_id = $1", mode, keys[sh]); err != nil {
						t.Fatalf("the next transaction on %s: %v", sh, err)
					}
				}
				if err := tx2.Commit(ctx); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestTransactionHoldingPausedShardGoesOn: PAUSE waits for a transaction
// that holds a backend of the paused shard, so that transaction's next
// statements must not wait at the gate for that shard, whichever other
// shards they take (a scatter read, a reference-table write, a COPY): the
// two would wait for each other until PAUSE timed out. The scatter paths
// used to wait at the gate for every shard of the statement.
func TestTransactionHoldingPausedShardGoesOn(t *testing.T) {
	f, app, keys := productsFixture(t)
	ctx := context.Background()
	adm := connectAdmin(t, f) // PAUSE keeps it busy
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			tx, err := app.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "UPDATE customers SET name = 'tx' WHERE customer_id = $1", mode, keys["s1"]); err != nil {
				t.Fatal(err)
			}
			paused := pauseAside(t, f, adm, "s1")
			// Each must finish now; PAUSE would time out after 30s.
			sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			var n int
			if err := tx.QueryRow(sctx, "SELECT count(*) FROM customers", mode).Scan(&n); err != nil || n != 20 {
				t.Fatalf("scatter read in the transaction: %d, %v", n, err)
			}
			if _, err := tx.Exec(sctx, "UPDATE products SET price = 3 WHERE sku = 1", mode); err != nil {
				t.Fatalf("reference write in the transaction: %v", err)
			}
			if _, err := tx.Conn().PgConn().CopyFrom(sctx, strings.NewReader(fmt.Sprintf("%d\tcopied\n%d\tcopied\n", 1000+keys["s0"], 1000+keys["s1"])), "COPY customers FROM STDIN"); err != nil {
				t.Fatalf("COPY in the transaction: %v", err)
			}
			pausedOnceEnded(t, paused, "a transaction held s1", tx.Rollback)
			if _, err := adm.PgConn().Exec(ctx, "RESUME s1").ReadAll(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
