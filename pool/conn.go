package pool

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Conn is one authenticated backend connection, spoken to in the raw wire
// protocol. It is used by one goroutine at a time: the one that acquired it.
type Conn struct {
	Shard     string
	PID       uint32 // BackendKeyData: with SecretKey, what Cancel sends
	SecretKey []byte
	// ServerParams are the ParameterStatus values the server sent at
	// startup (server_version, client_encoding, ...). Later ParameterStatus
	// messages pass through Receive; the proxy may record them here.
	ServerParams map[string]string
	// Prepared names the prepared statements living on this backend.
	// Managed by the proxy; a new backend (new Conn) starts empty.
	// Each has the proxy's DDL generation when it was prepared.
	Prepared map[string]uint64
	// SessionParams holds the SET values the proxy applied on this backend.
	// Managed by the proxy.
	SessionParams map[string]string
	// BytewiseText: the database's default collation orders text by its
	// bytes (C, POSIX, C.UTF-8 with the libc provider), as the proxy does
	// when it merges sorted text. Read once at connect.
	BytewiseText bool
	// CollatedColumns: some column of the database's own tables (or a
	// domain) has a collation of its own (neither the default, C nor
	// POSIX), which values lose when the proxy orders them or hands them
	// to another query. Read at connect, and again after DDL
	// (RefreshCollations), as are the other collation facts.
	CollatedColumns bool
	// NondeterministicColumns: some of those collations is
	// nondeterministic (different text may be equal).
	NondeterministicColumns bool
	// Nondeterministic: the database has a nondeterministic collation
	// (which a statement's COLLATE clause may name).
	Nondeterministic bool
	own              map[uint64]struct{} // see OwnCollation
	// Enums maps the database's enum types to 0 and their array types to
	// the enum: an enum's binary form is its text, which the proxy may then
	// send for a merged value. Read at connect, with the collations.
	Enums  map[uint32]uint32
	schema uint64 // the pool's schema count when they were read

	pool        *Pool
	netConn     net.Conn
	fe          *pgproto3.Frontend // writes only: reading is rd's and dec's
	rd          *msgReader
	dec         decoder
	raw         rawMessage  // reused by SendRaw so that it does not allocate
	deadlineSet bool        // a deadline must be cleared before reuse
	expired     atomic.Bool // Expire ended its reads: never reused
	inUse       bool        // guarded by pool.mu
	lastUsed    time.Time   // when last released; read by the next owner
	probe       prober      // non-blocking liveness check of the idle socket
	watchID     uint64      // the pool's hangupWatch knows c by this; 0: unwatched
	hungUp      atomic.Bool // the hangupWatch saw the backend hang up

	// What CancelUnanswered needs to know which request a cancel reaches:
	// flushes counts Flush calls (the requests sent), answered is
	// flushes when a ReadyForQuery was last read. flushMu is held by
	// Flush and by CancelUnanswered, so that no request goes out between
	// the check and the cancel's signal.
	flushMu  sync.Mutex
	flushes  atomic.Uint64
	answered atomic.Uint64
	closed   atomic.Bool
}

func newConn(p *Pool, hc *pgconn.HijackedConn) *Conn {
	c := &Conn{
		Shard:         p.name,
		PID:           hc.PID,
		SecretKey:     hc.SecretKey,
		ServerParams:  hc.ParameterStatuses,
		Prepared:      make(map[string]uint64),
		SessionParams: make(map[string]string),
		pool:          p,
		netConn:       hc.Conn,
	}
	// Read the socket directly; pgconn read through its background
	// reader, which SyncConn has stopped and drained.
	rw := SocketIO(hc.Conn)
	c.fe = pgproto3.NewFrontend(nil, rw)
	c.rd = newMsgReader(rw)
	c.probe.init(hc.Conn)
	return c
}

// Send buffers msg; Flush writes it.
func (c *Conn) Send(msg pgproto3.FrontendMessage) { c.fe.Send(msg) }

// SendRaw buffers b, one or more already-encoded frontend messages (type
// byte and length included), e.g. client bytes forwarded verbatim. It is
// ordered with Send. b is copied: the caller may reuse it at once.
func (c *Conn) SendRaw(b []byte) {
	c.raw = b
	c.fe.Send(&c.raw)
	c.raw = nil
}

// Flush writes the buffered messages in one write.
func (c *Conn) Flush() error {
	c.flushMu.Lock()
	c.flushes.Add(1)
	err := c.fe.Flush()
	c.flushMu.Unlock()
	return err
}

// Receive reads the next backend message. As with pgproto3.Frontend, the
// message is only valid until the next call to Receive or ReceiveRaw:
// copy what must outlive it.
func (c *Conn) Receive() (pgproto3.BackendMessage, error) {
	_, raw, err := c.ReceiveRaw()
	if err != nil {
		return nil, err
	}
	return c.dec.decode(raw)
}

// ReceiveRaw reads the next backend message without decoding it: its type
// byte, and the whole message as it came (type, length and body), to be
// forwarded as it is or decoded with Decode. raw is valid until the next
// call to Receive or ReceiveRaw.
func (c *Conn) ReceiveRaw() (typ byte, raw []byte, err error) {
	typ, raw, err = c.rd.next()
	if typ == 'Z' {
		c.answered.Store(c.flushes.Load())
	}
	return typ, raw, err
}

// Request identifies the last request sent (Flush) and reports whether
// the backend may still be working on it: no ReadyForQuery was read since.
// Safe to call from any goroutine.
func (c *Conn) Request() (request uint64, unanswered bool) {
	request = c.flushes.Load()
	return request, c.answered.Load() != request && !c.closed.Load()
}

// CancelUnanswered sends a CancelRequest (see Cancel) if request is still
// the last one sent and is not yet answered, and reports whether it did.
// Flush waits meanwhile, so the cancel cannot reach a later request.
//
// Postgres ignores a cancel that reaches a backend while it is reading its
// next request, so a cancel sent just after the request may be lost; a
// caller that must stop the request sends it again while this reports
// true. Safe to call from any goroutine.
func (c *Conn) CancelUnanswered(ctx context.Context, request uint64) (bool, error) {
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	if now, unanswered := c.Request(); now != request || !unanswered {
		return false, nil
	}
	return true, c.Cancel(ctx)
}

// Decode decodes a message from ReceiveRaw. The result shares raw's memory
// and is valid as long as raw, and until the next Decode or Receive.
func (c *Conn) Decode(raw []byte) (pgproto3.BackendMessage, error) { return c.dec.decode(raw) }

// SetDeadline sets the read and write deadline of the socket. Release
// clears it, so the next owner starts without one.
func (c *Conn) SetDeadline(t time.Time) error {
	c.deadlineSet = !t.IsZero()
	return c.netConn.SetDeadline(t)
}

// Expire makes the owner's pending and future reads fail at once. It is
// the one method another goroutine may call while the owner uses c (the
// owner must not have released c yet): a session whose client is gone
// and whose backend ignores the cancel is stuck in a read that nothing
// else ends. The pool discards an expired conn instead of reusing it.
func (c *Conn) Expire() {
	c.expired.Store(true)
	c.netConn.SetReadDeadline(time.Now())
}

// Cancel asks the server to cancel whatever this backend is running, the
// way libpq's PQcancel does: a CancelRequest with PID and SecretKey on a
// new connection to the same server. It returns once the server has closed
// that connection, that is after it signalled the backend; whether a query
// was running then is not reported (see "Canceling Requests in Progress"
// in the Postgres protocol docs).
func (c *Conn) Cancel(ctx context.Context) error {
	addr := c.netConn.RemoteAddr() // the very server this backend lives on
	var d net.Dialer
	nc, err := d.DialContext(ctx, addr.Network(), addr.String())
	if err != nil {
		return fmt.Errorf("pool: cancel on shard %s: %w", c.Shard, err)
	}
	defer nc.Close()
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Now()) })
	defer stop()
	req := pgproto3.CancelRequest{ProcessID: c.PID, SecretKey: c.SecretKey}
	buf, err := req.Encode(nil)
	if err == nil {
		_, err = nc.Write(buf)
	}
	if err == nil {
		_, err = io.Copy(io.Discard, nc) // nil at the server's EOF
	}
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return fmt.Errorf("pool: cancel on shard %s: %w", c.Shard, err)
	}
	return nil
}

// Close closes the backend connection. For a Conn from Acquire it is the
// same as Pool.Discard.
func (c *Conn) Close() error {
	c.pool.Discard(c)
	return nil
}

// clean reports whether c can be reused as is, clearing any deadline.
func (c *Conn) clean() bool {
	if c.rd.buffered() > 0 || c.expired.Load() || c.hungUp.Load() {
		return false // bytes after ReadyForQuery: not idle; or reads expired; or the backend hung up
	}
	if c.deadlineSet {
		if c.netConn.SetDeadline(time.Time{}) != nil {
			return false
		}
		c.deadlineSet = false
	}
	return true
}

// reusable reports whether an idle c may be handed out at now: not idle
// for too long, its backend not seen to hang up, and (unless released
// within probeAfter, or within watchLag while the hang-up watch runs) its
// socket neither closed nor carrying unread bytes. A backend says nothing
// while idle unless it is about to die, e.g. the FATAL 57P01 of a shutdown.
func (c *Conn) reusable(now time.Time, idleTimeout, probeAfter time.Duration) bool {
	idle := now.Sub(c.lastUsed)
	if idle > idleTimeout || c.hungUp.Load() {
		return false
	}
	if idle < probeAfter || idle < watchLag && c.watchID != 0 && c.pool.watch.working() {
		return true
	}
	return c.probe.alive()
}

// watchLag is how long a Conn released a moment ago is reused on the
// hangupWatch's word alone, without the probe's system call. The watch
// hears of a hang-up as soon as the runtime polls the network, within
// 10 ms (sysmon's poll) even when every P is busy, so only a backend
// that hung up within that moment could be missed; the probe has such a
// window too, while the backend's FIN is on its way. Under load, when
// the probe would cost a system call per transaction, Conns come back
// within microseconds; a Conn idle for longer is still probed.
const watchLag = 10 * time.Millisecond

// terminate closes the socket, first telling the backend with Terminate so
// that it exits cleanly (no "unexpected EOF" in the server log). The write
// is bounded: a wedged peer must not block the caller.
func (c *Conn) terminate() {
	c.closed.Store(true)
	if c.watchID != 0 {
		c.pool.watch.remove(c)
	}
	c.netConn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	c.netConn.Write(terminateMessage)
	c.netConn.Close()
}

// terminateMessage is Terminate ('X', length 4).
var terminateMessage = []byte{'X', 0, 0, 0, 4}

// rawMessage is already-encoded frontend bytes, sent as they are.
type rawMessage []byte

func (*rawMessage) Frontend()                           {}
func (*rawMessage) Decode([]byte) error                 { return fmt.Errorf("pool: rawMessage cannot be decoded") }
func (m *rawMessage) Encode(dst []byte) ([]byte, error) { return append(dst, *m...), nil }
