package pgtest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/shardproxy/shardproxy/pool/pgtest"
)

// alive reports whether pid names a live, non-zombie process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// State is the field after the parenthesised command name.
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X'
		}
	}
	return false
}

func queryInt(t *testing.T, s *pgtest.Server, db, sql string) int64 {
	t.Helper()
	conn, err := s.Connect(t.Context(), db)
	if err != nil {
		t.Fatalf("%s: connect %s: %v", s.Name(), db, err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %s: %v", s.Name(), sql, err)
	}
	return n
}

func TestLifecycle(t *testing.T) {
	servers := pgtest.StartN(t, 2, pgtest.Options{})
	if len(servers) != 2 {
		t.Fatalf("StartN returned %d servers", len(servers))
	}
	if servers[0].Port() == servers[1].Port() {
		t.Fatalf("both servers on port %d", servers[0].Port())
	}
	for i, s := range servers {
		if want := fmt.Sprintf("s%d", i); s.Name() != want {
			t.Errorf("name = %q, want %q", s.Name(), want)
		}
		if err := s.CreateDatabase(t.Context(), "app"); err != nil {
			t.Fatal(err)
		}
		// Several statements in one Exec: the simple protocol allows it.
		err := s.Exec(t.Context(), "app", `
			CREATE TABLE t (id bigint PRIMARY KEY, v text);
			INSERT INTO t SELECT g, 'row' || g FROM generate_series(1, 10) g;`)
		if err != nil {
			t.Fatal(err)
		}
		if n := queryInt(t, s, "app", "SELECT count(*) FROM t"); n != 10 {
			t.Errorf("%s: count = %d, want 10", s.Name(), n)
		}
	}

	s := servers[0]
	settings := []struct{ name, want string }{
		{"wal_level", "logical"},
		{"max_prepared_transactions", "64"},
		{"lc_collate", "C"},
		{"server_encoding", "UTF8"},
		{"TimeZone", "UTC"},
		{"unix_socket_directories", s.DataDir()},
	}
	conn, err := s.Connect(t.Context(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range settings {
		t.Run(c.name, func(t *testing.T) {
			var got string
			if err := conn.QueryRow(t.Context(), "SELECT current_setting($1)", c.name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("%s = %q, want %q", c.name, got, c.want)
			}
		})
	}
	conn.Close(context.Background())

	t.Run("KillRestart", func(t *testing.T) {
		port, pid := s.Port(), s.PID()
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Fatalf("postmaster %d alive after Kill", pid)
		}
		if got := s.PID(); got != 0 {
			t.Errorf("PID() = %d after Kill, want 0", got)
		}
		if err := s.Exec(t.Context(), "app", "SELECT 1"); err == nil {
			t.Fatal("Exec succeeded on a killed server")
		}
		if err := s.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		if s.Port() != port {
			t.Errorf("port changed across Restart: %d -> %d", port, s.Port())
		}
		if s.PID() == pid || s.PID() == 0 {
			t.Errorf("PID after Restart = %d (before %d)", s.PID(), pid)
		}
		// Committed rows survive a crash: commits are synchronous, and
		// fsync=off only matters if the OS dies.
		if n := queryInt(t, s, "app", "SELECT count(*) FROM t"); n != 10 {
			t.Errorf("count after Kill+Restart = %d, want 10", n)
		}
	})

	t.Run("HaltRestart", func(t *testing.T) {
		if err := s.Halt(); err != nil {
			t.Fatal(err)
		}
		if err := s.Halt(); err != nil { // idempotent
			t.Fatal(err)
		}
		if err := s.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		// A clean shutdown checkpoints everything, async commit or not.
		if n := queryInt(t, s, "app", "SELECT count(*) FROM t"); n != 10 {
			t.Errorf("count after Halt+Restart = %d, want 10", n)
		}
	})

	t.Run("Stop", func(t *testing.T) {
		s := servers[1]
		pid, dir := s.PID(), s.DataDir()
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if alive(pid) {
			t.Errorf("postmaster %d alive after Stop", pid)
		}
		if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("temp dir still there after Stop: %v", err)
		}
		if err := s.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
		if err := s.Restart(t.Context()); err == nil {
			t.Error("Restart after Stop succeeded")
		}
	})
}

func TestSCRAM(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	s, err := pgtest.Start(ctx, pgtest.Options{Name: "scram", Auth: pgtest.AuthSCRAM, Password: "p@ss:w/rd"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	cases := []struct {
		name     string
		dsn      string
		wantCode string // "" = success
	}{
		{"right password", s.DSN("postgres"), ""},
		{"wrong password", fmt.Sprintf("postgres://postgres:nope@127.0.0.1:%d/postgres?sslmode=disable", s.Port()), "28P01"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn, err := pgconn.Connect(ctx, c.dsn)
			if c.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				conn.Close(ctx)
				return
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != c.wantCode {
				t.Fatalf("err = %v, want SQLSTATE %s", err, c.wantCode)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	cases := []struct {
		name string
		opts pgtest.Options
	}{
		{"unknown auth", pgtest.Options{Auth: "md5"}},
		{"scram without password", pgtest.Options{Auth: pgtest.AuthSCRAM}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := pgtest.Start(t.Context(), c.opts)
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded")
			}
		})
	}
}

func TestConfAndExecError(t *testing.T) {
	s := pgtest.StartN(t, 1, pgtest.Options{Name: "conf", Conf: map[string]string{
		"application_name": "it's pgtest", // quoted by the harness
		"work_mem":         "'8MB'",       // already quoted: left alone
	}})[0]
	if s.Name() != "conf0" {
		t.Errorf("name = %q, want conf0", s.Name())
	}
	conn, err := s.Connect(t.Context(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var app, wm string
	if err := conn.QueryRow(t.Context(), "SELECT current_setting('application_name'), current_setting('work_mem')").Scan(&app, &wm); err != nil {
		t.Fatal(err)
	}
	if app != "it's pgtest" || wm != "8MB" {
		t.Errorf("application_name=%q work_mem=%q", app, wm)
	}

	err = s.Exec(t.Context(), "postgres", "SELECT 1; SELECT * FROM no_such_table; SELECT 2")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
		t.Fatalf("Exec err = %v, want SQLSTATE 42P01", err)
	}
}

func TestOrphanSignal(t *testing.T) {
	// The Pdeathsig setup is checked by its effect elsewhere (a killed test
	// binary leaves no postmaster); here, that the postmaster is our child
	// in its own process group, which is what the signal setup relies on.
	s := pgtest.StartN(t, 1, pgtest.Options{Name: "pd"})[0]
	pgid, err := syscall.Getpgid(s.PID())
	if err != nil {
		t.Fatal(err)
	}
	if pgid != s.PID() {
		t.Errorf("postmaster pgid = %d, want its own pid %d", pgid, s.PID())
	}
}
