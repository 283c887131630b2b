package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shardproxy/shardproxy/config"
	"github.com/shardproxy/shardproxy/pool"
	"github.com/shardproxy/shardproxy/router"
)

// Runtime is everything a statement needs that changes on reload. A session
// takes one snapshot per transaction, so a reload applies to new transactions
// and never to a transaction half-way through.
type Runtime struct {
	Config *config.Config
	Router *router.Router
	Pools  *pool.Cluster

	databases map[string]bool // database names clients may connect to
	columns   *columnCache    // table columns for INSERTs without a column list; nil: no caching
	tls       *tls.Config     // client TLS (config tls:); nil: SSLRequest is answered 'N'
	twopc     *twoPC          // two-phase commit decision log; nil without two_phase_commit
	// cutovers counts the resharding cutovers (Server.CutOver) up to this
	// runtime; a reload (SetRuntime) keeps the count (see
	// session.checkMapAfterHold).
	cutovers uint64
	// epochMap is the map the last cutover installed (nil before one):
	// a reload must keep its placement (Server.CheckAgainstEpoch).
	// Recorded by the switch itself, which the serve command serializes
	// with a reload's check and swap: recorded later, a reload in between
	// put the old map back.
	epochMap *config.Config
}

// Server accepts client connections and serves each in its own goroutine.
type Server struct {
	log     *slog.Logger
	rt      atomic.Pointer[Runtime]
	secrets secretCache

	// serverParams caches the ParameterStatus values of the first backend
	// that connected, so that startup does not need a shard to be up.
	serverParams atomic.Pointer[map[string]string]

	mu       sync.Mutex
	sessions map[uint32]*session // by the BackendKeyData process id we issued
	conns    map[net.Conn]struct{}
	closing  bool
	wg       sync.WaitGroup
	nextID   atomic.Uint64

	drain drainState // see drain.go

	watchTick atomic.Int64  // advanced by watchClients every watchInterval
	stopWatch chan struct{} // closed by Shutdown: ends watchClients and checkHealth
	watchOnce sync.Once

	stats   serverStats  // see stats.go
	admin   adminState   // see admin.go
	health  healthState  // see health.go
	reshard reshardState // see reshard.go
	commits commitGate   // see visibility.go

	// afterGate, set by tests only, runs where a statement has passed the
	// PAUSE gate and not yet taken its backends (holdIfPaused).
	afterGate atomic.Pointer[func(shards []string)]

	checked checkedParams // startup settings a shard accepted (startupparams.go)

	// ddlGen advances when DDL may have changed the result type of a
	// prepared statement (resultshape.go).
	ddlGen atomic.Uint64
}

// NewServer returns a server that routes with rt until SetRuntime swaps it.
func NewServer(rt *Runtime, log *slog.Logger) *Server {
	s := &Server{log: log, sessions: make(map[uint32]*session), conns: make(map[net.Conn]struct{}),
		stopWatch: make(chan struct{})}
	s.drain.init()
	s.rt.Store(rt)
	s.watchTick.Store(1) // 0 means "no statement in flight"
	return s
}

// SetRuntime swaps in a reloaded configuration for new transactions.
// Callers serialize SetRuntime and CutOver.
func (s *Server) SetRuntime(rt *Runtime) { s.install(rt, false) }

// CutOver is SetRuntime for the map a resharding cutover switches to:
// keys may have moved, so a statement routed on the previous map that has
// not reached a shard yet is failed with 40001 rather than run on the old
// owner (checkMapAfterHold).
func (s *Server) CutOver(rt *Runtime) { s.install(rt, true) }

func (s *Server) install(rt *Runtime, cutover bool) {
	if old := s.rt.Load(); old != nil {
		rt.cutovers, rt.epochMap = old.cutovers, old.epochMap
		if old.Router != nil && rt.Router != nil && rt.Router != old.Router {
			// What the shards' catalogs define is a fact of the
			// databases, not of the configuration (see learnCatalog).
			rt.Router.Adopt(old.Router)
		}
	}
	if cutover {
		rt.cutovers++
		rt.epochMap = rt.Config
	}
	s.admin.epoch.Add(1)
	s.stats.retireRouter(s.rt.Swap(rt), rt)
}

// Runtime returns the configuration new transactions use.
func (s *Server) Runtime() *Runtime { return s.rt.Load() }

// Serve accepts connections on ln until ctx is done or ln is closed. It
// returns after the listener stops; sessions keep running until Shutdown
// (they do not run under ctx: a drain lets their transactions finish).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.watchOnce.Do(func() {
		go s.watchClients(s.stopWatch)
		s.firstHealthCheck(ctx)
		go s.checkHealth(s.stopWatch)
	})
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Temporary failures (EMFILE and friends): back off like net/http.
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !s.track(c) {
			c.Close()
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer s.untrack(c)
			defer s.recoverConn(c)
			s.serveConn(s.drain.ctx, c)
		}()
	}
}

// recoverConn keeps a bug in one connection's handling from taking down
// every other client, as net/http does: the panic is logged with its
// stack and that connection is closed (the session's deferred cleanup has
// released its backends while the panic unwound).
func (s *Server) recoverConn(c net.Conn) {
	if r := recover(); r != nil {
		s.log.Error("panic serving a connection; closing it", "remote", c.RemoteAddr().String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		c.Close()
	}
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	c.Close()
}

// Shutdown drains (see drain.go): it stops new connections, closes idle
// clients with 57P01 at once and the others at their next transaction
// boundary. When ctx is done first, it closes the remaining client
// connections (their backends are discarded, which rolls back open
// transactions). It returns when every session goroutine has exited.
// Cancelling Serve's context only stops the listener: the caller (SIGTERM,
// the admin console's SHUTDOWN) then calls Shutdown.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.drainSessions()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.forceClose()
		<-done
	}
	s.mu.Lock()
	select { // Shutdown may run twice (SIGTERM, then the admin's SHUTDOWN)
	case <-s.stopWatch:
	default:
		close(s.stopWatch)
	}
	s.mu.Unlock()
}

// register issues a unique (pid, secret) pair for CancelRequest.
func (s *Server) register(sess *session) {
	var b [8]byte
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if pid == 0 {
			continue
		}
		if _, taken := s.sessions[pid]; taken {
			continue
		}
		sess.pid = pid
		sess.secret = append([]byte(nil), b[4:]...)
		sess.stopping.draining = s.closing // authenticated while Shutdown ran
		s.sessions[pid] = sess
		return
	}
}

func (s *Server) unregister(sess *session) {
	s.mu.Lock()
	if s.sessions[sess.pid] == sess {
		delete(s.sessions, sess.pid)
	}
	s.mu.Unlock()
}

func (s *Server) lookup(pid uint32) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[pid]
}
