package proxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/metrics"
)

// scrape is one /metrics exposition: series text (name{labels}) -> value.
type scrape map[string]float64

func getScrape(t *testing.T, base string) scrape {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: status %d\n%s", code, body)
	}
	s := scrape{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("bad metrics line %q: %v", line, err)
		}
		s[line[:i]] = v
	}
	return s
}

// sum adds the series of family name whose labels include every pair in
// match ("shard", "s1", ...); ok is false when no series matched.
func (s scrape) sum(name string, match ...string) (total float64, ok bool) {
	for series, v := range s {
		base, labels, _ := strings.Cut(series, "{")
		if base != name {
			continue
		}
		all := true
		for i := 0; i+1 < len(match); i += 2 {
			if !strings.Contains(labels, match[i]+`="`+match[i+1]+`"`) {
				all = false
			}
		}
		if all {
			total += v
			ok = true
		}
	}
	return total, ok
}

// names lists the metric names present (histogram _bucket/_sum/_count
// series included, as PromQL sees them).
func (s scrape) names() map[string]bool {
	out := map[string]bool{}
	for series := range s {
		base, _, _ := strings.Cut(series, "{")
		out[base] = true
	}
	return out
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// waitStatus polls url until it answers want, failing after a deadline.
func waitStatus(t *testing.T, url string, want int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpGet(t, url)
		if code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %d (%q), want %d", url, code, body, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetrics scrapes /metrics, runs traffic through the proxy, scrapes
// again and checks that the families moved the right way; then /readyz
// follows a shard going down and coming back.
func TestMetrics(t *testing.T) {
	f := startFixture(t, fixtureOptions{Top: "health_check_interval: 500ms\n"})
	// Served as serve.go serves it (serveMetrics): metrics.Handler on HTTP.
	hs := httptest.NewServer(metrics.Handler(f.Server))
	defer hs.Close()
	ctx := context.Background()

	if code, body := httpGet(t, hs.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	waitStatus(t, hs.URL+"/readyz", http.StatusOK)

	c := f.Connect(t)
	if _, err := c.Exec(ctx, "CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text)"); err != nil {
		t.Fatal(err)
	}
	before := getScrape(t, hs.URL)

	// Find a key on each shard so that the Single counters of both move.
	keyOn := map[string]int64{}
	for id := int64(1); len(keyOn) < 2 && id < 100; id++ {
		if _, err := c.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'c')", id); err != nil {
			t.Fatal(err)
		}
		for _, sh := range []string{"s0", "s1"} {
			var n int
			if err := f.Direct(t, sh).QueryRow(ctx, "SELECT count(*) FROM customers WHERE customer_id = $1", id).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if _, seen := keyOn[sh]; n == 1 && !seen {
				keyOn[sh] = id
			}
		}
	}
	const reads = 5
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeSimpleProtocol, pgx.QueryExecModeExec} {
		for range reads {
			var name string
			if err := c.QueryRow(ctx, "SELECT name FROM customers WHERE customer_id = $1", mode, keyOn["s1"]).Scan(&name); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := c.Exec(ctx, "SELECT customer_id FROM customers", pgx.QueryExecModeSimpleProtocol); err != nil {
		t.Fatalf("scatter: %v", err)
	}
	// A failing statement: duplicate key, class 23.
	_, err := c.Exec(ctx, "INSERT INTO customers (customer_id, name) VALUES ($1, 'dup')", keyOn["s0"])
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("duplicate insert: %v, want 23505", err)
	}
	after := getScrape(t, hs.URL)

	moved := func(name string, min float64, match ...string) {
		t.Helper()
		a, ok := after.sum(name, match...)
		if !ok {
			t.Errorf("%s%v: missing after traffic", name, match)
			return
		}
		b, _ := before.sum(name, match...)
		if a-b < min {
			t.Errorf("%s%v: moved %v (from %v to %v), want at least %v", name, match, a-b, b, a, min)
		}
	}
	t.Run("statements", func(t *testing.T) {
		moved("shardproxy_statements_total", 2*reads, "route_kind", "Single", "shard", "s1")
		moved("shardproxy_statements_total", 1, "route_kind", "Single", "shard", "s0")
		moved("shardproxy_statements_total", 1, "route_kind", "All", "shard", "s0")
		moved("shardproxy_statements_total", 1, "route_kind", "All", "shard", "s1")
		moved("shardproxy_statement_rows_total", 2*reads, "route_kind", "Single", "shard", "s1")
		moved("shardproxy_statement_bytes_total", 2*reads, "route_kind", "Single", "shard", "s1")
		moved("shardproxy_statement_errors_total", 1, "route_kind", "Single", "shard", "s0")
	})
	t.Run("latency", func(t *testing.T) {
		moved("shardproxy_statement_duration_seconds_count", 2*reads, "route_kind", "Single")
		moved("shardproxy_statement_duration_seconds_count", 1, "route_kind", "All")
		moved("shardproxy_statement_duration_seconds_bucket", 2*reads, "route_kind", "Single", "le", "+Inf")
	})
	t.Run("errors by class", func(t *testing.T) {
		moved("shardproxy_errors_total", 1, "sqlstate_class", "23")
	})
	t.Run("plan cache", func(t *testing.T) {
		moved("shardproxy_plan_cache_hits_total", 1)
		moved("shardproxy_plan_cache_misses_total", 1)
	})
	t.Run("pool and clients", func(t *testing.T) {
		for _, sh := range []string{"s0", "s1"} {
			for _, name := range []string{"shardproxy_pool_in_use_connections", "shardproxy_pool_idle_connections",
				"shardproxy_pool_waiting_clients", "shardproxy_pool_open_connections"} {
				if _, ok := after.sum(name, "shard", sh); !ok {
					t.Errorf("%s{shard=%q} missing", name, sh)
				}
			}
			if v, _ := after.sum("shardproxy_pool_open_connections", "shard", sh); v < 1 {
				t.Errorf("shard %s: %v open connections after traffic", sh, v)
			}
			moved("shardproxy_pool_acquires_total", 1, "shard", sh)
			if v, ok := after.sum("shardproxy_shard_up", "shard", sh); !ok || v != 1 {
				t.Errorf("shardproxy_shard_up{shard=%q} = %v (present %v), want 1", sh, v, ok)
			}
		}
		if v, _ := after.sum("shardproxy_client_connections"); v < 1 {
			t.Errorf("client connections (all states) = %v, want >= 1", v)
		}
		// Our pgx connection waits for its next statement, outside a
		// transaction; its session marks itself idle a moment after the
		// reply, hence the poll.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			v, _ := getScrape(t, hs.URL).sum("shardproxy_client_connections", "state", "idle")
			if v >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("idle client connections = %v, want >= 1", v)
			}
		}
		tx, err := c.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "SELECT 1 FROM customers WHERE customer_id = $1", keyOn["s0"]); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			v, _ := getScrape(t, hs.URL).sum("shardproxy_client_connections", "state", "idle_in_transaction")
			if v >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("idle_in_transaction client connections = %v, want >= 1", v)
			}
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := after.sum("shardproxy_reloads_total", "result", "failure"); !ok {
			t.Error("shardproxy_reloads_total missing")
		}
	})
	t.Run("grafana dashboard", func(t *testing.T) {
		checkDashboard(t, after)
	})

	t.Run("readyz follows shard health", func(t *testing.T) {
		s1 := f.Shards["s1"]
		if err := s1.Halt(); err != nil {
			t.Fatal(err)
		}
		restarted := false
		t.Cleanup(func() {
			if !restarted {
				if err := s1.Restart(context.Background()); err != nil {
					t.Errorf("restart s1: %v", err)
				}
			}
		})
		// Checks run every 500ms with a 500ms timeout (a check's timeout
		// is its interval): on a loaded machine one of s0's can still
		// overrun and report it down until its next check. Wait for the state where only s1 is down.
		body := ""
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			body = waitStatus(t, hs.URL+"/readyz", http.StatusServiceUnavailable)
			onlyS1 := true
			for _, h := range f.Server.ShardHealth() {
				onlyS1 = onlyS1 && h.Up == (h.Name != "s1")
			}
			if onlyS1 && strings.Contains(body, "s1") || time.Now().After(deadline) {
				break
			}
		}
		if !strings.Contains(body, "s1") {
			t.Errorf("/readyz body %q does not name the down shard", body)
		}
		if v, _ := getScrape(t, hs.URL).sum("shardproxy_shard_up", "shard", "s1"); v != 0 {
			t.Errorf("shardproxy_shard_up{shard=s1} = %v while halted", v)
		}
		if code, _ := httpGet(t, hs.URL+"/healthz"); code != http.StatusOK {
			t.Errorf("/healthz: %d while a shard is down, want 200", code)
		}
		for _, h := range f.Server.ShardHealth() {
			if want := h.Name != "s1"; h.Up != want || h.LastCheck.IsZero() {
				t.Errorf("ShardHealth %+v: want up=%v, checked", h, want)
			}
		}
		if err := s1.Restart(ctx); err != nil {
			t.Fatal(err)
		}
		restarted = true
		waitStatus(t, hs.URL+"/readyz", http.StatusOK)
	})
}

// checkDashboard checks that the shipped Grafana dashboard is valid JSON
// with panels and that every shardproxy_ metric it queries exists in s.
func checkDashboard(t *testing.T, s scrape) {
	raw, err := os.ReadFile("../testdata/grafana/shardproxy.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not valid JSON: %v", err)
	}
	if dash.Title == "" || len(dash.Panels) < 8 {
		t.Fatalf("dashboard %q has %d panels, want a title and at least 8", dash.Title, len(dash.Panels))
	}
	have := s.names()
	name := regexp.MustCompile(`shardproxy_[a-z0-9_]+`)
	queried := 0
	for _, p := range dash.Panels {
		for _, target := range p.Targets {
			for _, m := range name.FindAllString(target.Expr, -1) {
				queried++
				if !have[m] {
					t.Errorf("panel %q queries %s, which /metrics does not expose", p.Title, m)
				}
			}
		}
	}
	if queried == 0 {
		t.Error("dashboard queries no shardproxy_ metric")
	}
}
