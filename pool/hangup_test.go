//go:build linux

package pool

import (
	"net"
	"testing"
	"time"
)

// TestHangupWatch checks the watch on loopback TCP pairs: a peer that
// writes is not a hang-up (the watch is armed for EPOLLRDHUP only), a peer
// that closes is; a Conn released a moment ago is reused on the watch's
// word, one idle longer is probed; and close ends the watch's goroutine.
func TestHangupWatch(t *testing.T) {
	w, err := newHangupWatch()
	if err != nil {
		t.Fatal(err)
	}
	p := &Pool{watch: w}
	conn := func() (*Conn, net.Conn) {
		ours, peer := tcpPair(t)
		c := &Conn{pool: p, netConn: ours, lastUsed: time.Now()}
		c.probe.init(ours)
		if !w.add(c) {
			t.Fatal("add failed")
		}
		return c, peer
	}
	waitHungUp := func(c *Conn) bool {
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if c.hungUp.Load() {
				return true
			}
		}
		return false
	}

	wrote, wrotePeer := conn()
	closed, closedPeer := conn()
	quiet, _ := conn()
	wrotePeer.Write([]byte("N"))
	closedPeer.Close()
	if !waitHungUp(closed) {
		t.Fatal("a closed peer was not seen to hang up")
	}
	if !w.working() {
		t.Fatal("watch stopped")
	}
	if wrote.hungUp.Load() || quiet.hungUp.Load() {
		t.Errorf("hung up: wrote %v, quiet %v; want neither", wrote.hungUp.Load(), quiet.hungUp.Load())
	}

	const idleTimeout = time.Minute
	for _, tc := range []struct {
		name string
		c    *Conn
		idle time.Duration
		want bool
	}{
		{"hung up, just released", closed, 0, false},
		{"hung up, idle", closed, time.Second, false},
		{"quiet, just released", quiet, 0, true},
		{"quiet, idle: probed", quiet, time.Second, true},
		// Bytes on an idle backend mean it is about to go (a FATAL), but
		// only the probe sees them: the watch trusts a Conn released
		// within watchLag.
		{"wrote, just released", wrote, 0, true},
		{"wrote, idle: probed", wrote, time.Second, false},
	} {
		if got := tc.c.reusable(tc.c.lastUsed.Add(tc.idle), idleTimeout, 0); got != tc.want {
			t.Errorf("%s: reusable = %v, want %v", tc.name, got, tc.want)
		}
	}

	w.remove(closed)
	w.close()
	select {
	case <-w.done:
	default:
		t.Fatal("close returned before the watch's goroutine ended")
	}
	if w.working() {
		t.Error("a closed watch still says it works")
	}
	// Once the watch is closed, every Conn is probed again.
	if quiet.reusable(quiet.lastUsed, idleTimeout, 0) != true || wrote.reusable(wrote.lastUsed, idleTimeout, 0) != false {
		t.Error("after close, reusable did not fall back to the probe")
	}
	if w.add(quiet) {
		t.Error("add on a closed watch succeeded")
	}
}
