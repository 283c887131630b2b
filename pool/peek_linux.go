package pool

import (
	"syscall"
	"unsafe"
)

// peek is recv(fd, b, MSG_PEEK|MSG_DONTWAIT) as a raw system call. It
// never blocks, so it needs none of the runtime's entersyscall/exitsyscall
// (see SocketIO): a syscall.Recvfrom per Acquire put a P in the syscall
// state thousands of times a second, which kept sysmon waking every 20 µs
// to look for Ps to retake — about a tenth of the proxy's CPU in pgbench -S.
func peek(fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		r, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		if e == syscall.EINTR {
			continue
		}
		return int(r), e
	}
}

// msgNoSignal makes a send to a closed peer fail with EPIPE rather than
// also raise SIGPIPE (which Go would ignore, at the cost of a signal).
const msgNoSignal = syscall.MSG_NOSIGNAL
