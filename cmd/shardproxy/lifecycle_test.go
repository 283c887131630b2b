package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// lifecycleEnv is the real binary serving two fresh Postgres shards.
type lifecycleEnv struct {
	shards  []*pgtest.Server
	bin     string
	cfgPath string
	addr    string
	head    string   // YAML before strategies:
	env     []string // added to the proxy's environment, which has no GOMAXPROCS otherwise

	cmd     *exec.Cmd
	logMu   sync.Mutex
	logs    strings.Builder
	logDone chan struct{}
}

func newLifecycleEnv(t *testing.T, extraYAML string) *lifecycleEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e := &lifecycleEnv{bin: filepath.Join(t.TempDir(), "shardproxy"), addr: freeAddr(t)}
	if out, err := exec.Command("go", "build", "-o", e.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	var head strings.Builder
	fmt.Fprintf(&head, "listen: %s\nusers:\n  - {name: app, password: secret}\n%sshards:\n", e.addr, extraYAML)
	for i := 0; i < 2; i++ {
		s, err := pgtest.Start(ctx, pgtest.Options{Name: fmt.Sprintf("s%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Stop() })
		if err := s.CreateDatabase(ctx, "app"); err != nil {
			t.Fatal(err)
		}
		e.shards = append(e.shards, s)
		fmt.Fprintf(&head, "  - {name: s%d, dsn: %q}\n", i, s.DSN("app"))
	}
	e.head = head.String()
	e.cfgPath = filepath.Join(t.TempDir(), "shardproxy.yaml")
	return e
}

// writeConfig replaces the config file; body holds strategies: and tables:.
func (e *lifecycleEnv) writeConfig(t *testing.T, body string) {
	t.Helper()
	if err := os.WriteFile(e.cfgPath, []byte(e.head+body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs `shardproxy [flags] serve` and waits until it accepts clients.
func (e *lifecycleEnv) start(t *testing.T, flags ...string) {
	t.Helper()
	e.cmd = exec.Command(e.bin, append(flags, "serve", "--config", e.cfgPath)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOMAXPROCS=") {
			e.cmd.Env = append(e.cmd.Env, kv)
		}
	}
	e.cmd.Env = append(e.cmd.Env, e.env...)
	stderr, err := e.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.logDone = make(chan struct{})
	go func() {
		defer close(e.logDone)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			e.logMu.Lock()
			e.logs.WriteString(sc.Text() + "\n")
			e.logMu.Unlock()
		}
	}()
	t.Cleanup(func() {
		if e.cmd.ProcessState == nil {
			e.cmd.Process.Kill()
			<-e.logDone
			e.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("shardproxy output:\n%s", e.output())
		}
	})
	waitFor(t, "the proxy to accept clients", func() bool {
		c, err := pgx.Connect(context.Background(), e.dsn())
		if err == nil {
			c.Close(context.Background())
		}
		return err == nil
	})
}

func (e *lifecycleEnv) dsn() string {
	return fmt.Sprintf("postgres://app:secret@%s/app?sslmode=disable", e.addr)
}

func (e *lifecycleEnv) output() string {
	e.logMu.Lock()
	defer e.logMu.Unlock()
	return e.logs.String()
}

// records returns the JSON log records whose message starts with msg.
func (e *lifecycleEnv) records(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(e.output(), "\n") {
		if line == "" {
			continue
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line is not JSON (--log-format json): %q", line)
		}
		if m, _ := r["msg"].(string); strings.HasPrefix(m, msg) {
			out = append(out, r)
		}
	}
	return out
}

// stop sends SIGTERM and waits for the process to exit.
func (e *lifecycleEnv) stop(t *testing.T) error {
	t.Helper()
	if err := e.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { <-e.logDone; exited <- e.cmd.Wait() }()
	select {
	case err := <-exited:
		return err
	case <-time.After(time.Minute):
		t.Fatal("shardproxy did not exit after SIGTERM")
		return nil
	}
}

func (e *lifecycleEnv) exec(t *testing.T, shard int, sql string) {
	t.Helper()
	if err := e.shards[shard].Exec(context.Background(), "app", sql); err != nil {
		t.Fatal(err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Two maps that disagree about ids in [100, 200).
const (
	itemsMapA = `
strategies:
  by_id: {type: range, key_type: int, ranges: [{upper: 100, shard: s0}, {shard: s1}]}
tables:
  items: {key: id, strategy: by_id}
`
	itemsMapB = `
strategies:
  by_id: {type: range, key_type: int, ranges: [{upper: 200, shard: s0}, {shard: s1}]}
tables:
  items: {key: id, strategy: by_id}
`
)

// TestReloadUnderLoad runs pgbench through the proxy while SIGHUP swaps
// valid maps and rejects broken ones: no transaction fails, each rejection
// is logged with file:line, and the last valid map keeps serving.
func TestReloadUnderLoad(t *testing.T) {
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		t.Fatalf("pgbench not found: %v (make deps installs postgresql)", err)
	}
	e := newLifecycleEnv(t, "")
	for i := range e.shards {
		// Every shard holds every id, its rows naming the shard: the
		// route a read took is visible in its result.
		e.exec(t, i, fmt.Sprintf("CREATE TABLE items (id int PRIMARY KEY, v text); INSERT INTO items SELECT g, 's%d' FROM generate_series(1, 300) g", i))
	}
	e.writeConfig(t, itemsMapA)
	e.start(t, "--log-format", "json")
	// Without GOMAXPROCS, serve runs Go code on half the CPUs Go found.
	if procs := e.records(t, "threads running Go code"); len(procs) != 1 {
		t.Errorf("logged threads %d times, want once", len(procs))
	} else if n, cpus := procs[0]["procs"].(float64), procs[0]["cpus"].(float64); n != max(1, float64(int(cpus)/2)) {
		t.Errorf("procs %v with %v CPUs, want half of them", n, cpus)
	}

	script := filepath.Join(t.TempDir(), "select.sql")
	if err := os.WriteFile(script, []byte("\\set id random(1, 300)\nSELECT v FROM items WHERE id = :id;\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out []byte
	var benchErr error
	benchDone := make(chan struct{})
	go func() {
		defer close(benchDone)
		cmd := exec.Command(pgbench, "-n", "-M", "prepared", "-c", "4", "-j", "2", "-T", "8", "-f", script, e.dsn())
		out, benchErr = cmd.CombinedOutput()
	}()

	// Reload in turn a valid changed map and a broken file, waiting for
	// each outcome to be logged so that no two SIGHUPs coalesce.
	steps := []struct {
		body  string
		valid bool
	}{{itemsMapB, true}, {"shards: [\n", false}, {itemsMapA, true}, {"tables: {items: {key: id, strategy: nope}}\n", false},
		{itemsMapB, true}, {"shards: [\n", false}}
	var ok, failed int
	for _, st := range steps {
		if st.valid {
			e.writeConfig(t, st.body)
			ok++
		} else {
			if err := os.WriteFile(e.cfgPath, []byte(st.body), 0o600); err != nil {
				t.Fatal(err)
			}
			failed++
		}
		if err := e.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the reload outcome in the log", func() bool {
			return len(e.records(t, "config reloaded")) == ok && len(e.records(t, "config reload failed")) == failed
		})
		time.Sleep(300 * time.Millisecond) // let traffic run on this map
	}
	<-benchDone
	if benchErr != nil || strings.Contains(string(out), "aborted") {
		t.Fatalf("pgbench failed: %v\n%s", benchErr, out)
	}
	if m := regexp.MustCompile(`number of failed transactions: (\d+)`).FindSubmatch(out); m != nil && string(m[1]) != "0" {
		t.Errorf("pgbench: %s failed transactions\n%s", m[1], out)
	}
	if m := regexp.MustCompile(`number of transactions actually processed: (\d+)`).FindSubmatch(out); m == nil || string(m[1]) == "0" {
		t.Fatalf("pgbench processed no transactions:\n%s", out)
	}

	// Each rejection names the file and line of the problem.
	where := regexp.MustCompile(regexp.QuoteMeta(filepath.Base(e.cfgPath)) + `:\d+`)
	for _, r := range e.records(t, "config reload failed") {
		if msg, _ := r["err"].(string); !where.MatchString(msg) {
			t.Errorf("rejected reload logged without file:line: %v", r)
		}
	}
	// The last valid map (B: id 150 on s0) still serves after the rejection.
	c, err := pgx.Connect(context.Background(), e.dsn())
	if err != nil {
		t.Fatal(err)
	}
	var v string
	if err := c.QueryRow(context.Background(), "SELECT v FROM items WHERE id = $1", 150).Scan(&v); err != nil || v != "s0" {
		t.Errorf("id 150 read from %q (%v), want s0 (the last valid map)", v, err)
	}
	c.Close(context.Background())
	if err := e.stop(t); err != nil {
		t.Errorf("shardproxy exited with %v after SIGTERM", err)
	}
}

// Transfers move one unit between the two accounts of a branch, one
// transaction per transfer; branches are the shard key, so a transfer
// stays on one shard. Whatever happens, a branch's balances sum to 2000,
// and account 1 has given exactly one unit per committed transfer.
const accountsMap = `
strategies:
  by_branch: {type: hash, key_type: int, shards: [s0, s1]}
tables:
  accounts: {key: branch, strategy: by_branch}
`

// transferSteps are the statements of one transfer; pgx's Begin is step 0.
var transferSteps = []string{
	"UPDATE accounts SET balance = balance - 1 WHERE branch = $1 AND id = 1",
	"SELECT pg_sleep(%s) FROM accounts WHERE branch = $1 AND id = 1",
	"UPDATE accounts SET balance = balance + 1 WHERE branch = $1 AND id = 2",
}

// worker runs transfers on one branch until its connection is closed.
type worker struct {
	branch    int
	commits   int
	failStep  int   // -1: none yet; 0: Begin; 1..3: transferSteps; 4: Commit
	err       error // the error that ended the worker
	sleeping  chan struct{}
	sleepOnce sync.Once
}

func (w *worker) run(ctx context.Context, dsn, sleep string) {
	w.failStep = -1
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		w.failStep, w.err = 0, err
		return
	}
	defer c.Close(context.Background())
	for {
		tx, err := c.Begin(ctx)
		if err != nil {
			w.failStep, w.err = 0, err
			return
		}
		for i, st := range transferSteps {
			if strings.Contains(st, "%s") {
				st = fmt.Sprintf(st, sleep)
				w.sleepOnce.Do(func() { close(w.sleeping) })
			}
			if _, err := tx.Exec(ctx, st, w.branch); err != nil {
				w.failStep, w.err = i+1, err
				return
			}
		}
		if err := tx.Commit(ctx); err != nil {
			w.failStep, w.err = len(transferSteps)+1, err
			return
		}
		w.commits++
	}
}

// closedAtBoundary tells whether err is how a drained client learns that
// the proxy closed it: FATAL 57P01, or the connection gone.
func closedAtBoundary(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code == "57P01"
	}
	return err != nil
}

// TestShutdownUnderLoad sends SIGTERM while clients run transfers: with a
// generous shutdown_timeout every transfer in flight commits and clients
// are closed between transactions; with a short one the transfers still
// in flight when it passes roll back. Either way the process exits 0 and
// no transfer is half-applied.
func TestShutdownUnderLoad(t *testing.T) {
	for _, tc := range []struct {
		name    string
		timeout string // shutdown_timeout
		sleep   string // seconds each transfer sleeps between its updates
		wantCut bool   // transfers in flight outlive the timeout
	}{
		{"transactions finish", "30s", "0.2", false},
		{"timeout rolls back", "1s", "5", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLifecycleEnv(t, "shutdown_timeout: "+tc.timeout+"\n")
			e.writeConfig(t, accountsMap)
			e.env = []string{"GOMAXPROCS=3"} // the operator's choice stands
			const branches = 6
			for i := range e.shards {
				e.exec(t, i, "CREATE TABLE accounts (branch int, id int, balance int NOT NULL, PRIMARY KEY (branch, id))")
			}
			e.start(t, "--log-level", "debug")
			if out := e.output(); !strings.Contains(out, "procs=3 ") || !strings.Contains(out, "from=GOMAXPROCS") {
				t.Errorf("with GOMAXPROCS=3 the proxy did not log procs=3 from=GOMAXPROCS:\n%s", out)
			}
			ctx := context.Background()
			setup, err := pgx.Connect(ctx, e.dsn())
			if err != nil {
				t.Fatal(err)
			}
			for b := 1; b <= branches; b++ {
				if _, err := setup.Exec(ctx, "INSERT INTO accounts VALUES ($1, 1, 1000), ($1, 2, 1000)", b); err != nil {
					t.Fatal(err)
				}
			}
			setup.Close(ctx)

			workers := make([]*worker, branches)
			var wg sync.WaitGroup
			for i := range workers {
				w := &worker{branch: i + 1, sleeping: make(chan struct{})}
				workers[i] = w
				wg.Add(1)
				go func() { defer wg.Done(); w.run(ctx, e.dsn(), tc.sleep) }()
			}
			// SIGTERM once every worker is inside a transfer (and, for the
			// short sleep, has had time to commit a few).
			for _, w := range workers {
				<-w.sleeping
			}
			if !tc.wantCut {
				time.Sleep(time.Second)
			}
			if err := e.stop(t); err != nil {
				t.Errorf("shardproxy exited with %v after SIGTERM, want 0", err)
			}
			wg.Wait()

			cut := 0
			for _, w := range workers {
				switch {
				case w.failStep == 0 && closedAtBoundary(w.err):
					// closed between transfers: fine
				case tc.wantCut && w.failStep > 0:
					cut++ // its transfer outlived shutdown_timeout
				default:
					t.Errorf("branch %d: transfer cut at step %d by %v", w.branch, w.failStep, w.err)
				}
			}
			if tc.wantCut && cut == 0 {
				t.Error("no transfer outlived shutdown_timeout: the case tests nothing")
			}

			// Check the shards directly: nothing half-applied, every
			// acknowledged commit applied, nothing else.
			for _, w := range workers {
				var b1, b2 int
				found := 0
				for _, s := range e.shards {
					c, err := s.Connect(ctx, "app")
					if err != nil {
						t.Fatal(err)
					}
					err = c.QueryRow(ctx, "SELECT (SELECT balance FROM accounts WHERE branch = $1 AND id = 1), (SELECT balance FROM accounts WHERE branch = $1 AND id = 2)", w.branch).Scan(&b1, &b2)
					c.Close(ctx)
					if err == nil {
						found++
						break
					}
				}
				if found == 0 {
					t.Fatalf("branch %d not found on any shard", w.branch)
				}
				if b1+b2 != 2000 {
					t.Errorf("branch %d: balances %d + %d != 2000: a transfer was half-applied", w.branch, b1, b2)
				}
				// A commit cut by the timeout may or may not have happened.
				if want := 1000 - w.commits; b1 != want && !(w.failStep == len(transferSteps)+1 && b1 == want-1) {
					t.Errorf("branch %d: account 1 holds %d after %d acknowledged commits, want %d", w.branch, b1, w.commits, 1000-w.commits)
				}
			}
		})
	}
}

func TestLogFlags(t *testing.T) {
	for _, tc := range []struct {
		format, level string
		ok            bool
		want          string // in the output of a Debug and an Info record
	}{
		{"text", "info", true, "level=INFO msg=shown"},
		{"json", "debug", true, `"msg":"hidden"`},
		{"json", "warn", true, ""},
		{"xml", "info", false, ""},
		{"text", "loud", false, ""},
	} {
		t.Run(tc.format+"/"+tc.level, func(t *testing.T) {
			f := logFlags{format: tc.format, level: tc.level}
			if err := f.check(); (err == nil) != tc.ok {
				t.Fatalf("check: %v, want ok=%t", err, tc.ok)
			}
			if !tc.ok {
				return
			}
			var b strings.Builder
			log := f.logger(&b)
			log.Debug("hidden")
			log.Info("shown")
			if tc.want == "" && b.Len() != 0 || !strings.Contains(b.String(), tc.want) {
				t.Errorf("output %q, want it to contain %q", b.String(), tc.want)
			}
		})
	}
}
