package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shardproxy")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

const cliConfig = `listen: 127.0.0.1:6432
users: [{name: app, password: secret}]
shards:
  - {name: s0, dsn: "postgres://postgres@127.0.0.1:5433/app"}
  - {name: s1, dsn: "postgres://postgres@127.0.0.1:5434/app"}
strategies:
  by_customer: {type: hash, key_type: int, shards: [s0, s1]}
  by_id:
    type: range
    ranges: [{upper: 1000, shard: s0}, {upper: null, shard: s1}]
tables:
  orders: {key: customer_id, strategy: by_customer}
  items:  {key: id, strategy: by_id}
`

func TestCheckConfigAndRoute(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte(cliConfig), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte(strings.Replace(cliConfig, "shard: s1}]", "shard: s9}]", 1)), 0o600)

	out, err := exec.Command(bin, "check-config", good).CombinedOutput()
	if err != nil {
		t.Fatalf("check-config good: %v\n%s", err, out)
	}
	for _, want := range []string{"by_customer", "[1000, +inf) -> s1", "orders"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}

	out, err = exec.Command(bin, "check-config", bad).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("check-config bad: want exit 1, got %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "bad.yaml:10") || !strings.Contains(string(out), "s9") {
		t.Errorf("check-config bad: want a file:line error naming s9, got:\n%s", out)
	}

	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"SELECT * FROM items WHERE id = 5"}, []string{"route:   Single", "shards:  s0"}},
		{[]string{"SELECT * FROM items WHERE id = $1", "5000"}, []string{"shards:  s1"}},
		{[]string{"SELECT * FROM items WHERE id >= 1"}, []string{"route:   All", "shards:  s0, s1"}},
		{[]string{"SELECT count(*) FROM orders"}, []string{"merge:   Plan", "plan:\n    Aggregate finish count(c0)\n      Concatenate\n        Scatter \"SELECT count(*) FROM orders\""}},
		{[]string{"SELECT sum(total) * 2 FROM orders"}, []string{"Evaluate", "Aggregate finish sum(h0)"}},
		{[]string{"SELECT sum(total) OVER w FROM orders WINDOW w AS (PARTITION BY status)"}, []string{"merge:   Plan", "Evaluate the statement over gathered rows", "ROW(orders.*)::text"}},
		{[]string{"SELECT * FROM orders WHERE total > (SELECT avg(total) FROM orders) FOR UPDATE"}, []string{"error:", "0A000"}},
		{[]string{"SELECT pg_catalog.set_config('search_path', '', false)"}, []string{"served:  as a session setting like SET (search_path = '')"}},
		{[]string{"SELECT set_config('search_path', lower('X'), false)"}, []string{"error:", "0A000"}},
		{[]string{"EXECUTE p (5)"}, []string{"served:  by the proxy: the prepared statement runs with the arguments bound"}},
		{[]string{"INSERT INTO items (id, note) VALUES (5000, 'a'), (5, 'b'), (6, 'c')"}, []string{"merge:   SplitInsert",
			"split:\n    Insert s0 rows 2,3 \"INSERT INTO items (id, note) VALUES ($3, $4), ($5, $6)\"\n    Insert s1 rows 1 \"INSERT INTO items (id, note) VALUES ($1, $2)\""}},
	}
	for _, c := range cases {
		out, err := exec.Command(bin, append([]string{"route", "--config", good}, c.args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("route %v: %v\n%s", c.args, err, out)
		}
		for _, w := range c.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("route %v: output lacks %q:\n%s", c.args, w, out)
			}
		}
	}
}
