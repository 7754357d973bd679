package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/portmux/portmux/internal/httpline"
)

// newDirectFront serves p through an HTTPServer whose DirectRouter sends
// every request to p, on a loopback listener; h serves what the direct
// path hands over. The cleanup ends every connection and goroutine.
func newDirectFront(t *testing.T, p *HTTPProxy, h http.Handler) (addr string, s *HTTPServer) {
	t.Helper()
	s = NewHTTPServer(h, nil, func(*DirectRequest) *HTTPProxy { return p })
	ctx, cancel := context.WithCancel(context.Background())
	addr = listen(t, func(c *net.TCPConn) { s.Serve(ctx, c, nil) })
	// Before listen's cleanup (LIFO): Shutdown ends every Serve.
	t.Cleanup(func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer scancel()
		s.Shutdown(sctx)
	})
	return addr, s
}

// bothFronts runs test with the proxy served by net/http and by the
// direct path (falling back to net/http).
func bothFronts(t *testing.T, test func(t *testing.T, direct bool)) {
	t.Run("nethttp", func(t *testing.T) { test(t, false) })
	t.Run("direct", func(t *testing.T) { test(t, true) })
}

// waitLogs waits (10s at most) for n access log lines: a request's line is
// written after its response.
func waitLogs(t *testing.T, logs *observer.ObservedLogs, n int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); logs.FilterMessage("request").Len() < n && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
}

// directWorld is an HTTPProxy on the direct path in front of upstreams.
type directWorld struct {
	proxy *HTTPProxy
	addr  string
	srv   *HTTPServer
	logs  *observer.ObservedLogs
}

// newDirectWorld serves a proxy over upstreams (URLs) on the direct path.
// fallback makes the handler for what the direct path hands over; nil
// fails the test for any request that reaches net/http.
func newDirectWorld(t *testing.T, fallback func(*HTTPProxy) http.Handler, upstreams ...string) *directWorld {
	t.Helper()
	var urls []*url.URL
	for _, u := range upstreams {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, pu)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	p := NewHTTPProxy("web", NewPool(urls, RoundRobin), tr, zap.New(core))
	t.Cleanup(p.CloseIdleConnections)
	var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("net/http served %s %s, which the direct path should have", r.Method, r.RequestURI)
		w.WriteHeader(http.StatusTeapot)
	})
	if fallback != nil {
		h = fallback(p)
	}
	addr, s := newDirectFront(t, p, h)
	return &directWorld{proxy: p, addr: addr, srv: s, logs: logs}
}

// counting is a fallback that counts the requests net/http serves.
func counting(n *atomic.Int64) func(*HTTPProxy) http.Handler {
	return func(p *HTTPProxy) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			p.ServeHTTP(w, r)
		})
	}
}

// dialRaw opens a client connection for byte-exact requests; its deadline
// only guards against hangs.
func dialRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c, bufio.NewReader(c)
}

// send writes raw requests on c.
func send(t *testing.T, c net.Conn, raw string) {
	t.Helper()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
}

// readResp reads one response to a request with method, body included.
func readResp(t *testing.T, br *bufio.Reader, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: body: %v", resp.Status, err)
	}
	return resp, string(b)
}

// echoBackend answers with the method, path and body of each request.
func echoBackend(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	t.Cleanup(s.Close)
	return s
}

// answeringUpstream is a rawUpstream answering each request with reply;
// it counts the connections it accepts.
func answeringUpstream(t *testing.T, reply func(*http.Request) string) (url string, conns *atomic.Int64) {
	conns = new(atomic.Int64)
	answer := answering(reply)
	return rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		conns.Add(1)
		answer(c, br)
	}), conns
}

// rawUpstream serves each connection accepted on loopback with serve
// (listen) and returns its URL.
func rawUpstream(t *testing.T, serve func(c *net.TCPConn, br *bufio.Reader)) string {
	return "http://" + listen(t, func(c *net.TCPConn) { serve(c, bufio.NewReader(c)) })
}

// answering serves a connection's requests, writing reply(req) as is for
// each, until the client closes.
func answering(reply func(*http.Request) string) func(*net.TCPConn, *bufio.Reader) {
	return func(c *net.TCPConn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(c, reply(req)); err != nil {
				return
			}
		}
	}
}

// Requests the direct path can take never reach net/http (its handler
// fails the test), and reuse one upstream connection.
func TestDirectPathIsUsed(t *testing.T) {
	var hits, conns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s", r.Method, b)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	w := newDirectWorld(t, nil, up.URL)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	if resp, body := get(t, &http.Client{Transport: tr}, mustReq("http://"+w.addr+"/x")); resp.StatusCode != 200 || body != "GET " {
		t.Fatalf("net/http client: %d %q", resp.StatusCode, body)
	}
	// The first client's exchange returns its upstream connection after
	// the client has the response; then one client connection, so that
	// each request finds the upstream connection the previous one used
	// back in the pool.
	waitIdle(t, w.proxy.Pool.Upstreams[0], 1)
	c, br := dialRaw(t, w.addr)
	for range 4 {
		send(t, c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "GET " {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	}
	send(t, c, "POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\n\r\npayload")
	if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || body != "POST payload" {
		t.Fatalf("POST: %d %q", resp.StatusCode, body)
	}
	if hits.Load() != 6 || conns.Load() != 1 {
		t.Fatalf("upstream served %d requests on %d connections; want 6 on 1", hits.Load(), conns.Load())
	}
}

// On one keep-alive connection, a direct request, then one the direct
// path hands to net/http (chunked upload) with the connection, then
// another that net/http serves: all answered in order.
func TestDirectFallbackMidConnection(t *testing.T) {
	var served atomic.Int64
	w := newDirectWorld(t, counting(&served), echoBackend(t).URL)
	c, br := dialRaw(t, w.addr)
	send(t, c, "GET /one HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := readResp(t, br, "GET"); body != "GET /one " || served.Load() != 0 {
		t.Fatalf("first: %q, net/http served %d", body, served.Load())
	}
	send(t, c, "POST /two HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
	if _, body := readResp(t, br, "POST"); body != "POST /two abcde" {
		t.Fatalf("second: %q", body)
	}
	send(t, c, "GET /three HTTP/1.1\r\nHost: a\r\n\r\n")
	if _, body := readResp(t, br, "GET"); body != "GET /three " {
		t.Fatalf("third: %q", body)
	}
	if served.Load() != 2 {
		t.Fatalf("net/http served %d requests; want the last 2", served.Load())
	}
}

// Pipelined requests sent in one write are answered in order, bodies
// taken exactly.
func TestDirectPipelining(t *testing.T) {
	w := newDirectWorld(t, nil, echoBackend(t).URL)
	c, br := dialRaw(t, w.addr)
	send(t, c, "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz"+
		"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"GET /a ", "POST /b xyz", "GET /c "} {
		if resp, body := readResp(t, br, ""); resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q; want %q", resp.StatusCode, body, want)
		}
	}
}

// A chunked response with extensions and trailers reaches the client
// byte for byte, and the upstream connection is reused after it.
func TestDirectChunkedTrailersExact(t *testing.T) {
	const resp = "HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n" +
		"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Sum: abc\r\nX-More: d\r\n\r\n"
	tes := make(chan string, 4)
	up, conns := answeringUpstream(t, func(r *http.Request) string {
		tes <- r.Header.Get("Te")
		return resp
	})
	w := newDirectWorld(t, nil, up)
	c, br := dialRaw(t, w.addr)
	for i := range 2 {
		send(t, c, "GET / HTTP/1.1\r\nHost: a\r\nTE: trailers\r\n\r\n")
		got := make([]byte, len(resp))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != resp {
			t.Fatalf("response %d: %v\n got %q\nwant %q", i, err, got, resp)
		}
		if te := <-tes; te != "trailers" {
			t.Errorf("upstream got Te %q", te)
		}
	}
	r, body := readResp(t, bufio.NewReader(strings.NewReader(resp)), "GET")
	if body != "hello, world" || r.Trailer.Get("X-Sum") != "abc" {
		t.Fatalf("the response itself reads %q, trailers %v", body, r.Trailer)
	}
	if conns.Load() != 1 {
		t.Fatalf("upstream connections: %d; want 1", conns.Load())
	}
}

// Trailers set by a net/http backend reach a net/http client.
func TestHTTPProxyTrailers(t *testing.T) { bothFronts(t, testHTTPProxyTrailers) }

func testHTTPProxyTrailers(t *testing.T, direct bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "body")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Sum", "abc")
	}))
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, direct, RoundRobin, up)
	resp, body := get(t, http.DefaultClient, mustReq(w.url))
	if body != "body" || resp.Trailer.Get("X-Sum") != "abc" {
		t.Fatalf("got %q, trailers %v", body, resp.Trailer)
	}
}

// Responses without a body (HEAD with a length, 204, 304 with a length)
// carry none to the client, and both connections stay usable.
func TestDirectNoBodyResponses(t *testing.T) {
	up, conns := answeringUpstream(t, func(r *http.Request) string {
		switch r.URL.Path {
		case "/head":
			return "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nX-A: head\r\n\r\n"
		case "/204":
			return "HTTP/1.1 204 No Content\r\nX-A: 204\r\n\r\n"
		case "/304":
			return "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\nETag: \"x\"\r\nX-A: 304\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: ok\r\n\r\nok"
	})
	w := newDirectWorld(t, nil, up)
	c, br := dialRaw(t, w.addr)
	for _, tc := range []struct{ method, path, body string }{
		{"HEAD", "/head", ""}, {"GET", "/204", ""}, {"GET", "/304", ""}, {"GET", "/ok", "ok"},
	} {
		send(t, c, tc.method+" "+tc.path+" HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, body := readResp(t, br, tc.method)
		if body != tc.body || resp.Header.Get("X-A") != strings.TrimPrefix(tc.path, "/") {
			t.Fatalf("%s %s: %s %v %q", tc.method, tc.path, resp.Status, resp.Header, body)
		}
		if tc.path == "/head" && resp.ContentLength != 1234 {
			t.Errorf("HEAD: Content-Length %d; want 1234", resp.ContentLength)
		}
	}
	if conns.Load() != 1 {
		t.Fatalf("upstream connections: %d; want 1", conns.Load())
	}
}

// The backend's hop-by-hop response fields (Keep-Alive, and those its
// Connection lists) are not sent to the client.
func TestHTTPProxyResponseHopByHop(t *testing.T) { bothFronts(t, testHTTPProxyResponseHopByHop) }

func testHTTPProxyResponseHopByHop(t *testing.T, direct bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Secret")
		w.Header().Set("X-Secret", "s")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-Public", "p")
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, direct, RoundRobin, up)
	raw := func(addr string) http.Header {
		c, br := dialRaw(t, addr)
		send(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, _ := readResp(t, br, "GET")
		return resp.Header
	}
	if h := raw(up.Listener.Addr().String()); h.Get("X-Secret") == "" || h.Get("Keep-Alive") == "" {
		t.Fatalf("the backend itself sends %v", h)
	}
	h := raw(strings.TrimPrefix(w.url, "http://"))
	for _, f := range []string{"Connection", "X-Secret", "Keep-Alive"} {
		if v, ok := h[f]; ok {
			t.Errorf("%s: %q reached the client", f, v)
		}
	}
	if h.Get("X-Public") != "p" {
		t.Errorf("X-Public lost: %v", h)
	}
}

// A response with many header fields (here 150 short ones, 3 KiB) is
// relayed, as net/http relays it.
func TestHTTPProxyManyResponseHeaders(t *testing.T) { bothFronts(t, testHTTPProxyManyResponseHeaders) }

func testHTTPProxyManyResponseHeaders(t *testing.T, direct bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := range 150 {
			w.Header().Set(fmt.Sprintf("X-H%d", i), "v")
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, direct, RoundRobin, up)
	resp, body := get(t, http.DefaultClient, mustReq(w.url))
	if resp.StatusCode != 200 || body != "ok" || resp.Header.Get("X-H149") != "v" {
		t.Fatalf("got %d %q, %d fields", resp.StatusCode, body, len(resp.Header))
	}
}

// A kept-alive upstream connection the upstream has closed meanwhile is
// replaced: a GET is retried on a new connection, a POST is sent on a new
// one (send saw the close before sending).
func TestDirectStaleUpstreamConnection(t *testing.T) {
	var conns atomic.Int64
	closed := make(chan string, 4) // the body of each request, once the connection is closed
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		conns.Add(1)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nKeep-Alive: timeout=60\r\n\r\nok")
		c.Close()
		closed <- string(b)
	})
	w := newDirectWorld(t, nil, up)
	c, br := dialRaw(t, w.addr)
	for i, req := range []string{
		"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /3 HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\ndata",
	} {
		send(t, c, req)
		if resp, body := readResp(t, br, ""); resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q", i+1, resp.StatusCode, body)
		}
		if b := <-closed; i == 2 && b != "data" {
			t.Fatalf("upstream got body %q", b)
		}
	}
	if conns.Load() != 3 {
		t.Fatalf("upstream connections: %d; want 3", conns.Load())
	}
	w.srv.Shutdown(context.Background()) // the lines are written
	if e := w.logs.FilterLevelExact(zapcore.WarnLevel).All(); len(e) != 0 {
		t.Fatalf("warnings: %v", e)
	}
}

// An upstream's response the proxy cannot relay is a 502 (the client's
// connection stays usable); one cut short closes the client's connection,
// which sees the body truncated; both are logged with their error.
func TestDirectUpstreamErrors(t *testing.T) {
	lastLog := func(t *testing.T, w *directWorld) observer.LoggedEntry {
		t.Helper()
		w.srv.Shutdown(context.Background()) // the direct path's log lines are written
		e := w.logs.FilterMessage("request").All()
		if len(e) == 0 {
			t.Fatal("no access log line")
		}
		return e[len(e)-1]
	}
	for _, tc := range []struct {
		name     string
		upstream func(t *testing.T) string
		errText  string
	}{
		{"response head too large", func(t *testing.T) string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Big", strings.Repeat("x", 20<<10))
			}))
			t.Cleanup(s.Close)
			return s.URL
		}, errResponseHeadTooLarge.Error()},
		{"malformed status line", func(t *testing.T) string {
			return rawUpstream(t, answering(func(*http.Request) string { return "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n" }))
		}, errBadResponse.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newDirectWorld(t, nil, tc.upstream(t))
			c, br := dialRaw(t, w.addr)
			var body string
			for range 2 {
				send(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
				var resp *http.Response
				if resp, body = readResp(t, br, "GET"); resp.StatusCode != 502 || !strings.Contains(body, "502") {
					t.Fatalf("got %d %q", resp.StatusCode, body)
				}
			}
			// bytes counts the error page's body, as for any response.
			if e := lastLog(t, w); e.Level != zapcore.WarnLevel || e.ContextMap()["status"] != int64(502) ||
				e.ContextMap()["bytes"] != int64(len(body)) || !strings.Contains(fmt.Sprint(e.ContextMap()["error"]), tc.errText) {
				t.Fatalf("log: %v %v; want status 502, bytes %d", e.Level, e.ContextMap(), len(body))
			}
		})
	}
	for _, tc := range []struct{ name, resp string }{
		{"content length cut short", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"},
		{"chunked cut short", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nshort\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newDirectWorld(t, nil, rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
				if _, err := http.ReadRequest(br); err == nil {
					io.WriteString(c, tc.resp)
				}
			}))
			c, br := dialRaw(t, w.addr)
			send(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if b, err := io.ReadAll(resp.Body); string(b) != "short" || !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("client read %q, %v; want the truncation seen", b, err)
			}
			if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Fatalf("client connection: %d, %v; want it closed", n, err)
			}
			if e := lastLog(t, w); e.Level != zapcore.WarnLevel || e.ContextMap()["error"] == nil {
				t.Fatalf("log: %v %v", e.Level, e.ContextMap())
			}
		})
	}
}

// A client that goes away during a response that streams until told
// ends the exchange: the upstream connection is closed (the backend's
// request context ends), and no goroutine is left. A client that resets
// is seen at once; one that closes (FIN, which a half-close also sends)
// when the next writes of the stream fail (here heartbeats).
func TestDirectClientGoneDuringStream(t *testing.T) {
	for _, reset := range []bool{true, false} {
		t.Run(map[bool]string{true: "reset", false: "close"}[reset], func(t *testing.T) {
			testClientGoneDuringStream(t, reset)
		})
	}
}

func testClientGoneDuringStream(t *testing.T, reset bool) {
	leaks := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, leaks) })
	gone := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(gone)
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		var beat <-chan time.Time
		if !reset {
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			beat = tick.C
		}
		for {
			select {
			case <-r.Context().Done():
				return
			case <-beat:
				io.WriteString(w, ": heartbeat\n\n")
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(up.Close)
	w := newDirectWorld(t, nil, up.URL)
	c, br := dialRaw(t, w.addr)
	send(t, c, "GET /events HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || line != "data: first\n" {
		t.Fatalf("got %q, %v", line, err)
	}
	if reset {
		// Reset at once, whatever the client's unread bytes.
		c.(*net.TCPConn).SetLinger(0)
	}
	c.Close()
	select {
	case <-gone:
	case <-time.After(10 * time.Second):
		t.Error("the backend's request is still on 10s after the client left")
		up.CloseClientConnections() // ends the stream, for the cleanup
		<-gone
		return
	}
	w.srv.Shutdown(context.Background())
	// Logged as the client's doing: errClientGone when the watch saw it,
	// the failed write's error otherwise.
	e := w.logs.FilterMessage("request").All()
	if len(e) != 1 || e[0].Level != zapcore.InfoLevel || e[0].ContextMap()["error"] == nil ||
		reset && fmt.Sprint(e[0].ContextMap()["error"]) != errClientGone.Error() {
		t.Fatalf("want one info line with the client's error, got %v", e)
	}
}

// slowBackend answers /slow once released (started tells it has the
// request) and anything else at once; release is done at cleanup.
func slowBackend(t *testing.T) (up *httptest.Server, started <-chan struct{}, release func()) {
	start := make(chan struct{}, 1)
	rel := make(chan struct{})
	var once sync.Once
	up = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			start <- struct{}{}
			<-rel
		}
		io.WriteString(w, "done "+r.URL.Path)
	}))
	t.Cleanup(up.Close)
	release = func() { once.Do(func() { close(rel) }) }
	t.Cleanup(release)
	return up, start, release
}

// keptAlive sends request (its method given apart) on a new connection to
// addr and checks slowBackend's answer to /fast; the connection is left
// idle and kept alive.
func keptAlive(t *testing.T, addr, method, request string) *bufio.Reader {
	t.Helper()
	c, br := dialRaw(t, addr)
	send(t, c, request)
	if _, body := readResp(t, br, method); body != "done /fast" {
		t.Fatalf("%s /fast: got %q", method, body)
	}
	return br
}

// waitingForSlow sends GET /slow on a new connection to addr and returns
// once slowBackend holds it.
func waitingForSlow(t *testing.T, addr string, started <-chan struct{}) *bufio.Reader {
	t.Helper()
	c, br := dialRaw(t, addr)
	send(t, c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	<-started
	return br
}

// Shutdown closes an idle keep-alive connection of the direct path at
// once, and lets a request in flight finish (told to close) first.
func TestDirectShutdown(t *testing.T) {
	up, started, release := slowBackend(t)
	w := newDirectWorld(t, nil, up.URL)
	t.Cleanup(release) // before the world's cleanup waits for its connections

	idleBR := keptAlive(t, w.addr, "GET", "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	busyBR := waitingForSlow(t, w.addr, started)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- w.srv.Shutdown(ctx)
	}()
	if n, err := idleBR.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("idle connection: %d, %v; want it closed", n, err)
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	default:
	}
	release()
	resp, body := readResp(t, busyBR, "GET")
	if body != "done /slow" || !resp.Close {
		t.Fatalf("request in flight: %q, close %v", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// StopKeepAlives closes idle keep-alive connections at once, the direct
// path's and net/http's, ends a connection with a request in flight after
// its response (told to close), and still serves a connection handed over
// afterwards, once.
func TestStopKeepAlives(t *testing.T) {
	up, started, release := slowBackend(t)
	var viaNetHTTP atomic.Int64
	w := newDirectWorld(t, counting(&viaNetHTTP), up.URL)
	t.Cleanup(release)

	idleBR := keptAlive(t, w.addr, "GET", "GET /fast HTTP/1.1\r\nHost: a\r\n\r\n")
	// A chunked request moves its connection to net/http for good.
	idleNHBR := keptAlive(t, w.addr, "POST", "POST /fast HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	if n := viaNetHTTP.Load(); n != 1 {
		t.Fatalf("%d request(s) through net/http; want 1", n)
	}
	busyBR := waitingForSlow(t, w.addr, started)

	w.srv.StopKeepAlives()
	for name, br := range map[string]*bufio.Reader{"direct path": idleBR, "net/http": idleNHBR} {
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("idle connection on the %s: %d, %v; want it closed", name, n, err)
		}
	}
	release()
	resp, body := readResp(t, busyBR, "GET")
	if body != "done /slow" || !resp.Close {
		t.Fatalf("request in flight: %q, close %v; want its response, told to close", body, resp.Close)
	}
	fresh, freshBR := dialRaw(t, w.addr)
	send(t, fresh, "GET /fast HTTP/1.1\r\nHost: a\r\n\r\nGET /again HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body = readResp(t, freshBR, "GET")
	if body != "done /fast" || !resp.Close {
		t.Fatalf("new connection: %q, close %v; want one response, told to close", body, resp.Close)
	}
	for name, br := range map[string]*bufio.Reader{"in flight": busyBR, "new": freshBR} {
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("%s connection after its response: %d, %v; want it closed", name, n, err)
		}
	}
}

// Once Shutdown's context is done it returns, the connections still open
// closed, even when a request waits for an upstream that does not answer
// (no ResponseHeaderTimeout).
func TestDirectShutdownDeadline(t *testing.T) {
	up, started, release := slowBackend(t)
	w := newDirectWorld(t, nil, up.URL)
	t.Cleanup(release)
	busyBR := waitingForSlow(t, w.addr, started)
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		shut <- w.srv.Shutdown(ctx)
	}()
	if n, err := busyBR.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("client connection: %d, %v; want it closed", n, err)
	}
	select {
	case <-shut:
	case <-time.After(5 * time.Second):
		t.Error("Shutdown has not returned 5s after its context ended: it waits for the upstream's answer")
		release()
		<-shut
	}
}

// One access log line per request: route, method, host, decoded path,
// status, body bytes, upstream and client.
func TestDirectAccessLog(t *testing.T) {
	up := named(t, "hello", new(atomic.Int64))
	w := newDirectWorld(t, nil, up.URL)
	c, br := dialRaw(t, w.addr)
	send(t, c, "GET /a%20b?q=1 HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
	readResp(t, br, "GET")
	send(t, c, "POST /p HTTP/1.1\r\nHost: other.example\r\nContent-Length: 2\r\n\r\nhi")
	readResp(t, br, "POST")
	w.srv.Shutdown(context.Background()) // the lines are written
	e := w.logs.FilterMessage("request").All()
	if len(e) != 2 {
		t.Fatalf("want 2 access lines, got %v", e)
	}
	for i, want := range []map[string]any{
		{"method": "GET", "host": "app.example.com", "path": "/a b"},
		{"method": "POST", "host": "other.example", "path": "/p"},
	} {
		want["route"], want["status"], want["bytes"] = "web", int64(200), int64(5)
		want["upstream"], want["client"], want["proto"] = up.Listener.Addr().String(), c.LocalAddr().String(), "HTTP/1.1"
		got := e[i].ContextMap()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("line %d: %s = %v; want %v", i, k, got[k], v)
			}
		}
		if _, ok := got["error"]; ok || e[i].Level != zapcore.InfoLevel || got["duration"] == nil {
			t.Errorf("line %d: %v %v", i, e[i].Level, got)
		}
	}
}

// A request whose Connection lists Content-Length reaches the upstream
// as one request, its body with it: the body is not read as another
// request (smuggled past the proxy, its answer left for the next user
// of the pooled connection).
func TestDirectConnectionListedContentLength(t *testing.T) {
	seen := make(chan []string, 4) // the paths of each upstream connection, once it ends
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		var paths []string
		defer func() { seen <- paths }()
		answering(func(r *http.Request) string {
			paths = append(paths, r.URL.Path)
			return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
		})(c, br)
	})
	w := newDirectWorld(t, nil, up)
	c, br := dialRaw(t, w.addr)
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	send(t, c, fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled))
	if resp, body := readResp(t, br, "POST"); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	c.Close()
	w.srv.Shutdown(context.Background())
	w.proxy.CloseIdleConnections() // ends the upstream connection, if kept
	select {
	case paths := <-seen:
		if !slices.Equal(paths, []string{"/"}) {
			t.Fatalf("the upstream read requests %q; want only the POST to /", paths)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the upstream connection did not end")
	}
}

// BenchmarkDirectRequest is one keep-alive HTTP/1.1 request through the
// direct path on loopback: the client's request read and parsed, sent on
// a pooled upstream connection, the upstream's answer relayed back. The
// upstream answers from a raw socket, so what is measured is mostly the
// direct path (and loopback). Allocations are per request.
func BenchmarkDirectRequest(b *testing.B) {
	const answer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"
	upLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer upLn.Close()
	go func() {
		for {
			c, err := upLn.Accept()
			if err != nil {
				return
			}
			go answering(func(*http.Request) string { return answer })(c.(*net.TCPConn), bufio.NewReader(c))
		}
	}()
	u, _ := url.Parse("http://" + upLn.Addr().String())
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	p := NewHTTPProxy("web", NewPool([]*url.URL{u}, RoundRobin), tr, zap.NewNop())
	defer p.CloseIdleConnections()
	s := NewHTTPServer(http.NotFoundHandler(), nil, func(*DirectRequest) *HTTPProxy { return p })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := ln.Accept()
		if err == nil {
			s.Serve(ctx, c, nil)
		}
	}()
	defer func() {
		cancel()
		<-served
		ln.Close()
		s.Shutdown(context.Background())
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	req := []byte("GET /some/path?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench/1\r\nAccept: */*\r\n\r\n")
	resp := make([]byte, len(answer))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(br, resp); err != nil {
			b.Fatal(err)
		}
	}
}

// Empty lines before a request line are dropped (RFC 9112 §2.2), up to
// httpline.MaxEmptyLines: before a connection's first request, and between
// pipelined requests after a body, as old clients send a CRLF after a
// POST's. The direct path serves all of them; net/http (whose handler
// fails the test) never sees one.
func TestDirectEmptyLinesBeforeRequests(t *testing.T) {
	w := newDirectWorld(t, nil, echoBackend(t).URL)
	c, br := dialRaw(t, w.addr)
	send(t, c, "\r\nGET /first HTTP/1.1\r\nHost: a\r\n\r\n"+
		"POST /post HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz\r\n"+
		"GET /after-crlf HTTP/1.1\r\nHost: a\r\n\r\n"+
		"\n\r\n\n\r\nGET /after-four HTTP/1.1\r\nHost: a\r\n\r\n")
	for _, want := range []string{"GET /first ", "POST /post xyz", "GET /after-crlf ", "GET /after-four "} {
		if resp, body := readResp(t, br, ""); resp.StatusCode != 200 || body != want {
			t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, want)
		}
	}
	// An empty line split across reads is one.
	send(t, c, "\r")
	send(t, c, "\nGET /split HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "GET /split " {
		t.Fatalf("got %d %q; want 200 %q", resp.StatusCode, body, "GET /split ")
	}
}

// directRefusalServer serves every request with the handler through an
// HTTPServer whose direct path routes nothing (every request goes on to
// net/http), with net/http's head limit at 64 KiB, and reports each
// Serve's return.
func directRefusalServer(t *testing.T) (addr string, served <-chan error) {
	t.Helper()
	s := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %d", r.Proto, len(r.URL.Path))
	}), &http.Server{MaxHeaderBytes: 64 << 10}, func(*DirectRequest) *HTTPProxy { return nil })
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return handOver(t, s, context.Background())
}

// Requests the direct path reads before net/http does: empty lines before
// the request line are dropped first (net/http would answer 400 to them),
// bare LF line ends are net/http's to read, and request lines that could
// never be served are refused here with a short answer and the
// connection closed: a version other than HTTP/1 (505, where net/http
// would answer "HTTP/3" with 400) and a request line over MaxHeaderBytes
// (414, where net/http would answer 431). Serve returns a RefusedError
// for each refusal, for the connection's log line.
func TestDirectRequestLines(t *testing.T) {
	long := func(n int, version string) string {
		return "GET /" + strings.Repeat("a", n) + " " + version + "\r\nHost: x\r\nConnection: close\r\n\r\n"
	}
	for _, tc := range []struct {
		name, requests string
		status         int    // of the last response
		body           string // its start
		refused        bool
	}{
		{"empty lines first", "\r\n\nGET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, "HTTP/1.1 3", false},
		{"too many empty lines", strings.Repeat("\r\n", httpline.MaxEmptyLines+1) + "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "400 Bad Request", true},
		{"bare LF, HTTP/1.0", "GET /head HTTP/1.0\n\n", 200, "HTTP/1.0 5", false},
		{"bare LF, HTTP/1.1", "GET /ok HTTP/1.1\nHost: x\nConnection: close\n\n", 200, "HTTP/1.1 3", false},
		// A CR alone is no line end: net/http refuses it, as the
		// direct path leaves it to net/http.
		{"bare CR in a header", "GET /ok HTTP/1.1\r\nHost: x\r\nX-A: 1\rContent-Length: 5\r\n\r\nhello", 400, "400 Bad Request", true},
		{"HTTP/3", "GET / HTTP/3\r\nHost: x\r\n\r\n", 505, "505 http version not supported: HTTP/3", true},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, "505 http version not supported: HTTP/2.0", true},
		{"space in the target", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, "400 Bad Request", true},
		{"long request line", long(20<<10, "HTTP/1.1"), 200, fmt.Sprintf("HTTP/1.1 %d", 20<<10+1), false},
		{"long request line, HTTP/3", long(20<<10, "HTTP/3"), 505, "505", true},
		{"request line over the head limit", long(70<<10, "HTTP/1.1"), 414, "414 request uri too long: request line over 65536 bytes", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, served := directRefusalServer(t)
			c, br := dialRaw(t, addr)
			go io.WriteString(c, tc.requests) // may fail once refused
			var last *http.Response
			var body string
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					break
				}
				b, _ := io.ReadAll(resp.Body)
				last, body = resp, string(b)
			}
			c.Close() // Serve need not wait for the client to read its answer
			if last == nil || last.StatusCode != tc.status || !strings.HasPrefix(body, tc.body) {
				t.Fatalf("last response %v %q; want %d %q...", last, body, tc.status, tc.body)
			}
			if tc.refused && !last.Close {
				t.Errorf("refusal without Connection: close")
			}
			err := waitErr(t, served)
			var refused *RefusedError
			if got := errors.As(err, &refused); got != tc.refused || tc.refused && refused.Status != tc.status {
				t.Errorf("Serve: %v; want a RefusedError: %v, status %d", err, tc.refused, tc.status)
			}
		})
	}
}

// A request line the direct path refuses after requests it served (its
// checks run for every request of a connection, not just the first):
// answered 505, the connection closed.
func TestDirectRefusesLaterRequest(t *testing.T) {
	w := newDirectWorld(t, nil, echoBackend(t).URL)
	c, br := dialRaw(t, w.addr)
	send(t, c, "GET /ok HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/3\nHost: a\n\nGET /never HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != 200 || body != "GET /ok " {
		t.Fatalf("first: %d %q", resp.StatusCode, body)
	}
	if resp, body := readResp(t, br, "GET"); resp.StatusCode != 505 || !resp.Close || body != "505 http version not supported: HTTP/3\n" {
		t.Fatalf("second: %d %q, close %v; want 505 and the connection closed", resp.StatusCode, body, resp.Close)
	}
	if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("after the 505: %d, %v; want EOF", n, err)
	}
}
