package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// TestReshardCLI runs plan, start, status and abort as a user would, on
// the documented example with a little data and no proxy running (the
// cutover then has nobody to pause).
func TestReshardCLI(t *testing.T) {
	bin := buildBinary(t)
	srvs := pgtest.StartN(t, 4, pgtest.Options{Name: "rs"})
	ctx := context.Background()
	dir := t.TempDir()
	// The example maps with their DSNs pointed at our servers.
	ports := map[string]*pgtest.Server{"5433/app": srvs[0], "5434/app": srvs[1], "5435/app": srvs[2], "5436/shardproxy_meta": srvs[3]}
	write := func(name string) string {
		b, err := os.ReadFile(filepath.Join("../../testdata/resharding", name))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for suffix, s := range ports {
			text = strings.ReplaceAll(text, "postgres://postgres@127.0.0.1:"+suffix, s.DSN("app"))
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cur, target := write("current.yaml"), write("target.yaml")
	schema, err := os.ReadFile("../../testdata/resharding/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range srvs {
		if err := s.CreateDatabase(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if err := s.Exec(ctx, "app", string(schema)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// events 1..1000 by the current range map: below 500 on s0.
	srvs[0].Exec(ctx, "app", "INSERT INTO events SELECT g, 'k', 'p' FROM generate_series(1, 499) g")
	srvs[1].Exec(ctx, "app", "INSERT INTO events SELECT g, 'k', 'p' FROM generate_series(500, 1000) g")

	run := func(args ...string) (string, error) {
		out, err := exec.Command(bin, args...).CombinedOutput()
		return string(out), err
	}
	out, err := run("reshard", "plan", "--config", cur, "--to", target)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	for _, w := range []string{"move s1   -> s2          201 rows", "refusals: none"} {
		if !strings.Contains(out, w) {
			t.Errorf("plan output lacks %q:\n%s", w, out)
		}
	}
	// A refusal makes plan fail.
	srvs[0].Exec(ctx, "app", "ALTER TABLE orders REPLICA IDENTITY FULL")
	out, err = run("reshard", "plan", "--config", cur, "--to", target)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "REPLICA IDENTITY FULL") {
		t.Errorf("plan with a refusal: want exit 1 naming REPLICA IDENTITY FULL, got %v\n%s", err, out)
	}
	srvs[0].Exec(ctx, "app", "ALTER TABLE orders REPLICA IDENTITY DEFAULT")

	out, err = run("reshard", "start", "--config", cur, "--to", target, "--log-level", "warn")
	if err != nil {
		t.Fatalf("start: %v\n%s", err, out)
	}
	if !strings.Contains(out, "resharding job 1 started") || !strings.Contains(out, "job 1 done") {
		t.Errorf("start output:\n%s", out)
	}
	out, err = run("reshard", "status", "--config", cur)
	if err != nil || !strings.Contains(out, "job 1 done") || !strings.Contains(out, "201/201 rows") {
		t.Errorf("status: %v\n%s", err, out)
	}
	out, err = run("reshard", "abort", "--config", cur)
	if err == nil || !strings.Contains(out, "past its cutover") {
		t.Errorf("abort after the cutover: want a refusal, got %v\n%s", err, out)
	}
	conn, err := srvs[2].Connect(ctx, "app")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, lo int
	if err := conn.QueryRow(ctx, "SELECT count(*), min(id) FROM events").Scan(&n, &lo); err != nil || n != 201 || lo != 800 {
		t.Errorf("s2 events: %d rows from %d (%v), want 201 from 800", n, lo, err)
	}
}
