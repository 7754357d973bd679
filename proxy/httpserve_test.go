package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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
