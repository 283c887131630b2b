// Package pgtest starts real, throw-away PostgreSQL servers for tests, the
// way net/http/httptest starts HTTP servers.
//
// Each Server gets a fresh initdb'd data directory under os.TempDir(), a
// loopback port of its own and settings suited to shardproxy's tests
// (wal_level=logical, prepared transactions, C collation, UTC, no fsync).
// Binaries come from the highest /usr/lib/postgresql/*/bin (override with
// PGTEST_BINDIR); `make deps` installs them.
//
// Postgres refuses to run as root. When the test runs as root, initdb and
// postgres are exec'd directly with the credentials of the `postgres` OS
// user (SysProcAttr.Credential, equivalent to `runuser -u postgres --`).
// Exec'ing directly, not through runuser, keeps the postmaster our own
// child: its PID is known without reading postmaster.pid, and the
// parent-death signal below reaches it (runuser would fork, and its setuid
// would clear the signal anyway).
//
// # Orphans
//
// Servers are stopped by PID only, never by process name. Three layers keep
// a crashing or killed test binary from leaving servers behind:
//
//   - Stop is idempotent and StartN registers it with t.Cleanup; StopAll
//     stops everything this process started (for TestMain).
//   - Every postmaster is started with Pdeathsig=SIGQUIT: when the test
//     process dies (panic, -timeout, SIGKILL), the kernel sends the
//     postmaster SIGQUIT, an immediate shutdown that also ends its backends.
//     Pdeathsig fires when the forking *thread* exits, so all children are
//     forked from one goroutine locked to a thread that never exits.
//   - Each temp dir holds an owner file (PID and start time of the test
//     process). The first Start in a process removes pgtest dirs whose owner
//     is gone, after stopping a postmaster still running in them.
package pgtest
