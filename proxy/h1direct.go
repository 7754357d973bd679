package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portmux/portmux/internal/httpline"
)

// The direct path forwards plain HTTP/1.1 requests without net/http: the
// connection's goroutine reads the request head, writes it to a pooled
// upstream connection and copies the response back, with no goroutine
// hand-off and little allocation. net/http's server and Transport cost
// three to four times more CPU per request (docs/performance.md).
//
// It forwards only what it fully understands (requestHead.parseRequest) to
// routes that allow it (HTTPProxy.canForward). At the first request it does
// not take, the connection, its unread bytes included, moves to the
// http.Server for good, which serves everything else as before: h2c,
// upgrades, chunked uploads, Expect, bodies not yet received, the ACME
// challenge, redirects, 404 and 421 answers.

// DirectRequest describes a request to a DirectRouter.
type DirectRequest struct {
	Host   string // the Host header as sent
	Path   string // the decoded path
	Client netip.AddrPort
	TLS    *tls.ConnectionState // nil on plain HTTP
}

// DirectRouter returns the proxy of the route that takes a request, or nil
// to have the http.Server serve it (and the rest of its connection).
type DirectRouter func(*DirectRequest) *HTTPProxy

// clientBufferSize bounds the request head and body the direct path
// forwards; anything larger goes to the http.Server.
const clientBufferSize = 8 << 10

var clientReaders = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, clientBufferSize) }}

// directConn is one client connection on the direct path.
type directConn struct {
	s        *HTTPServer
	ctx      context.Context // ends when the connection is aborted
	conn     net.Conn        // read and written; a Stream when bytes were sniffed
	br       *bufio.Reader
	client   netip.AddrPort
	remote   string
	clientIP string // for X-Forwarded-For
	tls      *tls.ConnectionState
	routes   *RouteNote  // from ctx; nil if none
	idle     atomic.Bool // waiting for a request: Shutdown may close it
	// upstream is the upstream connection in use, closed by abort.
	upstream atomic.Pointer[upstreamConn]

	req  requestHead
	resp responseHead
	out  []byte // the outgoing head being built
	note []byte // method and host of the request, for its log line
	path string // its decoded path

	// A request the direct path answers itself (headRefused).
	status int
	why    string
	// long holds the rest of a request line longer than br's buffer,
	// read after br's bytes (readLongLine), for the http.Server.
	long []byte
}

// handover is what the direct path passes to the http.Server with a
// connection.
type handover struct {
	pending []byte // the bytes read and not consumed, a request's first
	// screened: that request's head was read whole and its framing
	// checked (requestHead.framed).
	screened bool
}

// serveDirect serves conn's requests on the direct path until it closes
// (nil), or until a request it does not take: then the http.Server is to
// serve the connection from what the handover holds. err is
// ErrHeaderTimeout when a client stalled in a request head.
func (s *HTTPServer) serveDirect(ctx context.Context, conn net.Conn, state *tls.ConnectionState) (ho *handover, err error) {
	d := &directConn{s: s, ctx: ctx, conn: conn, tls: state, remote: conn.RemoteAddr().String(), routes: routeNoteOf(ctx)}
	d.client, _ = netip.ParseAddrPort(d.remote)
	d.clientIP = d.client.Addr().String()
	if host, _, err := net.SplitHostPort(d.remote); err == nil {
		d.clientIP = host // as ReverseProxy's SetXForwarded writes it
	}
	if !s.track(d) {
		conn.Close()
		return nil, nil
	}
	defer s.untrack(d)
	stop := context.AfterFunc(ctx, d.abort)
	defer stop()
	d.br = clientReaders.Get().(*bufio.Reader)
	d.br.Reset(conn)
	for first := true; ; first = false {
		var res headResult
		if res, err = d.readRequest(first); err != nil {
			if !errors.Is(err, ErrHeaderTimeout) {
				err = nil // the end of a connection, not the client's fault
			}
			break
		}
		if res == headRefused {
			err = d.refuse()
			break
		}
		var p *HTTPProxy
		if res == headOK {
			p = d.route()
		}
		if p == nil {
			return &handover{pending: d.handoff(), screened: d.req.framed}, nil
		}
		if !p.forwardDirect(d) || d.req.close || s.noNextRequest() {
			break
		}
	}
	conn.Close()
	d.releaseReader()
	return nil, err
}

// readRequest waits for the next request head: for its first byte up to
// the idle timeout (the header timeout for a connection's first request),
// for the rest up to the header timeout. Up to httpline.MaxEmptyLines empty lines
// before it are dropped (RFC 9112 §2.2: after a POST's body some clients
// send one). It reports whether the direct path can take the request
// (body included, already buffered) or must refuse it (headRefused, with
// d.status and d.why), or an error when the connection is done.
func (d *directConn) readRequest(first bool) (headResult, error) {
	srv := d.s.srv
	if d.br.Buffered() == 0 {
		wait := srv.IdleTimeout
		if first {
			wait = srv.ReadHeaderTimeout
		}
		// Deadline, then idle, then the check: a Shutdown (or
		// StopKeepAlives) that missed this connection as idle has set its
		// flag before the check; one that saw it idle moves the deadline
		// after this one was set. A connection's first request is served
		// unless the server is shut down.
		d.conn.SetReadDeadline(time.Now().Add(wait))
		d.idle.Store(true)
		if d.s.closing.Load() || !first && d.s.lastOne.Load() {
			d.idle.Store(false)
			return 0, net.ErrClosed
		}
		_, err := d.br.Peek(1)
		d.idle.Store(false)
		if err != nil {
			return 0, err
		}
	}
	deadline := false
	for skipped := 0; ; {
		b := d.peekBuffered()
		if n := httpline.EmptyLine(b); n > 0 && skipped < httpline.MaxEmptyLines {
			d.br.Discard(n)
			skipped++
			continue
		}
		res := d.req.parseRequest(b)
		if res == headOK {
			total := d.req.size + int(d.req.contentLength)
			if srv.MaxHeaderBytes > 0 && d.req.size > srv.MaxHeaderBytes ||
				d.req.contentLength > int64(d.br.Size()) || total > d.br.Buffered() {
				// net/http answers 431 for the one; a body still on its
				// way streams through it.
				return headUnsupported, nil
			}
			return headOK, nil
		}
		switch {
		case res == headFaulty:
			return d.refusal(http.StatusBadRequest, d.req.why), nil
		case res == headUnsupported:
			return d.unsupported(b), nil
		case d.br.Buffered() == d.br.Size():
			// The head does not fit: net/http serves it, up to its
			// MaxHeaderBytes (431 beyond). Only a request line that
			// does not end in the buffer is read on here.
			if bytes.IndexByte(b, '\n') >= 0 {
				return d.unsupported(b), nil
			}
			if !deadline {
				d.conn.SetReadDeadline(time.Now().Add(srv.ReadHeaderTimeout))
			}
			return d.readLongLine()
		}
		if !deadline {
			d.conn.SetReadDeadline(time.Now().Add(srv.ReadHeaderTimeout))
			deadline = true
		}
		if _, err := d.br.Peek(d.br.Buffered() + 1); err != nil {
			if isTimeout(err) {
				return 0, ErrHeaderTimeout
			}
			return 0, err
		}
	}
}

// refusal notes that the request must be answered status, for why, and
// not served.
func (d *directConn) refusal(status int, why string) headResult {
	d.status, d.why = status, why
	return headRefused
}

// unsupported is the verdict on a request head b that the direct path
// does not forward: one whose version is not HTTP/1 is refused 505 here
// (net/http answers 505 for "HTTP/2.0" but 400 for "HTTP/3"); net/http
// serves (or refuses) the rest.
func (d *directConn) unsupported(b []byte) headResult {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	if v, ok := otherVersion(line); ok {
		return d.refusal(http.StatusHTTPVersionNotSupported, "HTTP/"+string(v))
	}
	return headUnsupported
}

// readLongLine reads on a request line that does not end in the client
// buffer, which is full: into d.long, until it ends (then net/http serves
// the request, or refuses it as unsupported says) or passes the server's
// MaxHeaderBytes, the most it reads of a head (refused 414, where
// net/http's answer would be 431). The read deadline is set.
func (d *directConn) readLongLine() (headResult, error) {
	limit := d.s.srv.MaxHeaderBytes
	if limit <= 0 {
		limit = http.DefaultMaxHeaderBytes
	}
	d.long = make([]byte, 0, d.br.Size())
	for {
		if eol := bytes.IndexByte(d.long, '\n'); eol >= 0 && d.br.Buffered()+eol <= limit {
			return d.unsupported(d.long[:eol]), nil
		}
		if d.br.Buffered()+len(d.long) > limit {
			return d.refusal(http.StatusRequestURITooLong, "request line over "+strconv.Itoa(limit)+" bytes"), nil
		}
		if len(d.long) == cap(d.long) {
			d.long = slices.Grow(d.long, len(d.long))
		}
		n, err := d.conn.Read(d.long[len(d.long):cap(d.long)])
		d.long = d.long[:len(d.long)+n]
		if err != nil && n == 0 {
			if isTimeout(err) {
				return 0, ErrHeaderTimeout
			}
			return 0, err
		}
	}
}

// refuse answers d.status to a request that must not be served, and ends
// the connection as net/http does: its sending side first, then a moment
// for the client to read the answer before the close (which unread
// request bytes would turn into a reset that could destroy it).
func (d *directConn) refuse() error {
	d.routes.note(ImplicitRoute)
	status, text := d.status, http.StatusText(d.status)
	d.out = appendErrorResponse(d.out[:0], status, strconv.Itoa(status)+" "+strings.ToLower(text)+": "+d.why+"\n", true)
	d.conn.SetWriteDeadline(time.Now().Add(refuseLinger))
	d.conn.Write(d.out)
	if cw, ok := d.conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		d.conn.SetReadDeadline(time.Now().Add(refuseLinger))
		io.Copy(io.Discard, d.conn)
	}
	return &RefusedError{Status: status, Line: text + ": " + d.why}
}

// refuseLinger is how long refuse waits for the client to read its answer
// (net/http waits as long).
const refuseLinger = 500 * time.Millisecond

// abort closes the connection and the upstream connection in use, which
// ends whatever the connection's goroutine waits for.
func (d *directConn) abort() {
	d.conn.Close()
	if uc := d.upstream.Load(); uc != nil {
		uc.conn.Close()
	}
}

// peekBuffered returns the buffered bytes without reading.
func (d *directConn) peekBuffered() []byte {
	b, _ := d.br.Peek(d.br.Buffered())
	return b
}

// route asks the server's router for the request's proxy, which must also
// accept the request (its upstreams and body limit).
func (d *directConn) route() *HTTPProxy {
	d.path = string(d.req.path)
	if bytes.IndexByte(d.req.path, '%') >= 0 {
		var err error
		if d.path, err = url.PathUnescape(d.path); err != nil {
			return nil
		}
	}
	p := d.s.direct(&DirectRequest{Host: string(d.req.host), Path: d.path, Client: d.client, TLS: d.tls})
	if p == nil || !p.canForward(&d.req) {
		return nil
	}
	return p
}

// handoff returns the bytes read but not consumed, for the http.Server.
func (d *directConn) handoff() []byte {
	d.conn.SetReadDeadline(time.Time{})
	rest := append(append([]byte(nil), d.peekBuffered()...), d.long...)
	d.long = nil
	d.releaseReader()
	return rest
}

func (d *directConn) releaseReader() {
	d.br.Reset(nil)
	clientReaders.Put(d.br)
	d.br = nil
}
