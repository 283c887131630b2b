package pool

import (
	"errors"
	"net"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSocketIOErrors checks that socketIO's errors look like the net
// package's: a *net.OpError naming the socket's own network (a Unix
// socket here, whose errors once said "tcp"), wrapping the errno.
func TestSocketIOErrors(t *testing.T) {
	ours, peer := connPair(t, "unix", filepath.Join(t.TempDir(), "s"))
	peer.Close()
	s, ok := SocketIO(ours).(*socketIO)
	if !ok {
		t.Fatalf("SocketIO(%T) is not a socketIO", ours)
	}
	_, err := s.Write([]byte("to nobody"))
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "write" || op.Net != "unix" || !errors.Is(err, syscall.EPIPE) {
		t.Fatalf("Write to a closed Unix peer: %#v (%v), want a write OpError on unix wrapping EPIPE", err, err)
	}
}
