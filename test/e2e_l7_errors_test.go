package test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestE2EL7Errors: the reverse proxy's own answers. Upstream unreachable or
// answering in another protocol 502, no response headers within
// response_header_timeout 504, body over max_body_bytes 413, no route for
// the Host 404 (on a fresh connection and on a keep-alive one). Each request
// gets exactly one "request" log line with its status.
func TestE2EL7Errors(t *testing.T) {
	backend := startL7Backend(t, "web")
	dead := closedPort(t)
	sshd := startSSHServer(t)
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: dead
    match: {protocol: http, host: [dead.test]}
    to: http://%s
  - name: wrong-port
    match: {protocol: http, host: [ssh.test]}
    response_header_timeout: 5m
    to: http://%s
  - name: slow
    match: {protocol: http, host: [slow.test]}
    response_header_timeout: 500ms
    to: http://%s
  - name: small
    match: {protocol: http, host: [small.test]}
    max_body_bytes: 1024
    to: http://%s
  - name: web
    match: {protocol: http, host: [web.test]}
    to: http://%s
`, dead, sshd.Addr(), backend.Addr(), backend.Addr(), backend.Addr()))

	type check struct {
		path, route string
		status      int
		err         string // in the line's error, when set
	}
	var checks []check
	expect := func(t *testing.T, resp *http.Response, body []byte, err error, want int) {
		t.Helper()
		if err != nil {
			t.Fatalf("got error %v; want %d", err, want)
		}
		if resp.StatusCode != want {
			t.Errorf("got %s %q; want %d", resp.Status, body, want)
		}
	}

	// expect502 gets url, whose answer must be a 502 whose body says
	// which failure it was.
	expect502 := func(t *testing.T, url, says string) {
		t.Helper()
		hc := newL7Client(t, pm.Addr(), "")
		resp, body, err := hc.do(http.MethodGet, url, "", nil, nil)
		expect(t, resp, body, err, http.StatusBadGateway)
		if !bytes.Contains(body, []byte(says)) {
			t.Errorf("body %q; want it to say %q", body, says)
		}
	}

	t.Run("502 upstream unreachable", func(t *testing.T) {
		expect502(t, "http://dead.test/e502", "could not be reached")
		checks = append(checks, check{"/e502", "dead", http.StatusBadGateway, ""})
	})

	// A route pointed at the wrong port: the SSH server's banner is no
	// HTTP response, refused as it arrives, not when the server gives up
	// on the request it takes for an SSH client's (30s) or at the 5
	// minutes of response_header_timeout; the line says why, and the
	// body that it is no unreachable upstream.
	t.Run("502 upstream speaks another protocol", func(t *testing.T) {
		expect502(t, "http://ssh.test/e502-ssh", "not one the proxy can relay")
		checks = append(checks, check{"/e502-ssh", "wrong-port", http.StatusBadGateway, "malformed response"})
	})

	// The limit on an upstream's response head is the same whichever
	// path a request takes: the direct path (a GET), net/http's Transport
	// (an upload larger than the direct path buffers), HTTP/2.
	t.Run("502 response head over 16 KiB", func(t *testing.T) {
		upload := bytes.Repeat([]byte("u"), 1<<20)
		for _, tc := range []struct {
			name   string
			client *l7Client
			method string
			body   []byte
		}{
			{"GET", newL7Client(t, pm.Addr(), ""), http.MethodGet, nil},
			{"POST 1 MiB", newL7Client(t, pm.Addr(), ""), http.MethodPost, upload},
			{"h2c GET", newH2CClient(t, pm.Addr()), http.MethodGet, nil},
			{"h2c POST 1 MiB", newH2CClient(t, pm.Addr()), http.MethodPost, upload},
		} {
			resp, _, err := tc.client.do(tc.method, "http://web.test/bighead", "", nil, bytes.NewReader(tc.body))
			if err != nil {
				t.Errorf("%s: %v; want 502", tc.name, err)
			} else if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("%s: %s; want 502", tc.name, resp.Status)
			}
		}
	})

	t.Run("504 no response headers in time", func(t *testing.T) {
		hc := newL7Client(t, pm.Addr(), "")
		before := backend.Hits()
		resp, body, err := hc.do(http.MethodGet, "http://slow.test/slow?ms=20000", "", nil, nil)
		expect(t, resp, body, err, http.StatusGatewayTimeout)
		if backend.Hits() == before {
			t.Errorf("the slow upstream never got the request; the 504 must come from waiting on it")
		}
		checks = append(checks, check{"/slow", "slow", http.StatusGatewayTimeout, ""})
		// The route still works for a fast answer.
		resp, body, err = hc.do(http.MethodGet, "http://slow.test/slow-fast", "", nil, nil)
		expect(t, resp, body, err, http.StatusOK)
	})

	t.Run("413 body over max_body_bytes", func(t *testing.T) {
		hc := newL7Client(t, pm.Addr(), "")
		resp, body, err := hc.do(http.MethodPost, "http://small.test/sink-ok", "", nil, bytes.NewReader(make([]byte, 1000)))
		expect(t, resp, body, err, http.StatusOK)
		resp, body, err = hc.do(http.MethodPost, "http://small.test/sink-big", "", nil, bytes.NewReader(make([]byte, 4096)))
		expect(t, resp, body, err, http.StatusRequestEntityTooLarge)
		checks = append(checks, check{"/sink-big", "small", http.StatusRequestEntityTooLarge, ""})
		// Chunked: the size is only known while streaming.
		hc2 := newL7Client(t, pm.Addr(), "")
		resp, body, err = hc2.do(http.MethodPost, "http://small.test/sink-big-chunked", "", nil, struct{ io.Reader }{bytes.NewReader(make([]byte, 4096))})
		expect(t, resp, body, err, http.StatusRequestEntityTooLarge)
		checks = append(checks, check{"/sink-big-chunked", "small", http.StatusRequestEntityTooLarge, ""})
	})

	t.Run("404 no route, keep-alive connection", func(t *testing.T) {
		hc := newL7Client(t, pm.Addr(), "")
		hc.Tr.MaxConnsPerHost = 1
		resp, body, err := hc.do(http.MethodGet, "http://portmux.test/first", "web.test", nil, nil)
		expect(t, resp, body, err, http.StatusOK)
		resp, body, err = hc.do(http.MethodGet, "http://portmux.test/e404-keepalive", "nope.test", nil, nil)
		expect(t, resp, body, err, http.StatusNotFound)
		if n := len(hc.Locals()); n != 1 {
			t.Errorf("%d connections; want both requests on one", n)
		}
		checks = append(checks, check{"/e404-keepalive", "", http.StatusNotFound, ""})
	})

	t.Run("404 no route, fresh connection", func(t *testing.T) {
		hc := newL7Client(t, pm.Addr(), "")
		resp, body, err := hc.do(http.MethodGet, "http://nope.test/e404-fresh", "", nil, nil)
		if err != nil {
			locals := hc.Locals()
			l, _ := pm.waitFor(connOf(locals[len(locals)-1]), 10*time.Second)
			t.Fatalf("first request on a new connection for a Host no route takes: %v; want 404 Not Found\nportmux: %s", err, l.Raw)
		}
		expect(t, resp, body, err, http.StatusNotFound)
		checks = append(checks, check{"/e404-fresh", "", http.StatusNotFound, ""})
	})

	pm.Stop(t) // every line written
	for _, c := range checks {
		lines := pm.Find(requestLog(c.path))
		if len(lines) != 1 {
			t.Errorf("%s: %d request lines; want 1", c.path, len(lines))
			for _, l := range lines {
				t.Logf("  %s", l.Raw)
			}
			continue
		}
		if got := numField(lines[0], "status"); got != c.status {
			t.Errorf("%s: request line status %d; want %d\nline: %s", c.path, got, c.status, lines[0].Raw)
		}
		checkFields(t, lines[0], map[string]string{"route": c.route})
		if got := lines[0].Str("error"); !strings.Contains(got, c.err) {
			t.Errorf("%s: request line error %q; want it to say %q", c.path, got, c.err)
		}
	}
}

// TestE2EL7Misdirected: over terminated TLS, a request no route takes gets 421
// when its Host is not the connection's SNI, and 404 when it is (compared
// as routing compares hosts: without case, port or trailing dot). Two ways to
// route the decrypted requests: nested routes by path and by host.
func TestE2EL7Misdirected(t *testing.T) {
	backend := startL7Backend(t, "app")
	type req struct {
		path, host string
		want       int
	}
	for _, tc := range []struct {
		name, match string
		reqs        []req
	}{
		{"nested route by path", "{protocol: http, path: [/app]}", []req{
			{"/app/ok", "localhost", http.StatusOK},
			{"/app/any-host", "other.test", http.StatusOK}, // the path route takes any Host
			{"/nothing", "localhost", http.StatusNotFound},
			{"/nothing", "LocalHost.:443", http.StatusNotFound}, // the SNI's host, written otherwise
			{"/nothing-other", "other.test", http.StatusMisdirectedRequest},
		}},
		{"nested route by host", "{protocol: http, host: [localhost]}", []req{
			{"/ok", "localhost", http.StatusOK},
			{"/ok", "localhost.", http.StatusOK},
			{"/other", "other.test", http.StatusMisdirectedRequest},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + fmt.Sprintf(`routes:
  - name: site
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    routes:
      - name: site-app
        match: %s
        to: http://%s
`, tc.match, backend.Addr())
			pm := startPortmux(t, yaml)
			pm.WaitLog(t, certObtained("localhost"), time.Minute)
			roots := poolFromPEM(t, portmuxTrust(t, yaml))
			base := "https://localhost:" + portOf(t, pm.Addr())
			for _, h2 := range []bool{true, false} {
				c := newHTTPSClient(t, pm.Addr(), roots, h2)
				for _, r := range tc.reqs {
					req, _ := http.NewRequest(http.MethodGet, base+r.path, nil)
					req.Host = r.host // the SNI stays localhost (the URL's host)
					resp, err := c.Do(req)
					if err != nil {
						t.Errorf("h2=%v GET %s Host %s: %v; want %d", h2, r.path, r.host, err, r.want)
						continue
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != r.want {
						t.Errorf("h2=%v GET %s Host %s: %s %q; want %d", h2, r.path, r.host, resp.Status, body, r.want)
					}
				}
				c.Tr.CloseIdleConnections()
			}
		})
	}
}

// TestE2EL7Slowloris: a client that sends its request headers one line every
// 200ms is cut off at http.read_header_timeout (1s) before it finishes, while
// a normal client is served in the meantime. Order, not timing: the slow
// client's plan (15s of header lines) never completes.
func TestE2EL7Slowloris(t *testing.T) {
	backend := startL7Backend(t, "web")
	pm := startPortmux(t, l7Header("http: {read_header_timeout: 1s}\n")+fmt.Sprintf(`routes:
  - name: web
    match: {protocol: http}
    to: http://%s
`, backend.Addr()))

	c, err := dialTCP(pm.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(60 * time.Second)) // hang guard
	if _, err := io.WriteString(c, "GET /slowloris HTTP/1.1\r\nHost: web.test\r\n"); err != nil {
		t.Fatal(err)
	}
	// The reader learns when portmux closes the connection (or answers).
	type readResult struct {
		data []byte
		err  error
	}
	closed := make(chan readResult, 1)
	go func() {
		b, err := io.ReadAll(bufio.NewReader(c))
		closed <- readResult{b, err}
	}()

	// Meanwhile a normal client is served.
	hc := newL7Client(t, pm.Addr(), "")
	if seen, _, err := hc.getSeen("http://web.test/good", "", nil); err != nil || seen.Path != "/good" {
		t.Fatalf("normal client while the slow one dribbles: %v", err)
	}

	const drips = 75 // 15s at 200ms
	cut := false
	var res readResult
loop:
	for i := 0; i < drips; i++ {
		select {
		case res = <-closed:
			cut = true
			break loop
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := fmt.Fprintf(c, "X-Drip-%d: a\r\n", i); err != nil {
			cut = true // reset: the connection is gone
			break
		}
	}
	if !cut {
		io.WriteString(c, "\r\n")
		res = <-closed
		t.Fatalf("portmux read %d header lines over 15s and answered %q; want the connection cut at read_header_timeout (1s)", drips, res.data)
	}
	if bytes.Contains(res.data, []byte("HTTP/1.1 200")) {
		t.Errorf("slow client got a 200: %q", res.data)
	}
	if res.err != nil && !isClosedErr(res.err) && !errors.Is(res.err, io.EOF) {
		t.Logf("slow client read ended with %v", res.err)
	}
	if backend.Hits() != 1 {
		t.Errorf("backend got %d requests; want 1 (only the normal client's)", backend.Hits())
	}
	cl := pm.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, cl, map[string]string{"outcome": "header_timeout"})
	t.Logf("slow client: got %q; connection line: %s", res.data, cl.Raw)
}

// TestE2EL7HeaderLimit: http.max_header_bytes at its default (64 KiB). A
// request with a 32 KiB header field is proxied whole; one with 100 KiB is
// answered 431 without reaching the upstream, as a connection's first
// request and after one on a keep-alive connection, and the connection's
// log line says so. HTTP/2 clients are told the limit: Go's refuses to
// send the large request, and sends the other.
func TestE2EL7HeaderLimit(t *testing.T) {
	backend := startL7Backend(t, "web")
	pm := startOneRoute(t, "web", backend)
	ok, big := strings.Repeat("a", 32<<10), strings.Repeat("b", 100<<10)

	get := func(t *testing.T, c net.Conn, br *bufio.Reader, path, value string) int {
		t.Helper()
		return rawGet(t, c, br, "web.test", path, "X-Large: "+value).StatusCode
	}
	// The refusal is net/http's own; the connection's line tells it.
	refusedLine := func(t *testing.T, c net.Conn) {
		t.Helper()
		cl := pm.WaitLog(t, connOf(c.LocalAddr().String()), 10*time.Second)
		checkFields(t, cl, map[string]string{"outcome": "bad_request"})
		if !strings.Contains(cl.Str("error"), "431") {
			t.Errorf("connection line error %q; want the 431\nline: %s", cl.Str("error"), cl.Raw)
		}
	}
	t.Run("first request", func(t *testing.T) {
		c, br := rawDial(t, pm.Addr())
		if got := get(t, c, br, "/big-first", big); got != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("100 KiB header: %d; want 431", got)
		}
		refusedLine(t, c)
		c, br = rawDial(t, pm.Addr())
		if got := get(t, c, br, "/ok-first", ok); got != http.StatusOK {
			t.Errorf("32 KiB header: %d; want 200", got)
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		c, br := rawDial(t, pm.Addr())
		if got := get(t, c, br, "/small", "x"); got != http.StatusOK {
			t.Fatalf("small request: %d; want 200", got)
		}
		if got := get(t, c, br, "/ok-second", ok); got != http.StatusOK {
			t.Errorf("32 KiB header: %d; want 200", got)
		}
		if got := get(t, c, br, "/big-second", big); got != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("100 KiB header: %d; want 431", got)
		}
		refusedLine(t, c)
	})
	t.Run("h2c", func(t *testing.T) {
		hc := newH2CClient(t, pm.Addr())
		// The first request lets the client learn the server's SETTINGS.
		resp, _, err := hc.do(http.MethodGet, "http://web.test/ok-h2", "", http.Header{"X-Large": {ok}}, nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("32 KiB header over h2c: %v, %v; want 200", resp, err)
		}
		if _, _, err := hc.do(http.MethodGet, "http://web.test/big-h2", "", http.Header{"X-Large": {big}}, nil); err == nil ||
			!strings.Contains(err.Error(), "advertised limit") {
			t.Errorf("100 KiB header over h2c: %v; want the client to refuse it for the advertised limit", err)
		}
	})

	for _, s := range backend.Seen() {
		if strings.HasPrefix(s.Path, "/big") {
			t.Errorf("the upstream got %s", s.Path)
		}
		if strings.HasPrefix(s.Path, "/ok") && s.Header.Get("X-Large") != ok {
			t.Errorf("%s: the upstream got X-Large of %d bytes; want %d", s.Path, len(s.Header.Get("X-Large")), len(ok))
		}
	}
}

// TestE2EL7AboutServer: requests about the server rather than a route's
// resource are answered by portmux with one access line each, and the
// connection's line tells a normal end: OPTIONS * gets 200 without a
// body (RFC 9110 §9.3.7); CONNECT, a tunnel a reverse proxy does not
// open, gets 501 and never reaches the upstream.
func TestE2EL7AboutServer(t *testing.T) {
	backend := startL7Backend(t, "web")
	pm := startOneRoute(t, "web", backend)
	for _, tc := range []struct {
		request, outcome string
		status           int
	}{
		{"OPTIONS * HTTP/1.1\r\nHost: web.test\r\n\r\n", "server_options", http.StatusOK},
		{"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n", "connect_refused", http.StatusNotImplemented},
	} {
		method, _, _ := strings.Cut(tc.request, " ")
		t.Run(method, func(t *testing.T) {
			c, br := rawDial(t, pm.Addr())
			if _, err := io.WriteString(c, tc.request); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("%s: %s; want %d", method, resp.Status, tc.status)
			}
			local := c.LocalAddr().String()
			line := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "request" && l.Str("client") == local }, 10*time.Second)
			checkFields(t, line, map[string]string{"method": method, "outcome": tc.outcome})
			c.Close()
			// No route took it: the connection line says so, not the
			// route the mux guessed from the Host.
			checkFields(t, pm.WaitLog(t, connOf(local), 10*time.Second), map[string]string{"outcome": "ok", "route": ":http"})
		})
	}
	if n := backend.Hits(); n != 0 {
		t.Errorf("the upstream got %d requests; want none", n)
	}
}

// TestE2EL7UploadAnsweredUnread: an upstream that answers an upload (413)
// without reading it. A client that sends its whole body before it reads,
// after 100 Continue or without asking, gets that 413, over plain HTTP and
// over terminated TLS: portmux drains the upload once the answer is out,
// where closing with the client's bytes unread would reset the connection
// and lose the answer (curl then says "Send failure: Connection reset by
// peer" and never shows the 413).
func TestE2EL7UploadAnsweredUnread(t *testing.T) {
	backend := startL7Backend(t, "web")
	yaml := tlsAndPlainConfig(t, backend.Addr())
	pm := startPortmux(t, yaml)
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := poolFromPEM(t, portmuxTrust(t, yaml))
	upload := bytes.Repeat([]byte("u"), 16<<20) // far more than socket buffers hold
	dial := map[string]func(t *testing.T) net.Conn{
		"plain": func(t *testing.T) net.Conn { c, _ := rawDial(t, pm.Addr()); return c },
		"TLS": func(t *testing.T) net.Conn {
			c, local, err := tlsDial(pm.Addr(), &tls.Config{ServerName: "localhost", RootCAs: roots, NextProtos: []string{"http/1.1"}})
			if err != nil {
				t.Fatalf("TLS from %s: %v", local, err)
			}
			t.Cleanup(func() { c.Close() })
			c.SetDeadline(time.Now().Add(30 * time.Second))
			return c
		},
	}
	for _, over := range []string{"plain", "TLS"} {
		for _, expect := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s expect %v", over, expect), func(t *testing.T) {
				for i := range 5 {
					c := dial[over](t)
					br := bufio.NewReader(c)
					head := fmt.Sprintf("PUT /refuse HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n", len(upload))
					if expect {
						head += "Expect: 100-continue\r\n"
					}
					io.WriteString(c, head+"\r\n")
					var resp *http.Response
					if expect {
						// The 413 may beat the 100 Continue (the upstream
						// answered before the upload was asked for): then
						// the client sends no body, as curl does.
						var err error
						if resp, err = http.ReadResponse(br, nil); err != nil {
							t.Fatalf("attempt %d, before the body: %v; want 100 Continue or the 413", i, err)
						}
					}
					if resp == nil || resp.StatusCode == http.StatusContinue {
						if _, err := c.Write(upload); err != nil {
							t.Fatalf("attempt %d: upload: %v; want it read to its end", i, err)
						}
						var err error
						if resp, err = http.ReadResponse(br, nil); err != nil {
							t.Fatalf("attempt %d: %v; want the upstream's 413", i, err)
						}
					}
					if resp.StatusCode != http.StatusRequestEntityTooLarge {
						t.Errorf("attempt %d: %s; want the upstream's 413", i, resp.Status)
					}
					c.Close()
				}
			})
		}
	}
}

// TestE2EL7ClientStopsReading: a client that asks for a large response
// and never reads it. portmux gives up on it once a write has waited
// http.send_timeout, over HTTP/1.1 (direct path), HTTP/1.0 (net/http) and
// h2c: the request is logged, cut short, with an error, and its
// connection closed, where it used to hold the client's connection, the
// upstream's and their goroutines for as long as the client stayed.
func TestE2EL7ClientStopsReading(t *testing.T) {
	backend := startL7Backend(t, "web")
	pm := startOneRouteWith(t, "http: {send_timeout: 1s}\n", "web", backend)
	const big = 256 << 20 // far more than socket buffers hold
	for _, tc := range []struct{ name, host, request string }{
		{"direct path", "direct.test", "GET /gen?n=%d&seed=1 HTTP/1.1\r\nHost: direct.test\r\n\r\n"},
		{"net/http", "nethttp.test", "GET /gen?n=%d&seed=1 HTTP/1.0\r\nHost: nethttp.test\r\n\r\n"},
		{"h2c", "h2c.test", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := rawDial(t, pm.Addr())
			if tc.request == "" {
				writeH2CGet(t, c, tc.host, "/gen?n="+strconv.Itoa(big)+"&seed=1")
			} else {
				fmt.Fprintf(c, tc.request, big)
			}
			// The client reads nothing. Without the limit the line never
			// comes: portmux's write waits for as long as the client stays.
			l := pm.WaitLog(t, func(l logLine) bool { return requestLog("/gen")(l) && l.Str("host") == tc.host }, time.Minute)
			// The client's doing: at info, as a scan of such clients
			// must not flood the warnings (README, logging policy). Over
			// HTTP/2 the stream may instead see its connection fail
			// first: it went away.
			errText := l.Str("error")
			cause := strings.Contains(errText, "timeout") || tc.request == "" && errText == "client went away"
			if !cause || numField(l, "bytes") >= big || l.Level() != "info" {
				t.Errorf("request line: %s; want the response cut short by the write's timeout, at info", l.Raw)
			}
		})
	}
}

// writeH2CGet starts an h2c connection on c with prior knowledge, opens
// the client's flow-control windows as far as HTTP/2 allows (so that only
// the socket holds the server back) and sends one GET for path.
func writeH2CGet(t *testing.T, c net.Conn, host, path string) {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"},
		{Name: ":authority", Value: host}, {Name: ":path", Value: path}} {
		enc.WriteField(f)
	}
	const maxWindow = 1<<31 - 1
	err := errors.Join(
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: maxWindow}),
		fr.WriteWindowUpdate(0, maxWindow-65535),
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}))
	if err != nil {
		t.Fatal(err)
	}
}
