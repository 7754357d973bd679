package mux

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
)

// When the drain grace ends, connections still being sniffed (or still
// owing their PROXY header) are closed: they reached no backend, and
// waiting out a long sniff timeout would hold the shutdown past its grace.
func TestServerShutdownClosesPendingConnections(t *testing.T) {
	for _, tc := range []struct {
		name  string
		proxy *ProxyProtocol
		send  string
	}{
		{"silent, being sniffed", nil, ""},
		{"partial request line, being sniffed", nil, "GET /slow HT"},
		{"owing its PROXY header", &ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := NewServer(NewTable(allRoutes()), Options{SniffTimeout: time.Minute, ProxyProtocol: tc.proxy})
			c := dialLoopback(t, serveLoopback(t, srv))
			defer c.Close()
			c.Write([]byte(tc.send))
			waitPending(t, srv, 1)

			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			returned := make(chan error, 1)
			go func() { returned <- srv.Shutdown(ctx) }()
			select {
			case err := <-returned:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Shutdown: %v; want the grace to run out", err)
				}
			case <-time.After(30 * time.Second): // the sniff timeout is a minute
				t.Fatal("Shutdown waited for the sniff timeout instead of its grace")
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("client read %d bytes, %v; want its connection closed", n, err)
			}
		})
	}
}

// waitPending waits until srv holds n connections before their handler.
func waitPending(t *testing.T, srv *Server, n int) {
	t.Helper()
	for range 1000 {
		srv.pending.mu.Lock()
		got := len(srv.pending.conns)
		srv.pending.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the server never held %d pending connections", n)
}
