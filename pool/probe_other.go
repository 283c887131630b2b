//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package pool

import "net"

// prober falls back to a short read deadline where recv(MSG_PEEK) is not
// available.
type prober struct{ fb deadlineProber }

func (p *prober) init(nc net.Conn) { p.fb.nc = nc }
func (p *prober) alive() bool      { return p.fb.alive() }
