package pool

import (
	"errors"
	"net"
	"time"
)

// deadlineProber checks an idle socket with a 1 ms read: a timeout means
// alive and quiet. It costs that millisecond, and any byte it reads is
// lost, which is fine because data on an idle backend means it is dying
// and the Conn is dropped anyway.
type deadlineProber struct {
	nc  net.Conn
	buf [1]byte
}

func (p *deadlineProber) alive() bool {
	if p.nc.SetReadDeadline(time.Now().Add(time.Millisecond)) != nil {
		return false
	}
	n, err := p.nc.Read(p.buf[:])
	var ne net.Error
	if n != 0 || !errors.As(err, &ne) || !ne.Timeout() {
		return false
	}
	return p.nc.SetReadDeadline(time.Time{}) == nil
}

// tcpConn is the socket under nc: under TLS, the TCP connection.
func tcpConn(nc net.Conn) net.Conn {
	if tc, ok := nc.(interface{ NetConn() net.Conn }); ok {
		return tc.NetConn()
	}
	return nc
}
