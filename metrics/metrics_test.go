package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/proxy"
	"github.com/shardproxy/shardproxy/router"
)

type fakeSource struct {
	stats  proxy.StatsSnapshot
	health []proxy.ShardHealth
	ready  bool
	reason string
	pools  map[string]pool.Stats
}

func (f *fakeSource) Stats() proxy.StatsSnapshot       { return f.stats }
func (f *fakeSource) ShardHealth() []proxy.ShardHealth { return f.health }
func (f *fakeSource) Ready() (bool, string)            { return f.ready, f.reason }
func (f *fakeSource) PoolStats() map[string]pool.Stats { return f.pools }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func hist(counts ...int64) proxy.Histogram {
	h := proxy.Histogram{Counts: make([]int64, len(proxy.LatencyBuckets)+1)}
	copy(h.Counts, counts)
	for _, n := range counts {
		h.Count += n
	}
	h.Sum = time.Duration(h.Count) * time.Millisecond
	return h
}

func TestHandler(t *testing.T) {
	src := &fakeSource{
		stats: proxy.StatsSnapshot{
			Routes: []proxy.RouteStats{{Shard: "s1", Kind: router.RouteSingle, Statements: 7, Rows: 3, Bytes: 40, Errors: 1,
				Latency: hist(0, 2, 5)}},
			Latency:   []proxy.KindLatency{{Kind: router.RouteSingle, Latency: hist(0, 2, 5)}},
			Errors:    map[string]int64{"23": 2},
			Clients:   proxy.ClientCounts{Active: 1, IdleInTransaction: 2, Idle: 3},
			PlanCache: proxy.PlanCacheStats{Hits: 9, Misses: 4, Entries: 4},
			Reloads:   proxy.ReloadCounts{Succeeded: 1, Failed: 2},
		},
		health: []proxy.ShardHealth{{Name: "s0", Up: true, LastCheck: time.Now(), Latency: 2 * time.Millisecond},
			{Name: "s1", Err: "not checked yet"}},
		pools:  map[string]pool.Stats{"s0": {Total: 3, Idle: 1, InUse: 2, Waiting: 4, Acquires: 10}},
		reason: "shard s1 is down: refused",
	}
	h := newHandler(src)
	code, body := get(t, h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`shardproxy_statements_total{route_kind="Single",shard="s1"} 7`,
		`shardproxy_statement_errors_total{route_kind="Single",shard="s1"} 1`,
		`shardproxy_statement_rows_total{route_kind="Single",shard="s1"} 3`,
		`shardproxy_statement_bytes_total{route_kind="Single",shard="s1"} 40`,
		`shardproxy_statement_duration_seconds_bucket{route_kind="Single",le="0.0001"} 0`,
		`shardproxy_statement_duration_seconds_bucket{route_kind="Single",le="0.00025"} 2`,
		`shardproxy_statement_duration_seconds_bucket{route_kind="Single",le="0.0005"} 7`,
		`shardproxy_statement_duration_seconds_bucket{route_kind="Single",le="+Inf"} 7`,
		`shardproxy_statement_duration_seconds_count{route_kind="Single"} 7`,
		`shardproxy_statement_duration_seconds_sum{route_kind="Single"} 0.007`,
		`shardproxy_errors_total{sqlstate_class="23"} 2`,
		`shardproxy_client_connections{state="active"} 1`,
		`shardproxy_client_connections{state="idle_in_transaction"} 2`,
		`shardproxy_client_connections{state="idle"} 3`,
		`shardproxy_pool_in_use_connections{shard="s0"} 2`,
		`shardproxy_pool_idle_connections{shard="s0"} 1`,
		`shardproxy_pool_waiting_clients{shard="s0"} 4`,
		`shardproxy_pool_open_connections{shard="s0"} 3`,
		`shardproxy_pool_acquires_total{shard="s0"} 10`,
		`shardproxy_plan_cache_hits_total 9`,
		`shardproxy_plan_cache_misses_total 4`,
		`shardproxy_plan_cache_entries 4`,
		`shardproxy_reloads_total{result="success"} 1`,
		`shardproxy_reloads_total{result="failure"} 2`,
		`shardproxy_shard_up{shard="s0"} 1`,
		`shardproxy_shard_up{shard="s1"} 0`,
		`shardproxy_shard_health_check_duration_seconds{shard="s0"} 0.002`,
		`shardproxy_ready 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if strings.Contains(body, `shardproxy_shard_health_check_duration_seconds{shard="s1"}`) {
		t.Error("a shard never checked must not report a check duration")
	}

	tests := []struct {
		name     string
		path     string
		ready    bool
		wantCode int
		wantBody string
	}{
		{"healthz while not ready", "/healthz", false, 200, "ok\n"},
		{"readyz not ready", "/readyz", false, 503, "not ready: shard s1 is down: refused\n"},
		{"readyz ready", "/readyz", true, 200, "ok\n"},
		{"unknown path", "/nope", true, 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src.ready = tc.ready
			code, body := get(t, h, tc.path)
			if code != tc.wantCode || (tc.wantBody != "" && body != tc.wantBody) {
				t.Errorf("GET %s: %d %q, want %d %q", tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
}
