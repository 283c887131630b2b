package pgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// spawnReq asks the spawner goroutine to start cmd.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// startCmd starts cmd from a goroutine locked to an OS thread that never
// exits. Pdeathsig is tied to the thread that forked the child, not to the
// process (golang/go#27505); forking from a thread that lives as long as
// the process makes the signal mean "the test process died".
func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must outlive every child
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- r
	return <-r.done
}

// procStat returns the parent PID, state and start time (in clock ticks
// since boot) of pid from /proc/PID/stat.
func procStat(pid int) (ppid int, state byte, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	// The command name is in parentheses and may itself contain spaces or
	// parentheses; the fields after the last ')' are unambiguous.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), f[1] field 4 (ppid), f[19] field 22 (starttime).
	if len(f) < 20 {
		return 0, 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ppid, _ = strconv.Atoi(f[1])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return ppid, f[0][0], start, nil
}

// alive reports whether pid is a running (not zombie) process. Zombies
// count as gone: PID 1 in a container may never reap reparented children.
func alive(pid int) bool {
	_, state, _, err := procStat(pid)
	return err == nil && state != 'Z' && state != 'X'
}

// childrenOf lists the PIDs whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, _, _, err := procStat(p); err == nil && ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids
}

// waitGone polls until none of pids is alive or the timeout passes.
func waitGone(pids []int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still alive after %v", left, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const ownerFile = "owner"

// writeOwner records this process as the owner of dir.
func writeOwner(dir string) error {
	_, _, start, err := procStat(os.Getpid())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ownerFile), fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o644)
}

// ownerAlive reports whether the process recorded in dir's owner file still
// runs. The start time guards against PID reuse.
func ownerAlive(dir string) (known, isAlive bool) {
	b, err := os.ReadFile(filepath.Join(dir, ownerFile))
	if err != nil {
		return false, false
	}
	var pid int
	var start uint64
	if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
		return false, false
	}
	_, _, s, err := procStat(pid)
	return true, err == nil && s == start
}

var sweepOnce sync.Once

// sweepOrphans removes pgtest dirs left by test processes that died before
// they could clean up. Dirs without an owner file are left alone unless
// they are old: they may be another process's, caught between MkdirTemp
// and writeOwner.
func sweepOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		known, isAlive := ownerAlive(dir)
		if isAlive {
			continue
		}
		if !known {
			fi, err := os.Stat(dir)
			if err != nil || time.Since(fi.ModTime()) < time.Hour {
				continue
			}
		}
		stopStalePostmaster(filepath.Join(dir, "data"))
		os.RemoveAll(dir)
	}
}

// stopStalePostmaster kills a postmaster that survived its test process
// (Pdeathsig should have ended it), but only after checking by its command
// line that the PID really is a postgres serving dataDir.
func stopStalePostmaster(dataDir string) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(dataDir)) {
		return
	}
	syscall.Kill(pid, syscall.SIGQUIT)
	waitGone([]int{pid}, 10*time.Second)
}
