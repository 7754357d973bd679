package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
)

// The requests the ReverseProxy serves (HTTP/2 above all, and the HTTP/1.x
// ones the direct path hands over) reach the upstream through roundTrip
// when they carry no body: over the direct path's pooled connections
// (h1upstream.go), on the handler's own goroutine. net/http's Transport
// runs two goroutines per upstream connection and hands every request and
// response between them and the caller through channels; for a small
// response that hand-off costs more than the exchange itself (measured,
// docs/performance.md). Requests with a body stay on the Transport, which
// sends the body while it reads the response (an upstream may answer
// before it has read it all), as do upgrades.

// canRoundTrip reports whether req, as the ReverseProxy made it, can take
// roundTrip: no body, no upgrade, to a plain upstream. Its header fields
// were checked by the http.Server that read it (HTTP/1 or HTTP/2); the
// ones the ReverseProxy adds are its own.
func (p *HTTPProxy) canRoundTrip(req *http.Request) bool {
	return p.ownConns() && (req.Body == nil || req.Body == http.NoBody) &&
		req.Method != http.MethodConnect && req.Header.Get("Upgrade") == "" && len(req.Trailer) == 0
}

var requestHeads = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// roundTrip sends req to u and returns its response, whose Body reads from
// the upstream connection and returns it to the pool once read to its end
// (closed early, the connection is closed). 1xx interim responses go to
// the request's httptrace (the ReverseProxy relays them); a 101 is an
// error, as nothing asked for it. When req's context ends, the connection
// is closed, which ends a wait for the upstream.
func (p *HTTPProxy) roundTrip(req *http.Request, u *Upstream) (*http.Response, error) {
	head := requestHeads.Get().(*bytes.Buffer)
	defer requestHeads.Put(head)
	head.Reset()
	// The wire format the Transport writes (the same code): the head,
	// with the Host of req.Host or req.URL.
	if err := req.Write(head); err != nil {
		return nil, err
	}
	var inUse atomic.Pointer[upstreamConn]
	stop := context.AfterFunc(req.Context(), func() {
		if uc := inUse.Load(); uc != nil {
			uc.conn.Close()
		}
	})
	headReq := req.Method == http.MethodHead
	var rh responseHead
	uc, err := p.exchange(req.Context(), u, head.Bytes(), isIdempotent([]byte(req.Method)), headReq, &rh, &inUse)
	if err != nil {
		stop()
		return nil, contextErr(req.Context(), err)
	}
	for {
		// The head is buffered whole (exchange, readHead): net/http
		// parses it again into the Response, and frames the body.
		resp, err := http.ReadResponse(uc.br, req)
		switch {
		case err != nil:
		case resp.StatusCode == http.StatusSwitchingProtocols:
			err = errUnaskedUpgrade
		case resp.StatusCode >= 200:
			body := &upstreamResponseBody{body: resp.Body, uc: uc, u: u, stop: stop, reusable: !resp.Close}
			if resp.Body == http.NoBody {
				body.finish(true)
			} else {
				resp.Body = body
			}
			return resp, nil
		default:
			if trace := httptrace.ContextClientTrace(req.Context()); trace != nil && trace.Got1xxResponse != nil {
				err = trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header))
			}
			if err == nil {
				err = uc.readHead(&rh, headReq, p.ResponseHeaderTimeout)
			}
		}
		if err != nil {
			stop()
			uc.close()
			return nil, contextErr(req.Context(), err)
		}
	}
}

// contextErr is err, or the context's error when the context ended: the
// connection was closed for that (a client that went away is no upstream
// failure).
func contextErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// upstreamResponseBody is a response body read from a direct-path upstream
// connection: read to its end, the connection goes back to the pool.
type upstreamResponseBody struct {
	body     io.ReadCloser // net/http's framing over uc.br
	uc       *upstreamConn
	u        *Upstream
	stop     func() bool // stops the request context's watch
	reusable bool        // the upstream keeps the connection open
	done     bool
}

func (b *upstreamResponseBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.body.Read(p)
	if err != nil {
		b.finish(err == io.EOF)
	}
	return n, err
}

// Close ends the body; one not read to its end loses its connection.
func (b *upstreamResponseBody) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish pools the connection when the body was read to its end with
// nothing after it, the upstream keeps it open and the request's context
// has not closed it; else closes it.
func (b *upstreamResponseBody) finish(complete bool) {
	b.done = true
	if b.stop() && complete && b.reusable && b.uc.br.Buffered() == 0 {
		b.u.idle.put(b.uc)
		return
	}
	b.uc.close()
}
