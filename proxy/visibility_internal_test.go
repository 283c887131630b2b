package proxy

import (
	"context"
	"testing"
	"time"
)

// blocked reports whether done stays open for a while: the call it
// watches is waiting. (A call that should wait and does not usually
// returns well within it.)
func blocked(done <-chan struct{}) bool {
	select {
	case <-done:
		return false
	case <-time.After(30 * time.Millisecond):
		return true
	}
}

func async(f func()) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	return done
}

func setWindowWait(t *testing.T, d time.Duration) {
	old := windowWait.Swap(int64(d))
	t.Cleanup(func() { windowWait.Store(old) })
}

func TestCommitGateAwait(t *testing.T) {
	var g commitGate
	ctx := context.Background()
	if err := g.await(ctx, "s0"); err != nil {
		t.Fatal(err)
	}
	end := g.commit([]string{"s0", "s1"})
	if err := g.await(ctx, "s2"); err != nil { // another shard is not held
		t.Fatal(err)
	}
	done := async(func() { _ = g.await(ctx, "s1") })
	if !blocked(done) {
		t.Fatal("a statement for s1 did not wait for the commit phase on s0, s1")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancelled := make(chan error, 1)
	go func() { cancelled <- g.await(cctx, "s0") }()
	cancel()
	if err := <-cancelled; err == nil {
		t.Fatal("await ignored its context")
	}
	end()
	<-done
	if g.phases.Load() != 0 {
		t.Fatalf("phases = %d after the end", g.phases.Load())
	}
}

func TestCommitGateWaitsForWindows(t *testing.T) {
	setWindowWait(t, time.Minute)
	var g commitGate
	ctx := context.Background()
	w, err := g.open(ctx, []string{"s0", "s1"})
	if err != nil {
		t.Fatal(err)
	}
	// A window on one of its shards only cannot see it half: no wait.
	w1, err := g.open(ctx, []string{"s1", "s2"})
	if err != nil {
		t.Fatal(err)
	}
	var end func()
	committed := async(func() { end = g.commit([]string{"s0", "s2"}) })
	<-committed
	if g.close(w1) || g.close(w) {
		t.Fatal("a window sharing one shard with the phase was tainted")
	}
	end()

	w, _ = g.open(ctx, []string{"s0", "s1"})
	committed = async(func() { end = g.commit([]string{"s0", "s1"}) })
	if !blocked(committed) {
		t.Fatal("the commit phase did not wait for the read window on its shards")
	}
	// A new window waits for the waiting phase rather than starve it.
	var w2 *readWindow
	opened := async(func() { w2, _ = g.open(ctx, []string{"s1", "s0"}) })
	if !blocked(opened) {
		t.Fatal("a new window did not wait for the waiting commit phase")
	}
	if g.close(w) {
		t.Fatal("a window the phase waited for was tainted")
	}
	<-committed
	if !blocked(opened) {
		t.Fatal("a new window opened while the commit phase ran")
	}
	end()
	<-opened
	if g.close(w2) {
		t.Fatal("a window opened after the phase was tainted")
	}
}

func TestCommitGateTaintsAfterWindowWait(t *testing.T) {
	setWindowWait(t, time.Millisecond)
	var g commitGate
	w, err := g.open(context.Background(), []string{"s0", "s1", "s2"})
	if err != nil {
		t.Fatal(err)
	}
	end := g.commit([]string{"s1", "s2"}) // gives up waiting for w
	end()
	if !g.close(w) {
		t.Fatal("a window overlapped by a commit phase that started while it was open is not tainted")
	}
}
