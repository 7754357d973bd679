package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest/observer"
)

// countingTransport counts the requests that take the Transport given to
// NewHTTPProxy (or its fresh copy) rather than roundTrip.
type countingTransport struct {
	base, fresh http.RoundTripper
	n           atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.base.RoundTrip(r)
}

// counted counts the requests taking fresh in c.
type counted struct{ c *countingTransport }

func (f counted) RoundTrip(r *http.Request) (*http.Response, error) {
	f.c.n.Add(1)
	return f.c.fresh.RoundTrip(r)
}

// h2World is a directWorld served as portmux serves terminated TLS: each
// connection's handshake (ALPN h2) is done, then the *tls.Conn is handed
// to the HTTPServer, whose net/http server speaks HTTP/2 to client.
type h2World struct {
	*directWorld
	url       string
	client    *http.Client
	transport *countingTransport
}

// newH2World serves a proxy over upstreams (URLs) to HTTP/2 clients; front
// makes the handler (nil: the proxy itself).
func newH2World(t *testing.T, front func(*HTTPProxy) http.Handler, upstreams ...string) *h2World {
	t.Helper()
	if front == nil {
		front = func(p *HTTPProxy) http.Handler { return p }
	}
	w := newDirectWorld(t, front, upstreams...)
	rt := w.proxy.rp.Transport.(*retryTransport)
	ct := &countingTransport{base: rt.base, fresh: w.proxy.fresh}
	rt.base = ct
	if ct.fresh != nil {
		w.proxy.fresh = counted{ct}
	}
	certs := httptest.NewUnstartedServer(nil)
	certs.EnableHTTP2 = true
	certs.StartTLS() // only for its certificate and a client that trusts it
	t.Cleanup(certs.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr := listen(t, func(c *net.TCPConn) {
		tc := tls.Server(c, certs.TLS)
		if tc.Handshake() != nil {
			return
		}
		state := tc.ConnectionState()
		w.srv.Serve(ctx, tc, &state)
	})
	client := certs.Client()
	client.Timeout = 10 * time.Second // no request hangs the test
	t.Cleanup(client.CloseIdleConnections)
	return &h2World{directWorld: w, url: "https://" + addr, client: client, transport: ct}
}

// do sends method path over HTTP/2 and reads the whole response.
func (w *h2World) do(t *testing.T, method, path string, body io.Reader) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, w.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, b := get(t, w.client, req)
	if resp.ProtoMajor != 2 {
		t.Fatalf("%s %s: proto %s; want HTTP/2", method, path, resp.Proto)
	}
	return resp, b
}

// goGet sends a GET for path in the background, until cancel; the
// channel gets Do's error.
func (w *h2World) goGet(path string) (done <-chan error, cancel func()) {
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", w.url+path, nil)
	errc := make(chan error, 1)
	go func() {
		resp, err := w.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	return errc, cancel
}

// idleCount is the number of connections in u's direct-path pool.
func idleCount(u *Upstream) int {
	u.idle.mu.Lock()
	defer u.idle.mu.Unlock()
	return len(u.idle.conns)
}

// requestLogs ends the world's connections (its access lines are all
// written then) and returns the access lines.
func (w *h2World) requestLogs(t *testing.T) []observer.LoggedEntry {
	t.Helper()
	w.client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	return w.logs.FilterMessage("request").All()
}

// Bodiless requests over HTTP/2 take roundTrip (not the Transport) and
// share one pooled upstream connection, responses without a body (HEAD
// with a length, 204, 304) included.
func TestRoundTripReusesUpstreamConnection(t *testing.T) {
	up, conns := answeringUpstream(t, func(r *http.Request) string {
		switch r.URL.Path {
		case "/204":
			return "HTTP/1.1 204 No Content\r\nX-A: 204\r\n\r\n"
		case "/304":
			return "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nX-A: 304\r\n\r\n"
		}
		if r.Method == "HEAD" {
			return "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-A: HEAD\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-A: " + r.Method + "\r\n\r\n" + strings.Repeat("x", 1234)
	})
	w := newH2World(t, nil, up)
	for i := range 20 {
		if resp, body := w.do(t, "GET", "/", nil); resp.StatusCode != 200 || len(body) != 1234 {
			t.Fatalf("GET %d: %d, %d bytes", i, resp.StatusCode, len(body))
		}
	}
	for _, tc := range []struct{ method, path, status, xa string }{
		{"HEAD", "/", "200 OK", "HEAD"}, {"GET", "/204", "204 No Content", "204"},
		{"GET", "/304", "304 Not Modified", "304"}, {"GET", "/", "200 OK", "GET"},
	} {
		resp, body := w.do(t, tc.method, tc.path, nil)
		if resp.Status != tc.status || resp.Header.Get("X-A") != tc.xa || tc.method != "GET" && body != "" {
			t.Fatalf("%s %s: %s %v %d bytes", tc.method, tc.path, resp.Status, resp.Header, len(body))
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("upstream connections: %d; want 1", n)
	}
	if n := w.transport.n.Load(); n != 0 {
		t.Errorf("%d requests took the Transport; want none", n)
	}
	if n := idleCount(w.proxy.Pool.Upstreams[0]); n != 1 {
		t.Errorf("direct-path pool holds %d connections; want 1", n)
	}
}

// A request with a body takes the Transport and reaches the upstream with
// its body exactly; a bodiless POST takes roundTrip.
func TestRoundTripRequestBodies(t *testing.T) {
	w := newH2World(t, nil, echoBackend(t).URL)
	payload := strings.Repeat("payload ", 10000)
	if resp, body := w.do(t, "POST", "/with", strings.NewReader(payload)); resp.StatusCode != 200 || body != "POST /with "+payload {
		t.Fatalf("POST with a body: %d, %d bytes, %q...", resp.StatusCode, len(body), body[:min(len(body), 40)])
	}
	if n := w.transport.n.Load(); n != 1 {
		t.Fatalf("%d requests took the Transport; want the one with a body", n)
	}
	for range 2 {
		if resp, body := w.do(t, "POST", "/without", nil); resp.StatusCode != 200 || body != "POST /without " {
			t.Fatalf("bodiless POST: %d %q", resp.StatusCode, body)
		}
	}
	if n := w.transport.n.Load(); n != 1 {
		t.Fatalf("%d requests took the Transport; want only the one with a body", n)
	}
}

// A chunked response's body and trailers reach the HTTP/2 client, and the
// upstream connection is reused after it.
func TestRoundTripChunkedTrailers(t *testing.T) {
	up, conns := answeringUpstream(t, func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: abc\r\nX-More: d\r\n\r\n"
	})
	w := newH2World(t, nil, up)
	for i := range 2 {
		resp, body := w.do(t, "GET", "/", nil)
		if body != "hello, world" || resp.Trailer.Get("X-Sum") != "abc" || resp.Trailer.Get("X-More") != "d" {
			t.Fatalf("response %d: %q, trailers %v", i, body, resp.Trailer)
		}
	}
	if conns.Load() != 1 || w.transport.n.Load() != 0 {
		t.Fatalf("%d upstream connections, %d requests on the Transport; want 1 and 0", conns.Load(), w.transport.n.Load())
	}
}

// A 103 Early Hints reaches the HTTP/2 client (httptrace) before the
// final response; a 101 to a plain GET is a 502.
func TestRoundTripInterimResponses(t *testing.T) {
	up, _ := answeringUpstream(t, func(r *http.Request) string {
		if r.URL.Path == "/101" {
			return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n"
		}
		return "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	w := newH2World(t, nil, up)
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, http.StatusText(code)+": "+h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", w.url+"/hints", nil)
	resp, body := get(t, w.client, req)
	if resp.StatusCode != 200 || body != "ok" || len(got) != 1 || got[0] != "Early Hints: </s.css>; rel=preload" {
		t.Fatalf("got %d %q after interim responses %q", resp.StatusCode, body, got)
	}
	if resp, body := w.do(t, "GET", "/101", nil); resp.StatusCode != 502 {
		t.Fatalf("101 to a GET: %d %q; want 502", resp.StatusCode, body)
	}
	if n := w.transport.n.Load(); n != 0 {
		t.Errorf("%d requests took the Transport; want none", n)
	}
}

// An upstream that answers with Connection: close gets a new connection
// for the next request.
func TestRoundTripUpstreamConnectionClose(t *testing.T) {
	up, conns := answeringUpstream(t, func(*http.Request) string {
		return "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
	})
	w := newH2World(t, nil, up)
	for i := range 2 {
		if resp, body := w.do(t, "GET", "/", nil); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := conns.Load(); n != 2 {
		t.Fatalf("upstream connections: %d; want 2", n)
	}
	if n := idleCount(w.proxy.Pool.Upstreams[0]); n != 0 {
		t.Fatalf("pool holds %d connections the upstream closed", n)
	}
}

// A pooled connection the upstream closed while idle is replaced: the
// next GET succeeds on a new connection, and nothing is logged as a
// failure.
func TestRoundTripStaleUpstreamConnection(t *testing.T) {
	var conns atomic.Int64
	closed := make(chan struct{}, 4)
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		conns.Add(1)
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=60\r\n\r\nok")
		}
		c.Close()
		closed <- struct{}{}
	})
	w := newH2World(t, nil, up)
	for i := range 3 {
		if resp, body := w.do(t, "GET", "/", nil); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		<-closed // the pooled connection is stale from now on
	}
	if n := conns.Load(); n != 3 {
		t.Fatalf("upstream connections: %d; want 3", n)
	}
	if n := w.transport.n.Load(); n != 0 {
		t.Errorf("%d requests took the Transport; want none", n)
	}
	if e := w.requestLogs(t); len(e) != 3 || e[2].ContextMap()["error"] != nil {
		t.Fatalf("access log: %v", e)
	}
}

// holdingUpstream reads one request per connection and never answers:
// got receives the request's path, and closed is told once the proxy has
// closed the connection. release (also run at cleanup) closes the ones
// still open.
func holdingUpstream(t *testing.T) (url string, got chan string, closed chan struct{}, release func()) {
	got, closed = make(chan string, 4), make(chan struct{}, 4)
	stop := make(chan struct{})
	release = sync.OnceFunc(func() { close(stop) })
	url = rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		got <- req.URL.Path
		ended := make(chan struct{})
		defer close(ended)
		go func() {
			select {
			case <-stop:
				c.Close()
			case <-ended:
			}
		}()
		if _, err := io.Copy(io.Discard, br); err == nil {
			closed <- struct{}{} // EOF: the proxy closed it
		}
	})
	t.Cleanup(release)
	return url, got, closed, release
}

// waitFor waits up to 5s for c; false when it timed out.
func waitFor[T any](c <-chan T) bool {
	select {
	case <-c:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// An HTTP/2 client that cancels its request while the upstream holds it
// makes the proxy close that upstream connection; nothing is left running.
func TestRoundTripClientCancels(t *testing.T) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	up, got, closed, release := holdingUpstream(t)
	w := newH2World(t, nil, up)
	t.Cleanup(release) // before the world's cleanup waits for its connections
	done, cancel := w.goGet("/hold")
	if !waitFor(got) {
		t.Fatal("the upstream did not get the request")
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v; want context.Canceled", err)
	}
	if !waitFor(closed) {
		t.Fatal("the upstream connection is still open 5s after the client cancelled")
	}
	waitLogs(t, w.logs, 1)
	if e := w.logs.FilterMessage("request").All(); len(e) != 1 || e[0].ContextMap()["status"] != int64(499) {
		t.Fatalf("access log: %v; want one line with 499", e)
	}
}

// A request whose client is gone before the proxy sends it upstream (here
// held by the front until its HTTP/2 stream is reset) holds no upstream
// connection either: the handler returns, the upstream connection (if the
// request was sent at all) is closed. net/http's Transport sends nothing
// for a request whose context has ended.
func TestRoundTripClientGoneBeforeSend(t *testing.T) {
	up, got, closed, release := holdingUpstream(t)
	entered, served := make(chan struct{}), make(chan struct{})
	w := newH2World(t, func(p *HTTPProxy) http.Handler {
		return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
			close(entered)
			<-r.Context().Done()
			defer close(served) // ServeHTTP aborts the answer (panics) for a gone client
			p.ServeHTTP(rw, r)
		})
	}, up)
	t.Cleanup(release)
	done, cancel := w.goGet("/late")
	if !waitFor(entered) {
		t.Fatal("the request did not reach the front")
	}
	cancel()
	<-done
	if !waitFor(served) {
		sent := len(got) > 0
		release() // ends the wait, for the cleanup
		t.Fatalf("the handler still waits for the upstream 5s after its client went away (request sent upstream: %v)", sent)
	}
	if len(got) > 0 && !waitFor(closed) {
		t.Fatal("the request of a gone client was sent upstream and its connection left open")
	}
}

// cutShortUpstream answers its first connection's request with 10 bytes
// of a 1000-byte body and closes it, then answers "ok" on the others,
// which it counts in conns.
func cutShortUpstream(t *testing.T) (url string, conns *atomic.Int64) {
	conns = new(atomic.Int64)
	ok := answering(func(*http.Request) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
	return rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		if conns.Add(1) > 1 {
			ok(c, br)
		} else if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789")
		}
	}), conns
}

// getCutShort sends a request for a response cut short; it fails the test
// unless the client sees an error: on Get when the stream was reset before
// the head was sent, else on reading the body.
func (w *h2World) getCutShort(t *testing.T) {
	t.Helper()
	resp, err := w.client.Get(w.url + "/cut")
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("client read %d bytes of 1000 without an error", len(b))
		}
	}
}

// A response body cut short by the upstream fails the HTTP/2 client's
// request (no silent short success), and the next request succeeds on a
// new connection.
func TestRoundTripBodyCutShort(t *testing.T) {
	up, conns := cutShortUpstream(t)
	w := newH2World(t, nil, up)
	w.getCutShort(t)
	if resp, body := w.do(t, "GET", "/next", nil); resp.StatusCode != 200 || body != "ok" || conns.Load() != 2 {
		t.Fatalf("next request: %d %q on upstream connection %d; want 200 \"ok\" on the 2nd", resp.StatusCode, body, conns.Load())
	}
	if n := w.transport.n.Load(); n != 0 {
		t.Errorf("%d requests took the Transport; want none", n)
	}
}

// A response aborted mid-body (the ReverseProxy panics with
// http.ErrAbortHandler) is still accounted for: it gets its access log
// line and leaves the upstream's in-flight count (least_conn) at 0. Over
// roundTrip and over the Transport alike.
func TestRoundTripAbortedResponseAccounted(t *testing.T) {
	for _, base := range []string{"", "/base"} {
		t.Run(map[string]string{"": "roundTrip", "/base": "Transport"}[base], func(t *testing.T) {
			up, _ := cutShortUpstream(t)
			w := newH2World(t, nil, up+base)
			w.getCutShort(t)
			w.do(t, "GET", "/next", nil)
			e := w.requestLogs(t)
			if n := w.proxy.Pool.Upstreams[0].inFlight.Load(); n != 0 {
				t.Errorf("upstream in flight: %d after both requests ended; want 0", n)
			}
			if len(e) != 2 {
				t.Errorf("access log has %d lines for 2 requests: %v", len(e), e)
			}
		})
	}
}

// A response followed by bytes the upstream was not asked for (in the
// same write, or later on the idle connection) does not leave that
// connection pooled: the next request gets its own answer, from a new
// connection, never the unsolicited bytes as its response. Over HTTP/2
// (roundTrip) and on the direct HTTP/1.1 path, which share the pool.
func TestRoundTripExtraBytesAfterBody(t *testing.T) {
	for _, front := range []string{"h2", "direct"} {
		for _, late := range []bool{false, true} {
			t.Run(front+map[bool]string{false: "/same write", true: "/while idle"}[late], func(t *testing.T) {
				testExtraBytesAfterBody(t, front, late)
			})
		}
	}
}

func testExtraBytesAfterBody(t *testing.T, front string, late bool) {
	const smuggled = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled"
	var conns atomic.Int64
	read, sent := make(chan struct{}), make(chan struct{})
	clientRead := sync.OnceFunc(func() { close(read) })
	t.Cleanup(clientRead)
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		conns.Add(1)
		answering(func(r *http.Request) string {
			switch {
			case r.URL.Path != "/extra":
				return "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nanswer"
			case !late:
				return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + smuggled
			}
			go func() { // once the client has the response
				<-read
				io.WriteString(c, smuggled)
				close(sent)
			}()
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		})(c, br)
	})
	var fetch func(path string) string
	if front == "h2" {
		w := newH2World(t, nil, up)
		fetch = func(path string) string { _, body := w.do(t, "GET", path, nil); return body }
	} else {
		w := newDirectWorld(t, nil, up)
		client := &http.Client{Timeout: 10 * time.Second}
		t.Cleanup(client.CloseIdleConnections)
		fetch = func(path string) string { _, body := get(t, client, mustReq("http://"+w.addr+path)); return body }
	}
	if body := fetch("/extra"); body != "ok" {
		t.Fatalf("first: %q", body)
	}
	clientRead()
	if late && !waitFor(sent) {
		t.Fatal("the upstream did not send its extra bytes")
	}
	if body := fetch("/next"); body != "answer" || conns.Load() != 2 {
		t.Fatalf("next request: %q on upstream connection %d; want \"answer\" on the 2nd", body, conns.Load())
	}
}

// An upstream with a base path takes the Transport (canRoundTrip is
// false), which prefixes the path.
func TestRoundTripBasePathUsesTransport(t *testing.T) {
	w := newH2World(t, nil, echoBackend(t).URL+"/base")
	for _, path := range []string{"/x", "/y/z"} {
		if resp, body := w.do(t, "GET", path, nil); resp.StatusCode != 200 || body != "GET /base"+path+" " {
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, body)
		}
	}
	if n := w.transport.n.Load(); n != 2 {
		t.Fatalf("%d requests took the Transport; want 2", n)
	}
	if n := idleCount(w.proxy.Pool.Upstreams[0]); n != 0 {
		t.Fatalf("direct-path pool holds %d connections; want none", n)
	}
}
