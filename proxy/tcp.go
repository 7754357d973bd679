package proxy

import (
	"context"
	"fmt"
	"net"
	"time"
)

// TCP relays connections to one fixed backend address. Its fields are read
// only; a TCP value is safe for concurrent use.
type TCP struct {
	// Addr is the backend's host:port.
	Addr string
	// DialTimeout bounds connecting to the backend. If zero, 5s is used.
	DialTimeout time.Duration
	// IdleTimeout closes the relay when no byte moved either way for this
	// long. If zero or negative, connections never time out.
	IdleTimeout time.Duration
	// Pipes is the shared splice pipe pool; nil means no pooling.
	Pipes *Pipes
}

// DialError reports that the backend could not be reached. The client
// connection has been closed when Serve returns it.
type DialError struct {
	Addr string
	Err  error
}

func (e *DialError) Error() string { return fmt.Sprintf("dial %s: %v", e.Addr, e.Err) }

// Unwrap returns the dial error.
func (e *DialError) Unwrap() error { return e.Err }

const defaultDialTimeout = 5 * time.Second

// Serve dials the backend, writes prefix (the bytes read from client while
// sniffing) to it exactly once, then relays both ways until both sides are
// done. Serve owns client: it is closed when Serve returns. The prefix counts
// in Stats.Up.
func (t *TCP) Serve(ctx context.Context, client net.Conn, prefix []byte) (Stats, error) {
	timeout := t.DialTimeout
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	d := net.Dialer{Timeout: timeout}
	backend, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		client.Close()
		return Stats{}, &DialError{Addr: t.Addr, Err: err}
	}
	var sent int64
	if len(prefix) > 0 {
		if t.IdleTimeout > 0 {
			backend.SetWriteDeadline(time.Now().Add(t.IdleTimeout))
		}
		n, err := backend.Write(prefix)
		sent = int64(n)
		if err != nil {
			client.Close()
			backend.Close()
			return Stats{Up: sent}, fmt.Errorf("writing sniffed bytes: %w", err)
		}
	}
	st, err := Relay(ctx, client, backend, t.IdleTimeout, t.Pipes)
	st.Up += sent
	return st, err
}
