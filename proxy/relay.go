package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ErrIdleTimeout is returned by Relay when no byte moved in either direction
// for the idle timeout.
var ErrIdleTimeout = errors.New("idle timeout")

// Stats counts the bytes a relay moved. Up is client to backend, Down is
// backend to client.
type Stats struct {
	Up, Down int64
}

// Relay copies bytes between client and backend in both directions until both
// directions have ended, then closes both connections.
//
// An EOF in one direction is propagated as a half-close (CloseWrite) to the
// other side, never as a full close, so a client that shuts its write side
// still receives the whole reply. An error in either direction, an idle
// period longer than idle (if idle > 0) or the cancellation of ctx closes both
// connections at once.
//
// When both connections are *net.TCPConn the bytes move with splice(2) and
// no pipe is held while the connection is idle (see pipes.go); with a
// Parker (Pipes.EnableParking) no goroutine is held by an idle direction
// either. Otherwise bytes are copied through a pooled buffer.
func Relay(ctx context.Context, client, backend net.Conn, idle time.Duration, pipes *Pipes) (Stats, error) {
	if c, b, ok := tcpPair(client, backend); ok && pipes.parks() {
		type result struct {
			st  Stats
			err error
		}
		ch := make(chan result, 1)
		startParked(ctx, c, b, idle, pipes, func(st Stats, err error) { ch <- result{st, err} })
		res := <-ch
		return res.st, res.err
	}
	r := newRelay(ctx, client, backend, idle, pipes)
	var wg sync.WaitGroup
	wg.Add(1)
	go r.pumpUp(&wg)
	down, err := r.copy(client, backend)
	r.finish(client, err)
	wg.Wait()
	return r.end(down)
}

// RelayAsync is Relay that may return before the relay ends: done is
// called once with its result, from another goroutine or before RelayAsync
// returns. With parking (Pipes.EnableParking) and two TCP connections,
// nothing at all waits for an idle relay.
func RelayAsync(ctx context.Context, client, backend net.Conn, idle time.Duration, pipes *Pipes, done func(Stats, error)) {
	if c, b, ok := tcpPair(client, backend); ok && pipes.parks() {
		startParked(ctx, c, b, idle, pipes, done)
		return
	}
	go func() { done(Relay(ctx, client, backend, idle, pipes)) }()
}

// newRelay starts the state of a relay; ctx's cancellation aborts it.
func newRelay(ctx context.Context, client, backend net.Conn, idle time.Duration, pipes *Pipes) *relay {
	r := &relay{client: client, backend: backend, idle: idle, start: time.Now(), pipes: pipes}
	r.stop = context.AfterFunc(ctx, func() { r.abort(ctx.Err()) })
	return r
}

// end closes both connections once both directions are over, and reports.
func (r *relay) end(down int64) (Stats, error) {
	r.stop()
	r.client.Close()
	r.backend.Close()
	return Stats{Up: r.up, Down: down}, r.err()
}

// relay is the state two copy directions share.
type relay struct {
	client, backend net.Conn
	idle            time.Duration
	start           time.Time
	pipes           *Pipes
	lastActive      atomic.Int64 // nanoseconds since start of the last byte moved
	running         atomic.Int32 // parked relays: directions not parked nor ended
	up              int64        // written by the up direction, read once both ended
	stop            func() bool  // stops watching the context

	mu      sync.Mutex
	aborted bool
	first   error
	dirs    [2]*spliceDir // when parking: the two directions
}

// pumpUp is the client-to-backend direction; a named function so goroutine
// dumps say what it is.
func (r *relay) pumpUp(wg *sync.WaitGroup) {
	defer wg.Done()
	n, err := r.copy(r.backend, r.client)
	r.up = n
	r.finish(r.backend, err)
}

// finish ends one direction: on EOF the destination's write side is shut,
// on error the whole relay is aborted.
func (r *relay) finish(dst net.Conn, err error) {
	if err != nil {
		r.abort(err)
		return
	}
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		// Under the lock: once the relay is aborted its sockets get a
		// reset, which a FIN sent first would belie.
		r.mu.Lock()
		var cerr error
		if !r.aborted {
			cerr = cw.CloseWrite()
		}
		r.mu.Unlock()
		if cerr != nil && !isClosed(cerr) && !peerGone(cerr) {
			r.abort(cerr)
		}
		return
	}
	r.abort(nil) // cannot half-close: end the whole relay cleanly
}

// abort records the first error and closes both connections, which unblocks
// the other direction.
func (r *relay) abort(err error) {
	r.mu.Lock()
	if r.aborted {
		r.mu.Unlock()
		return
	}
	r.aborted = true
	r.first = err
	if err != nil {
		// Cut short (a reset, an error, the idle timeout, shutdown):
		// each side must learn that the stream did not end, which a
		// FIN would tell it (a download would look complete, an FTP
		// upload be stored cut short).
		abortConn(r.client)
		abortConn(r.backend)
	} else {
		r.client.Close()
		r.backend.Close()
	}
	r.mu.Unlock()
	if r.pipes.parks() {
		r.unparkAll()
	}
}

// abortConn closes c with a TCP reset (SO_LINGER 0) instead of a FIN, for
// a stream that was cut short: to its peer a FIN means the stream ended
// whole. An FTP server stores an upload, or counts a listing as sent, and
// answers 226; a reset makes it answer 425/426. Data c had not yet sent
// is dropped, as it would be for the peer that reset. A wrapped conn (TLS,
// PROXY protocol) is reset underneath; one without a TCP socket is closed.
func abortConn(c net.Conn) {
	raw := c
	for range 4 {
		switch w := raw.(type) {
		case interface{ SetLinger(sec int) error }:
			w.SetLinger(0)
		case interface{ NetConn() net.Conn }: // *tls.Conn
			raw = w.NetConn()
			continue
		case interface{ Raw() net.Conn }: // *proxyproto.Conn
			raw = w.Raw()
			continue
		}
		break
	}
	c.Close()
}

// quiet drops the errors a teardown causes in the other direction.
func (r *relay) quiet(err error) error {
	if err != nil && r.isAborted() {
		return nil
	}
	return err
}

func (r *relay) err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

// isAborted reports whether the relay was already torn down, so that the
// errors the teardown itself causes are not reported.
func (r *relay) isAborted() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aborted
}

// touch records that bytes moved now.
func (r *relay) touch() {
	r.lastActive.Store(int64(time.Since(r.start)))
}

// idleDeadline is when the connection becomes idle if nothing moves before.
func (r *relay) idleDeadline() time.Time {
	return r.start.Add(time.Duration(r.lastActive.Load()) + r.idle)
}

// onTimeout decides what a deadline error means: the connection really was
// idle (ErrIdleTimeout), or the other direction moved bytes meanwhile and the
// deadline is pushed out (nil: try again).
func (r *relay) onTimeout(setDeadline func(time.Time) error) error {
	if r.idle <= 0 {
		return os.ErrDeadlineExceeded // no idle timeout: a deadline set by someone else
	}
	d := r.idleDeadline()
	if !time.Now().Before(d) {
		// Bytes waiting in either socket are activity too: a starved
		// process may see this deadline fire before the other direction
		// was scheduled to move them.
		if !pendingInput(r.client) && !pendingInput(r.backend) {
			return ErrIdleTimeout
		}
		r.touch()
		d = r.idleDeadline()
	}
	return setDeadline(d)
}

// copy moves bytes from src to dst until EOF (nil error) or an error.
func (r *relay) copy(dst, src net.Conn) (int64, error) {
	if r.idle > 0 {
		if err := src.SetReadDeadline(r.idleDeadline()); err != nil {
			return 0, err
		}
	}
	var n int64
	var err error
	if s, d, ok := tcpPair(src, dst); ok {
		// A write deadline too, so a peer that stops reading cannot hold
		// this direction forever once the other one has ended. (Not on the
		// buffered path: a timed-out write corrupts a *tls.Conn.)
		if r.idle > 0 {
			if err := d.SetWriteDeadline(r.idleDeadline()); err != nil {
				return 0, err
			}
		}
		n, err = r.splice(d, s)
	} else {
		n, err = r.buffered(dst, src)
	}
	return n, r.quiet(err) // a teardown's own effect is not a new failure
}

// buffered is the portable copy loop used when splice is not possible (TLS,
// or another platform).
func (r *relay) buffered(dst, src net.Conn) (int64, error) {
	buf := r.pipes.buffer()
	defer r.pipes.putBuffer(buf)
	var total int64
	for {
		n, err := src.Read(*buf)
		if n > 0 {
			r.touch()
			w, werr := dst.Write((*buf)[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
			r.touch()
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return total, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			if terr := r.onTimeout(src.SetReadDeadline); terr != nil {
				return total, terr
			}
		default:
			return total, err
		}
	}
}

func tcpPair(src, dst net.Conn) (*net.TCPConn, *net.TCPConn, bool) {
	s, ok1 := src.(*net.TCPConn)
	d, ok2 := dst.(*net.TCPConn)
	return s, d, ok1 && ok2
}

func isClosed(err error) bool {
	return errors.Is(err, net.ErrClosed)
}

// peerGone reports errors that only say the peer already closed or reset
// its side: passing on an EOF to it is then moot, not a failure (an FTP
// client reads 221 and closes before the server's FIN is relayed).
func peerGone(err error) bool {
	return errors.Is(err, syscall.ENOTCONN) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}
