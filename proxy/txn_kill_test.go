package proxy_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestTwoPhaseCommitKill kills a proxy (a separate process) between PREPARE
// TRANSACTION and COMMIT PREPARED, before and after the commit decision is
// logged, and restarts it: recovery must leave no prepared transaction, and
// the transaction must be committed on every shard exactly when the
// decision was logged, and absent from every shard otherwise.
func TestTwoPhaseCommitKill(t *testing.T) {
	// The in-process proxy of the fixture runs without two-phase commit, so
	// that only the process under test recovers anything.
	f := startTxnFixture(t, defaultBody)
	bin := buildProxy(t)
	yaml, err := os.ReadFile(f.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	cfg := strings.Replace(string(yaml), "listen: 127.0.0.1:0", "listen: "+addr, 1) +
		"two_phase_commit: true\ntwo_phase_commit_grace: 1s\n"
	cfgPath := filepath.Join(t.TempDir(), "kill.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := fmt.Sprintf("postgres://app:secret@%s/%s?sslmode=disable", addr, f.DB)
	ctx := context.Background()

	tests := []struct {
		crashAfter string
		committed  bool
	}{
		{"prepare", false},
		{"decide", true},
	}
	for _, tc := range tests {
		t.Run(tc.crashAfter, func(t *testing.T) {
			before := f.credits(t)
			p := startProxyProcess(t, bin, cfgPath, addr, "SHARDPROXY_2PC_CRASH_AFTER="+tc.crashAfter)
			c, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{"BEGIN",
				fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.a),
				fmt.Sprintf("UPDATE customers SET credit = credit + 1 WHERE customer_id = %d", f.b)} {
				if _, err := c.Exec(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := c.Exec(ctx, "COMMIT"); err == nil {
				t.Fatal("COMMIT succeeded through a proxy that was to kill itself")
			}
			c.Close(ctx)
			if st := p.wait(t); st.Signaled() && st.Signal() != syscall.SIGKILL || !st.Signaled() {
				t.Fatalf("proxy ended with %v, want SIGKILL from the crash hook", st)
			}
			// The crash left one in-doubt transaction on each shard.
			if n, per := f.count(t, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()"); n != 2 {
				t.Fatalf("prepared transactions after the crash: %v, want one per shard", per)
			}
			if got := decisions(t, f); got != map[bool]int{true: 1, false: 0}[tc.committed] {
				t.Fatalf("%d decision rows after the crash", got)
			}

			startProxyProcess(t, bin, cfgPath, addr)
			waitUntil(t, "recovery to resolve the prepared transactions", func() bool {
				n, _ := f.count(t, "SELECT count(*) FROM pg_prepared_xacts WHERE database = current_database()")
				return n == 0
			})
			after := f.credits(t)
			want := 0
			if tc.committed {
				want = 1
			}
			for _, id := range []int64{f.a, f.b} {
				if after[id] != before[id]+want {
					t.Errorf("customer %d: credit %d, want %d", id, after[id], before[id]+want)
				}
			}
			waitUntil(t, "recovery to delete finished decisions", func() bool { return decisions(t, f) == 0 })
			// The restarted proxy serves cross-shard transactions again.
			c2, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close(ctx)
			tx, err := c2.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range []int64{f.a, f.b} {
				if _, err := tx.Exec(ctx, "UPDATE customers SET credit = credit - 1 WHERE customer_id = $1", id); err != nil {
					t.Fatal(err)
				}
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			f.checkClean(t)
		})
	}
}

func decisions(t *testing.T, f txnFixture) int {
	t.Helper()
	meta, err := pgx.Connect(context.Background(), f.Meta.DSN(f.DB))
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close(context.Background())
	var n int
	if err := meta.QueryRow(context.Background(), "SELECT count(*) FROM shardproxy_2pc").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitUntil polls cond for up to a minute (recovery sweeps every grace period).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// buildProxy builds the shardproxy binary into a temporary directory.
func buildProxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "shardproxy")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/shardproxy/shardproxy/cmd/shardproxy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type proxyProcess struct {
	cmd    *exec.Cmd
	done   chan struct{}
	status *os.ProcessState
}

// startProxyProcess runs `shardproxy serve` until it listens on addr; it is
// killed (by PID) at the end of the test if still running. Its log goes to
// the test log.
func startProxyProcess(t *testing.T, bin, cfgPath, addr string, env ...string) *proxyProcess {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "proxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--config", cfgPath)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proxyProcess{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		p.status = cmd.ProcessState
		logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
		if out, err := os.ReadFile(logPath); err == nil {
			t.Logf("proxy log (%s):\n%s", strings.Join(env, " "), out)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("proxy exited at startup: %v", p.status)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy does not listen on %s: %v", addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wait waits for the process to end and returns how it ended.
func (p *proxyProcess) wait(t *testing.T) syscall.WaitStatus {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatal("proxy did not exit")
	}
	return p.status.Sys().(syscall.WaitStatus)
}
