package pool

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var noDeadline time.Time

// hangupWatch learns that a backend hung up (closed its socket, or the
// connection broke) without a system call per Acquire: an epoll instance
// of its own holds every connection of the pool, armed for EPOLLRDHUP only
// (EPOLLHUP and EPOLLERR come with it), so data arriving on a busy
// connection does not wake it. The epoll file descriptor is itself
// registered with Go's netpoller, so the watching goroutine is parked, not
// a thread in a blocking epoll_wait, until some backend hangs up; it then
// marks that Conn (Conn.hungUp) and parks again.
//
// Why: the liveness probe, a recv(MSG_PEEK) of every idle connection
// before reuse, is one more system call per transaction, about a fifth of
// a proxied pgbench -S transaction's calls (PgBouncer learns of hang-ups
// from its event loop instead, for free). A Conn released a moment ago
// (watchLag) is handed out on the watch's word; one idle longer is still
// probed, as before.
type hangupWatch struct {
	file   *os.File // the epoll instance
	epfd   int      // file's descriptor (os.File.Fd would make it blocking)
	rc     syscall.RawConn
	events [16]syscall.EpollEvent // used by drain alone
	done   chan struct{}          // closed when run returns
	// broken is set when the watch stopped for any reason but close:
	// every Conn is then probed again.
	broken atomic.Bool

	mu     sync.Mutex
	closed bool // epfd is closed or closing: add must not use it
	conns  map[uint64]*Conn
	next   uint64
}

// newHangupWatch starts a watch, or returns an error where the epoll
// instance cannot be polled by the runtime (the pool then probes).
func newHangupWatch() (*hangupWatch, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	// os.NewFile registers a non-blocking descriptor with the netpoller.
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "backend hang-ups")
	// A deadline can only be set on a file the netpoller took.
	if err := f.SetReadDeadline(noDeadline); err != nil {
		f.Close()
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	w := &hangupWatch{file: f, epfd: fd, rc: rc, done: make(chan struct{}), conns: make(map[uint64]*Conn)}
	go w.run()
	return w, nil
}

// run is the watch's goroutine, one per Pool: it parks until the epoll
// instance has events, and returns when close closes it.
func (w *hangupWatch) run() {
	defer close(w.done)
	w.rc.Read(w.drain) // nil after drain's error, else an error once closed
	w.broken.Store(true)
}

// drain takes every pending event and marks its Conn, then asks to be
// parked until the next (false). It stops the watch (true) only when
// epoll_wait itself fails.
func (w *hangupWatch) drain(fd uintptr) bool {
	for {
		n, err := syscall.EpollWait(int(fd), w.events[:], 0)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			w.broken.Store(true)
			return true
		}
		if n == 0 {
			return false
		}
		w.mu.Lock()
		for _, ev := range w.events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if c := w.conns[id]; c != nil {
				c.hungUp.Store(true)
				delete(w.conns, id)
			}
		}
		w.mu.Unlock()
	}
}

// add watches c's socket. EPOLLONESHOT: a hang-up is reported once; the
// Conn is never reused after it. An error leaves c unwatched (watchID 0,
// probed). Ids start at 1.
func (w *hangupWatch) add(c *Conn) bool {
	if w == nil {
		return false
	}
	sc, ok := tcpConn(c.netConn).(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.next++
	id := w.next
	ev := syscall.EpollEvent{Events: syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
	var ctlErr error
	if err := rc.Control(func(fd uintptr) {
		ctlErr = syscall.EpollCtl(w.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	}); err != nil || ctlErr != nil {
		return false
	}
	w.conns[id] = c
	c.watchID = id
	return true
}

// remove forgets c (closing its socket takes it out of the epoll set).
func (w *hangupWatch) remove(c *Conn) {
	if w == nil {
		return
	}
	w.mu.Lock()
	delete(w.conns, c.watchID)
	w.mu.Unlock()
}

// working reports whether the watch is running (not stopped by an error).
func (w *hangupWatch) working() bool { return w != nil && !w.broken.Load() }

// close stops the watch and waits for its goroutine.
func (w *hangupWatch) close() {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	w.file.Close()
	<-w.done
}
