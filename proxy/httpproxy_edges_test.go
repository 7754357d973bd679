package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Edge cases a real-client run found where the net/http path differed
// from the direct path, nginx or the RFCs. Each runs on both fronts.

// An upstream's response without a Content-Type reaches the client
// without one: the server must not add a type it guessed from the body.
func TestHTTPProxyContentTypeUntouched(t *testing.T) {
	bothFronts(t, testHTTPProxyContentTypeUntouched)
}

func testHTTPProxyContentTypeUntouched(t *testing.T, direct bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/typed" {
			w.Header().Set("Content-Type", "text/css")
		} else {
			w.Header()["Content-Type"] = nil // the upstream sends none
		}
		io.WriteString(w, "<html><body><script>alert(1)</script></body></html>")
	}))
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, direct, RoundRobin, up)
	for path, want := range map[string][]string{"/untyped": nil, "/typed": {"text/css"}} {
		resp, body := get(t, http.DefaultClient, mustReq(w.url+path))
		if got := resp.Header.Values("Content-Type"); fmt.Sprint(got) != fmt.Sprint(want) || !strings.HasPrefix(body, "<html>") {
			t.Errorf("%s: Content-Type %q, body %q; want %q as the upstream sent it", path, got, body, want)
		}
	}
}

// The query goes up byte for byte, parameters net/url cannot parse (";",
// a bad escape) included, as on the direct path.
func TestHTTPProxyQueryAsSent(t *testing.T) { bothFronts(t, testHTTPProxyQueryAsSent) }

func testHTTPProxyQueryAsSent(t *testing.T, direct bool) {
	w := newProxyWorldOn(t, direct, RoundRobin, headersOf(t, func(r *http.Request) string { return r.URL.RawQuery }))
	for _, method := range []string{"GET", "POST"} { // POST: net/http's path on both fronts
		c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
		send(t, c, method+" /q?a=1;b=2&c=%zz&d HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
		if _, body := readResp(t, br, method); body != "a=1;b=2&c=%zz&d" {
			t.Errorf("%s: upstream got query %q; want a=1;b=2&c=%%zz&d", method, body)
		}
	}
}

// headersOf is an upstream answering each request with show(r).
func headersOf(t *testing.T, show func(*http.Request) string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, show(r))
	}))
	t.Cleanup(s.Close)
	return s
}

// A client's Expect: 100-continue is answered by portmux (the 100 comes
// as the body is sent up) and not passed on: an upstream that never sends
// 100 would hold the upload back.
func TestHTTPProxyExpectContinue(t *testing.T) { bothFronts(t, testHTTPProxyExpectContinue) }

func testHTTPProxyExpectContinue(t *testing.T, direct bool) {
	var expect atomic.Value
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		req, err := http.ReadRequest(br) // answers no 100, as many servers do
		if err != nil {
			return
		}
		expect.Store(req.Header.Values("Expect"))
		b, _ := io.ReadAll(req.Body)
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	})
	w := newProxyWorldAt(t, direct, RoundRobin, up)
	c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
	send(t, c, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if line, err := br.ReadString('\n'); err != nil || line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("first line %q, %v; want the 100 Continue the client waits for", line, err)
	}
	if blank, _ := br.ReadString('\n'); blank != "\r\n" {
		t.Fatalf("after the 100: %q", blank)
	}
	send(t, c, "hello")
	if resp, body := readResp(t, br, "POST"); resp.StatusCode != http.StatusOK || body != "hello" {
		t.Errorf("%s %q; want 200 hello", resp.Status, body)
	}
	if got := expect.Load(); got == nil || len(got.([]string)) != 0 {
		t.Errorf("upstream got Expect %v; want none", got)
	}
}

// A body whose declared length is over max_body_bytes is refused at once:
// no 100 Continue for it, no upstream asked.
func TestHTTPProxyBodyLimitBeforeContinue(t *testing.T) {
	bothFronts(t, testHTTPProxyBodyLimitBeforeContinue)
}

func testHTTPProxyBodyLimitBeforeContinue(t *testing.T, direct bool) {
	var hits atomic.Int64
	w := newProxyWorldOn(t, direct, RoundRobin, named(t, "up", &hits))
	w.proxy.MaxBodyBytes = 1000
	c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
	send(t, c, "PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: 5000000\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(br, &http.Request{Method: "PUT"})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || hits.Load() != 0 {
		t.Errorf("first answer %s, upstream asked %d times; want 413 before any 100, upstream untouched", resp.Status, hits.Load())
	}
	waitLogs(t, w.logs, 1)
	if e := w.logs.FilterMessage("request").All(); len(e) != 1 || e[0].ContextMap()["status"] != int64(413) {
		t.Errorf("access log %v; want one line with status 413", e)
	}
}

// A chunked body net/http cannot decode is the client's error, and the
// client is still there: 400, not a silent close logged as 499.
func TestHTTPProxyMalformedChunkedBody(t *testing.T) {
	bothFronts(t, testHTTPProxyMalformedChunkedBody)
}

func testHTTPProxyMalformedChunkedBody(t *testing.T, direct bool) {
	w := newProxyWorldOn(t, direct, RoundRobin, echoBackend(t))
	for i, chunks := range []string{"zz\r\nhello\r\n0\r\n\r\n", "FFFFFFFFFFFFFFFFF1\r\nhello\r\n0\r\n\r\n"} {
		c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
		send(t, c, "POST /sha HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"+chunks)
		if resp, body := readResp(t, br, "POST"); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %s %q; want 400", chunks, resp.Status, body)
		}
		waitLogs(t, w.logs, i+1)
		if e := w.logs.FilterMessage("request").All(); len(e) != i+1 || e[i].ContextMap()["status"] != int64(400) {
			t.Errorf("%q: access log %v; want status 400", chunks, e)
		}
	}
}

// Interim responses (103 Early Hints) reach HTTP/1.1 clients, never
// HTTP/1.0 ones (RFC 9110 §15.2), which get the final response alone.
func TestHTTPProxyInterimOnlyToHTTP11(t *testing.T) { bothFronts(t, testHTTPProxyInterimOnlyToHTTP11) }

func testHTTPProxyInterimOnlyToHTTP11(t *testing.T, direct bool) {
	up := rawUpstream(t, answering(func(*http.Request) string {
		return "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	}))
	w := newProxyWorldAt(t, direct, RoundRobin, up)
	for version, want := range map[string]string{"HTTP/1.1": "HTTP/1.1 103 Early Hints\r\n", "HTTP/1.0": "HTTP/1.0 200 OK\r\n"} {
		c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
		send(t, c, "GET /hints "+version+"\r\nHost: a\r\n\r\n")
		if line, err := br.ReadString('\n'); err != nil || line != want {
			t.Errorf("%s client: first line %q, %v; want %q", version, line, err, want)
		}
	}
}

// An HTTP/1.0 request without Host sends no empty X-Forwarded-Host up.
func TestHTTPProxyNoHostNoForwardedHost(t *testing.T) {
	bothFronts(t, testHTTPProxyNoHostNoForwardedHost)
}

func testHTTPProxyNoHostNoForwardedHost(t *testing.T, direct bool) {
	w := newProxyWorldOn(t, direct, RoundRobin, headersOf(t, func(r *http.Request) string {
		v, ok := r.Header["X-Forwarded-Host"]
		return fmt.Sprintf("%v %q", ok, v)
	}))
	c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
	send(t, c, "GET /old HTTP/1.0\r\n\r\n")
	if _, body := readResp(t, br, "GET"); body != "false []" {
		t.Errorf("upstream saw X-Forwarded-Host %s; want none", body)
	}
}

// A request that cannot be sent again if the upstream closes its kept-alive
// connection meanwhile (a body, or a method that is not idempotent) takes
// one idle under freshReuseWindow or a new one, so that it never meets an
// upstream's keep-alive timeout; idempotent requests reuse older ones.
func TestHTTPProxyFreshConnectionForUnrepeatable(t *testing.T) {
	bothFronts(t, testHTTPProxyFreshConnectionForUnrepeatable)
}

func testHTTPProxyFreshConnectionForUnrepeatable(t *testing.T, direct bool) {
	var conns atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, direct, RoundRobin, up)
	c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
	idle := func() { time.Sleep(freshReuseWindow + 200*time.Millisecond) }
	// The direct path sends small bodies from its buffer over its own
	// connections; net/http's path streams them over a second pool.
	for i, step := range []struct {
		before          func()
		method, len     string
		nethttp, direct int64 // connections the upstream accepted by then
	}{
		{nil, "GET", "", 1, 1},
		{nil, "POST", "1", 2, 1},   // net/http: a body goes over the second pool
		{nil, "POST", "1", 2, 1},   // over the one just used
		{idle, "GET", "", 2, 1},    // idempotent: any kept connection
		{nil, "POST", "1", 3, 1},   // net/http: the POSTs' connection idled too long
		{idle, "DELETE", "", 4, 2}, // not idempotent: every connection idled too long
	} {
		want := step.nethttp
		if direct {
			want = step.direct
		}
		if step.before != nil {
			step.before()
		}
		head := step.method + " /s HTTP/1.1\r\nHost: a\r\n"
		if step.len != "" {
			head += "Content-Length: " + step.len + "\r\n\r\nx"
		} else {
			head += "\r\n"
		}
		send(t, c, head)
		if resp, _ := readResp(t, br, step.method); resp.StatusCode != http.StatusOK {
			t.Fatalf("step %d %s: %s", i, step.method, resp.Status)
		}
		if n := conns.Load(); n != want {
			t.Errorf("step %d %s: upstream accepted %d connections; want %d", i, step.method, n, want)
		}
	}
}

// A response the upstream cuts off mid-body fails for the client and is
// logged alike on both paths: "response aborted", and the body's bytes
// relayed without chunk framing.
func TestHTTPProxyTruncatedResponseLogged(t *testing.T) {
	bothFronts(t, testHTTPProxyTruncatedResponseLogged)
}

func testHTTPProxyTruncatedResponseLogged(t *testing.T, direct bool) {
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err == nil {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		}
	})
	w := newProxyWorldAt(t, direct, RoundRobin, up)
	resp, err := http.Get(w.url + "/cut")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil || string(body) != "hello" {
		t.Errorf("client read %q, %v; want hello and an error", body, err)
	}
	waitLogs(t, w.logs, 1)
	e := w.logs.FilterMessage("request").All()
	if len(e) != 1 || e[0].ContextMap()["bytes"] != int64(5) || !strings.Contains(fmt.Sprint(e[0].ContextMap()["error"]), "response aborted") {
		t.Errorf("access log %v; want bytes 5 and the error response aborted", e)
	}
}
