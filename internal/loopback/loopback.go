// Package loopback gives tests both ends of a real TCP connection over
// loopback. It is for tests only: the packages whose tests share it (mux,
// internal/rawio, proxy) cannot share test files.
package loopback

import (
	"net"
	"testing"
)

// TCPPair returns both ends of a loopback TCP connection, closed when the
// test ends. With buffer > 0 the server's send buffer and the client's
// receive buffer are set to that size, so that a large write waits for
// the client to read.
func TCPPair(t testing.TB, buffer int) (server, client *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	server, client = s.(*net.TCPConn), c.(*net.TCPConn)
	t.Cleanup(func() { client.Close(); server.Close() })
	if buffer > 0 {
		server.SetWriteBuffer(buffer)
		client.SetReadBuffer(buffer)
	}
	return server, client
}
