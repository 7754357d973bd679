package test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

// TestE2ETLSPassthrough routes TLS by SNI without terminating it: the client trusts
// only the expected backend's self-signed certificate, so a completed handshake proves
// which backend answered, and the backend sees the client's own ClientHello (its ALPN
// offer reaches the backend).
func TestE2ETLSPassthrough(t *testing.T) {
	w := startWorld(t, worldOpts{})
	cases := []struct {
		name, sni, route string
		backend          *tlsBackend
		alpn             []string
		want             string
	}{
		{name: "a.test", sni: "a.test", route: "tls-a", backend: w.TLSA, want: "a.test"},
		{name: "b.test", sni: "b.test", route: "tls-b", backend: w.TLSB, want: "b.test"},
		{name: "b.test with ALPN", sni: "b.test", route: "tls-b", backend: w.TLSB, alpn: []string{"x-test"}, want: "b.test x-test"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			line, local, err := tlsIdentify(w.PM.Addr(), tc.sni, tc.backend.Cert, tc.alpn...)
			if err != nil {
				t.Fatalf("through portmux: %v", err)
			}
			if line != tc.want {
				t.Errorf("backend answered %q; want %q", line, tc.want)
			}
			l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
			checkFields(t, l, map[string]string{
				"protocol": "tls", "route": tc.route, "sni": tc.sni, "outcome": "ok",
				"backend": tc.backend.Addr(),
			})
		})
	}

	t.Run("unknown SNI", func(t *testing.T) {
		before := w.TLSA.Accepted() + w.TLSB.Accepted()
		c, err := dialTCP(w.PM.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		local := c.LocalAddr().String()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Client(c, tlsClientConfig("c.test", w.TLSA.Cert))
		err = tc.Handshake()
		if err == nil {
			t.Fatal("handshake for c.test succeeded; want the connection closed")
		}
		if isTimeout(err) {
			t.Fatalf("handshake for c.test: %v; want the connection closed within 10s", err)
		}
		if !strings.Contains(err.Error(), "unrecognized name") {
			t.Errorf("handshake for c.test: %v; want the unrecognized_name alert", err)
		}
		l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
		checkFields(t, l, map[string]string{"protocol": "tls", "sni": "c.test", "outcome": "no_route", "route": ""})
		if after := w.TLSA.Accepted() + w.TLSB.Accepted(); after != before {
			t.Errorf("TLS backends accepted %d connection(s) for c.test; want 0", after-before)
		}
	})
}

// rawClientHello is a minimal ClientHello record carrying name verbatim
// as its SNI, as openssl s_client -servername sends a fully qualified name
// (crypto/tls's client drops the dot).
func rawClientHello(name string) []byte {
	sni := append([]byte{0, byte(len(name) + 3), 0, 0, byte(len(name))}, name...)
	ext := append([]byte{0, 0, 0, byte(len(sni))}, sni...)
	body := append([]byte{3, 3}, make([]byte, 32)...) // version, random
	body = append(body, 0, 0, 2, 0x13, 0x01, 1, 0)    // no session id, one suite, null compression
	body = append(body, 0, byte(len(ext)))
	body = append(body, ext...)
	msg := append([]byte{1, 0, 0, byte(len(body))}, body...)
	return append([]byte{0x16, 3, 1, 0, byte(len(msg))}, msg...)
}

// TestE2ETLSServerNames: a ClientHello whose SNI ends in a dot is routed
// as the name without it, as nginx serves "localhost." as "localhost"
// (and as HTTP Hosts are routed): a passthrough route's backend gets the
// hello exactly as sent. A terminating route takes it too, but Go's TLS
// stack refuses such a hello (RFC 6066 forbids the dot) with a
// decode_error alert, and the connection's line says so. A hello portmux
// cannot parse gets a decode_error alert as well, and its line carries
// the reason.
func TestE2ETLSServerNames(t *testing.T) {
	echo := startEcho(t)
	backend := startL7Backend(t, "app")
	pm := startPortmux(t, l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t)))+fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [app.test]}
    tls: terminate
    to: http://%s
  - name: pass
    match: {protocol: tls, sni: [a.test]}
    to: %s
`, backend.Addr(), echo.Addr()))
	decodeError := []byte{21, 3, 1, 0, 2, 2, 50}

	t.Run("passthrough", func(t *testing.T) {
		hello := rawClientHello("A.test.")
		_, got := sendAndWaitClosedHalf(t, pm.Addr(), hello)
		if !bytes.Equal(got, hello) {
			t.Errorf("the backend echoed %q; want the hello as sent, %q", got, hello)
		}
		l := pm.WaitLog(t, func(l logLine) bool { return connWith("ok")(l) && l.Str("route") == "pass" }, 10*time.Second)
		checkFields(t, l, map[string]string{"protocol": "tls", "sni": "a.test", "backend": echo.Addr()})
	})
	t.Run("terminate", func(t *testing.T) {
		local, got := sendAndWaitClosed(t, pm.Addr(), rawClientHello("app.test."))
		if !bytes.HasPrefix(got, []byte{21, 3}) || !bytes.HasSuffix(got, []byte{2, 50}) {
			t.Errorf("got %q; want a decode_error alert", got)
		}
		l := pm.WaitLog(t, connOf(local), 10*time.Second)
		checkFields(t, l, map[string]string{"protocol": "tls", "sni": "app.test", "route": "app", "outcome": "tls_handshake_failed"})
		if !strings.Contains(l.Str("error"), `SNI "app.test." with a trailing dot`) {
			t.Errorf("error %q; want the trailing dot named\nline: %s", l.Str("error"), l.Raw)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		local, got := sendAndWaitClosed(t, pm.Addr(), rawClientHello("bad name!"))
		if !bytes.Equal(got, decodeError) {
			t.Errorf("got %q; want the decode_error alert %q", got, decodeError)
		}
		l := pm.WaitLog(t, connOf(local), 10*time.Second)
		checkFields(t, l, map[string]string{"protocol": "tls", "outcome": "bad_client_hello", "route": ""})
		if !strings.Contains(l.Str("error"), `invalid host_name "bad name!"`) {
			t.Errorf("error %q; want what was wrong\nline: %s", l.Str("error"), l.Raw)
		}
	})
	if n := backend.Hits(); n != 0 {
		t.Errorf("the HTTP backend got %d requests; want none", n)
	}
}

// sendAndWaitClosedHalf writes data, half-closes, and reads until portmux
// closes (10s at most). It returns the local address and what was read.
func sendAndWaitClosedHalf(t *testing.T, addr string, data []byte) (string, []byte) {
	t.Helper()
	c, err := dialTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading: %v", err)
	}
	return c.LocalAddr().String(), got
}
