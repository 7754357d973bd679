package mux

import (
	"net"
	"sync"
)

// pendingConns are the connections accepted and not yet handed to their
// handler: reading a PROXY header or being sniffed. They reached no backend
// yet, so when Shutdown's grace ends it closes them instead of waiting out
// the sniff timeout (up to a minute). It is safe for concurrent use.
type pendingConns struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// add registers c, the raw socket. It reports false once closeAll ran:
// the caller then closes c itself.
func (p *pendingConns) add(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if p.conns == nil {
		p.conns = make(map[net.Conn]struct{})
	}
	p.conns[c] = struct{}{}
	return true
}

// done forgets c: it was handed to its handler, or closed.
func (p *pendingConns) done(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// closeAll closes every pending connection, and any added later.
func (p *pendingConns) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}
