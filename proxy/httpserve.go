package proxy

import (
	"context"
	"net"
	"net/http"
	"sync"
	"time"
)

// HTTPServer serves an http.Handler on connections handed to it one at a
// time (after sniffing), through one long-lived http.Server fed by an
// in-memory listener. A handed *tls.Conn keeps its type, so the server sees
// r.TLS and speaks HTTP/2 when ALPN chose h2.
type HTTPServer struct {
	srv *http.Server
	ln  *handoffListener

	mu    sync.Mutex
	conns map[net.Conn]*handed
}

// handed tracks one connection until the http.Server is done with it.
type handed struct {
	done     chan struct{}
	once     sync.Once
	hijacked bool
}

func (h *handed) finish() { h.once.Do(func() { close(h.done) }) }

type connKey struct{}

// NewHTTPServer starts serving h. srv may be nil; its Handler, ConnState and
// ConnContext are replaced, its timeouts kept (ReadHeaderTimeout defaults to
// 10s and IdleTimeout to 60s when zero, against slow or idle clients).
func NewHTTPServer(h http.Handler, srv *http.Server) *HTTPServer {
	if srv == nil {
		srv = &http.Server{}
	}
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = 10 * time.Second
	}
	if srv.IdleTimeout == 0 {
		srv.IdleTimeout = 60 * time.Second
	}
	s := &HTTPServer{srv: srv, ln: newHandoffListener(), conns: make(map[net.Conn]*handed)}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, c)
	}
	srv.ConnState = s.connState
	srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		// A hijacked connection (an upgrade) is the handler's until it
		// returns; the server reports no close for it.
		if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
			s.hijackDone(c)
		}
	})
	go srv.Serve(s.ln)
	return s
}

// Serve hands conn to the http.Server and waits until the server is done
// with it, or until ctx is cancelled, which closes it. It owns conn.
func (s *HTTPServer) Serve(ctx context.Context, conn net.Conn) error {
	h := &handed{done: make(chan struct{})}
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

// Shutdown stops the http.Server gracefully: idle keep-alive connections are
// closed at once, active requests finish until ctx is done.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	return s.srv.Shutdown(ctx)
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
