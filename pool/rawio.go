package pool

import (
	"io"
	"net"
	"syscall"
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
}

func (s *socketIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
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
	err := s.rc.Write(s.writeFn)
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

// wrap makes errors look like the net package's, so that callers checking
// for net.Error or net.ErrClosed keep working.
func (s *socketIO) wrap(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: s.conn.LocalAddr().Network(), Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}
