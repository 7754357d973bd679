package test

import (
	"crypto/tls"
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
