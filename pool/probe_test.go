package pool

import (
	"net"
	"testing"
)

// TestProbers checks both liveness probes on a loopback TCP pair: a quiet
// peer is alive; a peer that wrote or closed is not; and the peek does
// not consume what the peer wrote.
func TestProbers(t *testing.T) {
	type probe interface{ alive() bool }
	probers := map[string]func(net.Conn) probe{
		"peek": func(nc net.Conn) probe {
			var p prober
			p.init(nc)
			return &p
		},
		"deadline": func(nc net.Conn) probe { return &deadlineProber{nc: nc} },
	}
	peerActions := []struct {
		name  string
		act   func(net.Conn)
		alive bool
	}{
		{"quiet", func(net.Conn) {}, true},
		{"wrote", func(c net.Conn) { c.Write([]byte("E")) }, false},
		{"closed", func(c net.Conn) { c.Close() }, false},
	}
	for pname, newProbe := range probers {
		for _, pa := range peerActions {
			t.Run(pname+"/"+pa.name, func(t *testing.T) {
				ours, peer := tcpPair(t)
				pa.act(peer)
				pr := newProbe(ours)
				// A write or close may take a moment to arrive; a dead
				// verdict must come eventually, an alive one must hold.
				got := pr.alive()
				for i := 0; got && !pa.alive && i < 1000; i++ {
					got = pr.alive()
				}
				if got != pa.alive {
					t.Fatalf("alive() = %v, want %v", got, pa.alive)
				}
				if pname == "peek" && pa.name == "wrote" {
					buf := make([]byte, 1)
					if n, err := ours.Read(buf); n != 1 || buf[0] != 'E' {
						t.Errorf("after peek, Read = %q, %v; want the peer's byte", buf[:n], err)
					}
				}
			})
		}
	}
}

func tcpPair(t *testing.T) (ours, peer net.Conn) {
	t.Helper()
	return connPair(t, "tcp", "127.0.0.1:0")
}

// connPair returns both ends of a connection on network, listening on
// address; both are closed when the test ends.
func connPair(t *testing.T, network, address string) (ours, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ours, err = net.Dial(network, ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	peer, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ours.Close(); peer.Close() })
	return ours, peer
}
