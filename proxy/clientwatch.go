package proxy

import (
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// watchInterval is how often clients with a statement in flight are checked.
const watchInterval = 250 * time.Millisecond

// clientWatch notices a client that hangs up while its statement runs.
//
// While a statement is in flight the session goroutine is blocked reading
// the backend, not the client, so a vanished client would go unnoticed until
// the reply is written — after a 30-second query, or never for a query
// waiting on a lock. Postgres has the same gap and closes it with
// client_connection_check_interval; this is the proxy's equivalent.
//
// Ownership: the session goroutine marks a statement in flight (start) and
// done (stop) — two atomic operations, nothing else on the hot path. One
// goroutine per server (Server.watchClients, which exits on Shutdown) looks
// every watchInterval at the sessions whose statement has been in flight
// for a whole interval, and looks at their sockets without consuming a
// byte (on Linux poll for POLLRDHUP, which sees a FIN behind unread bytes,
// such as the Terminate of a client that gave up; elsewhere recv with
// MSG_PEEK|MSG_DONTWAIT). On EOF or a reset it calls gone, which
// cancels the backends' statements (cancelBackends): the session goroutine
// then gets the backend's error, fails to write it or reads EOF from the
// client next, and ends as for any disconnect, discarding backends that
// were in a transaction.
//
// A client that half-closes (shutdown(SHUT_WR)) while waiting for a reply
// counts as gone, as it does for Postgres' check; on systems other than
// Linux a client whose last bytes are unread looks alive.
type clientWatch struct {
	rc    syscall.RawConn // nil: not a socket, nothing to watch
	clock *atomic.Int64   // the server's watch tick
	since atomic.Int64    // tick at which the in-flight statement started; 0: none
	fired atomic.Bool     // gone was called
	gone  func()
	// expire ends the session's reads from its backends; it runs
	// expireAfter past gone if the statement still has not ended: a
	// backend that ignores the cancel (hung, stopped), or a backend
	// waiting for a message the session will never send, must not hold
	// the session, its backends and their locks for good.
	expire  func()
	firedAt int64 // tick of gone; firedAt and expired: the watch goroutine's
	expired bool
}

// expireAfter is how long a statement may go on after its client is gone
// and its backends were cancelled, before the session's backend reads are
// expired (clientWatch.expire). Postgres answers a cancel in milliseconds.
const expireAfter = 5 * time.Second

func (w *clientWatch) init(c net.Conn, clock *atomic.Int64, gone, expire func()) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn() // under TLS, watch the TCP socket
	}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.rc = rc
		}
	}
	w.clock, w.gone, w.expire = clock, gone, expire
}

// start marks a statement in flight.
func (w *clientWatch) start() {
	if w.rc != nil && w.since.Load() == 0 {
		w.since.Store(w.clock.Load())
	}
}

// stop marks the statement done.
func (w *clientWatch) stop() { w.since.Store(0) }

// check runs on the server's watch goroutine.
func (w *clientWatch) check(tick int64) {
	since := w.since.Load()
	if since == 0 || tick-since < 2 {
		return // idle, or in flight for less than a whole interval
	}
	if w.fired.Load() {
		if !w.expired && tick-w.firedAt >= int64(expireAfter/watchInterval) {
			w.expired = true
			w.expire()
		}
		return
	}
	if peerGone(w.rc) {
		w.fired.Store(true)
		w.firedAt = tick
		w.gone()
	}
}

// watchClients is the goroutine that checks sessions with a statement in
// flight; it exits when stop is closed.
func (s *Server) watchClients(stop <-chan struct{}) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	var batch []*session
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		tick := s.watchTick.Add(1)
		batch = batch[:0]
		s.mu.Lock()
		for _, sess := range s.sessions {
			if sess.watch.since.Load() != 0 {
				batch = append(batch, sess)
			}
		}
		s.mu.Unlock()
		for _, sess := range batch {
			sess.watch.check(tick)
		}
	}
}
