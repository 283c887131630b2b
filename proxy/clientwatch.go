package proxy

import (
	"math"
	"net"
	"sync/atomic"
	"syscall"
	"time"
)

// watchInterval is how often a client is checked while its statement runs.
const watchInterval = 250 * time.Millisecond

// clientWatch notices a client that hangs up while its statement runs.
//
// While a statement is in flight the session goroutine is blocked reading
// the backend, not the client, so a vanished client would go unnoticed until
// the reply is written — after a 30-second query, or never for a query
// waiting on a lock. Postgres has the same gap and closes it with
// client_connection_check_interval; this is the proxy's equivalent.
//
// Ownership: the session goroutine calls start before it waits for a backend
// reply and stop when the reply is in (or the session ends). A timer, never
// a goroutine of its own, fires every watchInterval while a statement is in
// flight, so short statements cost two atomic stores and a timer reset, and
// idle sessions cost nothing. The check peeks at the socket without
// consuming a byte (recv with MSG_PEEK|MSG_DONTWAIT) and, on EOF or a reset,
// calls gone, which cancels the backends' statements (cancelBackends): the
// session goroutine then gets the backend's error, fails to write it or
// reads EOF from the client next, and ends as for any disconnect,
// discarding backends that were in a transaction.
//
// A client that half-closes (shutdown(SHUT_WR)) while waiting for a reply
// counts as gone, as it does for Postgres' check.
type clientWatch struct {
	rc    syscall.RawConn // nil: not a socket, nothing to watch
	on    atomic.Bool     // a statement is in flight
	timer *time.Timer     // created by the first start; runs check
	gone  func()
}

func (w *clientWatch) init(c net.Conn, gone func()) {
	if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
		c = tc.NetConn() // under TLS, watch the TCP socket
	}
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.rc = rc
		}
	}
	w.gone = gone
}

// start arms the watch for a statement the session is about to wait for.
func (w *clientWatch) start() {
	if w.rc == nil {
		return
	}
	w.on.Store(true)
	if w.timer == nil {
		w.timer = time.AfterFunc(math.MaxInt64, w.check)
	}
	w.timer.Reset(watchInterval)
}

// stop disarms the watch. A check already running may still re-arm the
// timer; that run then finds on false and does nothing.
func (w *clientWatch) stop() {
	if w.timer != nil {
		w.on.Store(false)
		w.timer.Stop()
	}
}

// check runs on the timer's goroutine.
func (w *clientWatch) check() {
	if !w.on.Load() {
		return
	}
	if peerGone(w.rc) {
		w.gone()
		return
	}
	if w.on.Load() {
		w.timer.Reset(watchInterval)
	}
}
