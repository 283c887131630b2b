package proxy_test

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
)

// withUsers serves f with extra users from now on (a reload in miniature:
// the runtime is copied with a config that lists them too).
func withUsers(f *fixture, users ...config.User) {
	rt := *f.Server.Runtime()
	cfg := *rt.Config
	cfg.Users = append(slices.Clone(cfg.Users), users...)
	rt.Config = &cfg
	f.Server.SetRuntime(&rt)
}

// md5Verifier is what Postgres stores for md5 users: "md5" + md5(password + user).
func md5Verifier(user, password string) string {
	sum := md5.Sum([]byte(password + user))
	return "md5" + hex.EncodeToString(sum[:])
}

// scramVerifier is what Postgres stores for SCRAM-SHA-256 users.
func scramVerifier(t *testing.T, password string) string {
	salt := []byte("0123456789abcdef")
	salted, err := pbkdf2.Key(sha256.New, password, salt, 4096, sha256.Size)
	if err != nil {
		t.Fatal(err)
	}
	mac := func(msg string) []byte {
		h := hmac.New(sha256.New, salted)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	stored := sha256.Sum256(mac("Client Key"))
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$4096:%s$%s:%s", b64(salt), b64(stored[:]), b64(mac("Server Key")))
}

// dsnFor is f's DSN with another user, password, database or query string.
func dsnFor(f *fixture, user, password, db, query string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(user, password), Host: f.Addr, Path: "/" + db, RawQuery: query}
	return u.String()
}

// TestAuth connects with pgx as right and wrong users and checks the
// outcome as Postgres would report it.
func TestAuth(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	withUsers(f,
		config.User{Name: "oldapp", Password: md5Verifier("oldapp", "pw5")},
		config.User{Name: "verifier", Password: scramVerifier(t, "pw256")},
	)
	cases := []struct {
		name     string
		dsn      string
		wantCode string // "" = connects and runs a query
		wantMsg  string // substring of the error message
	}{
		{name: "scram", dsn: f.DSN()},
		{name: "scram with stored verifier", dsn: dsnFor(f, "verifier", "pw256", f.DB, "sslmode=disable")},
		{name: "md5", dsn: dsnFor(f, "oldapp", "pw5", f.DB, "sslmode=disable")},
		{name: "wrong password", dsn: dsnFor(f, "app", "nope", f.DB, "sslmode=disable"),
			wantCode: "28P01", wantMsg: `password authentication failed for user "app"`},
		{name: "md5 wrong password", dsn: dsnFor(f, "oldapp", "nope", f.DB, "sslmode=disable"),
			wantCode: "28P01", wantMsg: `password authentication failed for user "oldapp"`},
		{name: "stored verifier wrong password", dsn: dsnFor(f, "verifier", "nope", f.DB, "sslmode=disable"),
			wantCode: "28P01", wantMsg: `password authentication failed for user "verifier"`},
		// Like Postgres, an unknown role fails as a wrong password does.
		{name: "unknown user", dsn: dsnFor(f, "nobody", "secret", f.DB, "sslmode=disable"),
			wantCode: "28P01", wantMsg: `password authentication failed for user "nobody"`},
		{name: "unknown database", dsn: dsnFor(f, "app", "secret", "nodb", "sslmode=disable"),
			wantCode: "3D000", wantMsg: `database "nodb" does not exist`},
		{name: "admin database as non-admin", dsn: dsnFor(f, "app", "secret", "shardproxy", "sslmode=disable"),
			wantCode: "42501"},
		{name: "replication connection", dsn: f.DSN() + "&replication=database", wantCode: "0A000"},
		// No TLS configured: SSLRequest gets 'N'.
		{name: "sslmode prefer", dsn: dsnFor(f, "app", "secret", f.DB, "sslmode=prefer")},
		{name: "sslmode allow", dsn: dsnFor(f, "app", "secret", f.DB, "sslmode=allow")},
		// The server speaks 3.0 and says so with NegotiateProtocolVersion.
		{name: "protocol 3.2 offered", dsn: f.DSN() + "&max_protocol_version=3.2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := pgx.Connect(ctx, tc.dsn)
			if tc.wantCode == "" {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close(ctx)
				var n int
				if err := c.QueryRow(ctx, "SELECT 1").Scan(&n); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				c.Close(ctx)
				t.Fatalf("connected, want SQLSTATE %s", tc.wantCode)
			}
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != tc.wantCode || pgErr.Severity != "FATAL" {
				t.Fatalf("got %v, want FATAL %s", err, tc.wantCode)
			}
			if !strings.Contains(pgErr.Message, tc.wantMsg) {
				t.Errorf("message %q, want it to contain %q", pgErr.Message, tc.wantMsg)
			}
		})
	}

	// Clients that insist on what the proxy does not offer fail cleanly.
	for _, tc := range []struct{ name, dsn string }{
		{"sslmode require", dsnFor(f, "app", "secret", f.DB, "sslmode=require")},
		{"protocol 3.2 required", f.DSN() + "&min_protocol_version=3.2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := pgx.Connect(ctx, tc.dsn)
			if err == nil {
				c.Close(ctx)
				t.Fatal("connected")
			}
			if ctx.Err() != nil {
				t.Fatalf("hung until the deadline: %v", err)
			}
		})
	}
}

// TestAuthPsql runs psql, libpq's client, against the proxy: SCRAM with
// the default sslmode (prefer, answered 'N'), md5, and a wrong password.
func TestAuthPsql(t *testing.T) {
	psql, err := exec.LookPath("psql")
	if err != nil {
		psql = "/usr/lib/postgresql/15/bin/psql"
	}
	f := startFixture(t, fixtureOptions{})
	withUsers(f, config.User{Name: "oldapp", Password: md5Verifier("oldapp", "pw5")})
	cases := []struct {
		name, dsn string
		wantOut   string // stdout on success; "" = must fail
		wantErr   string // stderr substring on failure
	}{
		{name: "scram", dsn: dsnFor(f, "app", "secret", f.DB, ""), wantOut: "42"},
		{name: "md5", dsn: dsnFor(f, "oldapp", "pw5", f.DB, "sslmode=disable"), wantOut: "42"},
		{name: "wrong password", dsn: dsnFor(f, "app", "nope", f.DB, ""),
			wantErr: `password authentication failed for user "app"`},
		{name: "sslmode require", dsn: dsnFor(f, "app", "secret", f.DB, "sslmode=require"),
			wantErr: "server does not support SSL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", tc.dsn, "-c", "SELECT 41 + 1")
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			cmd.Env = []string{"PGCONNECT_TIMEOUT=10", "PGAPPNAME=auth_test"}
			err := cmd.Run()
			if tc.wantOut != "" {
				if err != nil || strings.TrimSpace(stdout.String()) != tc.wantOut {
					t.Fatalf("psql: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
				}
				return
			}
			if err == nil {
				t.Fatalf("psql succeeded: %q", stdout.String())
			}
			if !strings.Contains(stderr.String(), tc.wantErr) {
				t.Fatalf("psql stderr %q, want it to contain %q", stderr.String(), tc.wantErr)
			}
		})
	}
}

// TestStartupRequests drives the startup phase by hand: GSSENCRequest and
// SSLRequest are refused with 'N' and the client may go on in plain text;
// foreign protocol versions get a clear answer.
func TestStartupRequests(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	startup := startupPacket(map[string]string{"user": "app", "database": f.DB})
	cases := []struct {
		name string
		send []byte
		// wantN: the proxy answers the request with the single byte 'N' and
		// then reads a StartupMessage.
		wantN bool
		// then: what the first message after that must be.
		check func(t *testing.T, msg pgproto3.BackendMessage)
	}{
		{name: "GSSENCRequest", send: cat(be32(8), be32(80877104)), wantN: true, check: wantSCRAM},
		{name: "SSLRequest", send: cat(be32(8), be32(80877103)), wantN: true, check: wantSCRAM},
		{name: "protocol 3.0", send: startup, check: wantSCRAM},
		{name: "protocol 2.0", send: cat(be32(8), be32(2<<16)), check: wantFatal("0A000", "unsupported frontend protocol 2.0")},
		{name: "protocol 4.0", send: cat(be32(8), be32(4<<16)), check: wantFatal("0A000", "unsupported frontend protocol 4.0")},
		{name: "protocol 3.1 with an option",
			send: startupVersion(3<<16|1, map[string]string{"user": "app", "database": f.DB, "_pq_.frob": "on"}),
			check: func(t *testing.T, msg pgproto3.BackendMessage) {
				m, ok := msg.(*pgproto3.NegotiateProtocolVersion)
				if !ok || m.NewestMinorProtocol != 0 || !slices.Equal(m.UnrecognizedOptions, []string{"_pq_.frob"}) {
					t.Fatalf("got %#v, want NegotiateProtocolVersion(0, [_pq_.frob])", msg)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			nc := dialProxy(t, f)
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := nc.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.wantN {
				var b [1]byte
				if _, err := nc.Read(b[:]); err != nil || b[0] != 'N' {
					t.Fatalf("answer %q (%v), want 'N'", b[:], err)
				}
				if _, err := nc.Write(startup); err != nil {
					t.Fatal(err)
				}
			}
			msg, err := pgproto3.NewFrontend(nc, nc).Receive()
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, msg)
		})
	}
}

func wantSCRAM(t *testing.T, msg pgproto3.BackendMessage) {
	m, ok := msg.(*pgproto3.AuthenticationSASL)
	if !ok || !slices.Equal(m.AuthMechanisms, []string{"SCRAM-SHA-256"}) {
		t.Fatalf("got %#v, want AuthenticationSASL with SCRAM-SHA-256", msg)
	}
}

func wantFatal(code, msgPart string) func(*testing.T, pgproto3.BackendMessage) {
	return func(t *testing.T, msg pgproto3.BackendMessage) {
		m, ok := msg.(*pgproto3.ErrorResponse)
		if !ok || m.Severity != "FATAL" || m.Code != code || !strings.Contains(m.Message, msgPart) {
			t.Fatalf("got %#v, want FATAL %s %q", msg, code, msgPart)
		}
	}
}

// startupVersion encodes a StartupMessage with any 3.x version.
func startupVersion(version uint32, params map[string]string) []byte {
	b := startupPacket(params)
	copy(b[4:8], be32(version))
	return b
}
