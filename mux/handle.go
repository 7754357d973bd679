package mux

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// handle finishes the sniff of one classified connection, routes it, runs
// its handler and logs the outcome. The table is read once: the connection
// keeps the routes it started with across a reload.
func (s *Server) handle(c net.Conn, p Protocol, listener string) {
	table := s.table.Load()
	mc := c.(*cmux.MuxConn)
	ac := mc.Conn.(*acceptedConn)
	s.limits.sniffed()
	s.pending.done(rawTCP(ac.Conn))
	// One allocation for the connection's state, one for its sniffed
	// bytes: read into a pooled buffer, then kept at their exact size, since
	// a relayed connection may live for hours.
	cs := &connection{Conn: Conn{Info: Info{Protocol: p, Listener: listener, Client: ac.client}}, server: s}
	async := false // an AsyncHandler finishes the connection
	// A bug in one connection's path must not take the edge down with every
	// other connection: log it with its stack and drop that connection, as
	// net/http does for handlers. (The closure keeps only the socket: cmux's
	// wrapper and its sniff buffer can be collected once drained.)
	defer func() {
		v := recover()
		if v != nil {
			ac.Close()
			s.log.Error("panic serving connection", zap.Any("panic", v), zap.Stack("stack"))
		}
		if !async || v != nil {
			cs.release()
		}
	}()
	info, res := &cs.Info, &cs.res
	bp := s.prefixes.Get().(*[]byte)
	prefix, err := drainPrefix(mc, p, (*bp)[:0])
	// Drained: a PROXY protocol wrapper holds no buffered byte any more,
	// so the socket itself can be relayed (spliced).
	raw := rawTCP(ac.Conn)
	outcome, why := "", error(nil) // why: what was wrong with a bad ClientHello
	if err == nil {
		deadline := ac.at.Add(s.opts.SniffTimeout)
		prefix, outcome, why = s.complete(raw, prefix, deadline, table, info)
	} else {
		outcome = OutcomeClientClosed
	}
	pooled := prefix
	prefix = bytes.Clone(prefix)
	if cap(pooled) <= maxPooledPrefix {
		*bp = pooled[:0]
		s.prefixes.Put(bp)
	}
	obs := s.opts.Observer
	obs.Sniffed(info.Protocol, time.Since(ac.at))
	var route, inner *Route
	var iinfo *Info
	if outcome == "" {
		if route = lookup(table, info, prefix); route == nil {
			outcome = noRoute(info)
		}
	}
	started := false
	switch {
	case route == nil:
		var down int64
		if alert := helloAlert(p, outcome, info.SNI); alert != 0 {
			down = refuseHello(raw, alert)
		}
		raw.Close()
		*res = Result{Outcome: outcome, Up: int64(len(prefix)), Down: down, Err: why}
	case route.refuses(info.Client.Addr()):
		raw.Close()
		*res = Result{Outcome: OutcomeDenied, Up: int64(len(prefix))}
	case raw.SetReadDeadline(time.Time{}) != nil:
		raw.Close()
		*res = Result{Outcome: OutcomeClientClosed}
	default:
		started = true
		obs.Started(info, route.Name)
		c := &cs.Conn
		c.NetConn, c.Prefix = raw, prefix
		if raw != ac.Conn { // PROXY protocol: the client from the header
			c.remote = net.TCPAddrFromAddrPort(ac.client)
			if _, ok := ac.LocalAddr().(*net.TCPAddr); ok {
				c.local = ac.LocalAddr()
			}
		}
		if ah, ok := route.Handler.(AsyncHandler); ok && route.Terminate == nil {
			// Nothing waits here for the connection to end: its last
			// goroutine (or the handler, if it fails at once) finishes it.
			async = true
			ah.ServeConnAsync(s.hardCtx, c, func(r Result) {
				*res = r
				s.connEnded(ac.at, info, route, res, nil, nil, true)
				cs.release()
			})
			return
		}
		if route.Terminate != nil {
			*res, inner, iinfo = s.serveTerminated(route, c)
		} else {
			*res = route.Handler.ServeConn(s.hardCtx, c)
		}
	}
	s.connEnded(ac.at, info, route, res, inner, iinfo, started)
}

// TLS alert descriptions (RFC 8446 §6) that refuseHello sends.
const (
	alertHandshakeFailure = 40
	alertDecodeError      = 50
	alertUnrecognizedName = 112
)

// helloAlert is the alert that tells a TLS client why its connection ends
// with outcome, 0 for none: unrecognized_name for a name no route serves
// (RFC 6066 §3), handshake_failure when there was no name, decode_error
// for a ClientHello that does not parse. A client that went silent or
// away is told nothing.
func helloAlert(p Protocol, outcome, sni string) byte {
	switch {
	case p != TLS:
		return 0
	case outcome == OutcomeBadClientHello:
		return alertDecodeError
	case outcome == OutcomeNoRoute && sni == "":
		return alertHandshakeFailure
	case outcome == OutcomeNoRoute:
		return alertUnrecognizedName
	}
	return 0
}

// refuseHello answers a ClientHello that portmux refuses with a fatal TLS
// alert (helloAlert), so that the client reports why instead of an
// unexpected EOF. The record says TLS 1.0, as servers write before a
// version is agreed. It returns the bytes written.
func refuseHello(raw net.Conn, description byte) int64 {
	alert := []byte{21, 3, 1, 0, 2, 2, description} // type alert, version, length 2, fatal
	// The client waits for an answer; an empty send buffer takes it at
	// once, and the deadline only bounds the odd full one.
	raw.SetWriteDeadline(time.Now().Add(time.Second))
	n, _ := raw.Write(alert)
	return int64(n)
}

// connEnded writes a finished connection's log line and tells the observer.
func (s *Server) connEnded(at time.Time, info *Info, route *Route, res *Result, inner *Route, iinfo *Info, started bool) {
	name, innerName := route.name(), inner.name()
	if res.Route != "" { // the route that served the first request
		if inner != nil {
			innerName = res.Route
		} else {
			name = res.Route
		}
	}
	s.logConn(at, info, name, res, innerName, iinfo)
	s.opts.Observer.Finished(info, name, started, res, time.Since(at))
}

// connection is the state handle keeps for one connection.
type connection struct {
	Conn
	res      Result
	server   *Server
	released sync.Once
}

// release returns the connection's slot in the limits and in the drain
// count, exactly once (its end may be reported from another goroutine).
func (c *connection) release() {
	c.released.Do(func() {
		c.server.limits.closed(c.Info.Client.Addr())
		c.server.conns.Done()
	})
}

// maxPooledPrefix bounds the prefix buffers kept for reuse: a large
// ClientHello's buffer is left to the garbage collector.
const maxPooledPrefix = 16 << 10

// complete reads what routing still needs after cmux's verdict: the rest of
// a TLS ClientHello (for SNI and ALPN), or HTTP headers up to Host when some
// route matches on Host; for unrecognized bytes it tells why. It returns the
// grown prefix and a non-empty outcome if the connection must be closed,
// with what was wrong for OutcomeBadClientHello.
func (s *Server) complete(raw net.Conn, prefix []byte, deadline time.Time, t *Table, info *Info) ([]byte, string, error) {
	switch info.Protocol {
	case TLS:
		var (
			hello clientHello
			herr  error
		)
		prefix, outcome := s.readUntil(raw, prefix, deadline, func(b []byte) bool {
			hello, herr = parseClientHello(b)
			return !errors.Is(herr, errNeedMore)
		})
		if outcome == "" && herr != nil {
			return prefix, OutcomeBadClientHello, herr
		}
		info.SNI, info.ALPN, info.sniDot = hello.ServerName, hello.ALPN, hello.trailingDot
		if info.SNI == "" {
			info.SNI = s.opts.DefaultSNI
		}
		return prefix, outcome, nil
	case HTTP:
		prefix, outcome := s.completeHTTP(raw, prefix, deadline, t, info)
		return prefix, outcome, nil
	case Unknown:
		switch {
		case len(prefix) == 0:
			return prefix, OutcomeClientClosed, nil
		case isProxyHeader(prefix):
			// Only trusted sources' headers are read (before sniffing);
			// anyone else's is an attempt to spoof a client address.
			return prefix, OutcomeUntrustedProxyHeader, nil
		case len(prefix) >= s.opts.MaxSniffBytes:
			return prefix, s.unknownOr(t, info, OutcomeOversized), nil
		case !time.Now().Before(deadline):
			return prefix, s.unknownOr(t, info, OutcomeSniffTimeout), nil
		}
	}
	return prefix, "", nil
}

// completeHTTP reads an HTTP/1 request's head as far as t's routes need:
// its request line for path conditions, up to its Host header for host
// conditions. A head longer than the sniff may read is routed without
// what it did not reach (headCut).
func (s *Server) completeHTTP(conn net.Conn, prefix []byte, deadline time.Time, t *Table, info *Info) ([]byte, string) {
	if IsH2CPreface(prefix) || !t.needPath && !t.needHost {
		return prefix, ""
	}
	// The request line whole first (inside terminated TLS nothing has
	// been read yet).
	var outcome string
	if prefix, outcome = s.readUntil(conn, prefix, deadline, func(b []byte) bool {
		_, _, ok := requestLine(b)
		return ok
	}); outcome != "" {
		return prefix, cutHead(info, outcome)
	}
	if t.needPath {
		info.Path = routingPath(requestPath(prefix), true)
	}
	if !t.needHost {
		return prefix, ""
	}
	var host string
	if prefix, outcome = s.readUntil(conn, prefix, deadline, func(b []byte) bool {
		var res hostResult
		host, res = findHost(b)
		return res != hostNeedMore
	}); outcome != "" {
		return prefix, cutHead(info, outcome)
	}
	info.Host, info.hostKnown = host, true
	return prefix, ""
}

// cutHead takes the outcome of reading an HTTP head for routing: one that
// went on past the sniff byte cap is routed all the same, as one whose
// Host (and path, if its request line did not end) is unknown, so that
// the HTTP server answers it (414, 431) instead of a silent close.
// Table.Lookup then lets no route take it past one that the missing part
// might have chosen.
func cutHead(info *Info, outcome string) string {
	if outcome != OutcomeOversized {
		return outcome
	}
	info.headCut = true
	return ""
}

// lookup routes a sniffed connection in t. One taken as HTTP only as
// the clear start of a request line that then went wrong (or on past the
// sniff cap), which no route takes, is routed as the unrecognized bytes
// it was taken for before portmux answered such requests: a fallback
// route takes it.
func lookup(t *Table, info *Info, prefix []byte) *Route {
	r := t.Lookup(info)
	if r == nil && info.Protocol == HTTP && malformedHTTP(prefix) {
		info.Protocol = Unknown
		r = t.Lookup(info)
	}
	return r
}

// noRoute is the outcome of a connection no route took.
func noRoute(info *Info) string {
	switch {
	case info.headCut:
		return OutcomeOversized
	case info.Protocol == Unknown:
		return OutcomeUnrecognized
	}
	return OutcomeNoRoute
}

// unknownOr returns "" when a fallback route will take the unrecognized
// connection, and outcome otherwise.
func (s *Server) unknownOr(t *Table, info *Info, outcome string) string {
	if t.Lookup(info) != nil {
		return ""
	}
	return outcome
}

// readUntil reads more bytes into prefix until done reports that it has what
// it needs, the deadline passes, the client closes or the sniff byte cap is
// reached; it returns the outcome for the last three.
func (s *Server) readUntil(raw net.Conn, prefix []byte, deadline time.Time, done func([]byte) bool) ([]byte, string) {
	if done(prefix) {
		return prefix, ""
	}
	if err := raw.SetReadDeadline(deadline); err != nil {
		return prefix, OutcomeClientClosed
	}
	for len(prefix) < s.opts.MaxSniffBytes {
		if len(prefix) == cap(prefix) {
			prefix = slices.Grow(prefix, min(max(cap(prefix), 1024), s.opts.MaxSniffBytes-len(prefix)))
		}
		n, err := raw.Read(prefix[len(prefix):min(cap(prefix), s.opts.MaxSniffBytes)])
		prefix = prefix[:len(prefix)+n]
		if n > 0 && done(prefix) {
			return prefix, ""
		}
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return prefix, OutcomeSniffTimeout
		case errors.Is(err, io.EOF), err != nil:
			return prefix, OutcomeClientClosed
		}
	}
	return prefix, OutcomeOversized
}

// logConn writes the connection's one log line: failures of the backend or
// of portmux at warn, everything else (including clients' own mistakes and
// idle timeouts) at info, so that a scan of the port cannot flood warnings.
func (s *Server) logConn(start time.Time, info *Info, route string, res *Result, inner string, iinfo *Info) {
	outcome := res.Outcome
	if outcome == "" {
		outcome = OutcomeOK
		if res.Err != nil {
			outcome = OutcomeError
		}
	}
	level := zapcore.InfoLevel
	if outcome == OutcomeError || outcome == OutcomeDialFailed {
		level = zapcore.WarnLevel
	}
	ce := s.log.Check(level, "connection")
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, 18)
	fields = append(fields,
		zap.String("listener", info.Listener),
		zap.String("protocol", info.Protocol.String()),
		zap.String("client", info.Client.String()),
	)
	if route != "" {
		fields = append(fields, zap.String("route", route))
	}
	if iinfo != nil {
		fields = append(fields, zap.String("inner_protocol", iinfo.Protocol.String()))
		if iinfo.NegotiatedProtocol != "" {
			fields = append(fields, zap.String("alpn_negotiated", iinfo.NegotiatedProtocol))
		}
	}
	if inner != "" {
		fields = append(fields, zap.String("inner_route", inner))
	}
	if res.Backend != "" {
		fields = append(fields, zap.String("backend", res.Backend))
	}
	if info.SNI != "" {
		fields = append(fields, zap.String("sni", info.SNI))
	}
	if len(info.ALPN) > 0 {
		fields = append(fields, zap.Strings("alpn", info.ALPN))
	}
	if info.Host != "" {
		fields = append(fields, zap.String("host", info.Host))
	}
	fields = append(fields,
		zap.Int64("bytes_up", res.Up),
		zap.Int64("bytes_down", res.Down),
		zap.Duration("duration", time.Since(start)),
		zap.String("outcome", outcome),
	)
	if res.Err != nil {
		fields = append(fields, zap.Error(res.Err))
	}
	ce.Write(fields...)
}
