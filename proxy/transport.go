package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
)

// errUpgradeOverHTTP2 is logged for an upgrade request (such as WebSocket)
// on a route whose upstreams speak HTTP/2, which has no Upgrade.
var errUpgradeOverHTTP2 = errors.New("an upgrade cannot cross an HTTP/2 upstream connection (upstream_http2)")

// retryTransport sends a request over the proxy's own upstream connections
// when it can (HTTPProxy.roundTrip), else over base, and retries it on
// another upstream when connecting to the chosen one failed: nothing was
// sent, so any method is safe to retry. Each failure counts against the
// upstream's passive health, but for those of the client's making: its
// upload failing, and requests the transport refused to send (sendTrace).
type retryTransport struct {
	proxy *HTTPProxy
	base  http.RoundTripper
}

func (t *retryTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.proxy.UpstreamHTTP2 && req.Header.Get("Upgrade") != "" {
		// The HTTP/2 transport would refuse it itself, and that is no
		// failure of the upstream's: a client must not mark it down.
		return nil, errUpgradeOverHTTP2
	}
	st, pool := stateOf(req), t.proxy.Pool
	direct := t.proxy.canRoundTrip(req)
	base := t.base
	hasBody := req.Body != nil && req.Body != http.NoBody
	if t.proxy.fresh != nil && (hasBody || !isIdempotent([]byte(req.Method))) {
		base = t.proxy.fresh
	}
	if hasBody {
		req.Body = &upstreamBody{r: req.Body, st: st}
	}
	var sent *sendTrace
	if !direct {
		sent = &sendTrace{}
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), sent.clientTrace()))
	}
	var tried []*Upstream
	for {
		var resp *http.Response
		var err error
		if direct {
			resp, err = t.proxy.roundTrip(req, st.upstream)
		} else {
			sent.reset()
			resp, err = base.RoundTrip(req)
		}
		if err == nil {
			pool.Succeeded(st.upstream)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err // the client went away: no upstream's fault, no retry
		}
		if sent != nil && sent.refused(err) {
			return nil, &notSentError{err}
		}
		if st.clientErr == nil {
			pool.Failed(st.upstream)
		}
		if !isDialError(err) {
			return nil, err
		}
		var next *Upstream
		if next, tried = pool.failover(st.client, tried, st.upstream); next == nil {
			return nil, err
		}
		// The outgoing Host stays as Rewrite set it: the client's when
		// preserved, else empty (taken from the URL).
		st.upstream = next
		req.URL.Scheme, req.URL.Host = next.URL.Scheme, next.URL.Host
	}
}

// sendTrace follows one attempt over the base transport. A request that
// got a connection but whose head was never written on it was refused by
// the transport itself: the HTTP/2 transport refuses a header list over
// the limit the upstream advertised, for one. That is the request's
// doing, not the upstream's, and must not let a client mark it down.
type sendTrace struct {
	// Atomic: the HTTP/2 transport writes requests on its own goroutine.
	gotConn, wroteHead atomic.Bool
}

func (s *sendTrace) clientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn:      func(httptrace.GotConnInfo) { s.gotConn.Store(true) },
		WroteHeaders: func() { s.wroteHead.Store(true) },
	}
}

func (s *sendTrace) reset() {
	s.gotConn.Store(false)
	s.wroteHead.Store(false)
}

// refused reports whether the attempt that failed with err was refused
// before its request was sent.
func (s *sendTrace) refused(err error) bool {
	return s.gotConn.Load() && !s.wroteHead.Load() && !isDialError(err)
}

// notSentError is a request the transport refused to send (sendTrace).
type notSentError struct{ err error }

func (e *notSentError) Error() string {
	return "the request was refused before it was sent to the upstream: " + e.err.Error()
}

func (e *notSentError) Unwrap() error { return e.err }

// upstreamBody carries a request body to the upstream. Its Close does
// nothing: the transport closes the body even when the dial fails, and a
// retry needs it (the server closes the real body after the handler). Once
// it has returned io.EOF it keeps returning io.EOF without reading the
// inbound body again: the transport reads once more after the declared
// length, and the server may have closed the inbound body by then (the
// handler began answering), which would make the transport drop the
// upstream connection and cut the response (golang/go#40747). A read error
// from the client is noted, so the request is logged as the client's doing.
type upstreamBody struct {
	r   io.Reader
	st  *reqState
	eof bool
}

func (b *upstreamBody) Read(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		var maxErr *http.MaxBytesError
		if !errors.As(err, &maxErr) {
			b.st.clientErr = err
		}
	}
	return n, err
}

func (b *upstreamBody) Close() error { return nil }

// isDialError reports an error from connecting, before any byte was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
