package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/http/httpguts"
)

// HTTPProxy is the reverse proxy of one HTTP route: it picks an upstream
// from Pool per request, rewrites the request (X-Forwarded-For/Proto/Host
// from the real client, Host preserved unless PreserveHost is false),
// streams the response (SSE is flushed as it comes; upgrades such as
// WebSocket are relayed), and answers 502 when no upstream can be reached
// and 504 when one does not answer in time.
type HTTPProxy struct {
	// Route names the route in logs.
	Route string
	// Pool holds the upstreams.
	Pool *Pool
	// PreserveHost sends the client's Host to the upstream (default in
	// NewHTTPProxy); false sends the upstream's own host.
	PreserveHost bool
	// TrustedProxies are the client addresses whose X-Forwarded-* headers
	// are kept and extended; anyone else's are replaced.
	TrustedProxies []netip.Prefix
	// MaxBodyBytes bounds request bodies (413 beyond); zero means no limit.
	MaxBodyBytes int64
	// Logger receives one access log line per request.
	Logger *zap.Logger
	// OnRequest, if set, is told about each finished request (metrics).
	OnRequest func(route string, status int, d time.Duration)
	// StripPrefix, when set, gives the path to forward for a request's
	// decoded path, and the prefix removed from it, which is sent as
	// X-Forwarded-Prefix (ok false: forward the path as is). Such a route
	// takes net/http's path, which can rewrite the request line.
	StripPrefix func(decoded string) (rest, prefix string, ok bool)
	// UpstreamHTTP2 says the upstreams speak HTTP/2 (and the transport
	// given to NewHTTPProxy does): every request then goes through that
	// transport, none over the proxy's own HTTP/1.1 upstream connections.
	UpstreamHTTP2 bool
	// DialTimeout and ResponseHeaderTimeout bound connecting to an
	// upstream and waiting for its response head on the direct path
	// (zero: no limit); the transport given to NewHTTPProxy has its own.
	DialTimeout, ResponseHeaderTimeout time.Duration

	rp             *httputil.ReverseProxy
	fresh          http.RoundTripper // for requests that cannot be sent again (freshTransport)
	plainUpstreams bool              // Pool's upstreams are plain HTTP without base path (h1forward.go)
	dialOnce       sync.Once
	dial           *net.Dialer
}

// NewHTTPProxy returns a proxy for route over pool using transport, which
// should be shared by all routes (it pools upstream connections).
func NewHTTPProxy(route string, pool *Pool, transport http.RoundTripper, logger *zap.Logger) *HTTPProxy {
	p := &HTTPProxy{Route: route, Pool: pool, PreserveHost: true, Logger: logger, plainUpstreams: plainUpstreams(pool),
		fresh: freshTransport(transport)}
	p.rp = &httputil.ReverseProxy{
		Rewrite: p.rewrite,
		// The status is noted here too: an upgrade's 101 is written by the
		// proxy on the hijacked connection, past the recorder.
		ModifyResponse: func(resp *http.Response) error {
			if st := stateOf(resp.Request); st != nil {
				st.status = resp.StatusCode
			}
			return nil
		},
		Transport:    &retryTransport{proxy: p, base: transport},
		ErrorHandler: p.fail,
		// Without a pool each response allocates its 32 KiB copy buffer:
		// the largest source of garbage per request (measured).
		BufferPool: &copyBuffers{},
		ErrorLog:   zap.NewStdLog(logger.With(zap.String("route", route))),
	}
	return p
}

// freshTransport returns a copy of an HTTP/1 transport whose kept-alive
// connections serve only while idle under freshReuseWindow, for requests
// the transport cannot send again if the upstream closes the connection
// meanwhile: a body streams from the client, and a method that is not
// idempotent must not be repeated. nil for other transports (HTTP/2
// connections carry many requests and are closed with GOAWAY).
func freshTransport(rt http.RoundTripper) http.RoundTripper {
	tr, ok := rt.(*http.Transport)
	if !ok || tr.Protocols != nil && !tr.Protocols.HTTP1() {
		return nil
	}
	fresh := tr.Clone()
	fresh.IdleConnTimeout = freshReuseWindow
	return fresh
}

// reqState travels with one request through the proxy.
type reqState struct {
	client    netip.Addr
	upstream  *Upstream
	err       error
	status    int
	clientErr error // reading the client's body failed (it reset, or went away)
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	st, _ := r.Context().Value(stateKey{}).(*reqState)
	return st
}

// ServeHTTP proxies r and writes one access log line.
func (p *HTTPProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	st := &reqState{client: clientAddr(r)}
	rec := &recorder{ResponseWriter: w, http10: !r.ProtoAtLeast(1, 1)}
	rs := r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
	if p.MaxBodyBytes > 0 && r.ContentLength > p.MaxBodyBytes {
		// Refused before a byte of the body is asked for: a client that
		// sent Expect: 100-continue gets no 100, and no upstream is
		// bothered (nginx answers so too).
		st.err = &http.MaxBytesError{Limit: p.MaxBodyBytes}
	} else if st.upstream = p.Pool.Pick(st.client, nil); st.upstream == nil {
		st.err = errors.New("no upstream")
	}
	if st.err != nil {
		p.fail(rec, rs, st.err)
		p.logRequest(r, st, rec, start)
		return
	}
	if p.MaxBodyBytes > 0 && rs.Body != nil {
		rs.Body = http.MaxBytesReader(w, rs.Body, p.MaxBodyBytes)
	}
	// In flight until the response body is done (streams count), moved to
	// another upstream by a retry.
	st.upstream.inFlight.Add(1)
	finished := false
	// Deferred: the ReverseProxy aborts a response whose body it could not
	// copy (either side failed) by panicking with http.ErrAbortHandler,
	// which the server turns into a reset; the panic goes on past this.
	defer func() {
		if !finished && st.err == nil {
			switch {
			case r.Context().Err() != nil:
				st.err = errClientGone
			case rec.writeErr != nil:
				// The client's side failed (it left, or stopped reading
				// past http.send_timeout): its doing, logged at info as
				// on the direct path, so such clients cannot flood the
				// warnings.
				st.err = rec.writeErr
			default:
				st.err = errResponseAborted
			}
		}
		st.upstream.inFlight.Add(-1)
		p.logRequest(r, st, rec, start)
	}()
	p.rp.ServeHTTP(rec, rs)
	finished = true
	if st.status == 499 && rec.status == 0 {
		// Nothing to answer: the client went away or its upload failed.
		// Returning would have net/http send an empty 200; the sentinel
		// panic closes the connection (resets the HTTP/2 stream) instead.
		panic(http.ErrAbortHandler)
	}
}

// errResponseAborted is logged for a response cut off while its body was
// copied: the upstream's body failed or the client went away.
var errResponseAborted = errors.New("response aborted: copying its body failed")

// rewrite shapes the outgoing request. ReverseProxy has already removed
// hop-by-hop headers and the client's Forwarded and X-Forwarded-For, -Host
// and -Proto headers; the other forwarding headers go here unless the
// client is a trusted proxy.
func (p *HTTPProxy) rewrite(pr *httputil.ProxyRequest) {
	st := stateOf(pr.In)
	if httpguts.HeaderValuesContainsToken(pr.Out.Header["Upgrade"], "h2c") {
		// Not passed on: an upstream that switched would speak HTTP/2
		// with the client through a tunnel, every later request past the
		// routes (h2c smuggling). The request goes on without it, as
		// nginx sends it; a 101 then is a bad gateway.
		pr.Out.Header.Del("Upgrade")
		pr.Out.Header.Del("Connection")
	}
	trusted := p.trusted(st.client)
	if !trusted {
		for k := range pr.Out.Header {
			if isForwardingHeader(k) {
				delete(pr.Out.Header, k)
			}
		}
	}
	// The query goes as the client sent it, as on the direct path:
	// ReverseProxy drops parameters it cannot parse (a ";" in a query),
	// which would make the two paths disagree and change what the
	// upstream reads.
	pr.Out.URL.RawQuery = pr.In.URL.RawQuery
	// Expect: 100-continue is answered here: the server sends the client
	// its 100 when the body is first read, as the request goes up. Passed
	// on, the transport would hold the body back for the upstream's own
	// 100, which many never send (a second's stall per upload).
	pr.Out.Header.Del("Expect")
	if p.StripPrefix != nil {
		// Out's URL is its own copy; In keeps the client's path for the
		// access log.
		if rest, prefix, ok := p.StripPrefix(pr.Out.URL.Path); ok {
			pr.Out.URL.Path, pr.Out.URL.RawPath = rest, ""
			pr.Out.Header.Set("X-Forwarded-Prefix", prefix)
		}
	}
	pr.SetURL(st.upstream.URL)
	if p.PreserveHost {
		pr.Out.Host = pr.In.Host
	}
	if trusted {
		// A trusted proxy in front: keep the chain it reports, then append.
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
			if v := pr.In.Header.Values(h); len(v) > 0 {
				pr.Out.Header[h] = v
			}
		}
		pr.SetXForwarded()
		if v := pr.In.Header.Get("X-Forwarded-Proto"); v != "" {
			pr.Out.Header.Set("X-Forwarded-Proto", v)
		}
		if v := pr.In.Header.Get("X-Forwarded-Host"); v != "" {
			pr.Out.Header.Set("X-Forwarded-Host", v)
		}
	} else {
		pr.SetXForwarded()
		if host, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
			pr.Out.Header.Set("X-Real-Ip", host)
		}
	}
	if pr.Out.Header.Get("X-Forwarded-Host") == "" {
		// An HTTP/1.0 request without Host names none: no empty header.
		pr.Out.Header.Del("X-Forwarded-Host")
	}
}

// xForwardedPrefix begins the names of the headers that tell an upstream
// about the client and the way it came: X-Forwarded-Port, -Ssl, -Prefix
// and the like. Apps believe them (Rails, Spring and Rack do), as they do
// X-Real-IP, so these pass from a trusted proxy only, as Traefik has it;
// portmux sets X-Real-IP itself for other clients.
const xForwardedPrefix = "x-forwarded-"

// isForwardingHeader reports whether the header named k is one of those.
func isForwardingHeader(k string) bool {
	return len(k) > len(xForwardedPrefix) && strings.EqualFold(k[:len(xForwardedPrefix)], xForwardedPrefix) ||
		strings.EqualFold(k, "X-Real-Ip")
}

func (p *HTTPProxy) trusted(a netip.Addr) bool {
	for _, pf := range p.TrustedProxies {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// fail answers a request the proxy could not complete (failureOf).
func (p *HTTPProxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := failureOf(err)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		status, msg = 499, "" // the client went away; nothing to send
	}
	st := stateOf(r)
	if st != nil && st.clientErr != nil {
		status, msg = 499, "" // the client's upload failed: its doing, not the upstream's
		if r.ProtoMajor == 1 && !wentAway(st.clientErr) {
			// Its body's framing was malformed (a bad chunk size): the
			// client is still there to be told, as nginx tells it.
			status, msg = http.StatusBadRequest, "400 bad request: malformed request body\n"
			if hd, _ := r.Context().Value(connKey{}).(*handed); hd != nil {
				hd.note(&RefusedError{Status: status, Line: http.StatusText(status)})
			}
		}
	}
	if st != nil {
		st.err = err
		st.status = status
	}
	if msg != "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(status)
		w.Write([]byte(msg))
	}
}

// failureOf is the answer to a request that failed with err: 504 when the
// upstream timed out, 413 for an oversized body, 502 otherwise, saying
// whether the upstream could not be reached, answered with what is not
// HTTP/1 (or too large a head), or failed otherwise (closed or reset the
// connection); the log line has the error itself.
func failureOf(err error) (status int, msg string) {
	var maxErr *http.MaxBytesError
	var notSent *notSentError
	switch {
	case errors.As(err, &maxErr):
		return http.StatusRequestEntityTooLarge, "413 request body too large\n"
	case errors.As(err, &notSent):
		return http.StatusBadGateway, "502 bad gateway: the upstream cannot take this request\n"
	case isTimeout(err):
		return http.StatusGatewayTimeout, "504 gateway timeout: the upstream did not answer in time\n"
	case isDialError(err):
		return http.StatusBadGateway, "502 bad gateway: the upstream could not be reached\n"
	case errors.Is(err, errBadResponse) || errors.Is(err, errResponseHeadTooLarge):
		return http.StatusBadGateway, "502 bad gateway: the upstream's answer is not one the proxy can relay\n"
	}
	return http.StatusBadGateway, "502 bad gateway: the upstream failed to answer\n"
}

// wentAway reports whether err, from reading a client's body, says the
// client left (closed or reset its connection, stalled past a deadline)
// rather than sent a body net/http could not decode.
func wentAway(err error) bool {
	var ne net.Error
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, context.Canceled) || errors.Is(err, http.ErrBodyReadAfterClose) || errors.As(err, &ne)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.As(err, &ne) && ne.Timeout()
}

// clientAddr is the address of the connection's client (the peer portmux
// accepted; for PROXY-protocol listeners, the address the header gave).
func clientAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// logRequest writes the access log line.
func (p *HTTPProxy) logRequest(r *http.Request, st *reqState, rec *recorder, start time.Time) {
	status := rec.status
	if st.status != 0 {
		status = st.status
	}
	if p.OnRequest != nil {
		p.OnRequest(p.Route, status, time.Since(start))
	}
	level := zap.InfoLevel
	if st.err != nil && status != 499 && st.err != errClientGone && st.err != rec.writeErr {
		level = zap.WarnLevel
	}
	if ce := p.Logger.Check(level, "request"); ce != nil {
		ce.Write(p.accessFields(r.Method, r.Host, r.URL.Path, r.RemoteAddr, r.Proto, status, rec.bytes, start, st.upstream, st.err)...)
	}
}

// accessFields are the fields of an access log line.
func (p *HTTPProxy) accessFields(method, host, path, client, proto string, status int, bytes int64,
	start time.Time, upstream *Upstream, err error) []zap.Field {
	fields := []zap.Field{
		zap.String("route", p.Route),
		zap.String("method", method),
		zap.String("host", host),
		zap.String("path", path),
		zap.Int("status", status),
		zap.Int64("bytes", bytes),
		zap.Duration("duration", time.Since(start)),
		zap.String("client", client),
		zap.String("proto", proto),
	}
	if upstream != nil {
		fields = append(fields, zap.String("upstream", upstream.URL.Host))
	}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	return fields
}

// recorder notes the status and body bytes of a response. It keeps the
// underlying writer reachable (Unwrap) so flushing and hijacking work.
type recorder struct {
	http.ResponseWriter
	status   int
	bytes    int64
	http10   bool  // the client speaks HTTP/1.0: no interim responses
	writeErr error // the first write to the client that failed
}

func (r *recorder) WriteHeader(code int) {
	interim := code < 200 && code != http.StatusSwitchingProtocols
	if interim && r.http10 {
		return // RFC 9110 §15.2: never to an HTTP/1.0 client
	}
	if r.status == 0 && !interim || code == http.StatusSwitchingProtocols {
		r.status = code
	}
	if h := r.Header(); !interim {
		if _, ok := h["Content-Type"]; !ok {
			// Only the upstream's Content-Type reaches the client: the
			// server would add one it guessed from the body, which the
			// direct path, nginx and HAProxy do not.
			h["Content-Type"] = nil
		}
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	if err != nil && r.writeErr == nil {
		r.writeErr = err
	}
	return n, err
}

// Unwrap lets http.ResponseController reach Flush and Hijack.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// copyBuffers pools ReverseProxy's copy buffers (httputil.BufferPool).
type copyBuffers struct{ p sync.Pool }

// Get returns a 32 KiB buffer.
func (b *copyBuffers) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

// Put returns a buffer to the pool.
func (b *copyBuffers) Put(buf []byte) { b.p.Put(&buf) }
