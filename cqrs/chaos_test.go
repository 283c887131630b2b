package cqrs_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/load"
	"github.com/shardproxy/shardproxy/cqrs/saga"
)

// TestChaos runs the load generator with random participant failures and
// duplicated message deliveries; the orchestrator "dies" at random points
// (after a participant took effect, before the saga recorded it: the state
// a SIGKILL leaves, lease held) and is restarted as a new instance. At
// quiescence every invariant of issue 5 must hold.
func TestChaos(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	for _, style := range []string{saga.Orchestration, saga.Choreographed} {
		t.Run(style, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			// Truncate state between styles: fresh accounts and sagas.
			for _, tbl := range []string{"sagas", "saga_steps", "events", "snapshots", "order_outbox", "payment_outbox", "inventory_outbox",
				"payment_inbox", "inventory_inbox", "credit_reservations", "stock_reservations", "customers", "products", "order_view", "projection_checkpoints"} {
				for _, sh := range shardNames {
					if _, err := e.Pool.Exec(ctx, "/* shard: "+sh+" */ DELETE FROM "+tbl); err != nil {
						t.Fatal(err)
					}
				}
			}
			svc := app.New(e.Pool, app.Options{Style: style, StepTimeout: 3 * time.Second, Interval: 5 * time.Millisecond})
			load.InjectFailures(svc, 0.1, 1)
			var dupMu sync.Mutex
			rng := rand.New(rand.NewPCG(2, 3))
			svc.Duplicate = func() bool { dupMu.Lock(); defer dupMu.Unlock(); return rng.IntN(3) == 0 }
			var crashes, restarts atomic.Int64
			newOrchestrator := func() {
				o := *svc.Orchestrator
				o.Lease = 150 * time.Millisecond
				o.BackoffMin = 2 * time.Millisecond
				o.BackoffMax = 50 * time.Millisecond
				seed := uint64(restarts.Add(1))
				r := rand.New(rand.NewPCG(seed, 9))
				o.Crash = func(string, string) bool {
					if r.IntN(12) == 0 {
						crashes.Add(1)
						return true
					}
					return false
				}
				svc.Orchestrator = &o
			}
			newOrchestrator()
			// The pumper owns svc.Orchestrator; it stops when stop closes.
			stop := make(chan struct{})
			pumped := make(chan error, 1)
			go func() {
				for {
					select {
					case <-stop:
						pumped <- nil
						return
					default:
					}
					if _, err := svc.Pump(ctx); errors.Is(err, saga.ErrCrashed) {
						newOrchestrator() // restart; its predecessor's leases expire
					} else if err != nil && ctx.Err() != nil {
						pumped <- err
						return
					}
				}
			}()
			cfg := load.Config{Orders: 120, Concurrency: 6, Customers: 12, Products: 8, Credit: 2000, Stock: 25,
				CancelRate: 0.1, ShipRate: 0.2, Seed: 42}
			rep, err := load.Run(ctx, svc, cfg, func(ctx context.Context) error {
				close(stop)
				if err := <-pumped; err != nil {
					return err
				}
				// Crash-free from here: drain to quiescence.
				for {
					if _, err := svc.Pump(ctx); errors.Is(err, saga.ErrCrashed) {
						newOrchestrator()
						continue
					}
					sg, msgs, lag, err := svc.InFlight(ctx)
					if err != nil {
						return err
					}
					if sg == 0 && msgs == 0 && lag == 0 {
						return nil
					}
					if ctx.Err() != nil {
						return ctx.Err()
					}
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s: %d orchestrator crashes, %d instances\n%s", style, crashes.Load(), restarts.Load(), rep)
			for _, v := range rep.Violations {
				t.Error(v)
			}
			if rep.Completed+rep.Compens != int64(rep.Placed) {
				t.Errorf("%d sagas ended for %d orders placed", rep.Completed+rep.Compens, rep.Placed)
			}
			if rep.Completed == 0 || rep.Compens == 0 {
				t.Errorf("want both outcomes under chaos: %d completed, %d compensated", rep.Completed, rep.Compens)
			}
			if style == saga.Orchestration && crashes.Load() == 0 {
				t.Error("the orchestrator never crashed: the chaos did not happen")
			}
		})
	}
}
