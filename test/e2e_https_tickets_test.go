package test

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestE2EHTTPSResumesAcrossReload: a client's TLS session survives a config
// reload. After SIGHUP its next connection resumes the session from the
// ticket it got before (no full handshake, as a browser's or curl's session
// cache expects), over TLS 1.2 and 1.3.
func TestE2EHTTPSResumesAcrossReload(t *testing.T) {
	backend := startL7Backend(t, "app")
	storage := certStorage(t)
	config := func(version int) string {
		return fmt.Sprintf("# version %d\n", version) +
			l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", storage)) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%s
`, backend.Addr())
	}
	pm := startOpsPM(t, config(0))
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := poolFromPEM(t, portmuxTrust(t, config(0)))

	for i, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			client := &tls.Config{ServerName: "localhost", RootCAs: roots, MinVersion: version, MaxVersion: version,
				NextProtos: []string{"http/1.1"}, ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			if resumed := getResumed(t, pm.Addr(), client, "/tickets/first"); resumed {
				t.Fatal("the first connection resumed a session; the cache was empty")
			}
			pm.Reload(t, config(i+1), true, nil)
			if resumed := getResumed(t, pm.Addr(), client, "/tickets/after-reload"); !resumed {
				t.Error("after the reload: full handshake; want the session resumed with the ticket from before")
			}
		})
	}
}

// getResumed sends GET path on a new TLS connection with client, reads the
// response (which takes in a TLS 1.3 ticket, sent after the handshake) and
// reports whether the session was resumed.
func getResumed(t *testing.T, addr string, client *tls.Config, path string) bool {
	t.Helper()
	tc, local, err := tlsDial(addr, client)
	if err != nil {
		t.Fatalf("handshake from %s: %v", local, err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintf(tc, "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", path); err != nil {
		t.Fatalf("GET %s from %s: %v", path, local, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatalf("GET %s from %s: %v", path, local, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s from %s: %s; want 200", path, local, resp.Status)
	}
	return tc.ConnectionState().DidResume
}
