package pool

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// SocketIO returns an io.ReadWriter over c that reads and writes the socket
// with raw system calls, or c itself where that is not possible (TLS, pipes,
// non-Linux-like systems).
//
// Why: a proxy's work is almost all socket reads and writes, and a loopback
// write often costs tens of microseconds because it wakes the peer, which
// may preempt the writer. To the Go runtime such a write looks like a
// blocking system call: sysmon wakes every 20µs to retake the P, hands it to
// another thread, and the threads then trade places with futex wakeups and
// short sleeps — about a third of the proxy's CPU in profiles of pgbench -S.
// The sockets are non-blocking, so read and write return at once (with data
// or EAGAIN) and need none of that: RawSyscall skips the runtime's
// entersyscall/exitsyscall, and the netpoller still parks the goroutine
// when the socket is not ready. The calls are recvfrom and sendto, not
// read and write: on a socket they skip the file layer.
//
// On a backend's socket (backendIO), a read after a quick write waits
// before it tries: see Read.
func SocketIO(c net.Conn) io.ReadWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &socketIO{conn: c, rc: rc}
	s.readFn, s.writeFn = s.read, s.write
	return s
}

// backendIO is SocketIO for a connection to a Postgres server, whose reads
// after a quick write wait first (see socketIO.Read). Not for clients: a
// client may half-close, which that wait could miss.
func backendIO(c net.Conn) io.ReadWriter {
	rw := SocketIO(c)
	if s, ok := rw.(*socketIO); ok {
		s.rc.Control(func(fd uintptr) { s.pd = pollDescOf(c, fd) })
		s.waitFn = func(uintptr) { pollWait(s.pd) }
	}
	return rw
}

// socketIO allows one Read and one Write at a time (each may run alongside
// the other), as a pgproto3 reader and writer use it. The callbacks and
// their arguments and results live in the struct, bound once, so that a
// Read or Write allocates nothing: a closure per call would cost two heap
// allocations, four per proxied round trip.
type socketIO struct {
	conn net.Conn
	rc   syscall.RawConn

	readFn  func(fd uintptr) bool // s.read
	rbuf    []byte                // Read's argument, for readFn
	rn      int
	rerrno  syscall.Errno
	writeFn func(fd uintptr) bool // s.write
	wbuf    []byte                // Write's argument, for writeFn
	wn      int
	werrno  syscall.Errno

	// The wait-first read: pd is the socket's runtime poll descriptor (0:
	// never wait first), quiet that the last Write returned within
	// quickWrite, full that the last read filled its buffer.
	pd     uintptr
	quiet  bool
	full   bool
	waitFn func(fd uintptr) // parks until the poller reports pd readable
}

// Read reads what the socket holds, parking until it holds something.
//
// Most reads from a backend come right after a write of a request, which
// the server must wake up for and work on before it answers, and so find
// nothing: a recvfrom that returns EAGAIN, before the goroutine parks
// anyway. A system call costs more than a microsecond on a virtual
// machine, and that was most of 1.3 such calls per pgbench -S transaction.
// So on a backend's socket (pd set by backendIO) a read after a quick
// write (under quickWrite) parks first, in the runtime's poller, and reads
// once the socket is reported readable. A slow write is one during which
// this thread was preempted, mostly by the server it woke, which has
// often answered by then: its read tries first, as does one after a read
// that filled its buffer (the rest is in the socket, and no new readiness
// comes for it).
//
// Waiting first is safe because nothing here forgets a readiness: data
// that came after the last read, which drained the socket, is either still
// queued in epoll or recorded in pd, and pollWait returns at once for
// either. (A read through net would not do: it clears pd's record first,
// expecting to try the socket itself.) Control holds a reference to the
// socket for the wait, so a Close from another goroutine wakes it rather
// than freeing pd under it. The one thing a read that drained the socket
// can leave behind is an end of file that came with the data, and with
// it no new readiness; but a Postgres server closes its socket for good,
// so the write before the wait is answered with a reset, which the poller
// reports. A client may instead half-close (shutdown SHUT_WR) and go on
// reading, so that its end of file would go unseen: client sockets
// (SocketIO) always try first.
func (s *socketIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.quiet && !s.full {
		s.rc.Control(s.waitFn) // a closed socket or a deadline: the read below says so
	}
	s.quiet = false
	s.rbuf, s.rn, s.rerrno = p, 0, 0
	err := s.rc.Read(s.readFn)
	n, errno := s.rn, s.rerrno
	s.rbuf = nil
	if err != nil {
		return 0, s.wrap("read", err)
	}
	if errno != 0 {
		return 0, s.wrap("read", errno)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (s *socketIO) read(fd uintptr) bool {
	p := s.rbuf
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
		switch e {
		case 0:
			s.rn, s.rerrno, s.full = int(r), 0, int(r) == len(p)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // park until readable
		default:
			s.rn, s.rerrno = 0, e
			return true
		}
	}
}

func (s *socketIO) Write(p []byte) (int, error) {
	s.wbuf, s.wn, s.werrno = p, 0, 0
	var start int64
	if s.pd != 0 {
		start = nanotime()
	}
	err := s.rc.Write(s.writeFn)
	if s.pd != 0 {
		s.quiet = nanotime()-start < int64(quickWrite)
	}
	written, errno := s.wn, s.werrno
	s.wbuf = nil
	if err != nil {
		return written, s.wrap("write", err)
	}
	if errno != 0 {
		return written, s.wrap("write", errno)
	}
	return written, nil
}

func (s *socketIO) write(fd uintptr) bool {
	p := s.wbuf
	for s.wn < len(p) {
		rest := p[s.wn:]
		r, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), msgNoSignal, 0, 0)
		switch e {
		case 0:
			s.wn += int(r)
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false // park until writable
		default:
			s.werrno = e
			return true
		}
	}
	return true
}

// quickWrite is how long a write may take and still be taken to have left
// its peer unanswered (see Read). Measured under pgbench -S on this
// project's 2-core virtual machine: of backend reads after writes under
// 20µs, 5 in 330000 found data; of those after writes over 50µs, 80% did
// (the writer was preempted by the server it woke, which answered
// meanwhile). Either choice is correct; a wrong guess costs a recvfrom or
// a poller round.
const quickWrite = 20 * time.Microsecond

// wrap makes errors look like the net package's, so that callers checking
// for net.Error or net.ErrClosed keep working.
func (s *socketIO) wrap(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}
