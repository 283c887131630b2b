package pgtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Options configure one server. The zero value is a trust-auth server on a
// free port.
type Options struct {
	Name     string            // label for logs and the temp dir, e.g. "s0"
	Port     int               // 0 = pick a free loopback port (retried on a bind race)
	Auth     string            // "trust" (default) or "scram-sha-256" for host 127.0.0.1 connections
	Password string            // password of role postgres; required with scram-sha-256
	Conf     map[string]string // extra postgresql.conf settings; values are quoted unless already quoted
}

// Auth methods.
const (
	AuthTrust = "trust"
	AuthSCRAM = "scram-sha-256"
)

const (
	dirPrefix       = "pgtest-"
	readyTimeout    = 60 * time.Second // when ctx has no deadline
	shutdownTimeout = 30 * time.Second // fast shutdown before SIGKILL
	maxPortTries    = 10
)

// Server is one running (or halted) PostgreSQL server. Its methods are safe
// for concurrent use.
type Server struct {
	name     string
	binDir   string
	cred     *syscall.Credential // nil when not root: run as ourselves
	baseDir  string              // temp dir: owner file, data/
	dataDir  string
	port     int
	password string

	mu      sync.Mutex
	cmd     *exec.Cmd     // current postmaster; nil when not running
	exited  chan struct{} // closed once cmd has been reaped
	removed bool          // Stop removed baseDir; the server is gone for good
}

var (
	registryMu sync.Mutex
	registry   = map[*Server]struct{}{}
)

// Start runs initdb in a fresh temp dir, starts the server and waits until
// it accepts connections. Call Stop when done (StartN does it for you).
func Start(ctx context.Context, opts Options) (_ *Server, err error) {
	if opts.Auth == "" {
		opts.Auth = AuthTrust
	}
	if opts.Auth != AuthTrust && opts.Auth != AuthSCRAM {
		return nil, fmt.Errorf("pgtest: unknown Auth %q (want %q or %q)", opts.Auth, AuthTrust, AuthSCRAM)
	}
	if opts.Auth == AuthSCRAM && opts.Password == "" {
		return nil, errors.New("pgtest: Auth scram-sha-256 needs a Password")
	}
	if opts.Name == "" {
		opts.Name = "pg"
	}
	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		if cred, err = postgresUser(); err != nil {
			return nil, err
		}
	}
	sweepOnce.Do(sweepOrphans)

	base, err := os.MkdirTemp("", dirPrefix+safeName(opts.Name)+"-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	s := &Server{
		name:     opts.Name,
		binDir:   binDir,
		cred:     cred,
		baseDir:  base,
		dataDir:  filepath.Join(base, "data"),
		password: opts.Password,
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if err := writeOwner(base); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if err := s.chown(base); err != nil {
		return nil, err
	}
	if err := s.initdb(ctx, opts); err != nil {
		return nil, err
	}
	if err := s.writeConfig(opts); err != nil {
		return nil, err
	}
	registryMu.Lock()
	registry[s] = struct{}{}
	registryMu.Unlock()

	// A port that was free when we probed it may be taken before the
	// postmaster binds it (other test binaries run in parallel): retry.
	for try := 1; ; try++ {
		s.port = opts.Port
		if s.port == 0 {
			if s.port, err = freePort(); err != nil {
				return nil, err
			}
		}
		err = s.launch(ctx)
		if err == nil {
			return s, nil
		}
		var be *bindError
		if opts.Port != 0 || !errors.As(err, &be) || try == maxPortTries {
			return nil, err
		}
	}
}

// Host is the address the server listens on.
func (s *Server) Host() string { return "127.0.0.1" }

// Port is the server's TCP port; it stays the same across Restart.
func (s *Server) Port() int { return s.port }

// Name is the label from Options.
func (s *Server) Name() string { return s.name }

// DataDir is PGDATA. The Unix socket and server.log live here too.
func (s *Server) DataDir() string { return s.dataDir }

// LogPath is the server's log file (stderr of the postmaster).
func (s *Server) LogPath() string { return filepath.Join(s.dataDir, "server.log") }

// PID is the postmaster's PID, or 0 while the server is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// DSN is a pgx/libpq URL for database db as role postgres.
func (s *Server) DSN(db string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User("postgres"),
		Host:     net.JoinHostPort(s.Host(), strconv.Itoa(s.port)),
		Path:     "/" + db,
		RawQuery: "sslmode=disable",
	}
	if s.password != "" {
		u.User = url.UserPassword("postgres", s.password)
	}
	return u.String()
}

// Connect opens a pgx connection to database db; the caller closes it.
func (s *Server) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.DSN(db))
}

// CreateDatabase creates database name (template0, so it is empty and C-collated).
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	return s.Exec(ctx, "postgres", "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0")
}

// Exec runs sql in database db over the simple query protocol, so sql may
// hold several statements. The first failing statement's *pgconn.PgError is
// returned (wrapped).
func (s *Server) Exec(ctx context.Context, db, sql string) error {
	conn, err := pgconn.Connect(ctx, s.DSN(db))
	if err != nil {
		return fmt.Errorf("pgtest %s: connect: %w", s.name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql).ReadAll(); err != nil {
		return fmt.Errorf("pgtest %s: exec: %w", s.name, err)
	}
	return nil
}

// ExecFile runs the SQL file at path like Exec (one simple-protocol
// Query, so the file may not use psql meta-commands).
func (s *Server) ExecFile(ctx context.Context, db, path string) error {
	sql, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("pgtest %s: %w", s.name, err)
	}
	return s.Exec(ctx, db, string(sql))
}

// Halt shuts the server down (fast shutdown: SIGINT to the postmaster's
// PID, SIGKILL after 30 s) and keeps the data dir, so Restart works.
// Halting a server that is not running is a no-op.
func (s *Server) Halt() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.haltLocked()
}

func (s *Server) haltLocked() error {
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGINT); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("pgtest %s: signal %d: %w", s.name, pid, err)
	}
	select {
	case <-s.exited:
		s.cmd = nil
		return nil
	case <-time.After(shutdownTimeout):
	}
	if err := s.killLocked(); err != nil {
		return err
	}
	return fmt.Errorf("pgtest %s: fast shutdown took over %v; killed pid %d", s.name, shutdownTimeout, pid)
}

// Kill crashes the server: SIGKILL to the postmaster and to its child
// processes, all by PID, so that no backend keeps serving. The data dir is
// kept; Restart performs crash recovery. Use it for shard-down tests.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.killLocked()
}

func (s *Server) killLocked() error {
	if s.cmd == nil {
		return nil
	}
	pid := s.cmd.Process.Pid
	// Stopped, the postmaster cannot fork while we list its children; once
	// it is dead its orphans are reparented and no longer findable.
	syscall.Kill(pid, syscall.SIGSTOP)
	kids := childrenOf(pid)
	syscall.Kill(pid, syscall.SIGKILL)
	for _, k := range kids {
		syscall.Kill(k, syscall.SIGKILL)
	}
	<-s.exited
	s.cmd = nil
	// A new postmaster refuses to start while old backends still hold the
	// shared memory segment, so Restart needs them gone.
	if err := waitGone(kids, 10*time.Second); err != nil {
		return fmt.Errorf("pgtest %s: %w", s.name, err)
	}
	return nil
}

// Stop halts the server if it runs and removes its temp dir. It is
// idempotent, and works after Kill or Halt.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return nil
	}
	err := s.haltLocked()
	if rerr := os.RemoveAll(s.baseDir); rerr != nil && err == nil {
		err = fmt.Errorf("pgtest %s: %w", s.name, rerr)
	}
	s.removed = true
	registryMu.Lock()
	delete(registry, s)
	registryMu.Unlock()
	return err
}

// Restart starts the server again on the same port and data dir, after
// Halt or Kill (a running server is halted first). It fails after Stop.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	removed := s.removed
	err := s.haltLocked()
	s.mu.Unlock()
	if removed {
		return fmt.Errorf("pgtest %s: Restart after Stop: data dir was removed", s.name)
	}
	if err != nil {
		return err
	}
	return s.launch(ctx)
}

// StopAll stops every server this process started and has not stopped yet.
// Use it in TestMain after m.Run for servers shared by a package's tests.
func StopAll() error {
	registryMu.Lock()
	servers := make([]*Server, 0, len(registry))
	for s := range registry {
		servers = append(servers, s)
	}
	registryMu.Unlock()
	var errs []error
	for _, s := range servers {
		errs = append(errs, s.Stop())
	}
	return errors.Join(errs...)
}

// LogTail returns up to the last n lines of the server log.
func (s *Server) LogTail(n int) string {
	b, err := os.ReadFile(s.LogPath())
	if err != nil {
		return fmt.Sprintf("(no server log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// bindError means the postmaster could not bind its port: another process
// took it between our probe and the postmaster's bind.
type bindError struct{ err error }

func (e *bindError) Error() string { return e.err.Error() }
func (e *bindError) Unwrap() error { return e.err }

// launch starts the postmaster on s.port and waits until it accepts
// connections. On failure the postmaster is stopped.
func (s *Server) launch(ctx context.Context) error {
	logf, err := os.OpenFile(s.LogPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest %s: %w", s.name, err)
	}
	defer logf.Close() // the child holds its own copy
	logStart, _ := logf.Seek(0, io.SeekEnd)
	if err := s.chown(s.LogPath()); err != nil {
		return err
	}
	cmd := s.command(filepath.Join(s.binDir, "postgres"), "-D", s.dataDir, "-p", strconv.Itoa(s.port))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT // see package doc: immediate shutdown if we die

	s.mu.Lock()
	if s.removed || s.cmd != nil {
		s.mu.Unlock()
		return fmt.Errorf("pgtest %s: cannot start: removed=%v running=%v", s.name, s.removed, s.cmd != nil)
	}
	if err := startCmd(cmd); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("pgtest %s: start postgres: %w", s.name, err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		cmd.Wait()
		close(exited)
	}()

	if err := s.waitReady(ctx, exited, logStart); err != nil {
		s.Kill()
		return err
	}
	return nil
}

// waitReady pings until the server answers, it exits, or ctx (or the
// default readiness timeout) ends.
func (s *Server) waitReady(ctx context.Context, exited <-chan struct{}, logStart int64) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, readyTimeout)
		defer cancel()
	}
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgconn.Connect(pctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		select {
		case <-exited:
			tail := s.LogTail(20)
			err := fmt.Errorf("pgtest %s: postgres exited during startup on port %d; log tail:\n%s", s.name, s.port, tail)
			// Only this start's log lines count: earlier attempts appended to the same file.
			b, _ := os.ReadFile(s.LogPath())
			if int64(len(b)) >= logStart {
				b = b[logStart:]
			}
			if strings.Contains(string(b), "could not bind") || strings.Contains(string(b), "Address already in use") {
				return &bindError{err}
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("pgtest %s: not ready on port %d: %w (last error: %v); log tail:\n%s",
				s.name, s.port, ctx.Err(), err, s.LogTail(20))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) initdb(ctx context.Context, opts Options) error {
	args := []string{"-D", s.dataDir, "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-sync", "-A", "trust"}
	if opts.Auth == AuthSCRAM {
		pw := filepath.Join(s.baseDir, "pwfile")
		if err := os.WriteFile(pw, []byte(opts.Password+"\n"), 0o600); err != nil {
			return fmt.Errorf("pgtest %s: %w", s.name, err)
		}
		defer os.Remove(pw)
		if err := s.chown(pw); err != nil {
			return err
		}
		args = append(args, "--auth-host="+AuthSCRAM, "--pwfile="+pw)
	}
	cmd := s.command(filepath.Join(s.binDir, "initdb"), args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := startCmd(cmd); err != nil {
		return fmt.Errorf("pgtest %s: initdb: %w", s.name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("pgtest %s: initdb: %w\n%s", s.name, err, out.String())
		}
		return nil
	case <-ctx.Done():
		cmd.Process.Kill()
		<-done
		return fmt.Errorf("pgtest %s: initdb: %w", s.name, ctx.Err())
	}
}

// baseConf are the settings every test server gets; Options.Conf wins.
var baseConf = map[string]string{
	"listen_addresses":          "127.0.0.1",
	"wal_level":                 "logical",
	"max_prepared_transactions": "64",
	"max_connections":           "200",
	"max_replication_slots":     "16",
	"max_wal_senders":           "16",
	"fsync":                     "off",
	// synchronous_commit stays on: with fsync=off a commit costs one
	// write(2), and off would lose the last ~200 ms of commits on Kill,
	// making crash tests (shard down, resharding "no write lost") flaky.
	"synchronous_commit": "on",
	"full_page_writes":   "off",
	"shared_buffers":     "32MB", // many servers share one test machine
	"timezone":           "UTC",
	"log_timezone":       "UTC",
	"lc_messages":        "C",
	"logging_collector":  "off", // stderr goes to server.log
	"log_line_prefix":    "%m [%p] %q%u@%d ",
}

func (s *Server) writeConfig(opts Options) error {
	conf := merge(baseConf, opts.Conf)
	// The socket goes into the data dir so that servers never touch
	// /var/run/postgresql, which may not exist or may belong to a system cluster.
	conf["unix_socket_directories"] = s.dataDir
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("\n# pgtest settings (later lines win over initdb's defaults above)\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, quoteConf(conf[k]))
	}
	f, err := os.OpenFile(filepath.Join(s.dataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgtest %s: %w", s.name, err)
	}
	_, err = f.WriteString(b.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgtest %s: %w", s.name, err)
	}
	hba := fmt.Sprintf(`# written by pgtest
local all         all                trust
local replication all                trust
host  all         all  127.0.0.1/32  %[1]s
host  replication all  127.0.0.1/32  %[1]s
`, opts.Auth)
	if err := os.WriteFile(filepath.Join(s.dataDir, "pg_hba.conf"), []byte(hba), 0o600); err != nil {
		return fmt.Errorf("pgtest %s: %w", s.name, err)
	}
	return nil
}

// command builds an exec.Cmd that runs as the postgres OS user when we
// are root, with a clean locale and no PG* variables that could redirect it.
func (s *Server) command(path string, args ...string) *exec.Cmd {
	cmd := exec.Command(path, args...)
	cmd.Dir = s.baseDir // the caller's cwd may be unreadable for postgres
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "LC_") || strings.HasPrefix(kv, "LANG=")
	})
	cmd.Env = append(env, "LC_ALL=C", "TZ=UTC")
	// Own process group: a terminal's ^C goes to the test binary, whose
	// death then reaches the postmaster as Pdeathsig.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	return cmd
}

func (s *Server) chown(path string) error {
	if s.cred == nil {
		return nil
	}
	if err := os.Chown(path, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
		return fmt.Errorf("pgtest %s: %w", s.name, err)
	}
	return nil
}

// BinDir returns the directory of the PostgreSQL server binaries:
// $PGTEST_BINDIR, else the highest version under /usr/lib/postgresql.
func BinDir() (string, error) {
	if d := os.Getenv("PGTEST_BINDIR"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err != nil {
			return "", fmt.Errorf("pgtest: PGTEST_BINDIR: %w", err)
		}
		return d, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	if len(found) == 0 {
		return "", errors.New("pgtest: no PostgreSQL server binaries in /usr/lib/postgresql/*/bin; run `make deps` (installs the postgresql package) or set PGTEST_BINDIR")
	}
	version := func(p string) float64 { // .../postgresql/15/bin/postgres -> 15
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	return filepath.Dir(found[0]), nil
}

func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs the postgres OS user (run `make deps`): %w", err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// freePort picks a loopback port below the kernel's ephemeral range, so
// that outgoing connections of other tests cannot hold it while a halted
// server waits to be restarted. Collisions between parallel test binaries
// are caught by the probe here or by the bind retry in Start.
func freePort() (int, error) {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const floor = 20000
	for range 50 {
		port := 0 // let the kernel choose when there is no room below the range
		if low-floor > 1000 {
			port = floor + rand.IntN(low-floor)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
		return port, nil
	}
	return 0, errors.New("pgtest: no free loopback port found")
}

// quoteConf quotes a postgresql.conf value unless it is quoted already.
func quoteConf(v string) string {
	if len(v) >= 2 && v[0] == '\'' && v[len(v)-1] == '\'' {
		return v
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}

func safeName(name string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, name)
}

// merge merges src maps into a new map, later ones winning.
func merge(src ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range src {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}
