package proxy

import (
	"syscall"
	"unsafe"
)

// poll(2) events (asm-generic/poll.h): the peer shut down its writing half
// (sent FIN), hung up, or the socket has an error.
const (
	pollERR   = 0x8
	pollHUP   = 0x10
	pollRDHUP = 0x2000
)

// peerGone polls the client socket, without blocking and without reading,
// for the peer's FIN, a hang-up or an error (POLLRDHUP, POLLHUP, POLLERR),
// as Postgres' client_connection_check_interval does. Unlike a peek, it
// sees a FIN behind unread bytes: a client that gave up on a statement
// (pgx on a context deadline sends Terminate and closes) is gone, not a
// client with a message pipelined. It uses RawConn.Control, not Read:
// Read would wait for the read lock that a session goroutine blocked
// reading the client (during COPY) holds.
func peerGone(rc syscall.RawConn) bool {
	var revents int16
	if rc.Control(func(fd uintptr) {
		pfd := struct {
			fd      int32
			events  int16
			revents int16
		}{fd: int32(fd), events: pollRDHUP}
		var zero syscall.Timespec // do not wait
		for {
			n, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&zero)), 0, 0, 0)
			if e == syscall.EINTR {
				continue
			}
			if e == 0 && n == 1 {
				revents = pfd.revents
			}
			return
		}
	}) != nil {
		return false // closed by the proxy itself: the session is ending anyway
	}
	return revents&(pollRDHUP|pollHUP|pollERR) != 0
}
