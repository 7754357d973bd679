package test

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"testing"
	"time"
)

// TestE2EHTTPSInternalCA serves https://localhost from the internal CA; a
// client trusts only what `portmux trust` prints. A restart with the same
// storage keeps the root (same bytes) and the leaf (same serial) and obtains
// nothing new.
func TestE2EHTTPSInternalCA(t *testing.T) {
	backend := startL7Backend(t, "app")
	storage := certStorage(t)
	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", storage)) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%s
`, backend.Addr())

	pm := startPortmux(t, yaml)
	obtained := pm.WaitLog(t, certObtained("localhost"), time.Minute)
	checkFields(t, obtained, map[string]string{"issuer": "portmux-internal"})
	root1 := portmuxTrust(t, yaml)
	roots := poolFromPEM(t, root1)

	c := newHTTPSClient(t, pm.Addr(), roots, true)
	url := "https://localhost:" + portOf(t, pm.Addr()) + "/internal/first"
	seen, resp, err := c.getSeen(url)
	if err != nil {
		t.Fatalf("HTTPS with the internal CA: %v", err)
	}
	if resp.ProtoMajor != 2 {
		t.Errorf("proto %s; want HTTP/2", resp.Proto)
	}
	if got := seen.Header.Get("X-Forwarded-Proto"); got != "https" {
		t.Errorf("backend saw X-Forwarded-Proto %q; want https", got)
	}
	leaf1 := resp.TLS.PeerCertificates[0]
	c.Tr.CloseIdleConnections()
	pm.Stop(t)

	// Same storage, new process (and a new port).
	pm2 := startPortmux(t, yaml)
	root2 := portmuxTrust(t, yaml)
	if !bytes.Equal(root1, root2) {
		t.Errorf("root after restart differs:\nbefore %q\nafter  %q", root1, root2)
	}
	// Issuance is asynchronous at start: the stored certificate may take a
	// moment to load. Bounded retries (a hang guard, not a timing check).
	var (
		tc    *tls.Conn
		local string
	)
	for i := 0; i < 100; i++ {
		tc, local, err = tlsDial(pm2.Addr(), &tls.Config{ServerName: "localhost", RootCAs: roots})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("handshake after restart (last from %s): %v", local, err)
	}
	leaf2 := leafOf(tc)
	tc.Close()
	if leaf2.SerialNumber.Cmp(leaf1.SerialNumber) != 0 {
		t.Errorf("leaf serial after restart %s; want the stored one %s", leaf2.SerialNumber, leaf1.SerialNumber)
	}
	c2 := newHTTPSClient(t, pm2.Addr(), roots, true)
	if _, _, err := c2.getSeen("https://localhost:" + portOf(t, pm2.Addr()) + "/internal/second"); err != nil {
		t.Errorf("HTTPS after restart: %v", err)
	}
	c2.Tr.CloseIdleConnections()
	pm2.Stop(t) // every line written
	if got := pm2.Find(func(l logLine) bool { return l.Msg() == "certificate obtained" }); len(got) != 0 {
		t.Errorf("after restart with the same storage: %d certificate obtained line(s); want 0\nfirst: %s", len(got), got[0].Raw)
	}
}
