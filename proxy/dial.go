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
	d := net.Dialer{Timeout: timeout}
	backend, err := d.DialContext(ctx, "tcp", addr)
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
