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
	done     chan struct{}
	once     sync.Once
	hijacked bool
	tls      *tls.ConnectionState
}

func (h *handed) finish() { h.once.Do(func() { close(h.done) }) }

type connKey struct{}

// NewHTTPServer starts serving h. srv may be nil; its Handler, ConnState and
// ConnContext are replaced, its timeouts kept (ReadHeaderTimeout defaults to
// 10s and IdleTimeout to 60s when zero, against slow or idle clients) and
// applied to the direct path too. direct may be nil (no direct path).
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
		return context.WithValue(ctx, connKey{}, c)
	}
	srv.ConnState = s.connState
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := r.Context().Value(connKey{}).(net.Conn)
		if r.TLS == nil && c != nil {
			// A TLS connection whose bytes were sniffed or read by the
			// direct path arrives wrapped: the server cannot see its TLS.
			if hd := s.lookup(c); hd != nil {
				r.TLS = hd.tls
			}
		}
		h.ServeHTTP(w, r)
		// A hijacked connection (an upgrade) is the handler's until it
		// returns; the server reports no close for it.
		if c != nil {
			s.hijackDone(c)
		}
	})
	go srv.Serve(s.ln)
	return s
}

// Serve serves conn's requests until it closes, or until ctx is
// cancelled, which closes it. It owns conn. state is the TLS connection
// conn is (or wraps), nil for plain HTTP.
func (s *HTTPServer) Serve(ctx context.Context, conn net.Conn, state *tls.ConnectionState) error {
	if s.direct != nil && (state == nil || state.NegotiatedProtocol != "h2") {
		if conn = s.serveDirect(ctx, conn, state); conn == nil {
			return ctx.Err()
		}
	}
	h := &handed{done: make(chan struct{}), tls: state}
	s.mu.Lock()
	s.conns[conn] = h
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		s.mu.Unlock()
	}()
	if !s.ln.push(conn) {
		conn.Close()
		return net.ErrClosed
	}
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		conn.Close()
		return ctx.Err()
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
	case http.StateClosed:
		h.finish()
	case http.StateHijacked:
		s.mu.Lock()
		h.hijacked = true
		s.mu.Unlock()
	}
}

func (s *HTTPServer) hijackDone(c net.Conn) {
	s.mu.Lock()
	h := s.conns[c]
	hijacked := h != nil && h.hijacked
	s.mu.Unlock()
	if hijacked {
		c.Close()
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
