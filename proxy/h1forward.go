package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// canForward reports whether the direct path may forward req on this
// route: its upstreams allow it (ownConns) and the body is within
// the route's limit (the http.Server answers 413).
func (p *HTTPProxy) canForward(req *requestHead) bool {
	return p.ownConns() && (p.MaxBodyBytes == 0 || req.contentLength <= p.MaxBodyBytes)
}

// ownConns reports whether requests may use the proxy's own HTTP/1.1
// upstream connections: its upstreams are plain HTTP/1.1 ones without a
// base path, and request paths are forwarded as sent.
func (p *HTTPProxy) ownConns() bool {
	return p.plainUpstreams && !p.UpstreamHTTP2 && p.StripPrefix == nil
}

// plainUpstreams reports whether every upstream of pool is plain HTTP with
// no base path (which would be joined to request paths): those the direct
// path can forward to.
func plainUpstreams(pool *Pool) bool {
	for _, u := range pool.Upstreams {
		if u.URL.Scheme != "http" || u.URL.Path != "" && u.URL.Path != "/" || u.URL.RawQuery != "" {
			return false
		}
	}
	return true
}

// errNoUpstream is logged when a route has no upstream to pick.
var errNoUpstream = errors.New("no upstream")

// forwardDirect forwards the request d has read, whose head and body are
// buffered, and relays the response. It writes the access log line and
// reports whether the client connection can carry another request.
func (p *HTTPProxy) forwardDirect(d *directConn) bool {
	start := time.Now()
	d.routes.note(p.Route)
	req := &d.req
	d.note = append(append(d.note[:0], req.method...), req.host...)
	x := directExchange{p: p, d: d, start: start, headReq: string(req.method) == "HEAD"}
	x.nMethod = len(req.method)
	var uc *upstreamConn
	err := errNoUpstream
	if x.upstream = p.Pool.Pick(d.client.Addr(), nil); x.upstream != nil {
		x.upstream.inFlight.Add(1)
		defer func() { x.upstream.inFlight.Add(-1) }()
		uc, err = x.send()
	}
	d.br.Discard(req.size + int(req.contentLength)) // the request is consumed, sent or not
	if err != nil {
		return x.fail(err)
	}
	p.Pool.Succeeded(x.upstream)
	return x.relay(uc)
}

// directExchange is one request on the direct path.
type directExchange struct {
	p        *HTTPProxy
	d        *directConn
	upstream *Upstream
	start    time.Time
	headReq  bool
	status   int
	bytes    int64
	// nMethod splits d.note into method and host.
	nMethod int
}

// send writes the request to an upstream and reads the response head,
// moving to another upstream when one cannot be reached (nothing was sent,
// so any method is safe to retry). Each failure counts against the
// upstream's passive health.
func (x *directExchange) send() (*upstreamConn, error) {
	p, d := x.p, x.d
	idempotent := isIdempotent(d.req.method)
	var tried []*Upstream
	for {
		d.out = p.appendRequest(d.out[:0], d, x.upstream)
		uc, err := p.exchange(d.ctx, x.upstream, d.out, idempotent, x.headReq, &d.resp, &d.upstream)
		if err == nil {
			return uc, nil
		}
		if d.ctx.Err() != nil {
			return nil, err // aborted: no fault of the upstream's
		}
		p.Pool.Failed(x.upstream)
		if !isDialError(err) {
			return nil, err
		}
		var next *Upstream
		if next, tried = p.Pool.failover(d.client.Addr(), tried, x.upstream); next == nil {
			return nil, err
		}
		x.upstream = next
	}
}

// relay sends the response whose head uc has read to the client, 1xx
// interim responses first, and returns uc to its pool when it is reusable.
func (x *directExchange) relay(uc *upstreamConn) bool {
	d, resp := x.d, &x.d.resp
	for resp.status < 200 {
		if resp.status == http.StatusSwitchingProtocols {
			d.closeUpstream(uc)
			return x.fail(errUnaskedUpgrade)
		}
		d.out = appendResponseHead(d.out[:0], resp, false)
		uc.br.Discard(resp.size)
		if _, err := d.conn.Write(d.out); err != nil {
			d.closeUpstream(uc)
			x.status = resp.status
			x.done(err, true)
			return false
		}
		if err := uc.readHead(resp, x.headReq, x.p.ResponseHeaderTimeout); err != nil {
			d.closeUpstream(uc)
			x.done(err, false) // the client has had a 1xx: no error page
			return false
		}
	}
	x.status = resp.status
	closeClient := d.req.close || resp.untilClose || d.s.noNextRequest()
	d.out = appendResponseHead(d.out[:0], resp, closeClient)
	uc.br.Discard(resp.size)
	n, complete, clientErr, err := d.relayBody(uc, newBodyFraming(resp, x.headReq))
	x.bytes = n
	if complete && !resp.close && err == nil && clientErr == nil {
		d.upstream.Store(nil)
		x.upstream.idle.put(uc)
	} else {
		d.closeUpstream(uc)
	}
	switch {
	case clientErr != nil:
		x.done(clientErr, true)
		return false
	case err != nil:
		x.done(fmt.Errorf("%w: %w", errResponseAborted, err), false)
		return false
	}
	x.done(nil, false)
	return !closeClient
}

// closeUpstream ends the use of uc, which cannot be reused.
func (d *directConn) closeUpstream(uc *upstreamConn) {
	d.upstream.Store(nil)
	uc.close()
}

// errUnaskedUpgrade reports a 101 answer to a request that asked for none.
var errUnaskedUpgrade = errors.New("upstream switched protocols unasked")

// fail answers the client with an error page (502, 504) and logs it. The
// connection stays usable: the request was read in full.
func (x *directExchange) fail(err error) bool {
	d := x.d
	status, msg := failureOf(err)
	x.status = status
	closeClient := d.req.close || d.s.noNextRequest()
	d.out = appendErrorResponse(d.out[:0], status, msg, closeClient)
	if _, werr := d.conn.Write(d.out); werr != nil {
		x.done(err, false)
		return false
	}
	x.bytes = int64(len(msg))
	x.done(err, false)
	return !closeClient
}

// done logs the request; clientSide marks an error that is the client's
// doing (it went away), logged as such rather than as a failure.
func (x *directExchange) done(err error, clientSide bool) {
	p := x.p
	if p.OnRequest != nil {
		p.OnRequest(p.Route, x.status, time.Since(x.start))
	}
	level := zap.InfoLevel
	if err != nil && !clientSide {
		level = zap.WarnLevel
	}
	if ce := p.Logger.Check(level, "request"); ce != nil {
		n := x.d.note
		ce.Write(p.accessFields(string(n[:x.nMethod]), string(n[x.nMethod:]), x.d.path, x.d.remote, "HTTP/1.1",
			x.status, x.bytes, x.start, x.upstream, err)...)
	}
}

// isIdempotent reports whether a request may be sent again after a reused
// upstream connection failed before answering (as net/http's Transport).
func isIdempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return false
}

// appendRequest appends the request head for upstream u, then the body:
// hop-by-hop fields removed, Host preserved (or u's), X-Forwarded-For,
// -Host and -Proto set from the client, or extended when it is a trusted
// proxy, the other X-Forwarded-* and X-Real-IP kept from a trusted proxy
// only (X-Real-IP set otherwise), as HTTPProxy.rewrite does for net/http.
func (p *HTTPProxy) appendRequest(dst []byte, d *directConn, u *Upstream) []byte {
	req := &d.req
	dst = append(dst, req.method...)
	dst = append(dst, ' ')
	dst = append(dst, req.target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	if p.PreserveHost {
		dst = append(dst, req.host...)
	} else {
		dst = append(dst, u.URL.Host...)
	}
	dst = append(dst, "\r\n"...)
	trusted := len(p.TrustedProxies) > 0 && p.trusted(d.client.Addr())
	var xfHost, xfProto []byte
	for _, f := range req.fields {
		switch f.kind {
		case fieldContentLength:
			// Kept even when Connection lists it: the body is sent, and
			// an upstream without its length would read it as a request.
			dst = append(dst, f.line...)
		case fieldOther:
			if len(req.connTokens) == 0 || !req.listedInConnection(f.name) {
				dst = append(dst, f.line...)
			}
		case fieldXForwarded:
			if trusted && (len(req.connTokens) == 0 || !req.listedInConnection(f.name)) {
				dst = append(dst, f.line...)
			}
		case fieldXFHost:
			// The first value, when not empty (as HTTPProxy.rewrite).
			if trusted && xfHost == nil && len(f.value) > 0 {
				xfHost = f.value
			}
		case fieldXFProto:
			if trusted && xfProto == nil && len(f.value) > 0 {
				xfProto = f.value
			}
		}
	}
	dst = append(dst, "X-Forwarded-For: "...)
	if trusted {
		for _, f := range req.fields {
			if f.kind == fieldXFF {
				dst = append(dst, f.value...)
				dst = append(dst, ", "...)
			}
		}
	}
	dst = append(dst, d.clientIP...)
	if xfHost == nil {
		xfHost = req.host
	}
	dst = append(dst, "\r\nX-Forwarded-Host: "...)
	dst = append(dst, xfHost...)
	dst = append(dst, "\r\nX-Forwarded-Proto: "...)
	switch {
	case xfProto != nil:
		dst = append(dst, xfProto...)
	case d.tls != nil:
		dst = append(dst, "https"...)
	default:
		dst = append(dst, "http"...)
	}
	if !trusted {
		dst = append(dst, "\r\nX-Real-IP: "...)
		dst = append(dst, d.clientIP...)
	}
	if req.teTrailers {
		dst = append(dst, "\r\nTe: trailers"...)
	}
	dst = append(dst, "\r\n\r\n"...)
	if req.contentLength > 0 {
		dst = append(dst, d.peekBuffered()[req.size:req.size+int(req.contentLength)]...)
	}
	return dst
}

// appendResponseHead appends the head relayed to the client: HTTP/1.1,
// hop-by-hop fields removed, the upstream's framing kept when the body is
// relayed as is (chunked, or Content-Length), Connection: close when the
// client connection ends after it.
func appendResponseHead(dst []byte, r *responseHead, closeClient bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = append(dst, r.start[9:12]...)
	dst = append(dst, ' ')
	if len(r.reason) > 0 {
		dst = append(dst, r.reason...)
	} else {
		dst = append(dst, http.StatusText(r.status)...)
	}
	dst = append(dst, "\r\n"...)
	for _, f := range r.fields {
		keep := false
		switch f.kind {
		case fieldTransferEncoding, fieldTrailer:
			keep = r.chunked
		case fieldContentLength:
			keep = r.contentLength >= 0
		case fieldConnection, fieldHopByHop, fieldTE, fieldUpgrade:
		default:
			keep = len(r.connTokens) == 0 || !r.listedInConnection(f.name)
		}
		if keep {
			dst = append(dst, f.line...)
		}
	}
	if closeClient {
		dst = append(dst, "Connection: close\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// appendErrorResponse appends a complete small plain-text response.
func appendErrorResponse(dst []byte, status int, msg string, closeClient bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, http.StatusText(status)...)
	dst = append(dst, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nDate: "...)
	dst = time.Now().UTC().AppendFormat(dst, http.TimeFormat)
	dst = append(dst, "\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	if closeClient {
		dst = append(dst, "\r\nConnection: close"...)
	}
	dst = append(dst, "\r\n\r\n"...)
	return append(dst, msg...)
}
