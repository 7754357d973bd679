package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// lingerTimeout bounds how long a request body the handler left unread is
// drained once the response is out (nginx's lingering_timeout is 5s).
const lingerTimeout = 5 * time.Second

// Guard wraps a handler that net/http serves HTTP/1 requests to (on
// http_listen; NewHTTPServer guards its handler too) with what net/http
// does not do on its own:
//
//   - A request with a Transfer-Encoding closes its connection after the
//     response, unless the direct path checked its head. net/http drops a
//     Content-Length sent with it without a word, and RFC 9112 §6.1 has
//     the server close the connection after such a request: bytes a proxy
//     in front framed as part of the body must not be read as another
//     request. The direct path refuses such requests (400), and it reads
//     the head of the request a connection is handed over with; on later
//     requests, net/http's, only the closing is possible, for every chunked
//     request.
//   - A request body the handler left unread (an upstream that answered
//     413 or 401 without reading the upload) is drained for up to
//     lingerTimeout after the response is out, as nginx's lingering close
//     does. net/http would close the connection with the client's bytes
//     unread, and the reset that follows can destroy the response before
//     the client reads it: an upload would fail with "connection reset"
//     instead of its 413.
func Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveGuarded(w, r, h, false)
	})
}

// serveGuarded serves r with h as Guard does; screened says the direct
// path checked r's framing.
func serveGuarded(w http.ResponseWriter, r *http.Request, h http.Handler, screened bool) {
	if r.ProtoMajor != 1 || r.Body == nil || r.Body == http.NoBody {
		h.ServeHTTP(w, r)
		return
	}
	if len(r.TransferEncoding) > 0 && !screened {
		w.Header().Set("Connection", "close")
	}
	body := &lingeringBody{body: r.Body}
	r.Body = body
	h.ServeHTTP(w, r)
	body.linger(w, strings.EqualFold(r.Header.Get("Expect"), "100-continue"))
}

// lingeringBody is a request body that notes whether it was read, and to
// its end, for linger.
type lingeringBody struct {
	body io.ReadCloser
	read atomic.Bool // a Read was made: if the client expected 100-continue, it got it
	eof  atomic.Bool
}

func (b *lingeringBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	n, err := b.body.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// Close leaves the body to the server, which closes it after the handler.
func (b *lingeringBody) Close() error { return nil }

// linger drains what the handler left of the body, once the response is
// out. A client that expected 100-continue and never got it (the body
// was never read) sends no body: there is nothing to wait for.
func (b *lingeringBody) linger(w http.ResponseWriter, expectedContinue bool) {
	if b.eof.Load() || expectedContinue && !b.read.Load() {
		return
	}
	rc := http.NewResponseController(w)
	if rc.Flush() != nil || rc.SetReadDeadline(time.Now().Add(lingerTimeout)) != nil {
		return // hijacked, or the client is gone
	}
	io.Copy(io.Discard, b.body)
}
