//go:build linux && go1.26 && !go1.27

package pool

import (
	"net"
	"syscall"
	"unsafe"
)

// The wait-first read (socketIO.Read) needs a socket's poll descriptor in
// the runtime and the runtime's wait on it, which net does not export.
// They are reached here for the Go release whose layouts were read
// (go1.26: internal/poll/fd_unix.go, runtime/netpoll.go), and every socket
// is checked against its file descriptor before use. On any other release
// this file drops out and reads try the socket first, as before.

//go:linkname runtimePollWait internal/poll.runtime_pollWait
func runtimePollWait(ctx uintptr, mode int) int

//go:linkname nanotime runtime.nanotime
func nanotime() int64

// pollDescOf returns the runtime poll descriptor of c, whose file
// descriptor is fd, or 0 when c is not a socket of the net package or its
// layout is not the one this file knows.
//
// *net.TCPConn and *net.UnixConn are struct{ conn }, conn is
// struct{ fd *netFD }, and netFD starts with poll.FD: fdmu (16 bytes),
// Sysfd int, SysFile (one pointer), then pd, whose runtimeCtx points to
// the runtime's pollDesc: link, then fd.
func pollDescOf(c net.Conn, fd uintptr) uintptr {
	var conn unsafe.Pointer
	switch c := c.(type) {
	case *net.TCPConn:
		conn = unsafe.Pointer(c)
	case *net.UnixConn:
		conn = unsafe.Pointer(c)
	default:
		return 0
	}
	netFD := *(*unsafe.Pointer)(conn)
	if netFD == nil || *(*int)(unsafe.Add(netFD, 16)) != int(fd) {
		return 0
	}
	pd := *(*unsafe.Pointer)(unsafe.Add(netFD, 32))
	if pd == nil || *(*uintptr)(unsafe.Add(pd, 8)) != fd {
		return 0
	}
	return uintptr(pd)
}

// pollWait parks the goroutine until the runtime's poller reports pd
// readable (or its deadline passes, or the socket is closed: the read
// that follows reports those). Unlike a read through net, it does not
// first forget a readiness the poller already recorded.
func pollWait(pd uintptr) { runtimePollWait(pd, 'r') }

// tcpInq is TCP_INQ (linux/tcp.h): with it set, each recvmsg on a TCP
// socket carries a control message with the bytes still to read, or 1 at
// an end of file, which the kernel added for readers that would otherwise
// make another call to learn that.
const tcpInq = 36

// inqReader reads a TCP socket with recvmsg and TCP_INQ. Its buffers live
// here so that a read allocates nothing.
type inqReader struct {
	msg syscall.Msghdr
	iov syscall.Iovec
	oob [32]byte // one cmsghdr (16 bytes) and an int32, aligned
}

// newInqReader sets TCP_INQ on fd, or returns nil if it cannot (not TCP).
func newInqReader(fd uintptr) *inqReader {
	if syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpInq, 1) != nil {
		return nil
	}
	r := &inqReader{}
	r.msg.Iov, r.msg.Iovlen = &r.iov, 1
	r.msg.Control = &r.oob[0]
	return r
}

// read is one recvmsg into p. On success it sets *drained: whether the
// socket held nothing more, neither data nor an end of file; a read
// without the control message counts as not drained.
func (r *inqReader) read(fd uintptr, p []byte, drained *bool) (uintptr, syscall.Errno) {
	r.iov.Base = &p[0]
	r.iov.SetLen(len(p))
	r.msg.SetControllen(len(r.oob))
	n, _, e := syscall.RawSyscall(syscall.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&r.msg)), 0)
	r.iov.Base = nil // do not keep p alive
	if e == 0 {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&r.oob[0]))
		*drained = r.msg.Controllen >= syscall.SizeofCmsghdr+4 &&
			h.Level == syscall.IPPROTO_TCP && h.Type == tcpInq &&
			*(*int32)(unsafe.Pointer(&r.oob[syscall.SizeofCmsghdr])) == 0
	}
	return n, e
}
