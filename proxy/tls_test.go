package proxy_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool/pgtest"
	"github.com/shardproxy/shardproxy/proxy"
)

// testPKI is a CA and a server certificate it signed for localhost and
// 127.0.0.1, as PEM files.
type testPKI struct{ CA, Cert, Key string }

func newTestPKI(t testing.TB, dir, name string) testPKI {
	t.Helper()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name + " test CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(err)
	ca, err := x509.ParseCertificate(caDER)
	must(err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	must(err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	must(err)
	p := testPKI{
		CA:   filepath.Join(dir, name+"-ca.crt"),
		Cert: filepath.Join(dir, name+".crt"),
		Key:  filepath.Join(dir, name+".key"),
	}
	write := func(path, typ string, der []byte) {
		must(os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	}
	write(p.CA, "CERTIFICATE", caDER)
	write(p.Cert, "CERTIFICATE", leafDER)
	write(p.Key, "PRIVATE KEY", keyDER)
	return p
}

// tlsDSN is a libpq/pgx DSN for the proxy as user app on host (localhost
// or 127.0.0.1) with the given sslmode and root CA.
func (f *fixture) tlsDSN(host, sslmode, rootCA string) string {
	_, port, _ := net.SplitHostPort(f.Addr)
	dsn := fmt.Sprintf("host=%s port=%s user=app password=secret dbname=%s sslmode=%s connect_timeout=10", host, port, f.DB, sslmode)
	if rootCA != "" {
		dsn += " sslrootcert=" + rootCA
	}
	return dsn
}

func connectDSN(t *testing.T, dsn string) (*pgx.Conn, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err == nil {
		t.Cleanup(func() { c.Close(context.Background()) })
	}
	return c, err
}

// withClientTLS serves f with another tls.client_tls from now on.
func withClientTLS(t *testing.T, f *fixture, mode string) {
	prev := f.Server.Runtime()
	rt := *prev
	cfg := *rt.Config
	tlsCfg := *cfg.TLS
	tlsCfg.ClientTLS = mode
	cfg.TLS = &tlsCfg
	rt.Config = &cfg
	f.Server.SetRuntime(&rt)
	t.Cleanup(func() { f.Server.SetRuntime(prev) })
}

func startTLSFixture(t *testing.T) (*fixture, testPKI) {
	pki := newTestPKI(t, t.TempDir(), "proxy")
	f := startFixture(t, fixtureOptions{Top: fmt.Sprintf("tls: {cert: %q, key: %q}\n", pki.Cert, pki.Key)})
	return f, pki
}

// TestTLSClients: psql and pgx connect over TLS with full verification; a
// client that trusts another CA fails cleanly and the proxy serves on.
func TestTLSClients(t *testing.T) {
	f, pki := startTLSFixture(t)
	other := newTestPKI(t, t.TempDir(), "other")
	psql := clientTool(t, "psql")

	t.Run("psql", func(t *testing.T) {
		for _, tc := range []struct {
			name, host, sslmode, ca string
			wantOut                 []string // in stdout, on success
			wantErr                 string   // in stderr; "" means success
		}{
			{"verify-full localhost", "localhost", "verify-full", pki.CA, []string{"SSL connection (protocol: TLSv1.3", "42"}, ""},
			{"verify-full 127.0.0.1", "127.0.0.1", "verify-full", pki.CA, []string{"SSL connection (protocol: TLSv1.3", "42"}, ""},
			{"plain text allowed", "127.0.0.1", "disable", "", []string{"42"}, ""},
			{"wrong CA", "localhost", "verify-full", other.CA, nil, "certificate verify failed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				out, errOut, code := f.runTool(t, psql, "", "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1",
					"-d", f.tlsDSN(tc.host, tc.sslmode, tc.ca), "-c", `\conninfo`, "-c", "SELECT 41 + 1")
				if tc.wantErr != "" {
					if code == 0 || !strings.Contains(errOut, tc.wantErr) {
						t.Fatalf("psql exit %d, stderr %q, want failure with %q", code, errOut, tc.wantErr)
					}
					return
				}
				if code != 0 {
					t.Fatalf("psql exit %d, stderr %q", code, errOut)
				}
				for _, w := range tc.wantOut {
					if !strings.Contains(out, w) {
						t.Errorf("psql output %q lacks %q", out, w)
					}
				}
				if tc.sslmode == "disable" && strings.Contains(out, "SSL connection") {
					t.Errorf("plain connection reports SSL: %q", out)
				}
			})
		}
	})

	t.Run("pgx", func(t *testing.T) {
		for _, tc := range []struct {
			name, host, sslmode, ca string
			wantTLS                 bool
			wantErr                 string // in the connect error; "" means success
		}{
			{"verify-full localhost", "localhost", "verify-full", pki.CA, true, ""},
			{"verify-full 127.0.0.1", "127.0.0.1", "verify-full", pki.CA, true, ""},
			{"verify-ca", "127.0.0.1", "verify-ca", pki.CA, true, ""},
			{"require", "127.0.0.1", "require", "", true, ""},
			{"disable", "127.0.0.1", "disable", "", false, ""},
			{"wrong CA", "localhost", "verify-full", other.CA, false, "certificate signed by unknown authority"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				c, err := connectDSN(t, f.tlsDSN(tc.host, tc.sslmode, tc.ca))
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Fatalf("connect error %v, want %q", err, tc.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				tc2, isTLS := c.PgConn().Conn().(*tls.Conn)
				if isTLS != tc.wantTLS {
					t.Fatalf("connection is TLS: %v, want %v", isTLS, tc.wantTLS)
				}
				if isTLS && tc2.ConnectionState().Version < tls.VersionTLS12 {
					t.Errorf("TLS version %x below 1.2", tc2.ConnectionState().Version)
				}
				// Extended protocol and a multi-row reply over the encrypted stream.
				var n int
				if err := c.QueryRow(context.Background(), "SELECT count(*) FROM generate_series(1, $1::int)", 5000).Scan(&n); err != nil || n != 5000 {
					t.Fatalf("count = %d, %v", n, err)
				}
			})
		}
	})

	t.Run("min version", func(t *testing.T) {
		// A TLS 1.1 client is refused in the handshake.
		conn := sslRequest(t, f.Addr, 'S')
		tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
		if err := tc.Handshake(); err == nil {
			t.Fatal("TLS 1.1 handshake succeeded")
		}
	})

	t.Run("still serving", func(t *testing.T) {
		if err := f.Connect(t).Ping(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// sslRequest dials addr, sends SSLRequest and checks the one-byte answer.
func sslRequest(t *testing.T, addr string, want byte) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	if _, err := conn.Write(buf); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	if b[0] != want {
		t.Fatalf("SSLRequest answered %q, want %q", b[0], want)
	}
	return conn
}

// TestTLSNotConfigured: without tls:, SSLRequest gets 'N', so clients that
// require TLS give up cleanly and the proxy serves on.
func TestTLSNotConfigured(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	psql := clientTool(t, "psql")
	_, errOut, code := f.runTool(t, psql, "", "-X", "-d", f.tlsDSN("127.0.0.1", "require", ""), "-c", "SELECT 1")
	if code == 0 || !strings.Contains(errOut, "server does not support SSL, but SSL was required") {
		t.Fatalf("psql sslmode=require: exit %d, stderr %q", code, errOut)
	}
	if _, err := connectDSN(t, f.tlsDSN("127.0.0.1", "require", "")); err == nil || !strings.Contains(err.Error(), "server refused TLS connection") {
		t.Fatalf("pgx sslmode=require: %v", err)
	}
	// sslmode=prefer falls back to plain text.
	c, err := connectDSN(t, f.tlsDSN("127.0.0.1", "prefer", ""))
	if err != nil {
		t.Fatal(err)
	}
	if _, isTLS := c.PgConn().Conn().(*tls.Conn); isTLS {
		t.Fatal("TLS connection without tls configured")
	}
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTLSRequired: tls.client_tls refuses plain-text clients with 28000.
// Tests connect over loopback, which require_nonlocal counts as local.
func TestTLSRequired(t *testing.T) {
	f, pki := startTLSFixture(t)
	for _, tc := range []struct {
		mode      string
		plainCode string // SQLSTATE a plain-text client gets; "" means it connects
	}{
		{config.ClientTLSAllow, ""},
		{config.ClientTLSRequireNonlocal, ""},
		{config.ClientTLSRequire, "28000"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			withClientTLS(t, f, tc.mode)
			c, err := connectDSN(t, f.tlsDSN("127.0.0.1", "disable", ""))
			if sqlState(err) != tc.plainCode {
				t.Fatalf("plain client: %v, want SQLSTATE %q", err, tc.plainCode)
			}
			if tc.plainCode != "" {
				if want := "no encryption: TLS is required for connections from 127.0.0.1"; !strings.Contains(err.Error(), want) {
					t.Fatalf("plain client: %v, want %q", err, want)
				}
			} else if err := c.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
			c, err = connectDSN(t, f.tlsDSN("localhost", "verify-full", pki.CA))
			if err != nil {
				t.Fatalf("TLS client: %v", err)
			}
			if err := c.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTLSEarlyData: bytes pipelined after SSLRequest, before the 'S', are
// refused as Postgres 15 refuses them.
func TestTLSEarlyData(t *testing.T) {
	f, _ := startTLSFixture(t)
	conn, err := net.DialTimeout("tcp", f.Addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf, _ := (&pgproto3.SSLRequest{}).Encode(nil)
	buf, _ = (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30,
		Parameters: map[string]string{"user": "app", "database": f.DB}}).Encode(buf)
	if _, err := conn.Write(buf); err != nil { // one write: both arrive together
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(conn, conn)
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	er, ok := msg.(*pgproto3.ErrorResponse)
	if !ok || er.Code != "08P01" || er.Message != "received unencrypted data after SSL request" {
		t.Fatalf("got %#v, want 08P01 error", msg)
	}
	if err := f.Connect(t).Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestTLSCancel: a CancelRequest reaches a TLS session both in plain text
// (what libpq and pgx send) and inside its own TLS connection.
func TestTLSCancel(t *testing.T) {
	f, pki := startTLSFixture(t)
	act := watchActivity(t, f)
	for _, tc := range []struct {
		name string
		send func(t *testing.T, pc *pgconn.PgConn)
	}{
		{"plain", func(t *testing.T, pc *pgconn.PgConn) {
			if err := pc.CancelRequest(context.Background()); err != nil {
				t.Error(err)
			}
		}},
		{"over TLS", func(t *testing.T, pc *pgconn.PgConn) {
			conn := sslRequest(t, f.Addr, 'S')
			tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true})
			buf := binary.BigEndian.AppendUint32(nil, 16)
			buf = binary.BigEndian.AppendUint32(buf, 80877102)
			buf = binary.BigEndian.AppendUint32(buf, pc.PID())
			buf = append(buf, pc.SecretKey()...)
			if _, err := tc.Write(buf); err != nil {
				t.Error(err)
			}
			// The proxy answers nothing and hangs up, as Postgres does.
			if n, err := tc.Read(make([]byte, 1)); err == nil {
				t.Errorf("read %d bytes after CancelRequest", n)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := connectDSN(t, f.tlsDSN("localhost", "verify-full", pki.CA))
			if err != nil {
				t.Fatal(err)
			}
			marker := "tlscancel_" + strconv.Itoa(int(c.PgConn().PID()))
			done := make(chan error, 1)
			go func() {
				_, err := c.Exec(context.Background(), "SELECT pg_sleep(60) /* "+marker+" */")
				done <- err
			}()
			for deadline := time.Now().Add(30 * time.Second); act.running(t, marker) == 0; {
				select {
				case err := <-done:
					t.Fatalf("statement ended before the cancel: %v", err)
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatal("statement not running on a shard after 30s")
				}
			}
			tc.send(t, c.PgConn())
			if err := <-done; sqlState(err) != "57014" {
				t.Fatalf("statement ended with %v, want 57014", err)
			}
			if err := c.Ping(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestTLSReload: a new runtime (what RELOAD builds) brings a new
// certificate for new connections; an unreadable one fails the reload.
func TestTLSReload(t *testing.T) {
	f, pki := startTLSFixture(t)
	next := newTestPKI(t, t.TempDir(), "next")
	prev := f.Server.Runtime()
	defer f.Server.SetRuntime(prev)

	cfg := *prev.Config
	cfg.TLS = &config.TLS{Cert: next.Cert, Key: next.Key, ClientTLS: config.ClientTLSAllow}
	rt, err := proxy.NewRuntime(&cfg, prev.Router, prev.Pools)
	if err != nil {
		t.Fatal(err)
	}
	old, err := connectDSN(t, f.tlsDSN("localhost", "verify-full", pki.CA))
	if err != nil {
		t.Fatal(err)
	}
	f.Server.SetRuntime(rt)
	if _, err := connectDSN(t, f.tlsDSN("localhost", "verify-full", pki.CA)); err == nil {
		t.Fatal("old CA still verifies after reload")
	}
	if _, err := connectDSN(t, f.tlsDSN("localhost", "verify-full", next.CA)); err != nil {
		t.Fatalf("new certificate: %v", err)
	}
	if err := old.Ping(context.Background()); err != nil {
		t.Fatalf("connection from before the reload: %v", err)
	}

	cfg.TLS = &config.TLS{Cert: next.Cert, Key: pki.Key, ClientTLS: config.ClientTLSAllow} // mismatched pair
	if _, err := proxy.NewRuntime(&cfg, prev.Router, prev.Pools); err == nil || !strings.Contains(err.Error(), "tls:") {
		t.Fatalf("mismatched key: %v, want a tls error", err)
	}
}

// TestTLSBackends: the shard DSN's sslmode decides whether the proxy talks
// TLS to a shard; both work against a TLS-enabled Postgres.
func TestTLSBackends(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	// Postgres reads its certificate as the postgres OS user and wants the
	// key private to that user.
	pgUser, err := user.Lookup("postgres")
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(pgUser.Uid)
	gid, _ := strconv.Atoi(pgUser.Gid)
	dir, err := os.MkdirTemp("", "shardproxy-tls-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	pki := newTestPKI(t, dir, "shard")
	for _, p := range []string{dir, pki.Cert, pki.Key} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgtest.Start(ctx, pgtest.Options{Name: "tls", Conf: map[string]string{
		"ssl": "on", "ssl_cert_file": pki.Cert, "ssl_key_file": pki.Key,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Stop() })
	if err := srv.CreateDatabase(ctx, f.DB); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sslmode string
		wantSSL bool
	}{
		{"disable", false},
		{"require", true},
		{"verify-full&sslrootcert=" + pki.CA, true},
	} {
		t.Run(strings.Split(tc.sslmode, "&")[0], func(t *testing.T) {
			// s0, the default shard, moves to the TLS-enabled server.
			cfg := *f.Config
			cfg.Shards = append([]config.Shard(nil), cfg.Shards...)
			cfg.Shards[0].DSN = strings.Replace(srv.DSN(f.DB), "sslmode=disable", "sslmode="+tc.sslmode, 1)
			asm, err := proxy.Assemble(ctx, &cfg, nil, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err != nil {
				t.Fatal(err)
			}
			prev := f.Server.Runtime()
			f.Server.SetRuntime(asm.Runtime())
			defer func() { f.Server.SetRuntime(prev); asm.Close() }()
			var ssl bool
			err = f.Connect(t).QueryRow(ctx, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl)
			if err != nil {
				t.Fatal(err)
			}
			if ssl != tc.wantSSL {
				t.Fatalf("backend ssl = %v, want %v", ssl, tc.wantSSL)
			}
		})
	}
}
