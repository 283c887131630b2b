// Package load is the order service's load generator and invariant
// checker (`shardproxy orders load`): concurrent clients place, extend,
// cancel and ship orders through the service while participants fail at
// random; at quiescence it checks the invariants of issue 5.
package load

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/reservation"
	"github.com/shardproxy/shardproxy/cqrs/saga"
)

// Config shapes a run.
type Config struct {
	Orders      int     // orders to place
	Concurrency int     // concurrent clients
	Customers   int     // customers 1..Customers
	Products    int     // products 1..Products
	Credit      int64   // initial credit per customer
	Stock       int64   // initial stock per product
	Price       int64   // catalog price per product
	FailRate    float64 // probability that a participant transaction aborts
	CancelRate  float64 // probability that a client cancels its order
	ShipRate    float64 // probability that a client ships its confirmed order
	Seed        uint64
	NoSeed      bool // accounts exist already (benchmarks seed outside the timer)
}

// Defaults fills zero fields.
func (c *Config) Defaults() {
	if c.Orders == 0 {
		c.Orders = 500
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.Customers == 0 {
		c.Customers = 50
	}
	if c.Products == 0 {
		c.Products = 20
	}
	if c.Credit == 0 {
		c.Credit = 5000
	}
	if c.Stock == 0 {
		c.Stock = 40
	}
	if c.Price == 0 {
		c.Price = 100
	}
}

// Report is a run's outcome.
type Report struct {
	Placed, Rejected   int
	Elapsed            time.Duration
	Latency            map[string]Percentiles // per command
	Completed, Compens int64
	Violations         []string
}

// Percentiles of one command's latency.
type Percentiles struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

func (r Report) String() string {
	s := fmt.Sprintf("placed %d orders (%d refused) in %v: %.1f orders/s\nsagas in the database: %d completed, %d compensated\n",
		r.Placed, r.Rejected, r.Elapsed.Round(time.Millisecond), float64(r.Placed)/r.Elapsed.Seconds(), r.Completed, r.Compens)
	for _, cmd := range []string{"place", "add_item", "cancel", "ship", "get"} {
		if p, ok := r.Latency[cmd]; ok {
			s += fmt.Sprintf("  %-8s n=%-6d p50=%-9v p90=%-9v p99=%-9v max=%v\n", cmd, p.N, p.P50.Round(time.Microsecond),
				p.P90.Round(time.Microsecond), p.P99.Round(time.Microsecond), p.Max.Round(time.Microsecond))
		}
	}
	if len(r.Violations) == 0 {
		s += "invariants: all hold\n"
	} else {
		s += fmt.Sprintf("invariants: %d VIOLATED\n", len(r.Violations))
		for _, v := range r.Violations {
			s += "  " + v + "\n"
		}
	}
	return s
}

// latencies collects samples per command (bounded by the run's size).
type latencies struct {
	mu sync.Mutex
	m  map[string][]time.Duration
}

func (l *latencies) add(cmd string, d time.Duration) {
	l.mu.Lock()
	l.m[cmd] = append(l.m[cmd], d)
	l.mu.Unlock()
}

func (l *latencies) percentiles() map[string]Percentiles {
	out := map[string]Percentiles{}
	for cmd, ds := range l.m {
		slices.Sort(ds)
		at := func(q float64) time.Duration { return ds[min(len(ds)-1, int(q*float64(len(ds))))] }
		out[cmd] = Percentiles{N: len(ds), P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ds[len(ds)-1]}
	}
	return out
}

// InjectFailures makes the participants' transactions abort with
// probability rate (transient failures the sagas must ride out).
func InjectFailures(svc *app.Service, rate float64, seed uint64) {
	if rate <= 0 {
		return
	}
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 7))
	fail := func(op string, _ int64) error {
		mu.Lock()
		defer mu.Unlock()
		if rng.Float64() < rate {
			return errors.New("injected failure: " + op)
		}
		return nil
	}
	svc.Payment.Fail = fail
	svc.Inventory.Fail = fail
}

// Run seeds the accounts, generates the load, waits for quiescence (the
// service's workers must be running, or pump != nil drives them) and
// checks the invariants.
func Run(ctx context.Context, svc *app.Service, cfg Config, pump func(context.Context) error) (Report, error) {
	cfg.Defaults()
	if !cfg.NoSeed {
		if err := svc.Seed(ctx, cfg.Customers, cfg.Credit, cfg.Products, cfg.Stock, cfg.Price); err != nil {
			return Report{}, err
		}
	}
	lat := &latencies{m: map[string][]time.Duration{}}
	var rep Report
	var mu sync.Mutex
	start := time.Now()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var firstErr error
	for w := range cfg.Concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(w)))
			for range jobs {
				placed, err := client(ctx, svc, cfg, rng, lat)
				mu.Lock()
				if placed {
					rep.Placed++
				} else {
					rep.Rejected++
				}
				if err != nil && firstErr == nil && ctx.Err() == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < cfg.Orders && ctx.Err() == nil; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return rep, firstErr
	}
	if pump != nil {
		if err := pump(ctx); err != nil {
			return rep, err
		}
	} else if err := waitQuiet(ctx, svc); err != nil {
		return rep, err
	}
	rep.Elapsed = time.Since(start)
	rep.Latency = lat.percentiles()
	v, err := Check(ctx, svc, cfg.Customers, cfg.Products)
	if err != nil {
		return rep, err
	}
	rep.Violations = v
	for _, sh := range svc.Opts.Shards {
		st, err := saga.Stats(ctx, svc.Pool, sh)
		if err != nil {
			return rep, err
		}
		rep.Completed += st.ByState[saga.Completed]
		rep.Compens += st.ByState[saga.Compensated]
	}
	return rep, nil
}

// waitQuiet waits until the (separately running) workers are done.
func waitQuiet(ctx context.Context, svc *app.Service) error {
	for {
		sg, msgs, lag, err := svc.InFlight(ctx)
		if err != nil {
			return err
		}
		if sg == 0 && msgs == 0 && lag == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not quiescent: %d sagas in flight, %d messages pending, projection lag %d", sg, msgs, lag)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// client is one customer session: place an order, sometimes add an item,
// cancel or ship it later. Business refusals are expected; errors are not.
func client(ctx context.Context, svc *app.Service, cfg Config, rng *rand.Rand, lat *latencies) (bool, error) {
	cust := int64(rng.IntN(cfg.Customers) + 1)
	n := rng.IntN(3) + 1
	var items []app.ItemRequest
	for range n {
		items = append(items, app.ItemRequest{ProductID: int64(rng.IntN(cfg.Products) + 1), Quantity: int64(rng.IntN(3) + 1)})
	}
	t0 := time.Now()
	o, err := svc.PlaceOrder(ctx, "", cust, items)
	lat.add("place", time.Since(t0))
	if err != nil {
		return false, err
	}
	if rng.Float64() < 0.2 {
		t0 = time.Now()
		_, err := svc.AddItem(ctx, o.ID, orders.Any, app.ItemRequest{ProductID: int64(rng.IntN(cfg.Products) + 1), Quantity: 1})
		lat.add("add_item", time.Since(t0))
		if err != nil && !errors.Is(err, orders.ErrAddNotPending) {
			return true, err
		}
	}
	if rng.Float64() < cfg.CancelRate {
		t0 = time.Now()
		_, err := svc.Cancel(ctx, o.ID, orders.Any, "load: customer cancelled")
		lat.add("cancel", time.Since(t0))
		if err != nil && !errors.Is(err, orders.ErrAlreadyCancel) && !errors.Is(err, orders.ErrCancelShipped) {
			return true, err
		}
	}
	if rng.Float64() < cfg.ShipRate {
		t0 = time.Now()
		_, err := svc.Ship(ctx, o.ID, orders.Any)
		lat.add("ship", time.Since(t0))
		if err != nil && !errors.Is(err, orders.ErrShipConfirmed) {
			return true, err
		}
	}
	t0 = time.Now()
	_, err = svc.Orders.Load(ctx, o.ID)
	lat.add("get", time.Since(t0))
	return true, err
}

// checkLedger checks accounts 1..n of one ledger: available + reserved +
// consumed = initial, and the reservations held sum to reserved. The
// words name the quantities in the violations it returns.
func checkLedger(ctx context.Context, l *reservation.Ledger, n int, noun, available, consumed string) ([]string, error) {
	var v []string
	for id := int64(1); id <= int64(n); id++ {
		b, ok, err := l.Balance(ctx, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		var held int64
		q := fmt.Sprintf(`SELECT coalesce(sum(amount), 0) FROM %s WHERE %s = $1 AND state = 'reserved'`, l.Reservations, l.KeyCol)
		if err := l.Pool.QueryRow(ctx, q, id).Scan(&held); err != nil {
			return nil, err
		}
		if b.Available+b.Reserved+b.Consumed != b.Initial || held != b.Reserved {
			v = append(v, fmt.Sprintf("%s %d: %s %d + reserved %d + %s %d vs initial %d; reservations hold %d",
				noun, id, available, b.Available, b.Reserved, consumed, b.Consumed, b.Initial, held))
		}
	}
	return v, nil
}

// Check verifies the invariants of issue 5 at quiescence:
//   - every customer: available + reserved + captured credit = initial;
//   - every product: on hand + reserved + shipped stock = initial;
//   - reserved amounts equal the sum of the reservations held;
//   - every saga ended COMPLETED or COMPENSATED, exactly once, and its
//     order agrees (completed: confirmed, shipped or later cancelled;
//     compensated: cancelled, holding nothing);
//   - the read model equals the streams, and equals a rebuild.
func Check(ctx context.Context, svc *app.Service, customers, products int) ([]string, error) {
	var v []string
	for _, l := range []struct {
		ledger                    *reservation.Ledger
		n                         int
		noun, available, consumed string
	}{
		{svc.Payment, customers, "customer", "available", "captured"},
		{svc.Inventory, products, "product", "on hand", "shipped"},
	} {
		lv, err := checkLedger(ctx, l.ledger, l.n, l.noun, l.available, l.consumed)
		if err != nil {
			return nil, err
		}
		v = append(v, lv...)
	}
	// Sagas, per shard (hinted), against their orders.
	for _, sh := range svc.Opts.Shards {
		rows, err := svc.Pool.Query(ctx, `/* shard: `+sh+` */ SELECT saga_id, state, finishes FROM sagas`)
		if err != nil {
			return nil, err
		}
		type sg struct {
			id, state string
			finishes  int
		}
		var all []sg
		for rows.Next() {
			var s sg
			if err := rows.Scan(&s.id, &s.state, &s.finishes); err != nil {
				rows.Close()
				return nil, err
			}
			all = append(all, s)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		for _, s := range all {
			if (s.state != saga.Completed && s.state != saga.Compensated) || s.finishes != 1 {
				v = append(v, fmt.Sprintf("saga %s: %s, finished %d times", s.id, s.state, s.finishes))
				continue
			}
			o, err := svc.Orders.Load(ctx, s.id)
			if err != nil {
				return nil, err
			}
			okStatus := o.Status == orders.Cancelled
			if s.state == saga.Completed {
				okStatus = o.Status == orders.Confirmed || o.Status == orders.Shipped || o.Status == orders.Cancelled
			}
			if !okStatus {
				v = append(v, fmt.Sprintf("saga %s %s but order is %s", s.id, s.state, o.Status))
			}
			if o.Status == orders.Cancelled {
				var held int64
				if err := svc.Pool.QueryRow(ctx, `SELECT count(*) FROM credit_reservations WHERE customer_id = $1 AND order_id = $2 AND state <> 'released' AND state <> 'rejected'`,
					o.CustomerID, o.ID).Scan(&held); err != nil {
					return nil, err
				}
				if held != 0 {
					v = append(v, fmt.Sprintf("cancelled order %s still holds credit", o.ID))
				}
			}
		}
	}
	// Read model: live equals the streams and equals a rebuild.
	live, err := snapshotView(ctx, svc)
	if err != nil {
		return nil, err
	}
	for id, r := range live {
		o, err := svc.Orders.Load(ctx, id)
		if err != nil {
			return nil, err
		}
		if r.Version != o.Version || r.Status != string(o.Status) || r.Total != o.Total() || r.Applied != r.Version {
			v = append(v, fmt.Sprintf("read model of %s: %+v, stream: %s v%d total %d", id, r, o.Status, o.Version, o.Total()))
		}
	}
	if err := svc.Projector.Reset(ctx); err != nil {
		return nil, err
	}
	if err := svc.Projector.CatchUp(ctx); err != nil {
		return nil, err
	}
	rebuilt, err := snapshotView(ctx, svc)
	if err != nil {
		return nil, err
	}
	if !reflect.DeepEqual(live, rebuilt) {
		v = append(v, fmt.Sprintf("read model (%d orders) differs from its rebuild (%d orders)", len(live), len(rebuilt)))
	}
	return v, nil
}

type viewRow struct {
	Customer       int64
	Status         string
	Total, Version int64
	Applied        int64
}

func snapshotView(ctx context.Context, svc *app.Service) (map[string]viewRow, error) {
	out := map[string]viewRow{}
	for _, sh := range svc.Opts.Shards {
		rows, err := svc.Pool.Query(ctx, `/* shard: `+sh+` */ SELECT order_id, customer_id, status, total, version, events_applied FROM order_view`)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id string
			var r viewRow
			if err := rows.Scan(&id, &r.Customer, &r.Status, &r.Total, &r.Version, &r.Applied); err != nil {
				rows.Close()
				return nil, err
			}
			out[id] = r
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}
