package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// TestServeMetrics checks the serve command's wiring of metrics_listen:
// /healthz and /readyz answer, SIGHUP reloads are counted by result, and
// the HTTP server is gone once serve returns.
func TestServeMetrics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg, err := pgtest.Start(ctx, pgtest.Options{Name: "metrics"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pg.Stop() })

	metricsAddr := freeAddr(t)
	good := fmt.Sprintf(`listen: 127.0.0.1:0
metrics_listen: %s
health_check_interval: 100ms
users: [{name: app, password: secret}]
shards: [{name: s0, dsn: %q}]
default_shard: s0
`, metricsAddr, pg.DSN("postgres"))
	path := filepath.Join(t.TempDir(), "shardproxy.yaml")
	if err := os.WriteFile(path, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() { done <- serve(serveCtx, path, log, func(addr string) { ready <- addr }) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}

	base := "http://" + metricsAddr
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor := func(path string, want func(int, string) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body := get(path)
			if want(code, body) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s: %d %q after 30s", path, code, body)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d", code)
	}
	waitFor("/readyz", func(code int, _ string) bool { return code == http.StatusOK })

	reloads := []struct {
		name, yaml, want string
	}{
		{"invalid YAML is counted as a failure", "shards: [{name: s0\n", `shardproxy_reloads_total{result="failure"} 1`},
		{"valid map is counted as a success", good, `shardproxy_reloads_total{result="success"} 1`},
	}
	for _, tc := range reloads {
		t.Run(tc.name, func(t *testing.T) {
			if err := os.WriteFile(path, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor("/metrics", func(_ int, body string) bool { return strings.Contains(body, tc.want+"\n") })
		})
	}

	stop()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("metrics server still answers after serve returned")
	}
}
