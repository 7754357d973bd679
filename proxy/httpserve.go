package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// HTTPServer serves an http.Handler on connections handed to it one at a
// time (after sniffing), through one long-lived http.Server fed by an
// in-memory listener.
type HTTPServer struct {
	srv *http.Server
	ln  *handoffListener
}

// NewHTTPServer starts serving h. srv may be nil; its Handler is replaced
// by h, and its timeouts are kept (ReadHeaderTimeout defaults to 10s and
// IdleTimeout to 60s when zero, against slow or idle clients).
func NewHTTPServer(h http.Handler, srv *http.Server) *HTTPServer {
	if srv == nil {
		srv = &http.Server{}
	}
	srv.Handler = h
	if srv.ReadHeaderTimeout == 0 {
		srv.ReadHeaderTimeout = 10 * time.Second
	}
	if srv.IdleTimeout == 0 {
		srv.IdleTimeout = 60 * time.Second
	}
	s := &HTTPServer{srv: srv, ln: newHandoffListener()}
	go srv.Serve(s.ln)
	return s
}

// Serve hands conn (with prefix replayed first) to the http.Server and
// waits until the server is done with it, or until ctx is cancelled, which
// closes it. It owns conn.
func (s *HTTPServer) Serve(ctx context.Context, conn net.Conn, prefix []byte) (Stats, error) {
	c := &handedConn{Conn: conn, prefix: prefix, closed: make(chan struct{})}
	if !s.ln.push(c) {
		conn.Close()
		return Stats{}, net.ErrClosed
	}
	select {
	case <-c.closed:
	case <-ctx.Done():
		c.Close()
		return c.stats(), ctx.Err()
	}
	return c.stats(), nil
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

// handedConn replays the sniffed prefix, counts bytes and signals its close.
type handedConn struct {
	net.Conn
	prefix    []byte
	up, down  atomic.Int64
	closed    chan struct{}
	closeOnce sync.Once
}

func (c *handedConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		c.up.Add(int64(n))
		return n, nil
	}
	n, err := c.Conn.Read(p)
	c.up.Add(int64(n))
	return n, err
}

func (c *handedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.down.Add(int64(n))
	return n, err
}

func (c *handedConn) Close() error {
	err := net.ErrClosed
	c.closeOnce.Do(func() {
		err = c.Conn.Close()
		close(c.closed)
	})
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (c *handedConn) stats() Stats { return Stats{Up: c.up.Load(), Down: c.down.Load()} }
