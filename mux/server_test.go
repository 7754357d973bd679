package mux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// world is a mux Server on a loopback listener whose routes all go to
// recording handlers; logs are observed.
type world struct {
	t    *testing.T
	srv  *Server
	addr string
	logs *observer.ObservedLogs
	got  chan seen
}

// seen is what a recording handler received.
type seen struct {
	route  string
	info   Info
	stream []byte // prefix followed by everything read until EOF
}

const testSniffTimeout = 300 * time.Millisecond

func newWorld(t *testing.T, routes ...Route) *world {
	t.Helper()
	return newWorldWith(t, Options{}, routes...)
}

// newWorldWith is newWorld with server options (limits, PROXY protocol).
func newWorldWith(t *testing.T, opts Options, routes ...Route) *world {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	w := &world{t: t, logs: logs, got: make(chan seen, 16)}
	for i := range routes {
		name := routes[i].Name
		routes[i].Handler = HandlerFunc(func(ctx context.Context, c *Conn) Result {
			defer c.NetConn.Close()
			c.NetConn.Write([]byte("hello:" + name + "\n")) // as a server-first peer would
			rest, err := io.ReadAll(c.NetConn)
			c.NetConn.Write([]byte("bye:" + name))
			w.got <- seen{route: name, info: c.Info, stream: append(c.Prefix, rest...)}
			return Result{Backend: "test", Up: int64(len(c.Prefix) + len(rest)), Err: err}
		})
	}
	opts.SniffTimeout, opts.MaxSniffBytes, opts.Logger = testSniffTimeout, 4096, zap.New(core)
	w.srv = NewServer(NewTable(routes), opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- w.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := w.srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v; want ErrServerClosed", err)
		}
	})
	return w
}

func (w *world) dial() *net.TCPConn {
	w.t.Helper()
	c, err := net.Dial("tcp", w.addr)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// send writes data, half-closes, and returns what the server replied.
func (w *world) send(data []byte) string {
	w.t.Helper()
	c := w.dial()
	if _, err := c.Write(data); err != nil {
		w.t.Fatal(err)
	}
	c.CloseWrite()
	reply, _ := io.ReadAll(c)
	return string(reply)
}

// replyOf is what a client of route hears from the recording handler.
func replyOf(route string) string { return "hello:" + route + "\nbye:" + route }

func (w *world) next() seen {
	w.t.Helper()
	select {
	case s := <-w.got:
		return s
	case <-time.After(10 * time.Second):
		w.t.Fatal("no connection reached a handler")
		return seen{}
	}
}

// connLog waits for the connection log line satisfying ok.
func (w *world) connLog(ok func(map[string]any) bool) map[string]any {
	w.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		for _, e := range w.logs.FilterMessage("connection").All() {
			if f := e.ContextMap(); ok(f) {
				return f
			}
		}
	}
	w.t.Fatalf("no matching connection log; have %v", w.logs.All())
	return nil
}

func outcome(want string) func(map[string]any) bool {
	return func(f map[string]any) bool { return f["outcome"] == want }
}

func allRoutes() []Route {
	return []Route{
		{Name: "tls-a", Match: Match{Protocols: []Protocol{TLS}, SNI: []string{"a.test"}}},
		{Name: "ssh", Match: Match{Protocols: []Protocol{SSH}}},
		{Name: "api", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"api.test"}}},
		{Name: "web", Match: Match{Protocols: []Protocol{HTTP}}},
		{Name: "ftp", Match: Match{Protocols: []Protocol{Silent}}},
	}
}

// Each protocol reaches its route with the exact byte stream the client
// sent: the sniff consumes nothing and duplicates nothing.
func TestServerRoutesAndDeliversExactBytes(t *testing.T) {
	w := newWorld(t, allRoutes()...)
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB after the prefix
	tests := []struct {
		name, route string
		data        []byte
		proto       Protocol
	}{
		{"tls by sni", "tls-a", append(recordHello(t, "a.test", []string{"h2"}), big...), TLS},
		{"ssh", "ssh", append([]byte("SSH-2.0-test\r\n"), big...), SSH},
		{"http host", "api", []byte("POST /x HTTP/1.1\r\nHost: API.test:443\r\nContent-Length: 3\r\n\r\nabc"), HTTP},
		{"http other host", "web", []byte("PATCH /y HTTP/1.1\r\nHost: www.test\r\n\r\n"), HTTP},
		// A fully qualified SNI (openssl s_client -servername a.test.)
		// is routed as the name without its dot; the backend gets the
		// hello as sent.
		{"tls by sni with a trailing dot", "tls-a", append(helloWithSNI(t, "A.test."), big...), TLS},
		// RFC 9112 §2.2: empty lines before the request line, bare LF
		// line ends; Host is found in both.
		{"http host after empty lines", "api", []byte("\r\n\nGET / HTTP/1.1\r\nHost: api.test\r\n\r\n"), HTTP},
		{"http host, bare LF", "api", []byte("GET / HTTP/1.1\nHost: api.test\n\n"), HTTP},
		{"http/1.0 without host, bare LF", "web", []byte("GET /head HTTP/1.0\n\n"), HTTP},
		// Clearly HTTP, malformed: handed to the HTTP route, whose server
		// answers (400, 505).
		{"space in target", "api", []byte("GET /a b HTTP/1.1\r\nHost: api.test\r\n\r\n"), HTTP},
		{"http/3 request line", "web", []byte("GET / HTTP/3\r\nHost: www.test\r\n\r\n"), HTTP},
		// No Host in an h2c preface: "api" relays the connection (it is
		// not PerRequest), so nothing would check its host condition
		// later; the next HTTP route takes it (TestTableLookup covers a
		// PerRequest one).
		{"h2c preface", "web", append([]byte(h2Preface), 0, 0, 0, 4, 0, 0, 0, 0, 0), HTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if reply, want := w.send(tt.data), replyOf(tt.route); reply != want {
				t.Errorf("got reply %q; want %q", reply, want)
			}
			s := w.next()
			if s.route != tt.route || s.info.Protocol != tt.proto {
				t.Errorf("got route %q protocol %v; want %q %v", s.route, s.info.Protocol, tt.route, tt.proto)
			}
			if !bytes.Equal(s.stream, tt.data) {
				t.Errorf("handler got %d bytes, client sent %d: stream altered", len(s.stream), len(tt.data))
			}
		})
	}
}

// A client that sends nothing is Silent after the sniff timeout; one that
// connects and closes at once is not (and reaches no handler).
func TestServerSilentAndClosedAtOnce(t *testing.T) {
	w := newWorld(t, allRoutes()...)
	c := w.dial()
	greeting := make([]byte, len("hello:ftp\n"))
	if _, err := io.ReadFull(c, greeting); err != nil || string(greeting) != "hello:ftp\n" {
		t.Fatalf("silent client got %q, %v; want the ftp route's greeting", greeting, err)
	}
	c.Close()
	if s := w.next(); s.route != "ftp" || s.info.Protocol != Silent {
		t.Fatalf("silent client went to %q as %v", s.route, s.info.Protocol)
	}

	w.dial().Close()
	w.connLog(outcome(OutcomeClientClosed))
	select {
	case s := <-w.got:
		t.Fatalf("closed-at-once client reached route %q", s.route)
	case <-time.After(2 * testSniffTimeout):
	}
}

// A client that sends one byte and stalls is closed at the sniff timeout,
// and does not hold up a good client that arrives after it.
func TestServerStallingClientDoesNotBlockOthers(t *testing.T) {
	w := newWorld(t, allRoutes()...)
	staller := w.dial()
	staller.Write([]byte("G"))
	if reply := w.send([]byte("SSH-2.0-x\r\n")); reply != replyOf("ssh") {
		t.Fatalf("good client got %q", reply)
	}
	// The good client finished while the staller is still undecided.
	staller.SetReadDeadline(time.Now().Add(time.Millisecond))
	if _, err := staller.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("staller closed before the good client finished: %v", err)
	}
	staller.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := staller.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("staller: got %d, %v; want EOF", n, err)
	}
	w.connLog(outcome(OutcomeSniffTimeout))
}

func TestServerBadInput(t *testing.T) {
	w := newWorld(t, allRoutes()...)
	hello := recordHello(t, "a.test", nil)
	tests := []struct {
		name    string
		data    []byte
		outcome string
		reply   []byte // before the close
	}{
		{"garbage", []byte{0, 0xff, 0x13, 0x37, 'x'}, OutcomeUnrecognized, nil},
		{"truncated client hello", hello[:20], OutcomeSniffTimeout, nil},
		// A fatal TLS alert: unrecognized_name.
		{"unknown sni", recordHello(t, "nobody.test", nil), OutcomeNoRoute, []byte{21, 3, 1, 0, 2, 2, 112}},
		// A fatal TLS alert: decode_error; the log line says why.
		{"malformed hello", helloWithSNI(t, "bad name!"), OutcomeBadClientHello, []byte{21, 3, 1, 0, 2, 2, 50}},
		// HTTP heads the sniff could not read to the Host: the "api"
		// route might have taken them, so "web" after it must not.
		{"oversized request line", append([]byte("GET /"), bytes.Repeat([]byte("a"), 8192)...), OutcomeOversized, nil},
		{"oversized headers before host", append([]byte("GET / HTTP/1.1\r\nX: "), bytes.Repeat([]byte("a"), 8192)...), OutcomeOversized, nil},
		{"empty lines only", bytes.Repeat([]byte("\r\n"), 4096), OutcomeUnrecognized, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := w.dial()
			c.Write(tt.data) // no half-close: the server must decide alone
			// Closed with nothing (or the reply) sent back: EOF, or a reset
			// when the server closed with the client's unread bytes still
			// queued (TCP's rule).
			var got bytes.Buffer
			if _, err := io.Copy(&got, c); !bytes.Equal(got.Bytes(), tt.reply) || err != nil && !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("got %q, %v; want %q and the connection closed", got.Bytes(), err, tt.reply)
			}
			f := w.connLog(func(f map[string]any) bool { return f["client"] == c.LocalAddr().String() })
			if f["outcome"] != tt.outcome {
				t.Errorf("got outcome %v; want %q", f["outcome"], tt.outcome)
			}
			if tt.outcome == OutcomeBadClientHello && !strings.Contains(fmt.Sprint(f["error"]), `invalid host_name "bad name!"`) {
				t.Errorf("error field %q; want what was wrong with the hello", f["error"])
			}
		})
	}
}

// A line taken as HTTP only because it clearly starts as a request goes
// to an HTTP route when there is one (its server answers it), and
// otherwise, as before such lines were answered, to a fallback route
// for unrecognized bytes, with the bytes exactly as sent.
func TestServerMalformedHTTPFallback(t *testing.T) {
	fallback := Route{Name: "fallback", Match: Match{Protocols: []Protocol{Unknown}}}
	for _, tt := range []struct {
		name   string
		routes []Route
		route  string
		proto  Protocol
	}{
		{"http route", []Route{{Name: "web", Match: Match{Protocols: []Protocol{HTTP}}}, fallback}, "web", HTTP},
		{"no http route", []Route{{Name: "ssh", Match: Match{Protocols: []Protocol{SSH}}}, fallback}, "fallback", Unknown},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.routes...)
			data := []byte("GET / HTTP/3\r\nHost: a\r\n\r\n")
			if reply := w.send(data); reply != replyOf(tt.route) {
				t.Errorf("got %q; want %q", reply, replyOf(tt.route))
			}
			if s := w.next(); s.route != tt.route || s.info.Protocol != tt.proto || !bytes.Equal(s.stream, data) {
				t.Errorf("route %q got %q as %v; want %q, the bytes sent, as %v", s.route, s.stream, s.info.Protocol, tt.route, tt.proto)
			}
		})
	}
}

// An HTTP head longer than the sniff may read (MaxSniffBytes) before the
// Host a route needs is routed as one whose Host (and path, if the
// request line did not end) is unknown: a route that routes each request
// itself (PerRequest: its HTTP server answers 414 or 431) takes it with
// the bytes exactly as sent, unless a route that relays by Host or path
// comes first, which the unread part might have chosen: no later route
// may take the connection in its place.
func TestServerHTTPHeadCut(t *testing.T) {
	longLine := append([]byte("GET /"), bytes.Repeat([]byte("a"), 8192)...)
	longHead := func(path string) []byte {
		return append([]byte("GET "+path+" HTTP/1.1\r\nX: "), bytes.Repeat([]byte("b"), 8192)...)
	}
	for _, tt := range []struct {
		name   string
		routes []Route
		data   []byte
		route  string // "" when closed with outcome oversized
		path   string // the path routing saw
	}{
		{"long line, per-request route first",
			[]Route{{Name: "l7", PerRequest: true, Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"www.test"}}},
				{Name: "api", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"api.test"}}}},
			longLine, "l7", ""},
		{"long line, relayed host route first",
			[]Route{{Name: "api", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"api.test"}}},
				{Name: "any", Match: Match{Protocols: []Protocol{HTTP}}}},
			longLine, "", ""},
		{"long line, relayed path route first",
			[]Route{{Name: "admin", Match: Match{Protocols: []Protocol{HTTP}, Path: []string{"/admin"}}},
				{Name: "any", Match: Match{Protocols: []Protocol{HTTP}}}},
			longLine, "", ""},
		// The request line was read: the path decides relayed path routes.
		{"long head, path not the relayed route's",
			[]Route{{Name: "admin", Match: Match{Protocols: []Protocol{HTTP}, Path: []string{"/admin"}}},
				{Name: "l7", PerRequest: true, Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"www.test"}}}},
			longHead("/public"), "l7", "/public"},
		{"long head, path the relayed route's",
			[]Route{{Name: "admin", Match: Match{Protocols: []Protocol{HTTP}, Path: []string{"/admin"}}},
				{Name: "l7", PerRequest: true, Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"www.test"}}}},
			longHead("/admin/x"), "admin", "/admin/x"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, tt.routes...)
			c := w.dial()
			c.Write(tt.data) // no half-close: the server must decide alone
			if tt.route == "" {
				var got bytes.Buffer
				if _, err := io.Copy(&got, c); got.Len() != 0 || err != nil && !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("got %q, %v; want the connection closed", got.Bytes(), err)
				}
				// No route took it as HTTP: it is the unrecognized bytes
				// it was before HTTP's clear starts were answered.
				w.connLog(func(f map[string]any) bool {
					return f["client"] == c.LocalAddr().String() && f["outcome"] == OutcomeOversized && f["protocol"] == "unknown"
				})
				return
			}
			c.CloseWrite()
			if reply, _ := io.ReadAll(c); string(reply) != replyOf(tt.route) {
				t.Errorf("got reply %q; want %q", reply, replyOf(tt.route))
			}
			s := w.next()
			if s.route != tt.route || s.info.Protocol != HTTP || !bytes.Equal(s.stream, tt.data) {
				t.Errorf("route %q got %d bytes as %v; want %q, the %d bytes sent, as http", s.route, len(s.stream), s.info.Protocol, tt.route, len(tt.data))
			}
			if s.info.Path != tt.path || s.info.hostKnown || !s.info.headCut {
				t.Errorf("routed with path %q, host known %v, head cut %v; want %q, false, true", s.info.Path, s.info.hostKnown, s.info.headCut, tt.path)
			}
		})
	}
}

// With a fallback route, unrecognized bytes go there instead of being closed.
func TestServerFallbackRoute(t *testing.T) {
	w := newWorld(t, append(allRoutes(), Route{Name: "fallback", Match: Match{Protocols: []Protocol{Unknown}}})...)
	data := []byte("\x00garbage that is no protocol")
	if reply := w.send(data); reply != replyOf("fallback") {
		t.Fatalf("got %q", reply)
	}
	if s := w.next(); !bytes.Equal(s.stream, data) || s.info.Protocol != Unknown {
		t.Fatalf("fallback got %q as %v", s.stream, s.info.Protocol)
	}
}

// Shutdown waits for a live connection within the grace period, then closes
// it through the handler's context.
func TestServerShutdownDrains(t *testing.T) {
	core, _ := observer.New(zapcore.InfoLevel)
	started := make(chan struct{})
	srv := NewServer(NewTable([]Route{{Name: "ssh", Match: Match{Protocols: []Protocol{SSH}}, Handler: HandlerFunc(func(ctx context.Context, c *Conn) Result {
		close(started)
		<-ctx.Done()
		c.NetConn.Close()
		return Result{Err: ctx.Err()}
	})}}), Options{SniffTimeout: testSniffTimeout, Logger: zap.New(core)})
	addr := serveLoopback(t, srv)
	c := dialLoopback(t, addr)
	defer c.Close()
	c.Write([]byte("SSH-2.0-x\r\n"))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: got %v; want the grace period to run out", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("new connections still accepted after Shutdown")
	}
}

// A claimed connection bypasses sniffing entirely: its first bytes, which
// would match a protocol, reach the claimer untouched.
func TestServerClaimBeforeSniffing(t *testing.T) {
	claimed := make(chan net.Conn, 1)
	srv := NewServer(NewTable(allRoutes()), Options{SniffTimeout: testSniffTimeout, Claim: func(c net.Conn) bool {
		claimed <- c
		return true
	}})
	c := dialLoopback(t, serveLoopback(t, srv))
	defer srv.Shutdown(context.Background())
	defer c.Close()
	c.Write([]byte("SSH-2.0-looks-like-ssh\r\n"))
	got := <-claimed
	defer got.Close()
	buf := make([]byte, 24)
	if _, err := io.ReadFull(got, buf); err != nil || string(buf) != "SSH-2.0-looks-like-ssh\r\n" {
		t.Fatalf("claimer read %q, %v", buf, err)
	}
}

// recordingObserver counts observer calls.
type recordingObserver struct {
	mu                         sync.Mutex
	sniffed, started, unrouted int
	finished, refused          []string
}

func (o *recordingObserver) Sniffed(Protocol, time.Duration) { o.mu.Lock(); o.sniffed++; o.mu.Unlock() }
func (o *recordingObserver) Started(*Info, string)           { o.mu.Lock(); o.started++; o.mu.Unlock() }
func (o *recordingObserver) Refused(reason string) {
	o.mu.Lock()
	o.refused = append(o.refused, reason)
	o.mu.Unlock()
}
func (o *recordingObserver) Finished(_ *Info, route string, started bool, res *Result, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !started {
		o.unrouted++
	}
	o.finished = append(o.finished, route+":"+res.Outcome)
}

func TestServerObserver(t *testing.T) {
	obs := &recordingObserver{}
	srv := NewServer(NewTable([]Route{{Name: "ssh", Match: Match{Protocols: []Protocol{SSH}}, Handler: HandlerFunc(func(ctx context.Context, c *Conn) Result {
		c.NetConn.Close()
		return Result{Outcome: OutcomeOK}
	})}}), Options{SniffTimeout: testSniffTimeout, Observer: obs})
	addr := serveLoopback(t, srv)
	for _, data := range []string{"SSH-2.0-x\r\n", "GET / HTTP/1.1\r\n\r\n"} {
		c := dialLoopback(t, addr)
		c.Write([]byte(data))
		io.Copy(io.Discard, c)
		c.Close()
	}
	srv.Shutdown(context.Background()) // waits for both handlers
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.sniffed != 2 || obs.started != 1 || obs.unrouted != 1 || len(obs.finished) != 2 {
		t.Fatalf("sniffed %d, started %d, unrouted %d, finished %v", obs.sniffed, obs.started, obs.unrouted, obs.finished)
	}
}

// serveLoopback serves srv on a fresh loopback listener and returns its
// address; the test shuts srv down.
func serveLoopback(t testing.TB, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	return ln.Addr().String()
}

// dialLoopback connects to addr; the test closes the connection.
func dialLoopback(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestResultRoute: a per-request handler's Result.Route (the route of the
// connection's first request) is what the connection line and the
// observer name, not the route the connection was handed to.
func TestResultRoute(t *testing.T) {
	obs := &recordingObserver{}
	core, logs := observer.New(zapcore.InfoLevel)
	srv := NewServer(NewTable([]Route{{Name: "http-guess", PerRequest: true, Match: Match{Protocols: []Protocol{HTTP}},
		Handler: HandlerFunc(func(ctx context.Context, c *Conn) Result {
			c.NetConn.Close()
			return Result{Route: "http-served"}
		})}}), Options{SniffTimeout: testSniffTimeout, Observer: obs, Logger: zap.New(core)})
	addr := serveLoopback(t, srv)
	c := dialLoopback(t, addr)
	c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	io.Copy(io.Discard, c)
	c.Close()
	srv.Shutdown(context.Background())
	lines := logs.FilterMessage("connection").All()
	if len(lines) != 1 || lines[0].ContextMap()["route"] != "http-served" {
		t.Errorf("connection lines %v; want one naming route http-served", lines)
	}
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if len(obs.finished) != 1 || obs.finished[0] != "http-served:" {
		t.Errorf("observer finished %v; want [http-served:]", obs.finished)
	}
}
