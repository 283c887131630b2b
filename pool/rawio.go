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
// A read after a quick write waits before it tries: see Read.
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
	rc.Control(func(fd uintptr) {
		if pd := pollDescOf(c, fd); pd != 0 {
			s.inq = newInqReader(fd) // nil: not TCP, or no TCP_INQ
			if s.inq != nil {
				s.pd = pd
			}
		}
	})
	s.waitFn = func(uintptr) { pollWait(s.pd) }
	return s
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

	// The wait-first read: pd is the socket's runtime poll descriptor and
	// inq reads it with TCP_INQ (both or neither: never wait first),
	// quiet says the last Write succeeded within quickWrite, drained that
	// the last read left nothing behind.
	pd      uintptr
	inq     *inqReader
	quiet   bool
	drained bool
	waitFn  func(fd uintptr) // parks until the poller reports pd readable
}

// Read reads what the socket holds, parking until it holds something.
//
// Most reads come right after a write to the same peer, which must wake
// up and work before it answers (a server its request, a client its next
// query), and so find nothing: a recvfrom that returns EAGAIN, before the
// goroutine parks anyway. A system call costs more than a microsecond on
// a virtual machine, and that was 1.3 such calls per pgbench -S
// transaction. So a read after a quick write (under quickWrite) parks
// first, in the runtime's poller, and reads once the socket is reported
// readable. A slow write is one during which this thread was preempted,
// mostly by the peer it woke, which has often answered by then: its read
// tries first.
//
// Waiting first is safe only if nothing readable is left without a
// readiness still to come. Data or an end of file that arrives after a
// read that drained the socket is either still queued in epoll or
// recorded in pd, and pollWait returns at once for either (a read through
// net would not do: it clears pd's record first, expecting to try the
// socket itself). What a read may leave behind unannounced is the rest of
// what it did not fit, or an end of file that came with its data, as it
// does from a client that half-closes (shutdown SHUT_WR). TCP_INQ makes
// every read say whether it left anything, the end of file included
// (inqReader); a read waits first only after one that left nothing. A
// reset that came with the data fails the write before the wait. Control
// holds a reference to the socket during the wait, so a Close from
// another goroutine wakes it rather than freeing pd under it.
func (s *socketIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.quiet && s.drained {
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
		var r uintptr
		var e syscall.Errno
		if s.inq != nil {
			r, e = s.inq.read(fd, p, &s.drained)
		} else {
			r, _, e = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
		}
		switch e {
		case 0:
			s.rn, s.rerrno = int(r), 0
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
	written, errno := s.wn, s.werrno
	if s.pd != 0 {
		s.quiet = err == nil && errno == 0 && nanotime()-start < int64(quickWrite)
	}
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
// project's 2-core virtual machine: of reads after writes under 20µs, 14
// in 490000 found data, from clients and from servers alike; of backend
// reads after writes over 50µs, 80% did, and of client reads after writes
// of 20–30µs, 97% (the writer was preempted by the peer it woke, which
// answered meanwhile). Either choice is correct; a wrong guess costs a
// recvfrom or a poller round.
const quickWrite = 20 * time.Microsecond

// wrap makes errors look like the net package's, so that callers checking
// for net.Error or net.ErrClosed keep working.
func (s *socketIO) wrap(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}
