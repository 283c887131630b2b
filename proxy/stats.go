package proxy

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/router"
)

// Counters the proxy keeps for the admin console (SHOW STATS) and for
// Prometheus (package metrics). Everything on the statement path is an
// atomic add on a cell resolved by one map lookup; snapshots and
// percentiles are computed by the reader, never by a session.
//
// What one record means: a statement counts once on every shard it ran on
// (a scatter over 3 shards adds 1 to each of the 3 cells), with the rows
// and bytes the proxy sent to the client from that shard's reply and the
// whole statement's latency. The per-route-kind latency histogram counts
// each statement once. Not recorded: statements the proxy answers itself
// (BEGIN, SET shardproxy.shard, ...), multi-statement Queries sent whole to
// one shard, text that the router cannot parse (the shard reports the
// syntax error), and statements that fail before a shard is chosen; their
// errors are still counted by SQLSTATE class.

// LatencyBuckets are the upper bounds, in seconds, of the latency
// histograms: from 100µs (a cached point read on loopback) to 10s.
var LatencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

const numBuckets = 16 // len(LatencyBuckets); an array length must be constant

var bucketBounds = func() (b [numBuckets]time.Duration) {
	for i, s := range LatencyBuckets {
		b[i] = time.Duration(s * float64(time.Second))
	}
	return b
}()

const numRouteKinds = int(router.RouteNone) + 1

// StatsSnapshot is a copy of the proxy's counters since NewServer.
type StatsSnapshot struct {
	Routes    []RouteStats     // per (shard, route kind) that ran a statement; by shard name, then kind
	Latency   []KindLatency    // per route kind that ran a statement; each statement once
	Errors    map[string]int64 // error responses sent to clients by SQLSTATE class ("23", "42", ...)
	Clients   ClientCounts
	PlanCache PlanCacheStats
	Reloads   ReloadCounts
	TwoPC     TwoPCCounts // process-wide (txnlog.go)
	Commits   CommitGateCounts
	Gathered  int64 // SELECTs one Postgres answered over rows gathered from the shards
}

// RouteStats are the counters of one route kind on one shard.
type RouteStats struct {
	Shard      string
	Kind       router.RouteKind
	Statements int64
	Rows       int64 // DataRows sent to the client
	Bytes      int64 // bytes of those rows (and of COPY TO data)
	Errors     int64 // statements that failed
	Latency    Histogram
}

// KindLatency is the latency of the statements of one route kind.
type KindLatency struct {
	Kind    router.RouteKind
	Latency Histogram
}

// Histogram is a latency distribution over LatencyBuckets.
type Histogram struct {
	Counts []int64 // per bucket, not cumulative; the last one is +Inf (len(LatencyBuckets)+1)
	Count  int64
	Sum    time.Duration
}

// Mean is Sum/Count, 0 without observations.
func (h Histogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.Count)
}

// Quantile estimates the q-quantile (0 < q <= 1) by linear interpolation
// inside its bucket, as Prometheus' histogram_quantile does; in the +Inf
// bucket it returns the largest finite bound. 0 without observations.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := q * float64(h.Count)
	var cum float64
	for i, n := range h.Counts {
		if n == 0 || cum+float64(n) < rank {
			cum += float64(n)
			continue
		}
		if i == numBuckets {
			return bucketBounds[numBuckets-1]
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = bucketBounds[i-1]
		}
		frac := (rank - cum) / float64(n)
		return lo + time.Duration(frac*float64(bucketBounds[i]-lo))
	}
	return bucketBounds[numBuckets-1]
}

// P99 is Quantile(0.99).
func (h Histogram) P99() time.Duration { return h.Quantile(0.99) }

// ClientCounts are the client sessions past startup, by what they do now.
type ClientCounts struct {
	Active            int // a message is being served
	IdleInTransaction int // waiting for the client inside a transaction
	Idle              int // waiting for the client outside a transaction
}

// PlanCacheStats are the router's plan-cache counters, summed over reloads.
type PlanCacheStats struct {
	Hits, Misses int64
	Entries      int // plans cached by the current router
}

// ReloadCounts count configuration reloads since start.
type ReloadCounts struct {
	Succeeded, Failed int64
}

// histogram is the lock-free form of Histogram.
type histogram struct {
	counts   [numBuckets + 1]atomic.Int64
	sumNanos atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < numBuckets && d > bucketBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNanos.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Counts: make([]int64, numBuckets+1), Sum: time.Duration(h.sumNanos.Load())}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	return out
}

type cell struct {
	statements, rows, bytes, errors atomic.Int64
	latency                         histogram
}

type shardCells struct {
	kinds [numRouteKinds]cell
}

// serverStats belongs to a Server.
type serverStats struct {
	// shards is copied on write: sessions only Load it; a shard name seen
	// for the first time (at start, or after a reload) takes mu once.
	shards atomic.Pointer[map[string]*shardCells]
	mu     sync.Mutex

	byKind [numRouteKinds]histogram
	// errClasses is indexed by the two characters of a SQLSTATE class,
	// each 0-9 or A-Z, so any class a server may send has a slot and the
	// label set stays bounded.
	errClasses [36 * 36]atomic.Int64

	reloadOK, reloadFailed atomic.Int64
	gathered               atomic.Int64 // gathered SELECTs (runPlan)
	// cacheHits/cacheMisses hold the plan-cache counts of routers replaced
	// by SetRuntime, so that the totals never go backwards on reload.
	cacheHits, cacheMisses atomic.Int64
}

func (st *serverStats) cells(shard string) *shardCells {
	if m := st.shards.Load(); m != nil {
		if c := (*m)[shard]; c != nil {
			return c
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	old := st.shards.Load()
	if old != nil {
		if c := (*old)[shard]; c != nil {
			return c
		}
	}
	m := make(map[string]*shardCells, 1+len(ptrMap(old)))
	for k, v := range ptrMap(old) {
		m[k] = v
	}
	c := &shardCells{}
	m[shard] = c
	st.shards.Store(&m)
	return c
}

func ptrMap(m *map[string]*shardCells) map[string]*shardCells {
	if m == nil {
		return nil
	}
	return *m
}

func kindIndex(k router.RouteKind) int {
	if k < 0 || int(k) >= numRouteKinds {
		return int(router.RouteNone) // never happens: RouteKind is closed
	}
	return int(k)
}

// leg records a statement's run on one shard.
func (st *serverStats) leg(shard string, kind router.RouteKind, d time.Duration, rows, bytes int64, failed bool) {
	c := &st.cells(shard).kinds[kindIndex(kind)]
	c.statements.Add(1)
	if rows != 0 {
		c.rows.Add(rows)
		c.bytes.Add(bytes)
	}
	if failed {
		c.errors.Add(1)
	}
	c.latency.observe(d)
}

// statement records a statement's latency once, whatever its shard count.
func (st *serverStats) statement(kind router.RouteKind, d time.Duration) {
	st.byKind[kindIndex(kind)].observe(d)
}

// countError counts an error response by its SQLSTATE class.
func (st *serverStats) countError(code string) {
	if len(code) < 2 {
		code = "XX"
	}
	i, ok1 := classDigit(code[0])
	j, ok2 := classDigit(code[1])
	if !ok1 || !ok2 {
		i, j = 33, 33 // "XX": internal error
	}
	st.errClasses[i*36+j].Add(1)
}

func classDigit(b byte) (int, bool) {
	switch {
	case b >= '0' && b <= '9':
		return int(b - '0'), true
	case b >= 'A' && b <= 'Z':
		return int(b-'A') + 10, true
	}
	return 0, false
}

func className(i int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	return string([]byte{digits[i/36], digits[i%36]})
}

// statMark is where a statement started: the clock and the session's
// row and byte counters.
type statMark struct {
	start       time.Time
	rows, bytes int64
}

func (s *session) statStart() statMark {
	return statMark{start: time.Now(), rows: s.sentRows, bytes: s.sentBytes}
}

// statEnd records a single-shard statement begun at m.
func (s *session) statEnd(m statMark, shard string, kind router.RouteKind, failed bool) {
	d := time.Since(m.start)
	st := &s.srv.stats
	st.leg(shard, kind, d, s.sentRows-m.rows, s.sentBytes-m.bytes, failed)
	st.statement(kind, d)
}

// Client session states, kept in session.state for SHOW CLIENTS and metrics.
const (
	clientIdle int32 = iota
	clientIdleInTx
	clientActive
)

// NoteReload counts a configuration reload (SIGHUP, RELOAD) that was
// applied (ok) or rejected.
func (s *Server) NoteReload(ok bool) {
	if ok {
		s.stats.reloadOK.Add(1)
	} else {
		s.stats.reloadFailed.Add(1)
	}
}

// Stats returns a snapshot of the proxy's counters. It is cheap enough to
// call on every scrape or SHOW STATS (no session is stopped or locked for
// more than a map walk).
func (s *Server) Stats() StatsSnapshot {
	st := &s.stats
	var out StatsSnapshot
	out.TwoPC = TwoPCStats()
	out.Commits = CommitGateCounts{Waits: s.commits.waits.Load(), Retakes: s.commits.retakes.Load()}
	out.Gathered = st.gathered.Load()
	if m := st.shards.Load(); m != nil {
		names := make([]string, 0, len(*m))
		for name := range *m {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			sc := (*m)[name]
			for k := range sc.kinds {
				c := &sc.kinds[k]
				n := c.statements.Load()
				if n == 0 {
					continue
				}
				out.Routes = append(out.Routes, RouteStats{Shard: name, Kind: router.RouteKind(k), Statements: n,
					Rows: c.rows.Load(), Bytes: c.bytes.Load(), Errors: c.errors.Load(), Latency: c.latency.snapshot()})
			}
		}
	}
	for k := range st.byKind {
		if h := st.byKind[k].snapshot(); h.Count > 0 {
			out.Latency = append(out.Latency, KindLatency{Kind: router.RouteKind(k), Latency: h})
		}
	}
	out.Errors = make(map[string]int64)
	for i := range st.errClasses {
		if n := st.errClasses[i].Load(); n > 0 {
			out.Errors[className(i)] = n
		}
	}
	s.mu.Lock()
	for _, sess := range s.sessions {
		switch sess.state.Load() {
		case clientActive:
			out.Clients.Active++
		case clientIdleInTx:
			out.Clients.IdleInTransaction++
		default:
			out.Clients.Idle++
		}
	}
	s.mu.Unlock()
	out.PlanCache.Hits, out.PlanCache.Misses = st.cacheHits.Load(), st.cacheMisses.Load()
	if rt := s.Runtime(); rt != nil && rt.Router != nil {
		h, m := rt.Router.CacheStats()
		out.PlanCache.Hits += int64(h)
		out.PlanCache.Misses += int64(m)
		out.PlanCache.Entries = rt.Router.CacheLen()
	}
	out.Reloads = ReloadCounts{Succeeded: st.reloadOK.Load(), Failed: st.reloadFailed.Load()}
	return out
}

// retireRouter folds the plan-cache counts of a router being replaced into
// the totals. Lookups that sessions still make on it afterwards (until
// their transaction ends) are not counted.
func (st *serverStats) retireRouter(old, next *Runtime) {
	if old == nil || old.Router == nil || (next != nil && next.Router == old.Router) {
		return
	}
	h, m := old.Router.CacheStats()
	st.cacheHits.Add(int64(h))
	st.cacheMisses.Add(int64(m))
}
