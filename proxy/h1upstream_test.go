package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/portmux/portmux/internal/loopback"
	"github.com/portmux/portmux/internal/rawio"
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

// The sweep of idle upstream connections closes the ones their upstream
// closed (they would hold a descriptor in CLOSE-WAIT until they expire)
// and keeps the others.
func TestIdleUpstreamConnectionsSwept(t *testing.T) {
	closing := make(chan *net.TCPConn, 1)
	up := rawUpstream(t, func(c *net.TCPConn, br *bufio.Reader) {
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			if req.URL.Path == "/then-close" {
				closing <- c // the test closes it
				io.Copy(io.Discard, br)
				return
			}
		}
	})
	w := newDirectWorld(t, nil, up)
	u := w.proxy.Pool.Upstreams[0]
	c, br := dialRaw(t, w.addr)
	send(t, c, "GET /then-close HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body := readResp(t, br, ""); resp.StatusCode != 200 || body != "ok" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	waitIdle(t, u, 1)
	u.idle.expire()
	if n := idleCount(u); n != 1 {
		t.Fatalf("after a sweep with the upstream's side open, the pool holds %d; want 1", n)
	}
	upSide := <-closing
	upSide.Close()
	deadline := time.Now().Add(10 * time.Second)
	for idleCount(u) != 0 && time.Now().Before(deadline) { // the FIN's arrival, then a sweep
		time.Sleep(time.Millisecond)
		u.idle.expire()
	}
	if n := idleCount(u); n != 0 {
		t.Fatalf("after the upstream closed, the pool holds %d; want 0", n)
	}
}

// waitIdle waits until u's direct-path pool holds n connections, at most
// 10s: an exchange returns its connection after the client has the
// response.
func waitIdle(t *testing.T, u *Upstream, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); idleCount(u) != n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the pool holds %d connections; want %d", idleCount(u), n)
		}
	}
}

// A new upstream connection on which the upstream spoke before the
// request was sent (a keep-alive response as it accepts) is sent the
// request all the same and what the upstream said is read as the
// response, but it is not kept: the upstream may answer the request too,
// and that answer would pass for the next request's. (Bytes that come
// after the request was sent cannot be told from its answer.)
func TestUpstreamThatSpokeFirstNotKept(t *testing.T) {
	server, client := loopback.TCPPair(t, 0)
	io.WriteString(server, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nearly")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if n, _, _ := rawio.Peek(client); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the early response did not arrive")
		}
	}
	uc := &upstreamConn{conn: rawio.Wrap(client)}
	uc.attach()
	var resp responseHead
	const req = "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	if err := uc.send([]byte(req), &resp, false, 5*time.Second); err != nil || resp.status != 200 || !uc.spokeFirst {
		t.Fatalf("send = %v, status %d, spokeFirst %v; want the early 200, noted", err, resp.status, uc.spokeFirst)
	}
	got := make([]byte, len(req))
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(server, got); err != nil || string(got) != req {
		t.Fatalf("the upstream read %q, %v; want the request sent all the same", got, err)
	}
	var pool idleConns
	pool.put(uc)
	if len(pool.conns) != 0 {
		t.Fatal("the pool kept a connection whose upstream spoke first")
	}
	if n, err := server.Read(got); err != io.EOF {
		t.Errorf("the upstream read %d bytes, %v; want the connection closed", n, err)
	}
}
