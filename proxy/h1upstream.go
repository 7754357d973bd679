package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portmux/portmux/internal/rawio"
)

// Upstream connections of the direct path: kept alive between requests in
// a per-upstream stack (the most recently used first, so that a burst's
// surplus ages out), read through a buffer borrowed for each exchange, so
// an idle connection holds no memory but its socket, and no goroutine.

const (
	// maxIdlePerUpstream matches the Transport's MaxIdleConnsPerHost.
	maxIdlePerUpstream = 1024
	// upstreamIdleTimeout closes connections unused this long.
	upstreamIdleTimeout = 90 * time.Second
	// upstreamSweepInterval is how often the idle connections are
	// looked at: those idle too long are closed, and those the upstream
	// closed, which would hold a descriptor in CLOSE-WAIT until then.
	upstreamSweepInterval = 10 * time.Second
	// freshReuseWindow bounds how long a kept-alive connection may have
	// been idle to carry a request that cannot be sent again if the
	// upstream closes it meanwhile (not idempotent, or with a body that
	// streams from the client). An upstream closes an idle connection
	// when its own keep-alive timeout ends, and a request sent at that
	// moment meets a reset: a POST would get a 502. No common server
	// closes sooner than 2s (gunicorn; nginx 75s, Node and Apache 5s),
	// so such requests take connections idle under 1s, or a new one.
	freshReuseWindow = time.Second
)

// MaxResponseHeadBytes bounds an upstream's response head, on the direct
// path and (as the Transport's MaxResponseHeaderBytes) on every other: a
// larger one is a 502 whichever path the request took. nginx's default
// proxy_buffer_size is 4 or 8 KiB.
const MaxResponseHeadBytes = 16 << 10

// reuseLimit is how long a connection may have been idle to carry a
// request that may (idempotent) or may not be sent again.
func reuseLimit(idempotent bool) time.Duration {
	if idempotent {
		return upstreamIdleTimeout
	}
	return freshReuseWindow
}

// upstreamReaders buffer upstream responses: a response head must fit in
// one (MaxResponseHeadBytes).
var upstreamReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, MaxResponseHeadBytes) }}

// upstreamConn is a connection to an upstream on the direct path.
type upstreamConn struct {
	conn   net.Conn
	br     *bufio.Reader // while in use
	reused bool
	idleAt time.Time
	// spokeFirst: the upstream sent bytes before the first request was
	// sent. They were read as its response, but the upstream may answer
	// the request too: the connection is not kept, lest that answer pass
	// for the next request's.
	spokeFirst bool
}

func (uc *upstreamConn) attach() {
	uc.br = upstreamReaders.Get().(*bufio.Reader)
	uc.br.Reset(uc.conn)
}

func (uc *upstreamConn) detach() {
	uc.br.Reset(nil)
	upstreamReaders.Put(uc.br)
	uc.br = nil
}

func (uc *upstreamConn) close() {
	uc.conn.Close()
	if uc.br != nil {
		uc.detach()
	}
}

// idleConns is an upstream's pool of kept-alive connections.
type idleConns struct {
	mu     sync.Mutex
	conns  []*upstreamConn // oldest first
	sweep  *time.Timer
	closed bool
}

// get returns the most recently used connection if it has been idle no
// longer than limit (reuseLimit), or nil. One too old for limit but not
// for upstreamIdleTimeout stays for requests that allow more.
func (p *idleConns) get(limit time.Duration) *upstreamConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns)
	if n == 0 {
		return nil
	}
	uc := p.conns[n-1]
	idle := time.Since(uc.idleAt)
	if idle > limit && idle <= upstreamIdleTimeout {
		return nil
	}
	p.conns[n-1] = nil
	p.conns = p.conns[:n-1]
	if idle > limit {
		uc.conn.Close()
		return nil
	}
	return uc
}

// put keeps uc for the next request, or closes it when the pool is full
// or closed.
func (p *idleConns) put(uc *upstreamConn) {
	uc.detach()
	uc.reused, uc.idleAt = true, time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns) >= maxIdlePerUpstream || uc.spokeFirst {
		uc.conn.Close()
		return
	}
	p.conns = append(p.conns, uc)
	if p.sweep == nil {
		p.sweep = time.AfterFunc(upstreamSweepInterval, p.expire)
	}
}

// expire closes the connections idle too long and those the upstream
// closed (or sent bytes on) meanwhile; it runs every
// upstreamSweepInterval while any are kept.
func (p *idleConns) expire() {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.conns[:0]
	for _, uc := range p.conns {
		if time.Since(uc.idleAt) > upstreamIdleTimeout || !rawio.Quiet(uc.conn) {
			uc.conn.Close()
			continue
		}
		kept = append(kept, uc)
	}
	clear(p.conns[len(kept):])
	p.conns = kept
	if len(p.conns) > 0 && !p.closed {
		p.sweep.Reset(upstreamSweepInterval)
	} else {
		p.sweep = nil
	}
}

// closeAll closes the idle connections; later ones are closed on put.
func (p *idleConns) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, uc := range p.conns {
		uc.conn.Close()
	}
	p.conns = nil
	if p.sweep != nil {
		p.sweep.Stop()
		p.sweep = nil
	}
}

// CloseIdleConnections closes the idle upstream connections of the
// direct path, which keeps none from now on (the route is retired), and
// of the proxy's own transport for requests that need fresh ones.
func (p *HTTPProxy) CloseIdleConnections() {
	for _, u := range p.Pool.Upstreams {
		u.idle.closeAll()
	}
	if c, ok := p.fresh.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// errNothingReceived wraps the error of a reused connection that failed
// before any byte of a response: the upstream had closed it while idle.
type errNothingReceived struct{ err error }

func (e *errNothingReceived) Error() string {
	return "upstream closed the connection: " + e.err.Error()
}
func (e *errNothingReceived) Unwrap() error { return e.err }

// exchange sends out (request head and body) on a connection to u and
// reads the response head into resp. A request that is not idempotent
// takes a kept-alive connection only if it has been idle briefly
// (reuseLimit). A kept-alive connection is checked without blocking as
// its request is sent (send): one the upstream has closed while idle, or
// sent bytes nobody asked for on (they would pass for the next response,
// as HAProxy and nginx also refuse), is closed and replaced. One the
// upstream closes just as the request goes out fails the request, which
// is sent again on a new connection if idempotent (as net/http's
// Transport does). The connection in use is kept in inUse, for an abort
// to close; one that comes after ctx ended is not used.
func (p *HTTPProxy) exchange(ctx context.Context, u *Upstream, out []byte, idempotent, headReq bool, resp *responseHead,
	inUse *atomic.Pointer[upstreamConn]) (*upstreamConn, error) {
	for fresh := false; ; fresh = true {
		var uc *upstreamConn
		if !fresh {
			uc = u.idle.get(reuseLimit(idempotent))
		}
		if uc == nil {
			c, err := p.dialer().DialContext(ctx, "tcp", hostPort(u))
			if err != nil {
				return nil, err
			}
			uc = &upstreamConn{conn: rawio.Wrap(c)}
		}
		uc.attach()
		inUse.Store(uc)
		if err := ctx.Err(); err != nil {
			// The abort that ctx's end starts may have found no
			// connection in use yet.
			inUse.Store(nil)
			uc.close()
			return nil, err
		}
		err := uc.send(out, resp, headReq, p.ResponseHeaderTimeout)
		if err == nil {
			return uc, nil
		}
		inUse.Store(nil)
		uc.close()
		if err == errNotQuiet {
			continue // nothing sent: a new connection
		}
		var stale *errNothingReceived
		if !uc.reused || !idempotent || ctx.Err() != nil || !errors.As(err, &stale) && !isWriteError(err) {
			return nil, err
		}
	}
}

func isWriteError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "write"
}

// dialer dials upstreams with the route's timeout.
func (p *HTTPProxy) dialer() *net.Dialer {
	p.dialOnce.Do(func() {
		p.dial = &net.Dialer{Timeout: p.DialTimeout, KeepAlive: 30 * time.Second}
	})
	return p.dial
}

// hostPort is u's address with the default port when it has none.
func hostPort(u *Upstream) string {
	if u.URL.Port() != "" {
		return u.URL.Host
	}
	return net.JoinHostPort(u.URL.Hostname(), "80")
}

// errResponseHeadTooLarge reports a response head beyond the buffer.
var errResponseHeadTooLarge = errors.New("upstream response head too large")

// errNotQuiet reports a kept-alive connection that had something to read
// before its request was sent: the upstream closed it while idle, or sent
// bytes nobody asked for (they would pass for the response). Nothing was
// sent on it.
var errNotQuiet = errors.New("kept-alive upstream connection closed or not quiet")

// send writes out (nothing when empty) and reads the response head into
// resp, within timeout (0: no limit) from the moment out is sent, leaving
// it buffered: resp's slices point into the buffer. A kept-alive
// connection with something to read before out is sent fails with
// errNotQuiet; a new one is sent out all the same, as a server may speak
// first (a 503 at accept), and what it said is read, but it is not kept.
func (uc *upstreamConn) send(out []byte, resp *responseHead, headReq bool, timeout time.Duration) error {
	if timeout > 0 {
		uc.conn.SetReadDeadline(time.Now().Add(timeout))
		defer uc.conn.SetReadDeadline(time.Time{})
	}
	if len(out) > 0 {
		sent, err := rawio.SendAwaitingReply(uc.conn, out)
		switch {
		case err != nil:
			return err
		case !sent && uc.reused:
			return errNotQuiet
		case !sent:
			uc.spokeFirst = true
			if _, err := uc.conn.Write(out); err != nil {
				return err
			}
		}
	}
	for {
		b, _ := uc.br.Peek(uc.br.Buffered())
		if len(b) > 0 {
			res, err := resp.parseResponse(b, headReq)
			switch {
			case err != nil:
				return err
			case res == headOK:
				return nil
			case len(b) == uc.br.Size():
				return errResponseHeadTooLarge
			}
		}
		if _, err := uc.br.Peek(len(b) + 1); err != nil {
			if len(b) == 0 && !isTimeout(err) {
				return &errNothingReceived{err}
			}
			return err
		}
	}
}

// readHead reads the next response head into resp, as send does.
func (uc *upstreamConn) readHead(resp *responseHead, headReq bool, timeout time.Duration) error {
	return uc.send(nil, resp, headReq, timeout)
}
