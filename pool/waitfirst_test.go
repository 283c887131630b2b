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

// TestWaitFirst checks the wait-first read (a read after a quick write
// parks in the runtime poller before it tries the socket) on real
// sockets. SocketIO finds the runtime's poll descriptor of a TCP socket
// on this Go release and sets TCP_INQ; a Unix socket, without TCP_INQ,
// never waits first. The wait returns data that comes later, data the
// poller already recorded, the rest of a read that did not fit (for which
// no new readiness comes), and an end of file that came with the last
// data (a client's half-close); a close, a deadline or the peer's hang-up
// ends it. Each read has a deadline, so that a wait that missed its data
// fails the test rather than hanging it.
func TestWaitFirst(t *testing.T) {
	t.Run("unix never waits first", func(t *testing.T) {
		ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ours, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer ours.Close()
		if s, ok := SocketIO(ours).(*socketIO); !ok || s.pd != 0 || s.inq != nil {
			t.Fatalf("SocketIO(%T) waits first; without TCP_INQ it cannot see an end of file behind data", ours)
		}
	})
	// quietIO returns our end as a socketIO whose next read waits first.
	quietIO := func(t *testing.T) (*socketIO, net.Conn, net.Conn) {
		ours, peer := tcpPair(t)
		s, ok := SocketIO(ours).(*socketIO)
		if !ok {
			t.Fatalf("SocketIO(%T) is not a socketIO", ours)
		}
		if s.pd == 0 || s.inq == nil {
			t.Fatalf("SocketIO(%T): runtime poll descriptor %#x, TCP_INQ %v", ours, s.pd, s.inq != nil)
		}
		ours.SetReadDeadline(time.Now().Add(5 * time.Second))
		s.quiet, s.drained = true, true
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
	// answered has the peer send data and gives the poller time to take
	// its readiness, so that the next read must not count on a new one.
	answered := func(peer net.Conn, data string) {
		peer.Write([]byte(data))
		time.Sleep(50 * time.Millisecond) // idle Ps poll the network meanwhile
	}
	t.Run("later", func(t *testing.T) {
		s, _, peer := quietIO(t)
		time.AfterFunc(30*time.Millisecond, func() { peer.Write([]byte("answer")) })
		read(t, s, 64, "answer")
		if !s.drained {
			t.Error("a read that took everything did not count as drained")
		}
	})
	t.Run("recorded", func(t *testing.T) {
		s, _, peer := quietIO(t)
		answered(peer, "early")
		read(t, s, 64, "early")
	})
	t.Run("rest of a read", func(t *testing.T) {
		s, _, peer := quietIO(t)
		answered(peer, "0123456789abcdef")
		read(t, s, 10, "0123456789")
		if s.drained {
			t.Fatal("a read that left 6 bytes counted as drained")
		}
		s.quiet = true // as after a quick write; nothing new will arrive
		read(t, s, 10, "abcdef")
	})
	t.Run("half-close with the data", func(t *testing.T) {
		s, _, peer := quietIO(t)
		peer.Write([]byte("last"))
		peer.(*net.TCPConn).CloseWrite()
		time.Sleep(50 * time.Millisecond) // one readiness for both
		read(t, s, 64, "last")
		if _, err := s.Write([]byte("reply")); err != nil { // the peer still reads
			t.Fatal(err)
		}
		s.quiet = true
		if _, err := s.Read(make([]byte, 64)); err != io.EOF {
			t.Fatalf("Read after the peer's half-close: %v, want io.EOF", err)
		}
	})
	t.Run("close", func(t *testing.T) {
		s, ours, _ := quietIO(t)
		time.AfterFunc(30*time.Millisecond, func() { ours.Close() })
		if _, err := s.Read(make([]byte, 64)); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		s, ours, _ := quietIO(t)
		ours.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if _, err := s.Read(make([]byte, 64)); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read past its deadline: %v, want os.ErrDeadlineExceeded", err)
		}
	})
	t.Run("hang-up", func(t *testing.T) {
		s, _, peer := quietIO(t)
		time.AfterFunc(30*time.Millisecond, func() { peer.Close() })
		if _, err := s.Read(make([]byte, 64)); err != io.EOF {
			t.Fatalf("Read after the peer closed: %v, want io.EOF", err)
		}
	})
}
