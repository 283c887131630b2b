//go:build linux || darwin || freebsd || netbsd || openbsd

package pool

import (
	"net"
	"syscall"
)

// prober peeks at an idle socket without blocking and without consuming
// anything: recv(MSG_PEEK|MSG_DONTWAIT) of one byte. EAGAIN means alive
// and quiet; EOF, data or any other error means the backend is gone or
// going. It allocates nothing per call, so Acquire stays allocation-free.
type prober struct {
	rc  syscall.RawConn // nil: no file descriptor, see fallback
	fn  func(fd uintptr) bool
	buf [1]byte
	n   int
	err syscall.Errno
	fb  deadlineProber
}

func (p *prober) init(nc net.Conn) {
	p.fb.nc = nc
	// Under TLS, peek at the TCP socket: any TLS record arriving while
	// idle (an alert, a FATAL message) means the backend is going away.
	sc, ok := tcpConn(nc).(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	p.rc = rc
	p.fn = func(fd uintptr) bool {
		p.n, p.err = peek(fd, p.buf[:])
		return true // never wait for readiness
	}
}

func (p *prober) alive() bool {
	if p.rc == nil {
		return p.fb.alive()
	}
	if err := p.rc.Read(p.fn); err != nil {
		return false
	}
	return p.err == syscall.EAGAIN || p.err == syscall.EWOULDBLOCK
}
