package main

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRun does what README's `make run` promises, as a new user would:
// start the dev command, connect with psql, look around, insert and read,
// then Ctrl-C — and checks that every server it started is gone.
func TestMakeRun(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		t.Fatalf("psql not found: %v (make deps installs postgresql)", err)
	}
	bin := filepath.Join(t.TempDir(), "shardproxy")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "dev", "--listen", addr, "--demo", "../../testdata/demo", "--state", t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()

	// Read the banner: server PIDs, then the psql line once the demo is loaded.
	pidRE := regexp.MustCompile(`\(pid (\d+)\)`)
	var pids []int
	var psqlURL string
	sc := bufio.NewScanner(stdout)
	for psqlURL == "" && sc.Scan() {
		line := sc.Text()
		t.Log(line)
		if m := pidRE.FindStringSubmatch(line); m != nil {
			pid, _ := strconv.Atoi(m[1])
			pids = append(pids, pid)
		}
		if i := strings.Index(line, `psql "`); i >= 0 {
			psqlURL = strings.Trim(line[i+len("psql "):], `"`)
		}
	}
	if psqlURL == "" {
		t.Fatalf("dev never printed a psql line: %v", sc.Err())
	}
	go func() {
		for sc.Scan() {
		}
	}()
	if len(pids) != 3 {
		t.Fatalf("expected 3 server PIDs in the banner, got %v", pids)
	}

	run := func(sql string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, psql, psqlURL, "-X", "-v", "ON_ERROR_STOP=1", "-c", sql).CombinedOutput()
		if err != nil {
			t.Fatalf("psql -c %q: %v\n%s", sql, err, out)
		}
		return string(out)
	}
	for _, want := range []string{"customers", "order_items", "orders", "products"} {
		if out := run(`\d`); !strings.Contains(out, want) {
			t.Fatalf(`\d does not list %s:\n%s`, want, out)
		}
	}
	if out := run("SELECT customer_id, name FROM customers WHERE customer_id = 7"); !strings.Contains(out, "(1 row)") {
		t.Fatalf("point select:\n%s", out)
	}
	run("INSERT INTO customers (customer_id, name, email) VALUES (1001, 'Ada', 'ada@example.com')")
	if out := run("SELECT name FROM customers WHERE customer_id = 1001"); !strings.Contains(out, "Ada") {
		t.Fatalf("inserted row not found:\n%s", out)
	}

	// The banner's EXPLAIN: the proxy's plan over both shards' plans.
	if out := run("EXPLAIN SELECT status, count(*) FROM orders GROUP BY status"); !strings.Contains(out, "Custom Scan (shardproxy)") ||
		!strings.Contains(out, "->  Shard s0") || !strings.Contains(out, "->  Shard s1") {
		t.Fatalf("EXPLAIN across shards:\n%s", out)
	}

	// README's pg_dump: the whole logical database, each shard's rows once.
	pgDump, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatalf("pg_dump not found: %v", err)
	}
	dump, err := exec.CommandContext(ctx, pgDump, psqlURL).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	_, data, _ := strings.Cut(string(dump), "\nCOPY public.customers ")
	data, _, _ = strings.Cut(data, "\n\\.\n")
	dumped := strings.Count(data, "\n") // the COPY line's end, then one per row but the last
	if out := run("SELECT count(*) FROM customers"); !strings.Contains(out, " "+strconv.Itoa(dumped)+"\n") || !strings.Contains(data, "\tAda\t") {
		t.Fatalf("pg_dump holds %d customers (Ada among them: %v); through the proxy:\n%s", dumped, strings.Contains(data, "\tAda\t"), out)
	}

	// Ctrl-C: the proxy and all three servers stop.
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("dev exited with %v", err)
	}
	for _, pid := range pids {
		if syscall.Kill(pid, 0) == nil {
			t.Errorf("server pid %d still running after dev stopped", pid)
		}
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
