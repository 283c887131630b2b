//go:build !linux || !go1.26 || go1.27

package pool

import (
	"net"
	"syscall"
)

// Without waitfirst_linux.go's access to the runtime poller, reads always
// try the socket first.

func pollDescOf(net.Conn, uintptr) uintptr { return 0 }
func pollWait(uintptr)                     {}
func nanotime() int64                      { return 0 }

type inqReader struct{}

func newInqReader(uintptr) *inqReader { return nil }

func (*inqReader) read(uintptr, []byte, *bool) (uintptr, syscall.Errno) { return 0, syscall.ENOSYS }
