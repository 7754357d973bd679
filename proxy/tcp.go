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
	// SendProxy, if set, starts each backend connection with a PROXY
	// protocol header naming the client (client.RemoteAddr()).
	SendProxy ProxyHeader
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
	return t.ServeAs(ctx, client, prefix, client.RemoteAddr(), client.LocalAddr())
}

// ServeAs is Serve for a client whose addresses are not its socket's: one
// that came through a load balancer's PROXY header. remote and local then
// name it in the header SendProxy sends.
func (t *TCP) ServeAs(ctx context.Context, client net.Conn, prefix []byte, remote, local net.Addr) (Stats, error) {
	type result struct {
		st  Stats
		err error
	}
	ch := make(chan result, 1)
	t.ServeAsync(ctx, client, prefix, remote, local, func(st Stats, err error) { ch <- result{st, err} })
	res := <-ch
	return res.st, res.err
}

// ServeAsync is ServeAs that returns once the relay is set up (the dial
// and the prefix are done); done is called once with the result when the
// relay ends, possibly before ServeAsync returns. See RelayAsync.
func (t *TCP) ServeAsync(ctx context.Context, client net.Conn, prefix []byte, remote, local net.Addr, done func(Stats, error)) {
	backend, err := dialBackend(ctx, t.Addr, t.DialTimeout, t.SendProxy, remote, local)
	if err != nil {
		client.Close()
		done(Stats{}, err)
		return
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
			done(Stats{Up: sent}, fmt.Errorf("writing sniffed bytes: %w", err))
			return
		}
	}
	RelayAsync(ctx, client, backend, t.IdleTimeout, t.Pipes, func(st Stats, err error) {
		st.Up += sent
		done(st, err)
	})
}
