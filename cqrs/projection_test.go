package cqrs_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/shardproxy/shardproxy/cqrs/eventstore"
	"github.com/shardproxy/shardproxy/cqrs/orders"
	"github.com/shardproxy/shardproxy/cqrs/payment"
	"github.com/shardproxy/shardproxy/cqrs/projection"
)

var shardNames = []string{"s0", "s1", "s2"}

type viewRow struct {
	Customer       int64
	Order, Status  string
	Items          string
	Total, Version int64
	Applied        int64
}

// viewRows reads the whole read model (a keyless read: every shard).
func viewRows(t *testing.T, e *env) map[string]viewRow {
	t.Helper()
	rows, err := e.Pool.Query(context.Background(), `SELECT customer_id, order_id, status, items::text, total, version, events_applied FROM order_view`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]viewRow{}
	for rows.Next() {
		var r viewRow
		if err := rows.Scan(&r.Customer, &r.Order, &r.Status, &r.Items, &r.Total, &r.Version, &r.Applied); err != nil {
			t.Fatal(err)
		}
		if _, dup := out[r.Order]; dup {
			t.Errorf("order %s twice in the read model", r.Order)
		}
		out[r.Order] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestProjectionOutOfOrderCommits(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	ctx := context.Background()
	store := &eventstore.Store{Pool: e.Pool}
	pay := payment.New(e.Pool)
	for c := int64(1); c <= 6; c++ {
		if err := pay.Open(ctx, c, fmt.Sprint("customer ", c), 1000); err != nil {
			t.Fatal(err)
		}
	}
	proj := &projection.Projector{Pool: e.Pool, Store: store, Shards: shardNames, Batch: 3}

	// Held-open transactions, each placing one order (through the proxy,
	// on its stream's shard), begun in order 0..n-1 and so holding
	// increasing positions; they commit in reverse, one rolls back.
	const n = 12
	const rollback = 5
	type held struct {
		conn *pgx.Conn
		tx   pgx.Tx
		id   string
	}
	hs := make([]held, n)
	for i := range hs {
		c, err := pgx.Connect(ctx, e.DSN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(ctx) })
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		id := fmt.Sprintf("held-%02d-%s", i, eventstore.NewID())
		cust := int64(i%6 + 1)
		placed := orders.Placed{OrderID: id, CustomerID: cust, Items: []orders.Item{{ProductID: int64(i + 1), Quantity: 1, Price: 10}}}
		if _, err := eventstore.AppendTx(ctx, tx, id, 0, []eventstore.NewEvent{{ID: eventstore.NewID(), Type: orders.EvPlaced, Data: placed,
			Metadata: eventstore.Metadata{CustomerID: cust}}}); err != nil {
			t.Fatal(err)
		}
		hs[i] = held{c, tx, id}
	}
	// Committed orders with more events, appended while the others hold.
	svc := &orders.Service{Store: store, SnapshotEvery: 3}
	var live []string
	for i := range 6 {
		id := fmt.Sprintf("live-%d-%s", i, eventstore.NewID())
		if _, err := svc.Place(ctx, id, int64(i+1), []orders.Item{{ProductID: 1, Quantity: 2, Price: 5}}, eventstore.Metadata{}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.AddItem(ctx, id, orders.Any, orders.Item{ProductID: 2, Quantity: 1, Price: 7}, ""); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := svc.Cancel(ctx, id, orders.Any, "test", ""); err != nil {
				t.Fatal(err)
			}
		}
		live = append(live, id)
	}
	if err := proj.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	for i := n - 1; i >= 0; i-- {
		if i == rollback {
			if err := hs[i].tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
		} else if err := hs[i].tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		if err := proj.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		// Transactions < i are still open: none of them may be visible.
		// Committed ones appear once no older transaction of their shard
		// is running (here: at the end), and must not be skipped then.
		rows := viewRows(t, e)
		for j, h := range hs {
			if _, seen := rows[h.id]; seen && (j < i || j == rollback) {
				t.Fatalf("after committing %d: uncommitted held order %d in the read model", i, j)
			}
		}
	}
	rows := viewRows(t, e)
	if len(rows) != n-1+len(live) {
		t.Errorf("%d rows in the read model, want %d", len(rows), n-1+len(live))
	}
	for _, id := range live {
		r := rows[id]
		o, err := svc.Load(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != o.Version || r.Status != string(o.Status) || r.Total != o.Total() {
			t.Errorf("view of %s = %+v, aggregate %+v", id, r, o)
		}
	}
	for id, r := range rows {
		if r.Applied != r.Version {
			t.Errorf("order %s: %d events applied for version %d: not exactly once", id, r.Applied, r.Version)
		}
	}
	lag, err := proj.Lag(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for s, l := range lag {
		if l != 0 {
			t.Errorf("lag on %s = %d after catch-up", s, l)
		}
	}

	t.Run("rebuild equals live", func(t *testing.T) {
		before := viewRows(t, e)
		if err := proj.Reset(ctx); err != nil {
			t.Fatal(err)
		}
		if got := viewRows(t, e); len(got) != 0 {
			t.Fatalf("%d rows after reset", len(got))
		}
		if err := proj.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		if after := viewRows(t, e); !reflect.DeepEqual(before, after) {
			t.Errorf("rebuilt read model differs:\nlive    %v\nrebuilt %v", before, after)
		}
	})

	t.Run("queries", func(t *testing.T) {
		q := projection.Queries{Pool: e.Pool}
		v, ok, err := q.FindByID(ctx, live[1])
		if err != nil || !ok || v.Version != 2 || v.CustomerID != 2 {
			t.Errorf("FindByID = %+v %v %v", v, ok, err)
		}
		if _, ok, err := q.FindByID(ctx, "nope"); ok || err != nil {
			t.Errorf("FindByID(nope) = %v %v", ok, err)
		}
		list, err := q.FindByCustomer(ctx, 2, 100)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, r := range rows {
			if r.Customer == 2 {
				want++
			}
		}
		if len(list) != want || want == 0 {
			t.Errorf("FindByCustomer(2) = %d orders, want %d", len(list), want)
		}
	})
}

// TestProjectionPassBudget: a pass's checkpoint commits with the pass, so
// a pass ends after its budget (or a runner that dies sooner would apply
// the same events again and again and never checkpoint). With a budget
// shorter than any event, each pass applies one event, the checkpoint
// stops right after it, and the next pass goes on from there.
func TestProjectionPassBudget(t *testing.T) {
	t.Parallel()
	e := startEnv(t)
	ctx := context.Background()
	store := &eventstore.Store{Pool: e.Pool}
	if err := payment.New(e.Pool).Open(ctx, 1, "customer 1", 1000); err != nil {
		t.Fatal(err)
	}
	// One order of four events: one stream, so one source shard.
	svc := &orders.Service{Store: store}
	id := "budget-" + eventstore.NewID()
	if _, err := svc.Place(ctx, id, 1, []orders.Item{{ProductID: 1, Quantity: 1, Price: 5}}, eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	for p := int64(2); p <= 3; p++ {
		if _, err := svc.AddItem(ctx, id, orders.Any, orders.Item{ProductID: p, Quantity: 1, Price: 7}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := svc.Cancel(ctx, id, orders.Any, "test", ""); err != nil {
		t.Fatal(err)
	}
	proj := &projection.Projector{Pool: e.Pool, Store: store, Shards: shardNames, Budget: time.Nanosecond}
	for round := int64(1); round <= 4; round++ {
		applied := 0
		for _, target := range shardNames {
			n, err := proj.Step(ctx, target)
			if err != nil {
				t.Fatal(err)
			}
			applied += n
		}
		if applied != 1 {
			t.Fatalf("round %d applied %d events, want 1 (a pass must stop after its budget)", round, applied)
		}
		if r := viewRows(t, e)[id]; r.Applied != round || r.Version != round {
			t.Fatalf("after round %d the view has %d events applied, version %d; want %d", round, r.Applied, r.Version, round)
		}
	}
	if r := viewRows(t, e)[id]; r.Status != string(orders.Cancelled) {
		t.Errorf("status %q after all four events, want %q", r.Status, orders.Cancelled)
	}
}
