//go:build !linux

package proxy

import (
	"context"
	"errors"
	"net"
	"time"
)

// pipe is unused where splice(2) does not exist.
type pipe struct{ buffered int }

func newPipe() (*pipe, error) { return nil, errors.New("splice is not supported on this platform") }

func (p *pipe) close() {}

// splice falls back to the buffered copy where splice(2) does not exist.
func (r *relay) splice(dst, src *net.TCPConn) (int64, error) { return r.buffered(dst, src) }

// pendingInput cannot peek portably: only the recorded activity counts.
func pendingInput(net.Conn) bool { return false }

// Parker is unavailable where epoll does not exist.
type Parker struct{}

// NewParker reports that parking is not supported here.
func NewParker() (*Parker, error) { return nil, errors.New("parking needs epoll (Linux)") }

// Close does nothing.
func (*Parker) Close() {}

type spliceDir struct{}

func (p *Pipes) parks() bool { return false }

func startParked(context.Context, *net.TCPConn, *net.TCPConn, time.Duration, *Pipes, func(Stats, error)) {
	panic("unreachable: parks() is false")
}

func (r *relay) unparkAll() {}
