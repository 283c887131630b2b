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

// reshardCLI is the shardproxy binary and four servers (s0, s1, s2 and
// the metadata database) with the example schema on s0 and s1.
type reshardCLI struct {
	bin  string
	srvs []*pgtest.Server
	dir  string
}

func newReshardCLI(t *testing.T) *reshardCLI {
	c := &reshardCLI{bin: buildBinary(t), srvs: pgtest.StartN(t, 4, pgtest.Options{Name: "rs"}), dir: t.TempDir()}
	ctx := context.Background()
	schema, err := os.ReadFile("../../testdata/resharding/schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range c.srvs {
		if err := s.CreateDatabase(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			if err := s.Exec(ctx, "app", string(schema)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

// write copies an example map with its DSNs pointed at c's servers.
func (c *reshardCLI) write(t *testing.T, name string) string {
	b, err := os.ReadFile(filepath.Join("../../testdata/resharding", name))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	for suffix, s := range map[string]*pgtest.Server{"5433/app": c.srvs[0], "5434/app": c.srvs[1], "5435/app": c.srvs[2], "5436/shardproxy_meta": c.srvs[3]} {
		text = strings.ReplaceAll(text, "postgres://postgres@127.0.0.1:"+suffix, s.DSN("app"))
	}
	p := filepath.Join(c.dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (c *reshardCLI) run(args ...string) (string, error) {
	out, err := exec.Command(c.bin, args...).CombinedOutput()
	return string(out), err
}

// TestReshardCLI runs plan, start, status and abort as a user would, on
// the documented example with a little data and no proxy running (the
// cutover then has nobody to pause).
func TestReshardCLI(t *testing.T) {
	c := newReshardCLI(t)
	srvs, run, ctx := c.srvs, c.run, context.Background()
	cur, target := c.write(t, "current.yaml"), c.write(t, "target.yaml")
	// events 1..1000 by the current range map: below 500 on s0.
	srvs[0].Exec(ctx, "app", "INSERT INTO events SELECT g, 'k', 'p' FROM generate_series(1, 499) g")
	srvs[1].Exec(ctx, "app", "INSERT INTO events SELECT g, 'k', 'p' FROM generate_series(500, 1000) g")

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

// TestReshardCLIDirectoryMove moves one customer placed by a directory
// with --move alone (the map stays), as a user would.
func TestReshardCLIDirectoryMove(t *testing.T) {
	c := newReshardCLI(t)
	ctx := context.Background()
	cur := c.write(t, "directory_current.yaml")
	// Customers 1 and 2 on s0, 3 on s1, as a proxy would have placed and
	// recorded them.
	c.srvs[3].Exec(ctx, "app", `CREATE TABLE tenant_directory (key text PRIMARY KEY, shard text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now());
		INSERT INTO tenant_directory (key, shard) VALUES ('1', 's0'), ('2', 's0'), ('3', 's1')`)
	c.srvs[0].Exec(ctx, "app", `INSERT INTO customers VALUES (1, 'a'), (2, 'b'); INSERT INTO orders VALUES (1, 11, 1, ''), (1, 12, 2, ''), (2, 21, 3, '')`)
	c.srvs[1].Exec(ctx, "app", `INSERT INTO customers VALUES (3, 'c'); INSERT INTO orders VALUES (3, 31, 4, '')`)

	out, err := c.run("reshard", "plan", "--config", cur, "--move", "by_tenant:1=s1")
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	for _, w := range []string{"keys 1->s1", "move s0   -> s1            2 rows", "refusals: none"} {
		if !strings.Contains(out, w) {
			t.Errorf("plan output lacks %q:\n%s", w, out)
		}
	}
	for _, tt := range []struct{ args, want string }{
		{"--move by_tenant:1", "want strategy:key=shard"},
		{"--move by_tenant:9=s1", "key 9 has no entry in directory tenant_directory"},
		{"", "say what changes"},
	} {
		out, err := c.run(append([]string{"reshard", "plan", "--config", cur}, strings.Fields(tt.args)...)...)
		if err == nil || !strings.Contains(out, tt.want) {
			t.Errorf("plan %s: want an error naming %q, got %v\n%s", tt.args, tt.want, err, out)
		}
	}

	out, err = c.run("reshard", "start", "--config", cur, "--move", "by_tenant:1=s1", "--log-level", "warn")
	if err != nil || !strings.Contains(out, "job 1 done") {
		t.Fatalf("start: %v\n%s", err, out)
	}
	count := func(s *pgtest.Server, q string) int {
		conn, err := s.Connect(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		var n int
		if err := conn.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(c.srvs[1], "SELECT count(*) FROM orders WHERE customer_id = 1"); n != 2 {
		t.Errorf("s1 has %d orders of customer 1, want 2", n)
	}
	if n := count(c.srvs[0], "SELECT count(*) FROM orders WHERE customer_id = 1") + count(c.srvs[0], "SELECT count(*) FROM customers WHERE customer_id = 1"); n != 0 {
		t.Errorf("s0 still has %d rows of customer 1", n)
	}
	if n := count(c.srvs[0], "SELECT count(*) FROM orders WHERE customer_id = 2"); n != 1 {
		t.Errorf("s0 has %d orders of customer 2 (not moved), want 1", n)
	}
	if n := count(c.srvs[3], "SELECT count(*) FROM tenant_directory WHERE key = '1' AND shard = 's1'"); n != 1 {
		t.Error("the directory entry of customer 1 does not name s1")
	}
}
