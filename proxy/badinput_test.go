package proxy_test

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// TestBadInput sends malformed, oversized, truncated and out-of-order
// input on one connection and checks that the proxy answers with an error
// or closes that connection only: a pgx client connected all along keeps
// working, and the proxy's goroutines come back to their number before.
func TestBadInput(t *testing.T) {
	f := startFixture(t, fixtureOptions{})
	ctx := context.Background()
	other := f.Connect(t)
	if _, err := other.Exec(ctx, "CREATE TABLE customers (customer_id bigint PRIMARY KEY, name text)"); err != nil {
		t.Fatal(err)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rnd.UintN(256))
	}
	// Random bytes that do not even start with a plausible length.
	random[0] = 0x7f

	cases := []struct {
		name string
		// authed: start from a connection that completed startup and SCRAM.
		authed bool
		send   []byte
		// hangUp: the client closes its socket right after sending.
		hangUp bool
		// wantCode is the SQLSTATE of the ErrorResponse the client must get
		// ("" when the proxy may just close, e.g. after a hang-up).
		wantCode string
		// usable: the error ends at ReadyForQuery and the same connection
		// then runs a query; otherwise the proxy must close it.
		usable bool
	}{
		{name: "startup truncated", send: cat(be32(100), be32(pgproto3.ProtocolVersion30), []byte("user\x00ap")), hangUp: true},
		{name: "startup length huge", send: cat(be32(1<<30), be32(pgproto3.ProtocolVersion30)), wantCode: "08P01"},
		{name: "startup length negative", send: be32(0xffffff00), wantCode: "08P01"},
		{name: "startup length too small", send: be32(3), wantCode: "08P01"},
		{name: "startup without user", send: startupPacket(map[string]string{"database": "x"}), wantCode: "28000"},
		{name: "startup unknown code", send: cat(be32(8), be32(1234)), wantCode: "0A000"},
		{name: "startup parameters unterminated", send: cat(be32(16), be32(pgproto3.ProtocolVersion30), []byte("user\x00app")), wantCode: "08P01"},
		{name: "random bytes", send: random, wantCode: "08P01"},
		{name: "random bytes after startup", authed: true, send: random[1:], wantCode: "08P01"},
		{name: "unknown message type", authed: true, send: cat([]byte{'z'}, be32(4)), wantCode: "08P01"},
		{name: "message length negative", authed: true, send: cat([]byte{'Q'}, be32(0xfffffff0)), wantCode: "08P01"},
		{name: "message length below 4", authed: true, send: cat([]byte{'Q'}, be32(2)), wantCode: "08P01"},
		{name: "message over 64 MiB", authed: true, send: cat([]byte{'Q'}, be32(64<<20+5+4)), wantCode: "08P01"},
		{name: "message body malformed", authed: true, send: cat([]byte{'B'}, be32(6), []byte{0, 0}), wantCode: "08P01"},
		{name: "hang-up mid message", authed: true, send: cat([]byte{'Q'}, be32(100), []byte("SELECT 1")), hangUp: true},
		{name: "hang-up mid header", authed: true, send: []byte{'Q', 0, 0}, hangUp: true},
		{name: "bind missing statement", authed: true, usable: true, wantCode: "26000",
			send: frontend(&pgproto3.Bind{PreparedStatement: "nope"}, &pgproto3.Execute{}, &pgproto3.Sync{})},
		{name: "execute missing portal", authed: true, usable: true, wantCode: "34000",
			send: frontend(&pgproto3.Execute{Portal: "nope"}, &pgproto3.Sync{})},
		{name: "describe missing statement", authed: true, usable: true, wantCode: "26000",
			send: frontend(&pgproto3.Describe{ObjectType: 'S', Name: "nope"}, &pgproto3.Sync{})},
		{name: "describe missing portal", authed: true, usable: true, wantCode: "34000",
			send: frontend(&pgproto3.Describe{ObjectType: 'P', Name: "nope"}, &pgproto3.Sync{})},
		{name: "parse two statements", authed: true, usable: true, wantCode: "42601",
			send: frontend(&pgproto3.Parse{Query: "SELECT 1; SELECT 2"}, &pgproto3.Sync{})},
		{name: "parse syntax error", authed: true, usable: true, wantCode: "42601",
			send: frontend(&pgproto3.Parse{Query: "SELEC 1"}, &pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})},
		{name: "bind wrong parameter count", authed: true, usable: true, wantCode: "08P01",
			send: frontend(&pgproto3.Parse{Query: "SELECT name FROM customers WHERE customer_id = $1"},
				&pgproto3.Bind{}, &pgproto3.Execute{}, &pgproto3.Sync{})},
		{name: "query invalid utf8", authed: true, usable: true, wantCode: "22021",
			send: frontend(&pgproto3.Query{String: "SELECT '\xff\xfe'"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var nc net.Conn
			if tc.authed {
				nc = authedConn(t, f)
			} else {
				nc = dialProxy(t, f)
			}
			baseline := proxyGoroutines()
			if _, err := nc.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.hangUp {
				nc.Close()
			} else {
				got := readReplies(t, nc)
				if tc.wantCode != "" && !contains(got.codes, tc.wantCode) {
					t.Errorf("got errors %v, want %s", got.codes, tc.wantCode)
				}
				if tc.usable {
					if !got.ready {
						t.Fatalf("no ReadyForQuery after the error (eof=%v)", got.eof)
					}
					nc.Write(frontend(&pgproto3.Query{String: "SELECT 41 + 1"}))
					again := readReplies(t, nc)
					if len(again.codes) > 0 || len(again.rows) != 1 || again.rows[0] != "42" {
						t.Errorf("connection not usable after the error: errors %v rows %v", again.codes, again.rows)
					}
				} else if !got.eof {
					t.Errorf("proxy kept the connection open after a fatal error (errors %v)", got.codes)
				}
				nc.Close()
			}
			checkServing(t, other)
			waitGoroutines(t, baseline)
			checkNoBackendsInUse(t, f)
		})
	}
}

// replies is what a client read from the proxy.
type replies struct {
	codes []string // SQLSTATEs of ErrorResponses
	rows  []string // first column of DataRows
	ready bool     // ReadyForQuery arrived (reading stopped there)
	eof   bool     // the proxy closed the connection
}

// readReplies reads until ReadyForQuery or the end of the connection.
func readReplies(t testing.TB, nc net.Conn) replies {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(15 * time.Second))
	defer nc.SetReadDeadline(time.Time{})
	fe := pgproto3.NewFrontend(nc, nc)
	var r replies
	for {
		msg, err := fe.Receive()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no reply from the proxy (so far: %+v)", r)
			}
			// EOF, a reset or an unparsable tail: the connection is over.
			r.eof = true
			return r
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			r.codes = append(r.codes, m.Code)
		case *pgproto3.DataRow:
			if len(m.Values) > 0 {
				r.rows = append(r.rows, string(m.Values[0]))
			}
		case *pgproto3.ReadyForQuery:
			r.ready = true
			return r
		}
	}
}

// dialProxy opens a raw TCP connection to the proxy.
func dialProxy(t testing.TB, f *fixture) net.Conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", f.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return nc
}

// authedConn returns a socket that completed startup and authentication
// (pgconn did the SCRAM exchange) and is idle at ReadyForQuery.
func authedConn(t testing.TB, f *fixture) net.Conn {
	t.Helper()
	hc := hijack(t, f.DSN())
	t.Cleanup(func() { hc.Conn.Close() })
	return hc.Conn
}

func hijack(t testing.TB, dsn string) *pgconn.HijackedConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pc, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	// SyncConn stops pgconn's background reader, so the socket is ours.
	if err := pc.SyncConn(ctx); err != nil {
		t.Fatal(err)
	}
	hc, err := pc.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	return hc
}

// checkServing runs a query on a connection that was open all along.
func checkServing(t testing.TB, c *pgx.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM customers WHERE customer_id = $1", int64(1)).Scan(&n); err != nil {
		t.Fatalf("the other client stopped working: %v", err)
	}
}

// proxyGoroutines counts the goroutines of the test process; the proxy
// runs in it, so a leaked session goroutine shows up here.
func proxyGoroutines() int { return runtime.NumGoroutine() }

// waitGoroutines polls until the goroutine count is back to baseline:
// session goroutines end a moment after their client is gone.
func waitGoroutines(t testing.TB, baseline int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := proxyGoroutines()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, want at most %d (leak?)\n%s", n, baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func startupPacket(params map[string]string) []byte {
	b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}).Encode(nil)
	if err != nil {
		panic(err)
	}
	return b
}

// frontend encodes client messages as they go on the wire.
func frontend(msgs ...pgproto3.FrontendMessage) []byte {
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			panic(err)
		}
	}
	return b
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
