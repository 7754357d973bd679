package test

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestE2EHTTPSACME obtains a certificate for localhost from a real ACME server
// (Pebble, in-process) whose validation authority checks the challenge on
// portmux's one port, then serves HTTPS (h2 and HTTP/1.1) with it through that
// port to a real backend. acmez picks a challenge type at random per process,
// so each subtest makes Pebble offer exactly one type: both are exercised on
// every run.
func TestE2EHTTPSACME(t *testing.T) {
	for _, chal := range []string{"tls-alpn-01", "http-01"} {
		t.Run(chal, func(t *testing.T) { testACME(t, chal) })
	}
}

func testACME(t *testing.T, chal string) {
	backend := startL7Backend(t, "app")
	p := newPebble(t, chal)
	storage := certStorage(t)
	yaml := l7Header(fmt.Sprintf(`tls:
  ca: %s
  email: test@example.com
  agree_terms: true
  trusted_roots: %s
  storage: %s
`, p.Dir, p.RootsFile, storage)) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%s
`, backend.Addr())
	pm := startPortmux(t, yaml)
	port := portOf(t, pm.Addr())
	pn, _ := strconv.Atoi(port)
	p.Start(t, pn) // the VA validates on portmux's port, both challenge types

	l := pm.WaitLog(t, certObtained("localhost"), 2*time.Minute)
	pm.Settle(t) // the order's goroutines may have run when the baseline was taken
	if iss := l.Str("issuer"); iss == "" || iss == "portmux-internal" {
		t.Errorf("certificate obtained: issuer %q; want Pebble's ACME directory\nline: %s", iss, l.Raw)
	}

	t.Run("challenge answered on the mux port", func(t *testing.T) {
		if got := p.Answered(); len(got) == 0 || slices.ContainsFunc(got, func(s string) bool { return s != chal }) {
			t.Errorf("challenges the client answered: %q (offered per authz: %q); want only %q", got, p.Offered(), chal)
		}
		t.Logf("Pebble offered %q per authorization; the client answered %q", p.Offered(), p.Answered())
		switch chal {
		case "tls-alpn-01":
			// The validation is a TLS handshake with ALPN acme-tls/1 on the port,
			// answered inside portmux's handshake.
			acme := pm.Find(connWith("acme_challenge"))
			if len(acme) == 0 {
				t.Fatalf("no connection line with outcome acme_challenge\n%s", pm.dump())
			}
			checkFields(t, acme[0], map[string]string{"protocol": "tls", "route": "app", "sni": "localhost"})
			t.Logf("validation: %s", acme[0].Raw)
		case "http-01":
			// The validation is a plain GET /.well-known/acme-challenge/TOKEN on
			// the port, answered by the implicit ":http" route (the last route of the table).
			cl := pm.Find(func(l logLine) bool {
				return l.Msg() == "connection" && l.Str("protocol") == "http" && l.Str("route") == ":http"
			})
			if len(cl) == 0 {
				t.Fatalf("no plain-HTTP connection line with route :http (the HTTP-01 validation)\n%s", pm.dump())
			}
			checkFields(t, cl[0], map[string]string{"outcome": "ok"})
			t.Logf("validation: %s", cl[0].Raw)
			if n := len(pm.Find(connWith("acme_challenge"))); n != 0 {
				t.Errorf("%d acme_challenge (TLS-ALPN-01) connections; want 0 when only http-01 is offered", n)
			}
		}
	})

	base := "https://localhost:" + port
	for _, tc := range []struct {
		name      string
		h2        bool
		wantMajor int
		wantALPN  string
	}{
		{"h2", true, 2, "h2"},
		{"http/1.1", false, 1, "http/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newHTTPSClient(t, pm.Addr(), p.Issuance, tc.h2)
			path := "/acme/" + chal + "/" + tc.wantALPN
			seen, resp, err := c.getSeen(base + path)
			if err != nil {
				t.Fatalf("HTTPS through portmux: %v", err)
			}
			if resp.ProtoMajor != tc.wantMajor {
				t.Errorf("response proto %s; want HTTP/%d", resp.Proto, tc.wantMajor)
			}
			if leaf := resp.TLS.PeerCertificates[0]; !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
				t.Errorf("leaf SANs %q; want [localhost]", leaf.DNSNames)
			}
			if seen.Backend != "app" || seen.Path != path {
				t.Errorf("backend %q saw path %q; want app, %q", seen.Backend, seen.Path, path)
			}
			if got := seen.Header.Get("X-Forwarded-Proto"); got != "https" {
				t.Errorf("backend saw X-Forwarded-Proto %q; want https", got)
			}
			rl := pm.WaitLog(t, requestLog(path), 10*time.Second)
			if got := numField(rl, "status"); got != http.StatusOK {
				t.Errorf("request line status %d; want 200\nline: %s", got, rl.Raw)
			}
			checkFields(t, rl, map[string]string{"route": "app", "upstream": backend.Addr()})
			c.Tr.CloseIdleConnections()
			for _, local := range c.Locals() {
				cl := pm.WaitLog(t, connOf(local), 10*time.Second)
				checkFields(t, cl, map[string]string{"protocol": "tls", "route": "app", "sni": "localhost",
					"alpn_negotiated": tc.wantALPN, "inner_protocol": "http", "outcome": "ok"})
			}
		})
	}
}
