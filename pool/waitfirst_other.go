//go:build !linux || !go1.26 || go1.27

package pool

import "net"

// Without waitfirst_linux.go's access to the runtime poller, reads always
// try the socket first.

func pollDescOf(net.Conn, uintptr) uintptr { return 0 }
func pollWait(uintptr)                     {}
func nanotime() int64                      { return 0 }
