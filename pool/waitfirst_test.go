//go:build linux && go1.26 && !go1.27

package pool

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestWaitFirst checks the wait-first read of backends' sockets (a read
// after a quick write parks in the runtime poller before it tries the
// socket) on real sockets: backendIO finds the runtime's poll descriptor
// of TCP and Unix sockets on this Go release, and SocketIO (clients')
// never waits first; the wait returns data that comes later, data the
// poller already recorded, and data left by a read that filled its buffer
// (for which no new readiness comes); a close, a deadline or the peer's
// hang-up ends it, also a hang-up that came with the last answer, once a
// write provokes the reset. Each read has a deadline, so that a wait that
// missed its data fails the test rather than hanging it.
func TestWaitFirst(t *testing.T) {
	unixPair := func(t *testing.T) (net.Conn, net.Conn) {
		ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ours, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		peer, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ours.Close(); peer.Close() })
		return ours, peer
	}
	for _, pair := range []struct {
		name string
		make func(*testing.T) (net.Conn, net.Conn)
	}{{"tcp", tcpPair}, {"unix", unixPair}} {
		// quietIO returns our end as a socketIO whose next read waits first.
		quietIO := func(t *testing.T) (*socketIO, net.Conn, net.Conn) {
			ours, peer := pair.make(t)
			s, ok := backendIO(ours).(*socketIO)
			if !ok {
				t.Fatalf("backendIO(%T) is not a socketIO", ours)
			}
			if s.pd == 0 {
				t.Fatalf("no runtime poll descriptor found for %T", ours)
			}
			ours.SetReadDeadline(time.Now().Add(5 * time.Second))
			s.quiet = true
			return s, ours, peer
		}
		read := func(t *testing.T, s *socketIO, n int, want string) {
			t.Helper()
			buf := make([]byte, n)
			got, err := s.Read(buf)
			if err != nil || string(buf[:got]) != want {
				t.Fatalf("Read = %q, %v; want %q", buf[:got], err, want)
			}
		}
		t.Run(pair.name+"/not for clients", func(t *testing.T) {
			ours, _ := pair.make(t)
			if s, ok := SocketIO(ours).(*socketIO); !ok || s.pd != 0 {
				t.Fatalf("SocketIO(%T) = %T that waits first (pd %#x); clients may half-close", ours, s, s.pd)
			}
		})
		t.Run(pair.name+"/later", func(t *testing.T) {
			s, _, peer := quietIO(t)
			time.AfterFunc(30*time.Millisecond, func() { peer.Write([]byte("answer")) })
			read(t, s, 64, "answer")
		})
		t.Run(pair.name+"/recorded", func(t *testing.T) {
			s, _, peer := quietIO(t)
			peer.Write([]byte("early"))
			time.Sleep(50 * time.Millisecond) // idle Ps poll the network meanwhile
			read(t, s, 64, "early")
		})
		t.Run(pair.name+"/rest of a full read", func(t *testing.T) {
			s, _, peer := quietIO(t)
			s.quiet = false
			peer.Write([]byte("0123456789abcdef"))
			time.Sleep(50 * time.Millisecond)
			read(t, s, 10, "0123456789")
			s.quiet = true // as after a quick write; nothing new will arrive
			read(t, s, 10, "abcdef")
		})
		t.Run(pair.name+"/close", func(t *testing.T) {
			s, ours, _ := quietIO(t)
			time.AfterFunc(30*time.Millisecond, func() { ours.Close() })
			if _, err := s.Read(make([]byte, 64)); !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
			}
		})
		t.Run(pair.name+"/deadline", func(t *testing.T) {
			s, ours, _ := quietIO(t)
			ours.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
			if _, err := s.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
			}
		})
		t.Run(pair.name+"/hang-up with the answer", func(t *testing.T) {
			s, _, peer := quietIO(t)
			s.quiet = false
			peer.Write([]byte("last"))
			peer.Close()
			time.Sleep(50 * time.Millisecond) // one readiness for both
			read(t, s, 64, "last")
			if _, err := s.Write([]byte("next request")); err != nil {
				return // a Unix socket says so at once: no read follows
			}
			s.quiet = true
			if _, err := s.Read(make([]byte, 64)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read after the peer closed and a write: %v, want EOF or a reset", err)
			}
		})
		t.Run(pair.name+"/hang-up", func(t *testing.T) {
			s, _, peer := quietIO(t)
			time.AfterFunc(30*time.Millisecond, func() { peer.Close() })
			if _, err := s.Read(make([]byte, 64)); err != io.EOF {
				t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
			}
		})
	}
}
