//go:build linux && go1.26 && !go1.27

package pool

import (
	"net"
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
