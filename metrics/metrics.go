package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/proxy"
)

// Handler serves /metrics, /healthz and /readyz for srv.
func Handler(srv *proxy.Server) http.Handler {
	return newHandler(serverSource{srv})
}

// source is what the collector reads; *proxy.Server through serverSource,
// or a fake in tests.
type source interface {
	Stats() proxy.StatsSnapshot
	ShardHealth() []proxy.ShardHealth
	Ready() (bool, string)
	PoolStats() map[string]pool.Stats
}

type serverSource struct{ *proxy.Server }

func (s serverSource) PoolStats() map[string]pool.Stats {
	rt := s.Runtime()
	if rt == nil || rt.Pools == nil {
		return nil
	}
	return rt.Pools.Stats()
}

func newHandler(src source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(src),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, reason := src.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("not ready: " + reason + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	return mux
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("shardproxy_"+name, help, labels, nil)
}

// collector turns one snapshot of the proxy into metrics at scrape time.
type collector struct {
	src source

	clients, ready                              *prometheus.Desc
	statements, stmtErrors, stmtRows, stmtBytes *prometheus.Desc
	latency, errors                             *prometheus.Desc
	poolInUse, poolIdle, poolWaiting, poolOpen  *prometheus.Desc
	poolAcquires, poolConnectErrors             *prometheus.Desc
	cacheHits, cacheMisses, cacheEntries        *prometheus.Desc
	reloads, shardUp, healthLatency             *prometheus.Desc
	twoPC, commitGate, gathered                 *prometheus.Desc
}

func newCollector(src source) *collector {
	return &collector{
		src:     src,
		clients: desc("client_connections", "Client connections past startup by state: active (a message is being served), idle_in_transaction, idle.", "state"),
		ready:   desc("ready", "1 when a configuration is loaded and every shard passed its last health check (as /readyz), else 0."),

		statements: desc("statements_total", "Statements routed to a shard, by route kind and shard; a statement on several shards counts once on each.", "route_kind", "shard"),
		stmtErrors: desc("statement_errors_total", "Routed statements that failed, by route kind and shard.", "route_kind", "shard"),
		stmtRows:   desc("statement_rows_total", "Rows sent to clients, by route kind and the shard that returned them.", "route_kind", "shard"),
		stmtBytes:  desc("statement_bytes_total", "Bytes of rows (and COPY TO data) sent to clients, by route kind and shard.", "route_kind", "shard"),
		latency:    desc("statement_duration_seconds", "Statement latency as the proxy sees it (first byte sent to a shard to its last reply), by route kind; a multi-shard statement counts once.", "route_kind"),
		errors:     desc("errors_total", "Error responses sent to clients by SQLSTATE class (first two characters of the code).", "sqlstate_class"),

		poolInUse:         desc("pool_in_use_connections", "Backend connections handed out to sessions, per shard.", "shard"),
		poolIdle:          desc("pool_idle_connections", "Idle backend connections, per shard.", "shard"),
		poolWaiting:       desc("pool_waiting_clients", "Sessions waiting for a backend connection, per shard.", "shard"),
		poolOpen:          desc("pool_open_connections", "Backend connections open or being opened (in use + idle + connecting), per shard.", "shard"),
		poolAcquires:      desc("pool_acquires_total", "Connection acquisitions, per shard (restarts when a reload rebuilds the pools).", "shard"),
		poolConnectErrors: desc("pool_connect_errors_total", "Failed attempts to open a backend connection, per shard (restarts when a reload rebuilds the pools).", "shard"),

		cacheHits:    desc("plan_cache_hits_total", "Plan-cache lookups that found an analysed statement."),
		cacheMisses:  desc("plan_cache_misses_total", "Plan-cache lookups that had to parse and analyse the statement."),
		cacheEntries: desc("plan_cache_entries", "Analysed statements in the plan cache of the current configuration."),

		reloads:       desc("reloads_total", "Configuration reloads by result: success (swapped in) or failure (rejected; the old map keeps serving).", "result"),
		shardUp:       desc("shard_up", "1 when the shard's last health check (SELECT 1 on a pooled connection) succeeded, else 0.", "shard"),
		healthLatency: desc("shard_health_check_duration_seconds", "Duration of the shard's last health check, acquiring the connection included.", "shard"),
		twoPC: desc("2pc_total", "Commits of transactions that span shards by outcome: committed or aborted by a session, recovered_commit or recovered_rollback "+
			"(one per prepared transaction on a shard resolved by recovery), or not_needed (committed without two-phase commit: at most one shard wrote).", "outcome"),
		commitGate: desc("commit_gate_total", "Cross-shard commits made visible at one moment: statement_waited (a statement held until a commit reached every shard) "+
			"or snapshot_retaken (a multi-shard SELECT that took its snapshots again because a commit overlapped them).", "event"),
		gathered: desc("gathered_statements_total", "SELECTs the merge could not answer that one Postgres answered over the rows of their sharded tables, gathered from the shards (held within merge_memory)."),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.clients, c.ready, c.statements, c.stmtErrors, c.stmtRows, c.stmtBytes,
		c.latency, c.errors, c.poolInUse, c.poolIdle, c.poolWaiting, c.poolOpen, c.poolAcquires, c.poolConnectErrors,
		c.cacheHits, c.cacheMisses, c.cacheEntries, c.reloads, c.shardUp, c.healthLatency, c.twoPC, c.commitGate, c.gathered} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	st := c.src.Stats()

	gauge(c.clients, float64(st.Clients.Active), "active")
	gauge(c.clients, float64(st.Clients.IdleInTransaction), "idle_in_transaction")
	gauge(c.clients, float64(st.Clients.Idle), "idle")
	ready, _ := c.src.Ready()
	gauge(c.ready, boolValue(ready))

	for _, r := range st.Routes {
		kind := r.Kind.String()
		counter(c.statements, r.Statements, kind, r.Shard)
		counter(c.stmtErrors, r.Errors, kind, r.Shard)
		counter(c.stmtRows, r.Rows, kind, r.Shard)
		counter(c.stmtBytes, r.Bytes, kind, r.Shard)
	}
	for _, l := range st.Latency {
		ch <- prometheus.MustNewConstHistogram(c.latency, uint64(l.Latency.Count), l.Latency.Sum.Seconds(),
			cumulative(l.Latency), l.Kind.String())
	}
	for class, n := range st.Errors {
		counter(c.errors, n, class)
	}

	for shard, p := range c.src.PoolStats() {
		gauge(c.poolInUse, float64(p.InUse), shard)
		gauge(c.poolIdle, float64(p.Idle), shard)
		gauge(c.poolWaiting, float64(p.Waiting), shard)
		gauge(c.poolOpen, float64(p.Total), shard)
		counter(c.poolAcquires, p.Acquires, shard)
		counter(c.poolConnectErrors, p.ConnectErrors, shard)
	}

	counter(c.cacheHits, st.PlanCache.Hits)
	counter(c.cacheMisses, st.PlanCache.Misses)
	gauge(c.cacheEntries, float64(st.PlanCache.Entries))
	counter(c.reloads, st.Reloads.Succeeded, "success")
	counter(c.reloads, st.Reloads.Failed, "failure")
	counter(c.twoPC, st.TwoPC.Committed, "committed")
	counter(c.twoPC, st.TwoPC.Aborted, "aborted")
	counter(c.twoPC, st.TwoPC.OnePhase, "not_needed")
	counter(c.twoPC, st.TwoPC.RecoveredCommit, "recovered_commit")
	counter(c.twoPC, st.TwoPC.RecoveredRollback, "recovered_rollback")
	counter(c.commitGate, st.Commits.Waits, "statement_waited")
	counter(c.commitGate, st.Commits.Retakes, "snapshot_retaken")
	counter(c.gathered, st.Gathered)

	for _, h := range c.src.ShardHealth() {
		gauge(c.shardUp, boolValue(h.Up), h.Name)
		if !h.LastCheck.IsZero() {
			gauge(c.healthLatency, h.Latency.Seconds(), h.Name)
		}
	}
}

// cumulative converts the proxy's per-bucket counts to Prometheus' form.
func cumulative(h proxy.Histogram) map[float64]uint64 {
	out := make(map[float64]uint64, len(proxy.LatencyBuckets))
	var sum int64
	for i, bound := range proxy.LatencyBuckets {
		sum += h.Counts[i]
		out[bound] = uint64(sum)
	}
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
