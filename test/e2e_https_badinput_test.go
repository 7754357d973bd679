package test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestE2EHTTPSNoSNI: a ClientHello without SNI (a client that connects by IP) on
// a port whose only TLS route terminates for localhost. With tls.default_sni:
// localhost the handshake succeeds with localhost's certificate and the request
// is served; without it the handshake fails cleanly (closed, not hung). An SNI
// no route takes is closed too.
func TestE2EHTTPSNoSNI(t *testing.T) {
	backend := startL7Backend(t, "app")
	route := fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%s
`, backend.Addr())

	t.Run("default_sni", func(t *testing.T) {
		yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s, default_sni: localhost}\n", certStorage(t))) + route
		pm := startPortmux(t, yaml)
		pm.WaitLog(t, certObtained("localhost"), time.Minute)
		roots := poolFromPEM(t, portmuxTrust(t, yaml))
		// ServerName "" sends no SNI; the chain is checked by hand for localhost.
		cfg := &tls.Config{
			InsecureSkipVerify: true,
			NextProtos:         []string{"http/1.1"},
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 {
					return errors.New("no certificate")
				}
				inter := x509.NewCertPool()
				for _, c := range cs.PeerCertificates[1:] {
					inter.AddCert(c)
				}
				_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots, Intermediates: inter})
				return err
			},
		}
		tc, local, err := tlsDial(pm.Addr(), cfg)
		if err != nil {
			t.Fatalf("handshake without SNI: %v; want localhost's certificate", err)
		}
		defer tc.Close()
		if sni := tc.ConnectionState().ServerName; sni != "" {
			t.Fatalf("client sent SNI %q; the test needs none", sni)
		}
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(tc, "GET /no-sni HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
		if err != nil {
			t.Fatalf("reading response: %v", err)
		}
		var seen seenRequest
		err = json.NewDecoder(resp.Body).Decode(&seen)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || seen.Backend != "app" || seen.Path != "/no-sni" {
			t.Fatalf("got %s, backend %q path %q (decode err %v); want 200 from app for /no-sni", resp.Status, seen.Backend, seen.Path, err)
		}
		tc.Close()
		cl := pm.WaitLog(t, connOf(local), 10*time.Second)
		checkFields(t, cl, map[string]string{"protocol": "tls", "route": "app", "outcome": "ok"})
	})

	t.Run("no default_sni", func(t *testing.T) {
		yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + route
		pm := startPortmux(t, yaml)
		pm.WaitLog(t, certObtained("localhost"), time.Minute)
		before := backend.Hits()
		for _, tc := range []struct {
			name, sni string
			outcomes  []string
		}{
			{"no SNI", "", []string{"no_route", "tls_handshake_failed"}},
			{"unknown SNI", "unknown.test", []string{"no_route"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				conn, local, err := tlsDial(pm.Addr(), &tls.Config{ServerName: tc.sni, InsecureSkipVerify: true})
				if err == nil {
					conn.Close()
					t.Fatalf("handshake succeeded (leaf %q); want it refused", leafOf(conn).DNSNames)
				}
				if isTimeout(err) {
					t.Fatalf("handshake: %v; want the connection closed, not left hanging", err)
				}
				if tc.sni != "" && !strings.Contains(err.Error(), "unrecognized name") {
					t.Errorf("handshake: %v; want the unrecognized_name alert", err)
				}
				cl := pm.WaitLog(t, connOf(local), 10*time.Second)
				if o := cl.Str("outcome"); o != tc.outcomes[0] && (len(tc.outcomes) < 2 || o != tc.outcomes[1]) {
					t.Errorf("outcome %q; want one of %q\nline: %s", o, tc.outcomes, cl.Raw)
				}
				if cl.Str("route") == "app" && cl.Str("outcome") == "ok" {
					t.Errorf("connection served by app: %s", cl.Raw)
				}
			})
		}
		if got := backend.Hits() - before; got != 0 {
			t.Errorf("backend got %d request(s); want 0", got)
		}
	})
}

// TestE2EHTTPSACMEDown: the ACME CA is unreachable (a closed port). portmux
// still starts, its other routes serve, the failure is logged, and a handshake
// for the name without a certificate fails instead of hanging.
func TestE2EHTTPSACMEDown(t *testing.T) {
	app := startL7Backend(t, "app")
	web := startL7Backend(t, "web")
	dead := closedPort(t)
	yaml := l7Header(fmt.Sprintf(`tls:
  ca: https://%s/dir
  email: test@example.com
  agree_terms: true
  storage: %s
`, dead, certStorage(t))) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%s
  - name: web
    match: {protocol: http}
    to: http://%s
`, app.Addr(), web.Addr())
	pm := startPortmux(t, yaml) // waits (30s bound) for the listening line

	hc := newL7Client(t, pm.Addr(), "")
	if seen, _, err := hc.getSeen("http://web.test/while-ca-down", "", nil); err != nil || seen.Backend != "web" {
		t.Fatalf("HTTP route while the CA is down: backend %q, %v; want web", seen.Backend, err)
	}
	failed := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "certificate failed" && l.Str("name") == "localhost" }, 2*time.Minute)
	if lv := failed.Level(); lv != "error" && lv != "warn" {
		t.Errorf("certificate failed logged at %q; want error or warn", lv)
	}

	conn, local, err := tlsDial(pm.Addr(), &tls.Config{ServerName: "localhost", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatalf("handshake for localhost succeeded without a certificate (leaf %q)", leafOf(conn).DNSNames)
	}
	if isTimeout(err) {
		t.Fatalf("handshake for localhost: %v; want a prompt failure", err)
	}
	cl := pm.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, cl, map[string]string{"route": "app", "outcome": "tls_handshake_failed"})

	if seen, _, err := hc.getSeen("http://web.test/still-serving", "", nil); err != nil || seen.Backend != "web" {
		t.Errorf("HTTP route after the failure: backend %q, %v; want web", seen.Backend, err)
	}
	if app.Hits() != 0 {
		t.Errorf("the TLS route's backend got %d request(s); want 0", app.Hits())
	}
}
