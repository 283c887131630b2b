package cqrs_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/outbox"
)

// TestRelayBoundsItsPass: a relay's delivered marks commit with its pass,
// so a pass must end after a bounded time, or a relay that dies sooner
// than its pass (workers SIGKILLed every second, as in the chaos test)
// would handle the same messages again and again and mark none. With a
// handler slower than the budget, each pass delivers one message, and
// every message is handled exactly once.
func TestRelayBoundsItsPass(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	const n = 3
	stream := "relay-" + eventstore.NewID() // one key: one shard
	for i := range n {
		if err := pgx.BeginFunc(ctx, e.Pool, func(tx pgx.Tx) error {
			return orders.Outbox.Put(ctx, tx, stream, eventstore.NewID(), "Test", map[string]int{"i": i})
		}); err != nil {
			t.Fatal(err)
		}
	}
	handled := map[string]int{}
	slow := func(ctx context.Context, m outbox.Message) error {
		handled[m.ID]++
		time.Sleep(250 * time.Millisecond) // longer than a pass may take
		return nil
	}
	// pass delivers once on every shard (only one holds the messages).
	pass := func() int {
		total := 0
		for _, sh := range shardNames {
			d, err := orders.Outbox.DeliverOnce(ctx, e.Pool, sh, 100, slow)
			if err != nil {
				t.Fatal(err)
			}
			total += d
		}
		return total
	}
	for i := range n {
		if d := pass(); d != 1 {
			t.Fatalf("pass %d delivered %d messages, want 1 (the pass must stop after its budget)", i+1, d)
		}
	}
	if d := pass(); d != 0 {
		t.Errorf("a pass after all were delivered delivered %d", d)
	}
	if len(handled) != n {
		t.Errorf("%d messages handled, want %d", len(handled), n)
	}
	for id, k := range handled {
		if k != 1 {
			t.Errorf("message %s handled %d times, want once", id, k)
		}
	}
	var pending int64
	for _, sh := range shardNames {
		c, _, err := orders.Outbox.Pending(ctx, e.Pool, sh)
		if err != nil {
			t.Fatal(err)
		}
		pending += c
	}
	if pending != 0 {
		t.Errorf("%d messages still pending", pending)
	}
}
