//go:build !linux

package pool

import "errors"

// hangupWatch is Linux's (epoll); elsewhere every idle Conn is probed.
type hangupWatch struct{}

func newHangupWatch() (*hangupWatch, error) {
	return nil, errors.New("pool: no hang-up watch on this system")
}

func (*hangupWatch) add(*Conn) bool { return false }
func (*hangupWatch) remove(*Conn)   {}
func (*hangupWatch) working() bool  { return false }
func (*hangupWatch) close()         {}
