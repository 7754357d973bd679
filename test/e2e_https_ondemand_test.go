package test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestE2EHTTPSOnDemand: with on-demand TLS allowing *.test.internal, the first
// handshake for a.test.internal obtains its certificate (from the internal CA)
// and the request reaches the backend; evil.example fails the handshake and
// nothing is issued or stored for it.
func TestE2EHTTPSOnDemand(t *testing.T) {
	backend := startL7Backend(t, "app")
	storage := certStorage(t)
	yaml := l7Header(fmt.Sprintf(`tls:
  ca: internal
  storage: %s
  on_demand: {allow: ["*.test.internal"]}
`, storage)) + fmt.Sprintf(`routes:
  - name: any-tls
    match: {protocol: tls}
    tls: terminate
    to: http://%s
`, backend.Addr())
	pm := startPortmux(t, yaml)
	if got := pm.Find(func(l logLine) bool { return l.Msg() == "certificate obtained" }); len(got) != 0 {
		t.Errorf("certificate obtained before any handshake: %s", got[0].Raw)
	}

	t.Run("allowed name", func(t *testing.T) {
		// The root exists only once something was issued: take the chain
		// unverified first, then check it against `portmux trust`.
		tc, local, err := tlsDial(pm.Addr(), &tls.Config{ServerName: "a.test.internal", InsecureSkipVerify: true,
			NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatalf("first handshake for a.test.internal: %v", err)
		}
		leaf := leafOf(tc)
		tc.Close()
		if !slices.Equal(leaf.DNSNames, []string{"a.test.internal"}) {
			t.Errorf("leaf SANs %q; want [a.test.internal]", leaf.DNSNames)
		}
		l := pm.WaitLog(t, certObtained("a.test.internal"), 30*time.Second)
		checkFields(t, l, map[string]string{"issuer": "portmux-internal"})
		roots := poolFromPEM(t, portmuxTrust(t, yaml))
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "a.test.internal", Roots: roots}); err != nil {
			t.Errorf("on-demand leaf does not verify against the portmux trust root: %v", err)
		}
		cl := pm.WaitLog(t, connOf(local), 10*time.Second)
		checkFields(t, cl, map[string]string{"route": "any-tls", "sni": "a.test.internal"})

		// A verifying client now: the request reaches the backend.
		c := newHTTPSClient(t, pm.Addr(), roots, true)
		seen, resp, err := c.getSeen("https://a.test.internal:" + portOf(t, pm.Addr()) + "/on-demand")
		if err != nil {
			t.Fatalf("HTTPS to a.test.internal: %v", err)
		}
		if resp.ProtoMajor != 2 || seen.Host != "a.test.internal:"+portOf(t, pm.Addr()) {
			t.Errorf("proto %s, backend saw Host %q; want HTTP/2 and the client's Host", resp.Proto, seen.Host)
		}
	})

	t.Run("denied name", func(t *testing.T) {
		tc, local, err := tlsDial(pm.Addr(), &tls.Config{ServerName: "evil.example", InsecureSkipVerify: true})
		if err == nil {
			tc.Close()
			t.Fatalf("handshake for evil.example succeeded (leaf %q); want it refused", leafOf(tc).DNSNames)
		}
		if isTimeout(err) {
			t.Fatalf("handshake for evil.example: %v; want a prompt failure", err)
		}
		cl := pm.WaitLog(t, connOf(local), 10*time.Second)
		checkFields(t, cl, map[string]string{"route": "any-tls", "sni": "evil.example", "outcome": "tls_handshake_failed"})
		pm.Stop(t) // every line written
		// No certificate event at all (obtained, or failed: an attempt) for it.
		for _, l := range pm.Logs() {
			if strings.HasPrefix(l.Msg(), "certificate") && strings.Contains(l.Raw, "evil.example") {
				t.Errorf("certificate event for the denied name: %s", l.Raw)
			}
		}
		if files := filesMentioning(t, storage, "evil.example"); len(files) != 0 {
			t.Errorf("storage holds files for the denied name: %q", files)
		}
	})
}
