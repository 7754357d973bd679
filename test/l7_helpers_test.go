package test

// Helpers of the HTTP reverse proxy tests (e2e_l7_*): a real net/http backend
// that says who it is and what it saw, clients that always dial portmux, and
// log matchers for the per-request "request" lines.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// seenRequest is what an l7Backend saw of one request; GET / answers with it
// as JSON.
type seenRequest struct {
	Backend          string      `json:"backend"`
	Method           string      `json:"method"`
	Host             string      `json:"host"`
	Path             string      `json:"path"`
	RawPath          string      `json:"raw_path"` // the request line's path, as escaped
	Query            string      `json:"query"`
	Proto            string      `json:"proto"`
	RemoteAddr       string      `json:"remote_addr"`
	Header           http.Header `json:"header"`
	TransferEncoding []string    `json:"transfer_encoding"`
	ContentLength    int64       `json:"content_length"`
}

// sinkReply is the answer of POST /sink.
type sinkReply struct {
	Backend          string   `json:"backend"`
	Sum              string   `json:"sum"`
	N                int64    `json:"n"`
	TransferEncoding []string `json:"transfer_encoding"`
}

// l7Backend is a real HTTP/1.1 backend (httptest) named Name. Every response
// carries the header X-Backend-Name: Name. Endpoints:
//
//	GET  /gen?n=N&seed=S  N bytes of payload(S), with Content-Length
//	POST /sink            reads the body, answers sinkReply as JSON
//	GET  /sse             text/event-stream: "first" at once (flushed), then
//	                      "second" once ReleaseSSE is called (or 30s), then ends
//	GET  /ws              WebSocket echo (gorilla/websocket)
//	GET  /slow?ms=D       waits D ms (or until the request is cancelled) before
//	                      any header
//	GET  /hop             sets hop-by-hop response headers, then as below
//	*    anything else    seenRequest as JSON
type l7Backend struct {
	*httptest.Server
	Name string

	hits atomic.Int64

	mu   sync.Mutex
	seen []seenRequest

	release     chan struct{}
	releaseOnce sync.Once
}

// tlsAndPlainConfig is a config serving upstream (host:port) through a
// route "app" terminating TLS for localhost (internal CA) and a route
// "web" for plain HTTP.
func tlsAndPlainConfig(t *testing.T, upstream string) string {
	return l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%[1]s
  - name: web
    match: {protocol: http}
    to: http://%[1]s
`, upstream)
}

// startL7Backend starts a backend on 127.0.0.1:0, closed when the test ends.
func startL7Backend(t testing.TB, name string) *l7Backend {
	t.Helper()
	b := &l7Backend{Name: name, release: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /gen", b.gen)
	mux.HandleFunc("POST /sink", b.sink)
	mux.HandleFunc("GET /sse", b.sse)
	mux.HandleFunc("GET /ws", b.ws)
	mux.HandleFunc("GET /slow", b.slow)
	mux.HandleFunc("/bighead", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Big", strings.Repeat("x", 20<<10)) // over portmux's 16 KiB
	})
	mux.HandleFunc("PUT /refuse", func(w http.ResponseWriter, r *http.Request) {
		// Refused before a byte of the upload is read, as an upstream
		// checking size or credentials first does.
		http.Error(w, "refused unread", http.StatusRequestEntityTooLarge)
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Resp-Hop")
		w.Header().Set("X-Resp-Hop", "must not reach the client")
		w.Header().Set("Keep-Alive", "timeout=99")
		w.Header().Set("X-End-To-End", "kept")
		b.describe(w, r)
	})
	mux.HandleFunc("/", b.describe)
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		b.mu.Lock()
		b.seen = append(b.seen, seenOf(name, r))
		b.mu.Unlock()
		w.Header().Set("X-Backend-Name", name)
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		b.ReleaseSSE()
		b.Server.Close()
	})
	trackHTTPPeer(t, b.Server)
	return b
}

func seenOf(name string, r *http.Request) seenRequest {
	return seenRequest{Backend: name, Method: r.Method, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.EscapedPath(),
		Query: r.URL.RawQuery, Proto: r.Proto,
		RemoteAddr: r.RemoteAddr, Header: r.Header.Clone(), TransferEncoding: r.TransferEncoding,
		ContentLength: r.ContentLength}
}

// Addr is the backend's host:port.
func (b *l7Backend) Addr() string { return b.Listener.Addr().String() }

// Hits is the number of requests the backend received.
func (b *l7Backend) Hits() int64 { return b.hits.Load() }

// Seen returns the requests received so far.
func (b *l7Backend) Seen() []seenRequest {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seenRequest(nil), b.seen...)
}

// ReleaseSSE lets /sse streams send their second event and end.
func (b *l7Backend) ReleaseSSE() { b.releaseOnce.Do(func() { close(b.release) }) }

func (b *l7Backend) describe(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(seenOf(b.Name, r))
}

func (b *l7Backend) gen(w http.ResponseWriter, r *http.Request) {
	n, err1 := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	seed, err2 := strconv.ParseUint(r.URL.Query().Get("seed"), 10, 64)
	if err1 != nil || err2 != nil || n < 0 {
		http.Error(w, "want n and seed", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	io.Copy(w, payload(seed, n))
}

func (b *l7Backend) sink(w http.ResponseWriter, r *http.Request) {
	d, err := digestOf(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(sinkReply{Backend: b.Name, Sum: d.Sum, N: d.N, TransferEncoding: r.TransferEncoding})
}

func (b *l7Backend) sse(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	io.WriteString(w, "data: first\n\n")
	if err := http.NewResponseController(w).Flush(); err != nil {
		return
	}
	select {
	case <-b.release:
	case <-r.Context().Done():
		return
	case <-time.After(30 * time.Second): // hang guard
	}
	io.WriteString(w, "data: second\n\n")
}

var wsUpgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (b *l7Backend) ws(w http.ResponseWriter, r *http.Request) {
	// gorilla writes the 101 itself, from this header only.
	c, err := wsUpgrader.Upgrade(w, r, http.Header{"X-Backend-Name": {b.Name}})
	if err != nil {
		return
	}
	defer c.Close()
	for i := 0; i < 1000; i++ { // bounded: a test sends a handful of messages
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		typ, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(typ, msg); err != nil {
			return
		}
	}
}

func (b *l7Backend) slow(w http.ResponseWriter, r *http.Request) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
	select {
	case <-time.After(time.Duration(ms) * time.Millisecond):
	case <-r.Context().Done():
		return
	}
	b.describe(w, r)
}

// l7Client is an HTTP client that dials portmux (addr) whatever the URL says,
// optionally from a given local IP, and records each connection's local address.
type l7Client struct {
	*http.Client
	Tr *http.Transport

	mu     sync.Mutex
	locals []string
}

// newL7Client returns a plain-HTTP/1.1 client to addr. localIP may be "" (any).
func newL7Client(t testing.TB, addr, localIP string) *l7Client {
	return newRecordingClient(t, addr, localIP, func(tr *http.Transport) { tr.MaxIdleConnsPerHost = 4 })
}

// newRecordingClient returns a client to addr whose transport configure
// finishes (TLS, h2, pool size).
func newRecordingClient(t testing.TB, addr, localIP string, configure func(*http.Transport)) *l7Client {
	c := &l7Client{}
	d := &net.Dialer{Timeout: 10 * time.Second}
	if localIP != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	c.Tr = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			c.mu.Lock()
			c.locals = append(c.locals, conn.LocalAddr().String())
			c.mu.Unlock()
			return conn, nil
		},
	}
	configure(c.Tr)
	c.Client = &http.Client{Transport: c.Tr, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(c.Tr.CloseIdleConnections)
	return c
}

// newH2CClient returns a client to addr that speaks HTTP/2 with prior
// knowledge (h2c): the connection preface is its first bytes.
func newH2CClient(t testing.TB, addr string) *l7Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	return newRecordingClient(t, addr, "", func(tr *http.Transport) { tr.Protocols = &protos })
}

// Locals returns the local addresses of the connections opened so far.
func (c *l7Client) Locals() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.locals...)
}

// do sends method url with Host host (if not "") and extra headers, and returns
// the response with its body read.
func (c *l7Client) do(method, url, host string, hdr http.Header, body io.Reader) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return nil, nil, err
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp, b, fmt.Errorf("reading body: %w", err)
	}
	return resp, b, nil
}

// getSeen does GET url (Host host) and decodes the backend's seenRequest. A
// status other than 200 is an error.
func (c *l7Client) getSeen(url, host string, hdr http.Header) (seenRequest, *http.Response, error) {
	resp, body, err := c.do(http.MethodGet, url, host, hdr, nil)
	if err != nil {
		return seenRequest{}, resp, err
	}
	if resp.StatusCode != http.StatusOK {
		return seenRequest{}, resp, fmt.Errorf("GET %s (Host %s): %s %q; want 200", url, host, resp.Status, body)
	}
	var s seenRequest
	if err := json.Unmarshal(body, &s); err != nil {
		return s, resp, fmt.Errorf("GET %s: decoding %q: %v", url, body, err)
	}
	return s, resp, nil
}

// requestLog matches the "request" log line of the request to path.
func requestLog(path string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg() == "request" && l.Str("path") == path }
}

// numField returns the numeric field k of l as an int (-1 if absent).
func numField(l logLine, k string) int {
	n, ok := l.Num(k)
	if !ok {
		return -1
	}
	return int(n)
}

// startOneRoute starts portmux with one HTTP route, name, that takes every
// HTTP connection to backend.
func startOneRoute(t testing.TB, name string, backend *l7Backend) *instance {
	t.Helper()
	return startOneRouteWith(t, "", name, backend)
}

// startOneRouteWith is startOneRoute with extra top-level YAML (l7Header).
func startOneRouteWith(t testing.TB, extra, name string, backend *l7Backend) *instance {
	t.Helper()
	return startPortmux(t, l7Header(extra)+fmt.Sprintf(`routes:
  - name: %s
    match: {protocol: http}
    to: http://%s
`, name, backend.Addr()))
}

// l7Header is the start of the configs of the L7 tests: one loopback listener,
// an admin listener on a port of the kernel's choice (adminListen), debug logs.
// extra is inserted as top-level YAML before routes.
func l7Header(extra string) string {
	return `listen: ["127.0.0.1:0"]
admin: {listen: ` + adminListen + `}
shutdown_grace: 5s
log: {level: debug, format: json}
` + extra
}

// hostOf returns the host part of host:port.
func hostOf(hostport string) string {
	h, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return hostport
	}
	return h
}

// joinComma joins header values as one comma-separated list, as a proxy may
// send several values in one field or several fields.
func joinComma(v []string) string {
	var parts []string
	for _, s := range v {
		for _, p := range strings.Split(s, ",") {
			parts = append(parts, strings.TrimSpace(p))
		}
	}
	return strings.Join(parts, ", ")
}

// rawDial opens a connection to addr for rawGet, closed when the test ends,
// with a hang guard of 30s on everything it does.
func rawDial(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := dialTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, bufio.NewReader(c)
}

// rawGet sends GET path with Host host and the header lines on c, as
// written (no normalisation by a client library), and reads the response
// from br, body discarded.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, host, path string, header ...string) *http.Response {
	t.Helper()
	var extra strings.Builder
	for _, h := range header {
		extra.WriteString(h + "\r\n")
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", path, host, extra.String()); err != nil {
		t.Fatalf("GET %s (Host %s): %v", path, host, err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s (Host %s): reading the response: %v", path, host, err)
	}
	resp.Body.Close()
	return resp
}
