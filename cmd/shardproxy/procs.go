package main

import (
	"log/slog"
	"os"
	"runtime"
)

// proxyProcs is how many threads may run the proxy's Go code at once
// (runtime.GOMAXPROCS) when the environment does not say: half of
// runtimeDefault, the count Go chose itself (the CPUs, or the cgroup's CPU
// limit), and at least one. A GOMAXPROCS in the environment stands
// (fromEnv reports it), as it does for any Go program.
//
// Why not every CPU: a proxy is mostly system calls that wake a peer (in
// pgbench -S through the proxy, about two thirds of its CPU time is in the
// kernel, most of it in send), and a proxy usually shares its host with
// Postgres or the clients. With a second processor the Go scheduler wakes,
// spins for and steals from it on nearly every message; with one, sessions
// take turns on one thread, as PgBouncer's single-threaded event loop does.
// On this project's 2-core bench host (make bench, median of 5 rounds),
// one processor against two took 39.8 against 49.1 µs of proxy CPU per
// pgbench -S transaction in simple mode, 40.9 against 51.1 extended and
// 37.3 against 43.5 prepared, with more TPS in 14 of the 15 rounds. A
// dedicated proxy host that needs every core sets GOMAXPROCS.
func proxyProcs(env string, runtimeDefault int) (n int, fromEnv bool) {
	if env != "" {
		return runtimeDefault, true // the runtime has already applied it
	}
	return max(1, runtimeDefault/2), false
}

// setProxyProcs applies proxyProcs at the start of serve and dev, before
// the proxy does any work, and logs the choice. It is process-wide, which
// is why serve's tests (in this process) do not call it.
func setProxyProcs(log *slog.Logger) {
	found := runtime.GOMAXPROCS(0)
	n, fromEnv := proxyProcs(os.Getenv("GOMAXPROCS"), found)
	if fromEnv {
		log.Info("threads running Go code", "procs", n, "from", "GOMAXPROCS")
		return
	}
	runtime.GOMAXPROCS(n)
	log.Info("threads running Go code", "procs", runtime.GOMAXPROCS(0), "cpus", found,
		"from", "half the CPUs Go found; set GOMAXPROCS to choose")
}
