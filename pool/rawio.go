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
// when the socket is not ready.
func SocketIO(c net.Conn) io.ReadWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	return &socketIO{conn: c, rc: rc}
}

type socketIO struct {
	conn net.Conn
	rc   syscall.RawConn
}

func (s *socketIO) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	var n int
	var errno syscall.Errno
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			r, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case 0:
				n, errno = int(r), 0
				return true
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // park until readable
			default:
				n, errno = 0, e
				return true
			}
		}
	})
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

func (s *socketIO) Write(p []byte) (int, error) {
	written := 0
	var errno syscall.Errno
	err := s.rc.Write(func(fd uintptr) bool {
		for written < len(p) {
			rest := p[written:]
			r, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)))
			switch e {
			case 0:
				written += int(r)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // park until writable
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err != nil {
		return written, s.wrap("write", err)
	}
	if errno != 0 {
		return written, s.wrap("write", errno)
	}
	return written, nil
}

// wrap makes errors look like the net package's, so that callers checking
// for net.Error or net.ErrClosed keep working.
func (s *socketIO) wrap(op string, err error) error {
	if _, ok := err.(*net.OpError); ok {
		return err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}
