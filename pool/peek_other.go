//go:build (darwin || freebsd || netbsd || openbsd) && !linux

package pool

import "syscall"

// peek is recv(fd, b, MSG_PEEK|MSG_DONTWAIT).
func peek(fd uintptr, b []byte) (int, syscall.Errno) {
	n, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if errno, ok := err.(syscall.Errno); ok {
		return n, errno
	}
	return n, 0
}

// msgNoSignal: SIGPIPE from a send to a closed peer is ignored by the Go
// runtime for sockets; the send fails with EPIPE.
const msgNoSignal = 0
