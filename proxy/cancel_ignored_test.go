//go:build linux

package proxy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestCancelReachesStatementStillBeingRead: Postgres ignores a cancel
// that reaches a backend while it is still reading its next request, and
// a client's cancel can reach a shard just then: the proxy sends the
// request (a gathered statement's evaluation, a single-shard statement)
// and the cancel arrives before the backend has read it. CI saw this as a
// gathered statement's evaluation that ran on after the client's cancel
// (TestGatherCancel). The proxy sends the cancel again while that same
// request is unanswered.
//
// The race is made certain by stopping the shard's backend (SIGSTOP)
// before the statement reaches it: the statement waits unread in its
// socket, the cancel's SIGINT waits pending, and when the backend goes on
// it handles the signal first, while reading, and so ignores it.
func TestCancelReachesStatementStillBeingRead(t *testing.T) {
	f := startFixture(t, fixtureOptions{Pool: "{size: 1, acquire_timeout: 2s}"})
	c := connectCancelling(t, f)
	ctx := context.Background()
	var pid int
	if err := c.QueryRow(ctx, "/* shard: s0 */ SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	resume := stopBackend(t, pid)

	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(qctx, "/* shard: s0 */ SELECT pg_sleep(5)")
		done <- err
	}()
	waitFor(t, func() bool { return unreadBytes(t, pid) > 0 })
	cancel()
	waitFor(t, func() bool { return signalPending(t, pid, syscall.SIGINT) })
	resume()
	start := time.Now()
	if err := <-done; sqlState(err) != "57014" {
		t.Fatalf("after %v: got %v, want SQLSTATE 57014 (the cancel was lost)", time.Since(start).Round(time.Millisecond), err)
	}
	var n int
	if err := c.QueryRow(ctx, "/* shard: s0 */ SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatalf("connection unusable after cancel: %v", err)
	}
}

// signalPending reports whether sig is pending at process pid
// (ShdPnd in /proc/PID/status: signals sent to the whole process).
func signalPending(t *testing.T, pid int, sig syscall.Signal) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if hex, ok := strings.CutPrefix(line, "ShdPnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return mask&(1<<(uint(sig)-1)) != 0
		}
	}
	t.Fatalf("no ShdPnd in /proc/%d/status", pid)
	return false
}

// unreadBytes is how many bytes wait unread in process pid's TCP sockets
// (rx_queue in /proc/PID/net/tcp{,6}).
func unreadBytes(t *testing.T, pid int) int {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	total := 0
	for _, table := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			_, rx, _ := strings.Cut(fields[4], ":")
			n, err := strconv.ParseInt(rx, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			total += int(n)
		}
	}
	return total
}

// stopBackend stops a shard's backend process (SIGSTOP), as if it hung,
// and returns resume, which continues it, once; the test's cleanup does
// too.
func stopBackend(t *testing.T, pid int) (resume func()) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	resume = func() { once.Do(func() { _ = syscall.Kill(pid, syscall.SIGCONT) }) }
	t.Cleanup(resume)
	return resume
}
