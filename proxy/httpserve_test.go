package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// handOver runs s.Serve for every connection accepted on a loopback
// listener and reports each Serve's return.
func handOver(t *testing.T, s *HTTPServer, ctx context.Context) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { served <- s.Serve(ctx, c, nil) }()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), served
}

func newTestHTTPServer(t *testing.T, h http.Handler) *HTTPServer {
	s := NewHTTPServer(h, nil, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s
}

// Serve returns once the client's keep-alive connection is closed, after
// all its requests were answered.
func TestHTTPServerKeepAlive(t *testing.T) {
	s := newTestHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hi "+r.URL.Path)
	}))
	addr, served := handOver(t, s, context.Background())
	tr := &http.Transport{}
	client := &http.Client{Transport: tr}
	for _, p := range []string{"/a", "/b", "/c"} {
		resp, err := client.Get("http://" + addr + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "hi "+p {
			t.Fatalf("got %q", body)
		}
	}
	select {
	case err := <-served:
		t.Fatalf("Serve returned (%v) while the keep-alive connection is open", err)
	case <-time.After(100 * time.Millisecond):
	}
	tr.CloseIdleConnections()
	if err := waitErr(t, served); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// A hijacked connection is served until the handler returns.
func TestHTTPServerHijack(t *testing.T) {
	s := newTestHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		rw.WriteString("echo:" + line)
		rw.Flush()
	}))
	addr, served := handOver(t, s, context.Background())
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	io.WriteString(c, "ping\n")
	if line, _ := br.ReadString('\n'); line != "echo:ping\n" {
		t.Fatalf("got %q", line)
	}
	if err := waitErr(t, served); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

func TestHTTPServerContextCancel(t *testing.T) {
	s := newTestHTTPServer(t, http.NotFoundHandler())
	ctx, cancel := context.WithCancel(context.Background())
	addr, served := handOver(t, s, ctx)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // let the idle connection be handed over
	cancel()
	if err := waitErr(t, served); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v; want context.Canceled", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client: got %v; want EOF", err)
	}
}

func waitErr(t *testing.T, c <-chan error) error {
	t.Helper()
	select {
	case err := <-c:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
		return nil
	}
}

// wrappedConn hides the connection it wraps, as a mux.Stream does.
type wrappedConn struct{ net.Conn }

// A TLS connection handed over wrapped (its bytes were sniffed, or read by
// the direct path before it fell back) still shows the handler its TLS
// state, from a real handshake without ALPN, as openssl s_client makes.
func TestHTTPServerTLSStateOfWrappedConn(t *testing.T) {
	certs := httptest.NewUnstartedServer(nil)
	certs.StartTLS() // only for its certificate and a client that trusts it
	t.Cleanup(certs.Close)
	serverName := make(chan string, 1)
	s := newTestHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			serverName <- "(no TLS state)"
		} else {
			serverName <- r.TLS.ServerName
		}
	}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		tc := tls.Server(c, certs.TLS)
		if err := tc.Handshake(); err != nil {
			c.Close()
			served <- err
			return
		}
		state := tc.ConnectionState()
		served <- s.Serve(context.Background(), wrappedConn{tc}, &state)
	}()
	clientConf := certs.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	clientConf.ServerName = "example.com"
	c, err := tls.Dial("tcp", ln.Addr().String(), clientConf)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-serverName; got != "example.com" {
		t.Errorf("the handler saw %q; want the connection's SNI example.com", got)
	}
	c.Close()
	if err := waitErr(t, served); err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// A client that shuts down its sending side after its request (HTTP/1.0
// tools, printf ... | nc -q1) still gets the answer, on requests the direct
// path hands to net/http too, which would otherwise cancel the request at
// the client's EOF. The upstream takes a moment to answer, so that the
// EOF comes first.
func TestHTTPServerHalfClosedClient(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(100 * time.Millisecond)
		fmt.Fprintf(w, "%s %s body=%q", r.Method, r.URL.Path, body)
	}))
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, true, RoundRobin, up)
	for _, tc := range []struct{ request, want string }{
		{"GET /ten HTTP/1.0\r\n\r\n", `GET /ten body=""`},
		{"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n", `POST /chunked body="hi"`},
	} {
		c, br := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
		send(t, c, tc.request)
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q, then half-close: %v; want the upstream's answer", tc.request, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != tc.want {
			t.Errorf("%q, then half-close: %s %q; want 200 %q", tc.request, resp.Status, body, tc.want)
		}
	}
}

// A request the proxy has nothing to answer to (here the client's upload
// ended early: it closed its side mid-body) gets no answer at all, the
// connection is closed: not an empty 200, which net/http sends for a
// handler that writes nothing.
func TestHTTPServerNoAnswerNoFake200(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(up.Close)
	bothFronts(t, func(t *testing.T, direct bool) {
		w := newProxyWorldOn(t, direct, RoundRobin, up)
		c, _ := dialRaw(t, strings.TrimPrefix(w.url, "http://"))
		send(t, c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 10))
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(c)
		if len(got) > 0 {
			t.Errorf("client got %q; want the connection closed without an answer", got)
		}
		waitLogs(t, w.logs, 1)
		if e := w.logs.FilterMessage("request").All(); len(e) != 1 || e[0].ContextMap()["status"] != int64(499) {
			t.Errorf("access log %v; want one line with 499", e)
		}
	})
}
