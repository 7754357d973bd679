package test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// tcpServer is a loopback TCP server that runs handle for each accepted connection in
// its own goroutine. It counts accepted connections and, on Close, closes the listener
// and every live connection and waits for all handlers to return.
type tcpServer struct {
	ln       net.Listener
	handle   func(net.Conn)
	accepted atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startTCPServer listens on 127.0.0.1:0 and serves until the test ends.
func startTCPServer(t testing.TB, handle func(net.Conn)) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &tcpServer{ln: ln, handle: handle, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.acceptLoop()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("tcp peer %s: %v", s.Addr(), err)
		}
	})
	return s
}

// Addr is the host:port the server listens on.
func (s *tcpServer) Addr() string { return s.ln.Addr().String() }

// Accepted is the number of connections accepted so far.
func (s *tcpServer) Accepted() int64 { return s.accepted.Load() }

func (s *tcpServer) acceptLoop() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return // listener closed
		}
		s.accepted.Add(1)
		s.mu.Lock()
		if s.conns == nil { // closed meanwhile
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

// serveConn is a named goroutine body so stack dumps show which peer is stuck.
func (s *tcpServer) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	s.handle(c)
}

// Close stops the server and waits (bounded) for its goroutines.
func (s *tcpServer) Close() error {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.conns = nil
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("handlers did not return 10s after Close")
	}
}

// closeWrite half-closes c when it supports it, else closes it.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

// startEcho starts a backend that echoes everything it reads, concurrently, and when
// the client half-closes it half-closes too (FIN after the last echoed byte).
func startEcho(t testing.TB) *tcpServer {
	return startTCPServer(t, func(c net.Conn) {
		// Hide ReadFrom/WriteTo: a plain buffered copy, the same on every platform.
		if _, err := io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c}); err != nil {
			return
		}
		closeWrite(c)
		// Wait for the client to finish reading and close, so our Close does not
		// turn a clean FIN into a reset.
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, c)
	})
}

// replyAfterEOFSize is the size of the reply body sent by the reply-after-EOF backend.
const replyAfterEOFSize = 4 << 20

// replyAfterEOFSeed seeds the reply body of the reply-after-EOF backend.
const replyAfterEOFSeed = 0xE0F

// startReplyAfterEOF starts a backend that reads the request to EOF and only then
// answers with a line "<sha256 hex> <request length>\n" followed by
// replyAfterEOFSize bytes of payload(replyAfterEOFSeed), and closes.
func startReplyAfterEOF(t testing.TB) *tcpServer {
	return startTCPServer(t, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(2 * time.Minute))
		d, err := digestOf(c)
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "%s %d\n", d.Sum, d.N); err != nil {
			return
		}
		if _, err := io.Copy(c, payload(replyAfterEOFSeed, replyAfterEOFSize)); err != nil {
			return
		}
		closeWrite(c)
	})
}

// closedPort returns a loopback address on which nothing listens.
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
