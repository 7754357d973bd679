package mux

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"
)

// acceptedConn is an admitted connection on its way through cmux. It
// remembers when it was accepted (the sniff deadline and the connection's
// duration count from then) and the client address its limits count
// against (the PROXY header's, when one was read).
type acceptedConn struct {
	net.Conn
	at     time.Time
	client netip.AddrPort
}

// acceptListener is the root listener cmux sees. Its own loop accepts raw
// connections and admits them: a PROXY header from a trusted source is
// read first (in a goroutine of its own: it may take time), then expected
// connections are claimed (FTP data) and the limits are applied. Temporary
// accept errors (EMFILE, ENFILE, ECONNABORTED, ...) back off instead of
// spinning: cmux retries them at once, which turns descriptor exhaustion
// into a busy loop.
type acceptListener struct {
	net.Listener
	s        *Server
	admitted chan net.Conn
	done     chan struct{} // closed when the raw loop ends
	err      error         // why it ended, read after done
	wg       sync.WaitGroup
}

const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

func newAcceptListener(ln net.Listener, s *Server) *acceptListener {
	l := &acceptListener{Listener: ln, s: s, admitted: make(chan net.Conn), done: make(chan struct{})}
	go l.acceptRaw()
	return l
}

// Accept returns the next admitted connection.
func (l *acceptListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.admitted:
		return c, nil
	case <-l.done:
		return nil, l.err
	}
}

// acceptRaw is the raw accept loop (a named function for stack dumps).
func (l *acceptListener) acceptRaw() {
	defer close(l.done)
	defer l.wg.Wait() // header readers finish (bounded by the sniff timeout)
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && (ne.Timeout() || isTemporary(err)) {
				backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
				l.s.refusals.Warn("accept failed; backing off", zap.Error(err), zap.Duration("backoff", backoff))
				time.Sleep(backoff)
				continue
			}
			l.err = err
			return
		}
		backoff = 0
		at := time.Now()
		if !l.s.pending.add(c) {
			c.Close() // the shutdown's grace ended
			continue
		}
		if pp := l.s.trustedProxy(c.RemoteAddr()); pp != nil {
			l.wg.Add(1)
			go l.readProxyHeader(c, at, pp)
			continue
		}
		l.admit(c, at)
	}
}

// readProxyHeader reads the PROXY header of a source pp trusts before the
// connection is admitted, within the sniff timeout.
func (l *acceptListener) readProxyHeader(c net.Conn, at time.Time, pp *ProxyProtocol) {
	defer l.wg.Done()
	policy := proxyproto.REQUIRE
	if pp.Optional {
		policy = proxyproto.USE
	}
	pc := proxyproto.NewConn(c, proxyproto.WithPolicy(policy), proxyproto.SetReadHeaderTimeout(l.s.opts.SniffTimeout))
	// A read of nothing reads the header and returns its error, if any: a
	// missing header when required, and a broken one (malformed, or sent
	// in pieces) even when optional, which the connection would otherwise
	// meet only at sniffing, as if its client had gone.
	if _, err := pc.Read(nil); err != nil {
		l.s.pending.done(c)
		l.s.refuse(c, addrPortOf(c.RemoteAddr()), RefusedProxyHeader)
		return
	}
	l.admit(pc, at)
}

// admit claims or limits c, then hands it to cmux. c stays pending (see
// pendingConns) until handle takes it, unless it ends here.
func (l *acceptListener) admit(c net.Conn, at time.Time) {
	if claim := l.s.opts.Claim; claim != nil && claim(c) {
		l.s.pending.done(rawTCP(c))
		return
	}
	client := clientOf(c)
	if reason := l.s.limits.admit(client.Addr(), at); reason != "" {
		l.s.pending.done(rawTCP(c))
		l.s.refuse(c, client, reason)
		return
	}
	select {
	case l.admitted <- &acceptedConn{Conn: c, at: at, client: client}:
	case <-l.done:
		l.s.pending.done(rawTCP(c))
		c.Close()
		l.s.limits.closed(client.Addr())
	}
}

// isTemporary reports the errors Accept may recover from. net.Error's
// Temporary is deprecated but still what the net package sets for these.
func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// clientOf is c's client address: the PROXY header's when it names an IP
// client. A header for a unix socket (or none, when optional) names no IP:
// the balancer's own address is the client then, never an empty one that
// limits and access lists could not place.
func clientOf(c net.Conn) netip.AddrPort {
	ap := addrPortOf(c.RemoteAddr())
	if pc, ok := c.(*proxyproto.Conn); ok && !ap.IsValid() {
		return addrPortOf(pc.Raw().RemoteAddr())
	}
	return ap
}

// rawTCP returns the socket under c (under a PROXY protocol wrapper): the
// key of c among the pending connections, and what relays splice, which
// they may do only once c's buffered bytes are drained.
func rawTCP(c net.Conn) net.Conn {
	if pc, ok := c.(*proxyproto.Conn); ok {
		return pc.Raw()
	}
	return c
}
