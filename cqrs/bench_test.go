package cqrs_test

import (
	"context"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/load"
)

// BenchmarkAppend: one event appended at its expected version per op,
// through the proxy.
func BenchmarkAppend(b *testing.B) {
	e := startEnv(b)
	ctx := context.Background()
	store := &eventstore.Store{Pool: e.Pool}
	stream := "bench-" + eventstore.NewID()
	b.ResetTimer()
	for i := range b.N {
		if _, err := store.Append(ctx, stream, int64(i), []eventstore.NewEvent{ev("Tick", i)}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCheckout: orders placed by 8 clients and driven to the end of
// their sagas (orchestration) with the load generator; reports orders/s
// and checks the invariants at the end.
func BenchmarkCheckout(b *testing.B) {
	e := startEnv(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	svc := app.New(e.Pool, app.Options{Interval: 5 * time.Millisecond})
	if err := svc.Seed(ctx, 100, 1<<40, 50, 1<<40, 100); err != nil {
		b.Fatal(err)
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); svc.RunWorkers(wctx) }()
	defer func() { stop(); <-done }()
	b.ResetTimer()
	rep, err := load.Run(ctx, svc, load.Config{Orders: b.N, Concurrency: 8, Customers: 100, Products: 50,
		Credit: 1 << 40, Stock: 1 << 40, Seed: 1, NoSeed: true}, func(ctx context.Context) error {
		for {
			sg, msgs, lag, err := svc.InFlight(ctx)
			if err != nil || sg+msgs+lag == 0 {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range rep.Violations {
		b.Error(v)
	}
	b.ReportMetric(float64(rep.Placed)/rep.Elapsed.Seconds(), "orders/s")
	b.ReportMetric(float64(rep.Latency["place"].P99.Microseconds()), "place-p99-µs")
}
