package cqrs_test

import (
	"context"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/cqrs/app"
	"github.com/shardproxy/shardproxy/cqrs/saga"
)

// TestStaleOrchestrator: orchestrator A stalls between a participant's
// effect and the saga's transition until its lease has expired and
// orchestrator B has taken the saga over and moved it on. A's late
// transition must be refused (version guard): the step is recorded once
// and the saga ends once.
func TestStaleOrchestrator(t *testing.T) {
	t.Parallel() // own databases; the tests wait on round trips more than on CPU
	e := startEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	svc := app.New(e.Pool, app.Options{})
	if err := svc.Seed(ctx, 1, 1000, 1, 10, 100); err != nil {
		t.Fatal(err)
	}
	o, err := svc.PlaceOrder(ctx, "", 1, []app.ItemRequest{{ProductID: 1, Quantity: 1}})
	if err != nil {
		t.Fatal(err)
	}
	shard := ""
	for _, sh := range shardNames {
		var n int
		if err := e.Pool.QueryRow(ctx, "/* shard: "+sh+" */ SELECT count(*) FROM sagas WHERE saga_id = $1", o.ID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 1 {
			shard = sh
		}
	}
	stalled, resume := make(chan struct{}), make(chan struct{})
	a := *svc.Orchestrator
	a.Lease = 100 * time.Millisecond
	a.Crash = func(_, step string) bool {
		if step == "reserve_credit" {
			close(stalled)
			<-resume
		}
		return false
	}
	b := *svc.Orchestrator
	b.Lease = 100 * time.Millisecond
	aDone := make(chan error, 1)
	go func() { _, err := a.RunOnce(ctx, shard); aDone <- err }()
	<-stalled
	// B takes over once A's lease has expired and moves the saga past
	// the stalled step (not to its end: the version guard, not the
	// finished guard, must stop A).
	for {
		st, _, err := saga.Get(ctx, e.Pool, o.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Step >= 2 {
			break
		}
		if _, err := b.RunOnce(ctx, shard); err != nil {
			t.Fatal(err)
		}
		if ctx.Err() != nil {
			t.Fatal("saga did not finish under orchestrator B")
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(resume)
	if err := <-aDone; err != nil {
		t.Fatalf("A: %v", err)
	}
	for range 100 {
		if _, err := b.RunOnce(ctx, shard); err != nil {
			t.Fatal(err)
		}
		if st, _, _ := saga.Get(ctx, e.Pool, o.ID); st.FinishedAt != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _, err := saga.Get(ctx, e.Pool, o.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.State != saga.Completed || st.Finishes != 1 {
		t.Fatalf("saga %s finished %d times", st.State, st.Finishes)
	}
	oks := 0
	for _, l := range st.Steps {
		if l.Step == "reserve_credit" && l.Outcome == "ok" {
			oks++
		}
	}
	if oks != 1 {
		t.Errorf("reserve_credit recorded %d times: %+v", oks, st.Steps)
	}
	b1, _, _ := svc.Payment.Balance(ctx, 1)
	if b1.Reserved != 100 || b1.Available != 900 {
		t.Errorf("credit after two orchestrators ran the step: %+v, want 100 reserved once", b1)
	}
}
