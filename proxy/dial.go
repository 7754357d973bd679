package proxy

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pires/go-proxyproto"
)

// ProxyHeader selects the PROXY protocol header sent to backends.
type ProxyHeader byte

// PROXY protocol versions.
const (
	NoProxyHeader ProxyHeader = 0
	ProxyHeaderV1 ProxyHeader = 1
	ProxyHeaderV2 ProxyHeader = 2
)

// dialBackend connects to addr within timeout and, if header is set, sends
// it a PROXY header naming remote (the address the client came from) and
// local (the address it reached), so the backend sees the real client.
// A dial failure is a *DialError.
func dialBackend(ctx context.Context, addr string, timeout time.Duration, header ProxyHeader, remote, local net.Addr) (net.Conn, error) {
	if timeout <= 0 {
		timeout = defaultDialTimeout
	}
	backend, err := dialShallow(ctx, addr, timeout)
	if err != nil {
		return nil, &DialError{Addr: addr, Err: err}
	}
	if header != NoProxyHeader {
		h := proxyproto.HeaderProxyFromAddrs(byte(header), remote, local)
		backend.SetWriteDeadline(time.Now().Add(timeout))
		_, err := h.WriteTo(backend)
		backend.SetWriteDeadline(time.Time{})
		if err != nil {
			backend.Close()
			return nil, fmt.Errorf("sending PROXY header to %s: %w", addr, err)
		}
	}
	return backend, nil
}

// dialShallow dials on a goroutine of its own. The caller typically waits
// for the whole life of the connection afterwards, and a dial (resolver,
// happy eyeballs) grows a goroutine's stack to several KiB, which an idle
// process rarely shrinks back: dialing elsewhere keeps every long-lived
// connection goroutine's stack at its minimum.
func dialShallow(ctx context.Context, addr string, timeout time.Duration) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		// No TCP keepalive: the relay's idle timeout finds dead peers, and
		// it would cost four setsockopt calls per connection.
		d := net.Dialer{Timeout: timeout, KeepAlive: -1}
		c, err := d.DialContext(ctx, "tcp", addr)
		done <- result{c, err}
	}()
	r := <-done
	return r.c, r.err
}
