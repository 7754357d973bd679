package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
)

// errUpgradeOverHTTP2 is logged for an upgrade request (such as WebSocket)
// on a route whose upstreams speak HTTP/2, which has no Upgrade.
var errUpgradeOverHTTP2 = errors.New("an upgrade cannot cross an HTTP/2 upstream connection (upstream_http2)")

// retryTransport sends a request over the proxy's own upstream connections
// when it can (HTTPProxy.roundTrip), else over base, and retries it on
// another upstream when connecting to the chosen one failed: nothing was
// sent, so any method is safe to retry. Each failure counts against the
// upstream's passive health.
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
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &upstreamBody{r: req.Body, st: st}
	}
	var tried []*Upstream
	for {
		var resp *http.Response
		var err error
		if direct {
			resp, err = t.proxy.roundTrip(req, st.upstream)
		} else {
			resp, err = t.base.RoundTrip(req)
		}
		if err == nil {
			pool.Succeeded(st.upstream)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err // the client went away: no upstream's fault, no retry
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
