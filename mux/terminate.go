package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mholt/acmez/v3"
)

// serveTerminated completes the TLS handshake of a terminated route,
// routes the decrypted stream through route.Inner and runs the inner
// route's handler. The result counts bytes on the wire (encrypted).
func (s *Server) serveTerminated(route *Route, c *Conn) (Result, *Route, *Info) {
	stream := c.Stream()
	tc := tls.Server(stream, route.Terminate)
	wire := func(res Result) Result {
		res.Up, res.Down = stream.Counts()
		return res
	}
	ctx, cancel := context.WithTimeout(s.hardCtx, s.opts.HandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		tc.Close()
		if c.Info.sniDot {
			// Routed as the name without its dot, but crypto/tls refuses
			// such a ClientHello as RFC 6066 asks (decode_error), and
			// the hello cannot be changed: both sides hash it into the
			// handshake.
			err = fmt.Errorf("SNI %q with a trailing dot, which Go's TLS server refuses: %w", c.Info.SNI+".", err)
		}
		return wire(Result{Outcome: OutcomeHandshakeFailed, Err: err}), nil, nil
	}
	state := tc.ConnectionState()
	if state.NegotiatedProtocol == acmez.ACMETLS1Protocol {
		tc.Close()
		return wire(Result{Outcome: OutcomeACMEChallenge}), nil, nil
	}
	inner := c.Info
	inner.Terminated = true
	inner.NegotiatedProtocol = state.NegotiatedProtocol
	var prefix []byte
	switch state.NegotiatedProtocol {
	case "h2":
		inner.Protocol = HTTP // ALPN decided: nothing to read
		// HTTP/2 multiplexes responses that finish at different times; one
		// send can carry several, and each response's two frames.
		defer stream.CoalesceWrites(s.hardCtx)()
	case "http/1.1":
		inner.Protocol = HTTP
	default:
		var outcome string
		inner.Protocol, prefix, outcome = s.sniffStream(tc, time.Now().Add(s.opts.SniffTimeout))
		if outcome != "" {
			tc.Close()
			return wire(Result{Outcome: outcome}), nil, &inner
		}
	}
	if inner.Protocol == HTTP && state.NegotiatedProtocol != "h2" && route.Inner.tcpByHead {
		// A relayed inner route matches on Host or path: read the head
		// (in-process HTTP routes alone route each request themselves,
		// so a connection opened ahead of its first request is not
		// waited on).
		var outcome string
		if prefix, outcome = s.completeHTTP(tc, prefix, time.Now().Add(s.opts.SniffTimeout), route.Inner, &inner); outcome != "" {
			tc.Close()
			return wire(Result{Outcome: outcome}), nil, &inner
		}
	}
	r := lookup(route.Inner, &inner, prefix)
	if r == nil {
		tc.Close()
		return wire(Result{Outcome: noRoute(&inner)}), nil, &inner
	}
	if r.refuses(inner.Client.Addr()) {
		tc.Close()
		return wire(Result{Outcome: OutcomeDenied}), r, &inner
	}
	res := r.Handler.ServeConn(s.hardCtx, &Conn{NetConn: tc, Prefix: prefix, Info: inner})
	return wire(res), r, &inner
}

// sniffStream recognises the protocol spoken inside a decrypted stream,
// with the same sniffers as the listener (cmux cannot run over a
// *tls.Conn): it reads until one matches, all reject, the deadline passes
// (nothing read: Silent) or the byte cap is reached.
func (s *Server) sniffStream(conn interface {
	io.Reader
	SetReadDeadline(time.Time) error
}, deadline time.Time) (Protocol, []byte, string) {
	if err := conn.SetReadDeadline(deadline); err != nil {
		return Unknown, nil, OutcomeClientClosed
	}
	defer conn.SetReadDeadline(time.Time{})
	var (
		buf  = make([]byte, 0, 1024)
		http httpSniffer
		fed  int
	)
	for len(buf) < s.opts.MaxSniffBytes {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):min(cap(buf), s.opts.MaxSniffBytes)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			hv := http.feed(buf[fed:])
			fed = len(buf)
			tv, sv := sniffTLS(buf), sniffSSH(buf)
			switch {
			case tv == matched:
				return TLS, buf, ""
			case sv == matched:
				return SSH, buf, ""
			case hv == matched:
				return HTTP, buf, ""
			case tv == rejected && sv == rejected && hv == rejected:
				return Unknown, buf, ""
			}
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			if len(buf) == 0 {
				return Silent, buf, ""
			}
			return Unknown, buf, ""
		case err != nil:
			return Unknown, buf, OutcomeClientClosed
		}
	}
	if http.atLimit() == matched { // a request line longer than the cap
		return HTTP, buf, ""
	}
	return Unknown, buf, ""
}
