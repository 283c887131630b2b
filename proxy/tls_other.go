//go:build !unix

package proxy

import "net"

// pendingInput cannot peek without consuming here: early bytes then fail
// the TLS handshake instead of getting a clear protocol error.
func pendingInput(net.Conn) bool { return false }
