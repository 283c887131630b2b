//go:build unix && !linux

package proxy

import "syscall"

// peerGone peeks at the client socket without blocking and without
// consuming anything. It uses RawConn.Control, not Read: Read would wait
// for the read lock that a session goroutine blocked reading the client
// (during COPY) holds.
func peerGone(rc syscall.RawConn) bool {
	var b [1]byte
	var n int
	var err error
	if rc.Control(func(fd uintptr) {
		n, _, err = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}) != nil {
		return false // closed by the proxy itself: the session is ending anyway
	}
	switch err {
	case nil:
		return n == 0 // 0 bytes without error: the client sent FIN
	case syscall.EAGAIN, syscall.EINTR:
		return false // alive and quiet (EWOULDBLOCK == EAGAIN here)
	default:
		return true // ECONNRESET and friends
	}
}
