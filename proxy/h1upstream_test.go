package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// An upstream that answers as it accepts, before it reads the request (a
// server that refuses with a 503 at once), is heard on the direct path and
// over HTTP/2's roundTrip: its answer is relayed. Its bytes may arrive, and
// the poller's readiness for them be spent, before the request is sent; a
// wait for the reply that missed them would end in 504 at the response
// header timeout.
func TestUpstreamAnswersFirst(t *testing.T) {
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbusy")
		io.Copy(io.Discard, br) // until the proxy closes
	})
	w := newH2World(t, nil, up)
	w.proxy.ResponseHeaderTimeout = 5 * time.Second
	for i := range 10 {
		c, br := dialRaw(t, w.addr)
		send(t, c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if resp, body := readResp(t, br, ""); resp.StatusCode != http.StatusServiceUnavailable || body != "busy" {
			t.Fatalf("HTTP/1.1 request %d: %d %q; want the upstream's 503", i, resp.StatusCode, body)
		}
		c.Close()
		if resp, body := w.do(t, "GET", "/", nil); resp.StatusCode != http.StatusServiceUnavailable || body != "busy" {
			t.Fatalf("HTTP/2 request %d: %d %q; want the upstream's 503", i, resp.StatusCode, body)
		}
	}
}
