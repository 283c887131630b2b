package cqrs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/orders"
)

func ev(typ string, data any) eventstore.NewEvent {
	return eventstore.NewEvent{ID: eventstore.NewID(), Type: typ, Data: data}
}

func TestEventStore(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	ctx := context.Background()
	store := &eventstore.Store{Pool: e.Pool}

	t.Run("64 concurrent appends at the same expected version", func(t *testing.T) {
		const writers, rounds = 64, 5
		stream := "race-" + eventstore.NewID()
		for round := int64(0); round < rounds; round++ {
			var wg sync.WaitGroup
			results := make([]error, writers)
			for w := range writers {
				wg.Go(func() {
					_, results[w] = store.Append(ctx, stream, round, []eventstore.NewEvent{ev("Tick", map[string]int{"writer": w})})
				})
			}
			wg.Wait()
			wins := 0
			for w, err := range results {
				var conflict *eventstore.ConflictError
				switch {
				case err == nil:
					wins++
				case errors.As(err, &conflict):
					if conflict.Expected != round || conflict.Actual != round+1 {
						t.Errorf("round %d writer %d: conflict %+v, want expected %d actual %d", round, w, conflict, round, round+1)
					}
				default:
					t.Fatalf("round %d writer %d: %v", round, w, err)
				}
			}
			if wins != 1 {
				t.Fatalf("round %d: %d winners, want exactly 1", round, wins)
			}
		}
		evs, err := store.Load(ctx, stream, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != rounds {
			t.Fatalf("%d events, want %d", len(evs), rounds)
		}
		for i, x := range evs {
			if x.Version != int64(i+1) {
				t.Errorf("event %d has version %d: versions not contiguous", i, x.Version)
			}
		}
	})

	t.Run("idempotent by event id", func(t *testing.T) {
		stream := "idem-" + eventstore.NewID()
		batch := []eventstore.NewEvent{ev("A", 1), ev("B", 2)}
		first, err := store.Append(ctx, stream, 0, batch)
		if err != nil {
			t.Fatal(err)
		}
		again, err := store.Append(ctx, stream, 0, batch) // a retry after a lost ack
		if err != nil {
			t.Fatalf("retry: %v", err)
		}
		if !again.Duplicate || again.FirstVersion != first.FirstVersion || again.LastVersion != first.LastVersion {
			t.Errorf("retry = %+v, want the original %+v as a duplicate", again, first)
		}
		if _, err := store.Append(ctx, stream, 2, []eventstore.NewEvent{batch[0], ev("C", 3)}); !errors.Is(err, eventstore.ErrIDReuse) {
			t.Errorf("partly stored ids: %v, want ErrIDReuse", err)
		}
		if v, _ := store.Version(ctx, stream); v != 2 {
			t.Errorf("version %d after retries, want 2", v)
		}
		// Concurrent retries of one append: all succeed, one stores.
		stream2 := "idem2-" + eventstore.NewID()
		b2 := []eventstore.NewEvent{ev("A", 1)}
		var wg sync.WaitGroup
		errs := make([]error, 16)
		for i := range errs {
			wg.Go(func() { _, errs[i] = store.Append(ctx, stream2, 0, b2) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("concurrent retry %d: %v", i, err)
			}
		}
		if v, _ := store.Version(ctx, stream2); v != 1 {
			t.Errorf("version %d after concurrent retries, want 1", v)
		}
	})

	t.Run("expected version beyond the stream is a conflict", func(t *testing.T) {
		stream := "gap-" + eventstore.NewID()
		if _, err := store.Append(ctx, stream, 0, []eventstore.NewEvent{ev("A", 1)}); err != nil {
			t.Fatal(err)
		}
		_, err := store.Append(ctx, stream, 3, []eventstore.NewEvent{ev("B", 1)})
		var conflict *eventstore.ConflictError
		if !errors.As(err, &conflict) || conflict.Actual != 1 {
			t.Fatalf("append at 3 on a stream at 1: %v, want conflict actual 1", err)
		}
	})

	t.Run("stream lives on one shard", func(t *testing.T) {
		stream := "place-" + eventstore.NewID()
		if _, err := store.Append(ctx, stream, 0, []eventstore.NewEvent{ev("A", 1), ev("B", 2)}); err != nil {
			t.Fatal(err)
		}
		holders := 0
		for i := range e.Shards {
			var n int
			if err := e.direct(t, i).QueryRow(ctx, `SELECT count(*) FROM events WHERE stream_id = $1`, stream).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 0 && n != 2 {
				t.Errorf("shard %d holds %d of 2 events", i, n)
			}
			if n == 2 {
				holders++
			}
		}
		if holders != 1 {
			t.Errorf("%d shards hold the stream, want 1", holders)
		}
	})

	t.Run("upcasting hook", func(t *testing.T) {
		stream := "up-" + eventstore.NewID()
		old := eventstore.NewEvent{ID: eventstore.NewID(), Type: "Renamed", SchemaVersion: 1, Data: map[string]string{"nm": "x"}}
		if _, err := store.Append(ctx, stream, 0, []eventstore.NewEvent{old}); err != nil {
			t.Fatal(err)
		}
		up := &eventstore.Store{Pool: e.Pool, Upcast: func(x *eventstore.Event) error {
			if x.Type == "Renamed" && x.SchemaVersion == 1 {
				var v1 struct{ Nm string }
				if err := json.Unmarshal(x.Data, &v1); err != nil {
					return err
				}
				x.Data, _ = json.Marshal(map[string]string{"name": v1.Nm})
				x.SchemaVersion = 2
			}
			return nil
		}}
		evs, err := up.Load(ctx, stream, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].SchemaVersion != 2 || string(evs[0].Data) != `{"name":"x"}` {
			t.Errorf("upcast event = %+v", evs)
		}
	})
}

func TestOrderSnapshots(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	ctx := context.Background()
	store := &eventstore.Store{Pool: e.Pool}
	svc := &orders.Service{Store: store, SnapshotEvery: 4}
	id := eventstore.NewID()
	if _, err := svc.Place(ctx, id, 7, []orders.Item{{ProductID: 1, Quantity: 1, Price: 100}}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	for i := range 9 {
		if _, err := svc.AddItem(ctx, id, orders.Any, orders.Item{ProductID: int64(i + 2), Quantity: 1, Price: 10}, ""); err != nil {
			t.Fatal(err)
		}
	}
	snap, ok, err := store.LoadSnapshot(ctx, id)
	if err != nil || !ok {
		t.Fatalf("snapshot: %v %v", ok, err)
	}
	if snap.Version != 8 {
		t.Errorf("snapshot at version %d, want 8 (every 4 of 10 events)", snap.Version)
	}
	// Loading = snapshot + tail must equal folding every event.
	got, err := svc.Load(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	full := &orders.Order{}
	evs, err := store.Load(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range evs {
		if err := full.Apply(x.Type, x.Data); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(full) || got.Version != 10 || len(got.Items) != 10 {
		t.Errorf("snapshot+tail %+v\nfull fold     %+v", got, full)
	}
	// Retrying the same placement is idempotent; a different one conflicts.
	if o, err := svc.Place(ctx, id, 7, []orders.Item{{ProductID: 1, Quantity: 1, Price: 100}}, eventstore.Metadata{}); err != nil || o.Version != 10 {
		t.Errorf("retried place: %v %+v", err, o)
	}
	if _, err := svc.Place(ctx, id, 8, []orders.Item{{ProductID: 1, Quantity: 1, Price: 100}}, eventstore.Metadata{}); !errors.Is(err, orders.ErrExists) {
		t.Errorf("other place under the same id: %v, want ErrExists", err)
	}
}
