package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPServer serves connections handed to it one at a time (after
// sniffing). With a DirectRouter, HTTP/1.1 requests go first through the
// direct path (h1direct.go); the rest, and every connection without one,
// go to an http.Handler served by one long-lived http.Server fed by an
// in-memory listener. A handed *tls.Conn keeps its type, so the server
// speaks HTTP/2 when ALPN chose h2; r.TLS is set for any TLS connection.
type HTTPServer struct {
	// SendTimeout bounds how long a write to a client may wait for the
	// client to take it, on streams whose writes are raw
	// (mux.Stream.LimitWriteStall); zero: no bound. Set before serving.
	SendTimeout time.Duration

	srv    *http.Server
	ln     *handoffListener
	direct DirectRouter

	mu      sync.Mutex
	conns   map[net.Conn]*handed
	directs map[*directConn]struct{}
	closing atomic.Bool    // Shutdown: no new connection, no next request
	lastOne atomic.Bool    // StopKeepAlives: no next request
	active  sync.WaitGroup // direct-path connections
}

// handed tracks one connection until the http.Server is done with it.
type handed struct {
	conn     net.Conn        // as the server sees it
	ctx      context.Context // Serve's: ends when the connection is aborted
	done     chan struct{}
	once     sync.Once
	hijacked bool // guarded by HTTPServer.mu
	tls      *tls.ConnectionState
	routes   *RouteNote // from ctx; nil if none

	// What the server does without a handler (servedConn). Atomics: the
	// handler, the server's goroutine and its background read touch them.
	handled atomic.Bool // a handler took the current request
	partial atomic.Bool // bytes of a request arrived since the last response
	cause   atomic.Pointer[error]
	// screened: the direct path checked the framing of the request the
	// connection was handed over with (its first here); taken by Guard.
	screened atomic.Bool
}

func (h *handed) finish() { h.once.Do(func() { close(h.done) }) }

// detach gives an HTTP/1 request a context that a client's half-close
// does not end. net/http ends a request's context when the connection
// reads EOF, but over HTTP/1 a FIN may only close the client's sending
// side: HTTP/1.0 clients and scripts (printf ... | nc -q1) send their
// request, shut down writing and wait for the answer, which they should
// get, as HAProxy (without abortonclose) and the direct path give it. A
// client that left altogether is noticed when its response is written.
// The context still ends when Serve's does (shutdown grace, abort) and
// when the handler returns (release).
func (h *handed) detach(r *http.Request) (*http.Request, func()) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(h.ctx, cancel)
	return r.WithContext(ctx), func() {
		stop()
		cancel()
	}
}

type connKey struct{}

// NewHTTPServer starts serving h, behind Guard. srv may be nil; its
// Handler, ConnState and ConnContext are replaced, its timeouts kept
// (ReadHeaderTimeout defaults to 10s and IdleTimeout to 60s when zero,
// against slow or idle clients) and applied to the direct path too. direct
// may be nil (no direct path).
func NewHTTPServer(h http.Handler, srv *http.Server, direct DirectRouter) *HTTPServer {
	if srv == nil {
		srv = &http.Server{}
	}
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = 10 * time.Second
	}
	if srv.IdleTimeout == 0 {
		srv.IdleTimeout = 60 * time.Second
	}
	s := &HTTPServer{srv: srv, ln: newHandoffListener(), direct: direct,
		conns: make(map[net.Conn]*handed), directs: make(map[*directConn]struct{})}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, s.lookup(c))
	}
	srv.ConnState = s.connState
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd, _ := r.Context().Value(connKey{}).(*handed)
		if hd == nil { // not handed by Serve
			serveGuarded(w, r, h, false)
			return
		}
		hd.handled.Store(true)
		if r.ProtoMajor == 2 {
			growStack() // a new goroutine per request (stackgrow.go)
		}
		if r.ProtoMajor == 1 {
			var release func()
			r, release = hd.detach(r)
			defer release()
		}
		if r.TLS == nil {
			// A TLS connection whose bytes were sniffed or read by the
			// direct path arrives wrapped: the server cannot see its TLS.
			r.TLS = hd.tls
		}
		serveGuarded(w, r, h, hd.screened.Swap(false))
		// A hijacked connection (an upgrade) is the handler's until it
		// returns; the server reports no close for it.
		s.hijackDone(hd)
	})
	go srv.Serve(s.ln)
	return s
}

// Serve serves conn's requests until it closes, or until ctx is
// cancelled, which closes it. It owns conn. state is the TLS connection
// conn is (or wraps), nil for plain HTTP. Besides ctx's error, it returns
// ErrHeaderTimeout for a client that stalled in a request head and a
// *RefusedError for a request the http.Server refused itself: the
// client's faults that no request log line shows.
func (s *HTTPServer) Serve(ctx context.Context, conn net.Conn, state *tls.ConnectionState) error {
	if s.SendTimeout > 0 {
		limitWriteStall(conn, s.SendTimeout)
	}
	ho := &handover{}
	if s.direct != nil && (state == nil || state.NegotiatedProtocol != "h2") {
		var err error
		if ho, err = s.serveDirect(ctx, conn, state); ho == nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
	}
	pending := ho.pending
	h := &handed{conn: conn, ctx: ctx, done: make(chan struct{}), tls: state, routes: routeNoteOf(ctx)}
	h.screened.Store(ho.screened)
	if _, isTLS := conn.(*tls.Conn); !isTLS || len(pending) > 0 {
		// A *tls.Conn the direct path did not read keeps its type:
		// the server speaks HTTP/2 on it when ALPN chose h2.
		h.conn = &servedConn{Conn: conn, pending: pending, h: h}
	}
	s.mu.Lock()
	s.conns[h.conn] = h
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, h.conn)
		s.mu.Unlock()
	}()
	if !s.ln.push(h.conn) {
		conn.Close()
		return net.ErrClosed
	}
	select {
	case <-h.done:
		return h.noted()
	case <-ctx.Done():
		conn.Close()
		return ctx.Err()
	}
}

// limitWriteStall bounds the stalls of writes to conn's client (a TLS
// connection's are its socket's), where conn is a stream whose writes are
// raw (mux.Stream.LimitWriteStall): a client that stops reading cannot
// hold the connection, its upstream's and the response's goroutines for
// ever (nginx's send_timeout).
func limitWriteStall(conn net.Conn, d time.Duration) {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	if l, ok := conn.(interface{ LimitWriteStall(time.Duration) bool }); ok {
		l.LimitWriteStall(d)
	}
}

func (s *HTTPServer) lookup(c net.Conn) *handed {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[c]
}

func (s *HTTPServer) connState(c net.Conn, state http.ConnState) {
	h := s.lookup(c)
	if h == nil {
		return
	}
	switch state {
	case http.StateActive:
		h.requestStarted()
	case http.StateIdle:
		h.idle()
	case http.StateClosed:
		h.finish()
	case http.StateHijacked:
		s.mu.Lock()
		h.hijacked = true
		s.mu.Unlock()
	}
}

func (s *HTTPServer) hijackDone(h *handed) {
	s.mu.Lock()
	hijacked := h.hijacked
	s.mu.Unlock()
	if hijacked {
		h.conn.Close()
		h.finish()
	}
}

// StopKeepAlives ends HTTP/1 keep-alive: idle connections are closed at
// once, and each connection ends after the request it is serving (told so
// with Connection: close). Connections handed over afterwards are still
// served, one request each. A reload calls it on the servers it replaces,
// so that keep-alive clients take up the new routes at once rather than
// when the servers are shut down. HTTP/2 connections are left to Shutdown
// (net/http can end them only with a GOAWAY that Shutdown sends).
func (s *HTTPServer) StopKeepAlives() {
	s.stopRequests(&s.lastOne)
	s.srv.SetKeepAlivesEnabled(false)
}

// stopRequests sets flag, which ends a direct-path connection before its
// next request, and wakes the idle ones to see it.
func (s *HTTPServer) stopRequests(flag *atomic.Bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	flag.Store(true)
	for d := range s.directs {
		if d.idle.Load() {
			d.conn.SetReadDeadline(time.Now()) // wakes its wait for a request
		}
	}
}

// noNextRequest reports whether a direct-path connection must end after
// its current request.
func (s *HTTPServer) noNextRequest() bool {
	return s.closing.Load() || s.lastOne.Load()
}

// Shutdown stops serving gracefully: idle keep-alive connections are
// closed at once, active requests finish until ctx is done, when the
// connections still open are closed.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	s.stopRequests(&s.closing)
	err := s.srv.Shutdown(ctx)
	done := make(chan struct{})
	go func() {
		s.active.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.mu.Lock()
		for d := range s.directs {
			d.abort()
		}
		s.mu.Unlock()
		<-done
	}
	return err
}

// track registers a direct-path connection; false once shutting down.
func (s *HTTPServer) track(d *directConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.directs[d] = struct{}{}
	s.active.Add(1)
	return true
}

func (s *HTTPServer) untrack(d *directConn) {
	s.mu.Lock()
	delete(s.directs, d)
	s.mu.Unlock()
	s.active.Done()
}

// handoffListener is a net.Listener whose connections are pushed in.
type handoffListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newHandoffListener() *handoffListener {
	return &handoffListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return handoffAddr{} }

type handoffAddr struct{}

func (handoffAddr) Network() string { return "handoff" }
func (handoffAddr) String() string  { return "handoff" }
