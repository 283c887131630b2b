package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// A transaction that spans shards commits one shard after the other: the
// COMMIT PREPAREDs of a two-phase commit reach the shards microseconds
// apart, and each shard makes its part visible on its own. A statement
// that read one shard after its part became visible and another before
// would see the transaction half committed, which one Postgres server
// never shows: a transfer between two customers on different shards would
// be counted twice or not at all by a sum over every shard.
//
// commitGate makes the commit appear at one moment to every client of this
// proxy. While a commit phase runs on a shard (from the first COMMIT
// PREPARED to the last), a statement for that shard waits for it to end
// before it is sent. A multi-shard SELECT takes its snapshots on its shards
// at slightly different moments; the span from sending it until every
// shard has answered its Describe (the snapshot is taken at Bind, see
// startLegs) is a read window. A commit phase on two or more of a window's shards waits for
// it to close, and a new window waits for such a waiting commit, so that
// neither starves. That wait is bounded (windowWait): a window's Parse can
// be blocked by a lock the committing transaction holds (DDL). A phase that
// starts anyway marks the windows it overlaps as tainted, and those
// statements run again once the phase has ended.
//
// The gate covers the sessions of one proxy. Two proxies in front of the
// same shards, clients that write to the shards directly and recovery's
// commits of a transaction whose shard was down are not covered.
type commitGate struct {
	phases atomic.Int32 // commit phases running or waiting: while 0, statements take no lock

	mu      sync.Mutex
	running map[string]int       // shard -> commit phases running on it
	waiting map[string]int       // shard -> commit phases waiting for read windows
	windows map[*readWindow]bool // open read windows
	changed chan struct{}        // closed (and replaced) when a phase or window ends

	lastPhase atomic.Int64 // unix nanoseconds when a commit phase last started (quietFor)

	waits   atomic.Int64 // statements that waited for a commit phase
	retakes atomic.Int64 // SELECTs that took their snapshots again (startLegs)
}

// CommitGateCounts are the commit gate's counters (visibility.go).
type CommitGateCounts struct {
	Waits   int64 // statements held until a cross-shard commit was visible on every shard
	Retakes int64 // multi-shard SELECTs that took their snapshots again after a commit overlapped them
}

// readWindow is one multi-shard SELECT taking its snapshots.
type readWindow struct {
	shards  []string
	tainted bool // a commit phase on two of its shards started while it was open (under mu)
}

// windowWait bounds how long a commit phase waits for read windows
// (a time.Duration; tests change it).
var windowWait atomic.Int64

func init() {
	windowWait.Store(int64(20 * time.Millisecond))
	quietAfter.Store(int64(time.Second))
}

// signal wakes every waiter; called with mu held.
func (g *commitGate) signal() {
	if g.changed != nil {
		close(g.changed)
		g.changed = nil
	}
}

// waitCh returns the channel the next signal closes; called with mu held.
func (g *commitGate) waitCh() chan struct{} {
	if g.changed == nil {
		g.changed = make(chan struct{})
	}
	return g.changed
}

// busy reports whether a commit phase runs (or, with waitingToo, waits to
// run) on any of shards; called with mu held.
func (g *commitGate) busy(shards []string, waitingToo bool) bool {
	for _, sh := range shards {
		if g.running[sh] > 0 || waitingToo && g.waiting[sh] > 0 {
			return true
		}
	}
	return false
}

// await returns once no commit phase runs on any of shards, or with ctx's
// error. While no commit phase runs anywhere it costs one atomic load.
func (g *commitGate) await(ctx context.Context, shards ...string) error {
	if g.phases.Load() == 0 {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waitWhile(ctx, shards, false)
}

// open starts a read window over shards, once no commit phase runs or
// waits on any of them.
func (g *commitGate) open(ctx context.Context, shards []string) (*readWindow, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if err := g.waitWhile(ctx, shards, true); err != nil {
		return nil, err
	}
	if g.windows == nil {
		g.windows = make(map[*readWindow]bool)
	}
	w := &readWindow{shards: shards}
	g.windows[w] = true
	return w, nil
}

// waitWhile waits while g.busy(shards, waitingToo), or until ctx ends; it
// is called, and returns, with mu held.
func (g *commitGate) waitWhile(ctx context.Context, shards []string, waitingToo bool) error {
	if g.busy(shards, waitingToo) {
		g.waits.Add(1)
	}
	for g.busy(shards, waitingToo) {
		ch := g.waitCh()
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			g.mu.Lock()
			return ctx.Err()
		}
		g.mu.Lock()
	}
	return nil
}

// close ends a read window and reports whether a commit phase may have
// become visible on some of its shards and not on others while it was open.
func (g *commitGate) close(w *readWindow) (tainted bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.windows, w)
	g.signal()
	return w.tainted
}

// overlap counts the shards a and b share.
func overlap(a, b []string) int {
	n := 0
	for _, x := range a {
		for _, y := range b {
			if x == y {
				n++
				break
			}
		}
	}
	return n
}

// commit starts a commit phase on shards and returns its end, which must be
// called once every shard has committed or been left to recovery. It first
// waits, up to windowWait, for the read windows on two or more of its
// shards to close; those still open then are tainted.
func (g *commitGate) commit(shards []string) (end func()) {
	g.phases.Add(1)
	g.lastPhase.Store(time.Now().UnixNano())
	deadline := time.NewTimer(time.Duration(windowWait.Load()))
	defer deadline.Stop()
	g.mu.Lock()
	if g.waiting == nil {
		g.waiting, g.running = make(map[string]int), make(map[string]int)
	}
	for _, sh := range shards {
		g.waiting[sh]++
	}
	expired := false
	for !expired && g.overlapping(shards) {
		ch := g.waitCh()
		g.mu.Unlock()
		select {
		case <-ch:
		case <-deadline.C:
			expired = true
		}
		g.mu.Lock()
	}
	for w := range g.windows {
		if overlap(w.shards, shards) >= 2 {
			w.tainted = true
		}
	}
	for _, sh := range shards {
		g.waiting[sh]--
		g.running[sh]++
	}
	g.mu.Unlock()
	return func() {
		g.mu.Lock()
		for _, sh := range shards {
			g.running[sh]--
		}
		g.signal()
		g.mu.Unlock()
		g.phases.Add(-1)
	}
}

// quietAfter is how long after a commit phase started read windows are
// kept short (startLegs; a time.Duration, tests change it).
var quietAfter atomic.Int64

// quiet reports whether no commit phase started within quietAfter: a read
// window is then unlikely to meet one, and may stay open longer.
func (g *commitGate) quiet() bool {
	return time.Now().UnixNano()-g.lastPhase.Load() > quietAfter.Load()
}

// overlapping reports whether a read window on two or more of shards is
// open; called with mu held.
func (g *commitGate) overlapping(shards []string) bool {
	for w := range g.windows {
		if overlap(w.shards, shards) >= 2 {
			return true
		}
	}
	return false
}
