package mux

import (
	"context"
	"net"
	"sync/atomic"
	"time"

	"github.com/portmux/portmux/internal/rawio"
)

// Stream is a routed connection as one byte stream: reads yield the sniffed
// prefix first, then the socket; bytes are counted both ways. Handlers that
// cannot splice (in-process HTTP, TLS termination) read through a Stream.
// Reads and writes may run concurrently, as on any net.Conn.
type Stream struct {
	net.Conn
	prefix        []byte // owned by the reader side
	up, down      atomic.Int64
	remote, local net.Addr
	coalesce      *coalescer // nil: writes go straight to the socket
}

// Stream returns c as a Stream, reading and writing a TCP socket with raw
// system calls (rawio.Wrap). Use either the Stream or NetConn and Prefix, not
// both.
func (c *Conn) Stream() *Stream {
	return &Stream{Conn: rawio.Wrap(c.NetConn), prefix: c.Prefix, remote: c.remote, local: c.local}
}

// LimitWriteStall makes a write to the client that finds the socket full
// fail unless it completes within d (rawio.LimitWriteStall): a client that
// stopped reading does not hold its connection for ever. It reports false
// where writes are not raw (not Linux, not TCP).
func (s *Stream) LimitWriteStall(d time.Duration) bool { return rawio.LimitWriteStall(s.Conn, d) }

// RemoteAddr is the client's address: a PROXY header's when there was one.
func (s *Stream) RemoteAddr() net.Addr {
	if s.remote != nil {
		return s.remote
	}
	return s.Conn.RemoteAddr()
}

// LocalAddr is the address the client connected to: a PROXY header's when
// there was one.
func (s *Stream) LocalAddr() net.Addr {
	if s.local != nil {
		return s.local
	}
	return s.Conn.LocalAddr()
}

// Read yields the unread prefix, then reads the connection.
func (s *Stream) Read(p []byte) (int, error) {
	if len(s.prefix) > 0 {
		n := copy(p, s.prefix)
		s.prefix = s.prefix[n:]
		s.up.Add(int64(n))
		return n, nil
	}
	n, err := s.Conn.Read(p)
	s.up.Add(int64(n))
	return n, err
}

// Write writes to the connection.
func (s *Stream) Write(p []byte) (int, error) {
	if s.coalesce != nil {
		return s.coalesce.write(p)
	}
	n, err := s.Conn.Write(p)
	s.down.Add(int64(n))
	return n, err
}

// CoalesceWrites makes later writes return once their bytes are queued,
// and sends what queued up while a send was under way in one system call
// (coalesce.go): for HTTP/2, whose server flushes frame by frame. When
// abort ends (the end of a drain's grace), the socket closes at once,
// queued bytes or not. Call it before the Stream is shared, and stop when
// done with the Stream.
func (s *Stream) CoalesceWrites(abort context.Context) (stop func() bool) {
	s.coalesce = newCoalescer(s.Conn, &s.down)
	return context.AfterFunc(abort, func() { s.Conn.Close() })
}

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error {
	if s.coalesce == nil {
		return s.Conn.SetDeadline(t)
	}
	s.coalesce.setWriteDeadline(t)
	return s.Conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline. With coalesced writes it
// bounds writes from now on; bytes already queued keep the deadline they
// were written under.
func (s *Stream) SetWriteDeadline(t time.Time) error {
	if s.coalesce == nil {
		return s.Conn.SetWriteDeadline(t)
	}
	s.coalesce.setWriteDeadline(t)
	return nil
}

// Close closes the connection, after sending the queued bytes (for at
// most closeFlushTimeout) when writes are coalesced.
func (s *Stream) Close() error {
	if s.coalesce != nil {
		s.coalesce.drain()
	}
	return s.Conn.Close()
}

// CloseWrite half-closes the connection when it supports it, after
// sending the queued bytes as Close does.
func (s *Stream) CloseWrite() error {
	if s.coalesce != nil {
		s.coalesce.drain()
	}
	if cw, ok := s.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return s.Conn.Close()
}

// Counts returns the bytes read from the client (prefix included) and
// written to it so far.
func (s *Stream) Counts() (up, down int64) {
	return s.up.Load(), s.down.Load()
}
