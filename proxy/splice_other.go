//go:build !linux

package proxy

import (
	"errors"
	"net"
)

// pipe is unused where splice(2) does not exist.
type pipe struct{ buffered int }

func newPipe() (*pipe, error) { return nil, errors.New("splice is not supported on this platform") }

func (p *pipe) close() {}

// splice falls back to the buffered copy where splice(2) does not exist.
func (r *relay) splice(dst, src *net.TCPConn) (int64, error) { return r.buffered(dst, src) }

// pendingInput cannot peek portably: only the recorded activity counts.
func pendingInput(net.Conn) bool { return false }
