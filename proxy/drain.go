package proxy

import (
	"context"
	"sync"
	"time"
)

// Draining (graceful shutdown), transaction-aware like PgBouncer's
// SHUTDOWN WAIT_FOR_CLIENTS but without waiting for clients to leave:
//
//   - Shutdown stops accepting and marks every session draining.
//   - A session at a transaction boundary (the last thing it told the
//     client was ReadyForQuery 'I', nothing attached, nothing queued) gets
//     FATAL 57P01, what Postgres sends on shutdown, and is closed. Such a
//     session is usually blocked reading the client, so Shutdown wakes it
//     with a read deadline in the past; the run loop sees the deadline
//     error, finds the session draining and says goodbye.
//   - A session inside a transaction or a statement is left alone; its run
//     loop closes it at the first boundary (after COMMIT or ROLLBACK).
//   - When the drain timeout passes, the sessions' context ends (ending
//     waits for a backend), client sockets are closed and running
//     statements cancelled; backends still in a transaction are discarded,
//     which rolls them back.
//
// Only sessions blocked reading the client between transactions get a read
// deadline: one in a transaction may read the client in the middle of it
// (extended protocol, COPY FROM STDIN), and a deadline there would cut the
// transaction. sessionDrain.mu makes "idle" and "draining" change together,
// so a deadline is never set on a session that has left the idle read.

// drainState is the server's half: the context every session runs under,
// which ends only when the drain timeout passes (not when Serve's context
// does, so that open transactions can still acquire backends while draining).
type drainState struct {
	ctx  context.Context
	stop context.CancelFunc

	begun context.Context // done when Shutdown starts (ends admin console sessions)
	begin context.CancelFunc
}

func (d *drainState) init() {
	d.ctx, d.stop = context.WithCancel(context.Background())
	d.begun, d.begin = context.WithCancel(context.Background())
}

// sessionDrain is the session's half.
type sessionDrain struct {
	mu       sync.Mutex
	idle     bool // run is about to read, or reading, the client at a boundary
	draining bool // Shutdown started: close at the next boundary
}

// errAdminShutdown is what Postgres sends to its clients on a fast shutdown.
func errAdminShutdown() error {
	return pgErrorFatal("57P01", "terminating connection due to administrator command")
}

// startDrain marks the session draining and wakes it if it waits for the
// client between transactions. Called by Shutdown, on its goroutine.
func (s *session) startDrain() {
	s.stopping.mu.Lock()
	defer s.stopping.mu.Unlock()
	s.stopping.draining = true
	if s.stopping.idle {
		s.conn.SetReadDeadline(time.Now())
	}
}

// beforeRead runs on the session goroutine before it reads the next client
// message. boundary tells whether no transaction, statement or batch is
// open. It reports whether the session must end now (draining at a
// boundary); the caller then sends errAdminShutdown.
func (s *session) beforeRead(boundary bool) (stop bool) {
	s.stopping.mu.Lock()
	defer s.stopping.mu.Unlock()
	if boundary && s.stopping.draining {
		return true
	}
	s.stopping.idle = boundary
	return false
}

// afterRead runs on the session goroutine after a client read returned. It
// reports whether the session is draining; it then clears a wake-up
// deadline that may have been set, so that a message that arrived just
// before it does not leave a stale deadline for the reads that follow.
func (s *session) afterRead() (draining bool) {
	s.stopping.mu.Lock()
	woken := s.stopping.idle && s.stopping.draining
	s.stopping.idle = false
	draining = s.stopping.draining
	s.stopping.mu.Unlock()
	if woken {
		s.conn.SetReadDeadline(time.Time{})
	}
	return draining
}

// atBoundary reports whether the session has no transaction, backend or
// queued extended-protocol reply open: closing it now cuts nothing.
func (s *session) atBoundary() bool {
	return s.txStatus == 'I' && s.attached == nil && s.pendingBegin == "" && s.ext.pendingEmpty()
}

// drainSessions marks every registered session draining.
func (s *Server) drainSessions() {
	s.drain.begin()
	for _, sess := range s.sessionList() {
		sess.startDrain()
	}
}

// forceClose runs when the drain timeout passed: it ends the sessions'
// context, closes every client socket and stops every running statement.
func (s *Server) forceClose() {
	s.drain.stop()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	// The session goroutine may be waiting for a statement: cancel it, so
	// that it gets the backend's error, fails to write it to the closed
	// client and ends, discarding a backend that is still in a transaction.
	for _, sess := range s.sessionList() {
		sess.cancelBackends()
	}
}

func (s *Server) sessionList() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		list = append(list, sess)
	}
	return list
}
