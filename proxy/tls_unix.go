//go:build unix

package proxy

import (
	"net"
	"syscall"
)

// pendingInput reports whether the client has sent bytes the proxy has not
// read yet, peeking at the socket without blocking or consuming them.
func pendingInput(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var b [1]byte
	var n int
	var rerr error
	if rc.Control(func(fd uintptr) {
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}) != nil {
		return false
	}
	return rerr == nil && n > 0
}
