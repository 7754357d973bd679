package proxy

import (
	"errors"
	"net"
	"strconv"
)

// ErrHeaderTimeout ends a connection whose client sent part of a request
// head and not the rest within the header timeout (a slowloris client, or
// one that stalled).
var ErrHeaderTimeout = errors.New("request head incomplete at the header timeout")

// RefusedError ends a connection on which the http.Server answered a
// request itself, without a handler: 400 for a malformed request, 431 for
// headers over the limit, 501 for an unknown transfer coding, 505, 417.
// The client got that answer; no route saw the request.
type RefusedError struct {
	Status int
	Line   string // the status line's text after the code, such as "Bad Request"
}

func (e *RefusedError) Error() string {
	return "request refused by the HTTP server: " + strconv.Itoa(e.Status) + " " + e.Line
}

// servedConn is a connection as the http.Server sees it: it yields first
// the bytes the direct path read and did not consume, and it notes what
// the server does on its own, which no handler logs: answering a request
// it refuses, or dropping a client that stalled in a request head. The
// server's ConnState calls and the handler keep h's flags current.
type servedConn struct {
	net.Conn
	pending []byte
	h       *handed
}

// Read returns the pending bytes first.
func (c *servedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		c.h.partial.Store(true)
		return n, nil
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.h.partial.Store(true)
	}
	if err != nil && !c.h.handled.Load() && c.h.partial.Load() && isTimeout(err) {
		// The only read deadlines the server sets outside handlers are
		// for the next request: its head stopped short. (Bytes of it read
		// along with the request before sit in the server's buffer,
		// unseen here: such a stall ends with no error. A slowloris
		// client's bytes come after the response.)
		c.h.note(ErrHeaderTimeout)
	}
	return n, err
}

// Write notes a response the server writes with no handler running: its
// own answer to a request it refused. (Over HTTP/2 the connection carries
// frames, which never begin like a status line.)
func (c *servedConn) Write(p []byte) (int, error) {
	if !c.h.handled.Load() && c.h.cause.Load() == nil {
		if status, line, ok := statusLine(p); ok && status >= 400 {
			c.h.routes.note(ImplicitRoute)
			c.h.note(&RefusedError{Status: status, Line: line})
		}
	}
	return c.Conn.Write(p)
}

// CloseWrite half-closes the connection when it can: the server does so
// after refusing a request, and an upgraded connection's relay passes an
// upstream's EOF on with it.
func (c *servedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// statusLine parses the start of an HTTP/1.x status line in p.
func statusLine(p []byte) (status int, text string, ok bool) {
	const prefix = "HTTP/1.x NNN"
	if len(p) < len(prefix) || string(p[:7]) != "HTTP/1." || p[8] != ' ' {
		return 0, "", false
	}
	status, err := strconv.Atoi(string(p[9:12]))
	if err != nil || status < 100 {
		return 0, "", false
	}
	rest := p[12:]
	if len(rest) > 0 && rest[0] == ' ' {
		rest = rest[1:]
		for i, b := range rest {
			if b == '\r' || b == '\n' || i == 64 {
				rest = rest[:i]
				break
			}
		}
	} else {
		rest = nil
	}
	return status, string(rest), true
}

// note records why the connection ended badly, if nothing did before.
func (h *handed) note(err error) {
	h.cause.CompareAndSwap(nil, &err)
}

// noted is the cause note recorded, nil if none.
func (h *handed) noted() error {
	if p := h.cause.Load(); p != nil {
		return *p
	}
	return nil
}

// requestStarted and idle are the server's ConnState transitions: a
// request head was read (or refused), and a response was finished. A
// handler that runs sets handled in between.
func (h *handed) requestStarted() { h.handled.Store(false) }

func (h *handed) idle() {
	h.handled.Store(false)
	h.partial.Store(false)
}
