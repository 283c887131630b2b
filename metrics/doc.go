// Package metrics exposes a proxy.Server to Prometheus and to load
// balancers: Handler serves /metrics (families prefixed shardproxy_),
// /healthz (the process answers) and /readyz (a configuration is loaded and
// every shard passed its last health check).
//
// Nothing here runs on the statement path. The proxy keeps its own atomic
// counters (proxy/stats.go) and pool and health state; the collector reads
// them when Prometheus scrapes, so a scrape costs one snapshot and an
// unscraped proxy pays nothing for this package. Label sets are bounded:
// shard names from the configuration, route kinds, SQLSTATE classes.
package metrics
