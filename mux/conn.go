package mux

import (
	"context"
	"net"
	"net/netip"
)

// Info is what the sniffer learned about a connection.
type Info struct {
	// Protocol recognised from the first bytes.
	Protocol Protocol
	// SNI is the TLS server name, lowercased, without the trailing dot a
	// client may send; empty if none or not TLS.
	SNI string
	// ALPN lists the protocols a TLS client offered.
	ALPN []string
	// Host is the HTTP/1 Host header without port, lowercased; set only when
	// some route matches on Host.
	Host string
	// hostKnown is true once the Host was looked for. Over h2c, or HTTP
	// inside a terminated TLS connection, it is unknown at connection level:
	// host conditions pass there and each request is routed on its own.
	hostKnown bool
	// headCut is true when the sniff byte cap ended the first HTTP/1
	// request's head before its Host (or the end of its request line)
	// was read: host (and path) stay unknown, and Table.Lookup takes care.
	headCut bool
	// sniDot: the client's SNI ended in a dot (SNI is without it).
	sniDot bool
	// Path is the path of the first HTTP/1 request (from its request line),
	// decoded and resolved as routingPath says; empty when unknown.
	Path string
	// Client is the client's address.
	Client netip.AddrPort
	// Listener is the address of the listener that accepted the connection.
	Listener string
	// Terminated is true inside a TLS connection portmux terminated: the
	// fields above describe the decrypted stream (SNI and ALPN stay the
	// client's).
	Terminated bool
	// NegotiatedProtocol is the ALPN protocol chosen when Terminated.
	NegotiatedProtocol string
}

// Conn is a routed connection handed to a Handler.
type Conn struct {
	// NetConn is the client connection, positioned after Prefix: a
	// *net.TCPConn for connections accepted from TCP listeners, so handlers
	// can splice.
	NetConn net.Conn
	// Prefix holds the bytes the sniffer already read from NetConn. A handler
	// must deliver them before anything it reads from NetConn.
	Prefix []byte
	// Info describes the connection.
	Info Info

	remote, local net.Addr // from a PROXY header; nil: NetConn's own
}

// RemoteAddr is the client's address: the PROXY header's when the
// connection came through a trusted load balancer, else NetConn's.
func (c *Conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.NetConn.RemoteAddr()
}

// LocalAddr is the address the client connected to (the PROXY header's
// destination when there was one).
func (c *Conn) LocalAddr() net.Addr {
	if c.local != nil {
		return c.local
	}
	return c.NetConn.LocalAddr()
}

// Handler serves routed connections.
type Handler interface {
	// ServeConn takes ownership of c.NetConn and must close it before it
	// returns. ctx is cancelled when the server stops waiting for live
	// connections (at the end of the shutdown grace period); the handler must
	// then return promptly.
	ServeConn(ctx context.Context, c *Conn) Result
}

// AsyncHandler is a Handler that may finish connections after it returns,
// so that nothing waits for an idle connection (a relay whose directions
// are parked). The server uses ServeConnAsync when a handler has it.
type AsyncHandler interface {
	Handler
	// ServeConnAsync takes ownership of c as ServeConn does, but may
	// return before the connection ends. It calls done exactly once, with
	// the connection's result, when the connection ends (possibly before
	// it returns, from any goroutine). ctx is as for ServeConn.
	ServeConnAsync(ctx context.Context, c *Conn, done func(Result))
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Conn) Result

// ServeConn calls f(ctx, c).
func (f HandlerFunc) ServeConn(ctx context.Context, c *Conn) Result { return f(ctx, c) }

// Result is what a handler reports about a finished connection; the server
// logs it in the connection's one log line.
type Result struct {
	// Backend is the address the connection was relayed to, if any.
	Backend string
	// Up and Down count bytes client to backend (including Prefix) and
	// backend to client.
	Up, Down int64
	// Outcome is a short stable label ("ok", "dial_failed", "idle_timeout",
	// ...). If empty, it is "ok" when Err is nil and "error" otherwise.
	Outcome string
	// Err describes a failure, if any.
	Err error
	// Route, set by the handler of a PerRequest route, is the route that
	// served the connection's first request. The connection line names it
	// instead of the route the connection was handed to, which was chosen
	// before any request was read when the Host was not known (HTTP/2, or
	// HTTP/1.1 inside terminated TLS).
	Route string
}

// Outcome labels. The server itself reports those from OutcomeNoRoute on, for
// connections it closes before any handler runs; handlers report the others.
const (
	OutcomeOK          = "ok"
	OutcomeError       = "error"        // logged at warn
	OutcomeDialFailed  = "dial_failed"  // backend unreachable; logged at warn
	OutcomeIdleTimeout = "idle_timeout" // nothing moved for the idle timeout
	OutcomeShutdown    = "shutdown"     // closed when the drain grace ended
	OutcomeReset       = "reset"        // a peer reset its connection mid-relay
	// HTTP clients' faults that no request line shows.
	OutcomeBadRequest    = "bad_request"    // the HTTP server refused a request itself (400, 431, 501, ...)
	OutcomeHeaderTimeout = "header_timeout" // a request head stopped short (slowloris)

	OutcomeNoRoute              = "no_route"               // recognised, but no route matched
	OutcomeUnrecognized         = "unrecognized"           // bytes matched no protocol, no fallback route
	OutcomeSniffTimeout         = "sniff_timeout"          // too few bytes to decide before the sniff timeout
	OutcomeClientClosed         = "client_closed"          // closed (or failed) before the sniff ended
	OutcomeOversized            = "oversized"              // the sniff byte cap was reached undecided
	OutcomeBadClientHello       = "bad_client_hello"       // malformed TLS ClientHello
	OutcomeUntrustedProxyHeader = "untrusted_proxy_header" // a PROXY header from a source not trusted to send one
	OutcomeDenied               = "denied"                 // the route's allow/deny lists refuse the client
	OutcomeHandshakeFailed      = "tls_handshake_failed"   // terminated TLS: no certificate, bad client, timeout
	OutcomeACMEChallenge        = "acme_challenge"         // a TLS-ALPN-01 validation, answered in the handshake
)
