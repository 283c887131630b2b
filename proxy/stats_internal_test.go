package proxy

import (
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/router"
)

func TestHistogramQuantile(t *testing.T) {
	at := func(counts map[int]int64) Histogram {
		var h histogram
		for i, n := range counts {
			h.counts[i].Add(n)
		}
		return h.snapshot()
	}
	tests := []struct {
		name string
		h    Histogram
		q    float64
		want time.Duration
	}{
		{"empty", at(nil), 0.99, 0},
		{"all in first bucket", at(map[int]int64{0: 100}), 0.5, 50 * time.Microsecond},
		{"p99 in second bucket", at(map[int]int64{0: 98, 1: 2}), 0.99, 175 * time.Microsecond},
		{"p50 in first of two", at(map[int]int64{0: 50, 3: 50}), 0.5, 100 * time.Microsecond},
		{"+Inf bucket gives the last bound", at(map[int]int64{numBuckets: 3}), 0.99, 10 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.h.Quantile(tc.q); got != tc.want {
				t.Errorf("Quantile(%v) = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestHistogramObserve(t *testing.T) {
	tests := []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0},
		{100 * time.Microsecond, 0}, // bounds are inclusive, as Prometheus' le
		{101 * time.Microsecond, 1},
		{3 * time.Millisecond, 5},
		{10 * time.Second, numBuckets - 1},
		{time.Minute, numBuckets},
	}
	for _, tc := range tests {
		t.Run(tc.d.String(), func(t *testing.T) {
			var h histogram
			h.observe(tc.d)
			s := h.snapshot()
			if s.Count != 1 || s.Counts[tc.bucket] != 1 || s.Sum != tc.d {
				t.Errorf("observe(%v): counts %v sum %v, want bucket %d", tc.d, s.Counts, s.Sum, tc.bucket)
			}
		})
	}
}

func TestStatsSnapshot(t *testing.T) {
	srv := NewServer(&Runtime{}, nil)
	st := &srv.stats
	st.leg("s1", router.RouteSingle, time.Millisecond, 2, 20, false)
	st.leg("s1", router.RouteSingle, 3*time.Millisecond, 0, 0, true)
	st.leg("s0", router.RouteAll, time.Millisecond, 1, 5, false)
	st.leg("s1", router.RouteAll, time.Millisecond, 1, 5, false)
	st.statement(router.RouteAll, time.Millisecond)
	for _, code := range []string{"23505", "23503", "0A000", "", "x", "08006"} {
		st.countError(code)
	}
	srv.NoteReload(true)
	srv.NoteReload(false)
	srv.NoteReload(false)

	got := srv.Stats()
	want := []struct {
		shard                           string
		kind                            router.RouteKind
		statements, rows, bytes, errors int64
	}{
		{"s0", router.RouteAll, 1, 1, 5, 0},
		{"s1", router.RouteSingle, 2, 2, 20, 1},
		{"s1", router.RouteAll, 1, 1, 5, 0},
	}
	if len(got.Routes) != len(want) {
		t.Fatalf("Routes = %+v, want %d rows", got.Routes, len(want))
	}
	for i, w := range want {
		r := got.Routes[i]
		if r.Shard != w.shard || r.Kind != w.kind || r.Statements != w.statements || r.Rows != w.rows ||
			r.Bytes != w.bytes || r.Errors != w.errors || r.Latency.Count != w.statements {
			t.Errorf("Routes[%d] = %+v, want %+v", i, r, w)
		}
	}
	if l := got.Routes[1].Latency; l.Sum != 4*time.Millisecond || l.Mean() != 2*time.Millisecond {
		t.Errorf("s1 Single latency sum %v mean %v, want 4ms and 2ms", l.Sum, l.Mean())
	}
	if len(got.Latency) != 1 || got.Latency[0].Kind != router.RouteAll || got.Latency[0].Latency.Count != 1 {
		t.Errorf("Latency = %+v, want one All statement", got.Latency)
	}
	wantErr := map[string]int64{"23": 2, "0A": 1, "XX": 2, "08": 1}
	if len(got.Errors) != len(wantErr) {
		t.Errorf("Errors = %v, want %v", got.Errors, wantErr)
	}
	for k, v := range wantErr {
		if got.Errors[k] != v {
			t.Errorf("Errors[%q] = %d, want %d", k, got.Errors[k], v)
		}
	}
	if got.Reloads != (ReloadCounts{Succeeded: 1, Failed: 2}) {
		t.Errorf("Reloads = %+v", got.Reloads)
	}
}

// BenchmarkStatRecord is what the statement path pays for stats: one
// time.Now pair and the atomic adds of statStart/statEnd.
func BenchmarkStatRecord(b *testing.B) {
	srv := NewServer(&Runtime{}, nil)
	b.Run("serial", func(b *testing.B) {
		s := &session{srv: srv}
		for b.Loop() {
			m := s.statStart()
			s.sentRows++
			s.statEnd(m, "s1", router.RouteSingle, false)
		}
	})
	b.Run("parallel same cell", func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			s := &session{srv: srv}
			for pb.Next() {
				m := s.statStart()
				s.sentRows++
				s.statEnd(m, "s1", router.RouteSingle, false)
			}
		})
	})
}
