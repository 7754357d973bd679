package test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestE2EL7UpstreamTLS: https:// upstreams through net/http's Transport, as a
// user with a private backend CA meets them. Without upstream_tls (or with
// server_name alone) a self-signed upstream gets 502 with the certificate
// error in the request's log line; upstream_tls.ca trusts it; server_name is the name checked when
// the upstream URL is an IP address; insecure_skip_verify takes any
// certificate; cert and key answer an upstream that asks for a client
// certificate, and without them that upstream refuses (502). A reload reads
// the CA file again (the upstream's certificate was rotated), and a reload
// whose CA file is missing is refused with the running config kept.
func TestE2EL7UpstreamTLS(t *testing.T) {
	dir := t.TempDir()
	serverCert, serverLeaf := selfSigned(t, "backend.internal")
	clientCert, clientLeaf := selfSignedFor(t, "portmux.client", x509.ExtKeyUsageClientAuth)
	caPath := filepath.Join(dir, "backend-ca.pem")
	opsWriteFile(t, caPath, certPEM(serverLeaf))
	clientPath, keyPath := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	opsWriteFile(t, clientPath, certPEM(clientLeaf))
	opsWriteFile(t, keyPath, keyPEM(t, clientCert))

	open := startTLSUpstream(t, "open", serverCert, nil)
	mutual := startTLSUpstream(t, "mutual", serverCert, clientLeaf)

	trust := fmt.Sprintf("ca: %s, server_name: backend.internal", caPath)
	config := func(version int, ca string) string {
		trust := strings.Replace(trust, caPath, ca, 1)
		return l7Header(fmt.Sprintf("# version %d\n", version)) + fmt.Sprintf(`routes:
  - {name: plain, match: {protocol: http, host: [plain.test]}, to: "https://%[1]s"}
  - {name: named, match: {protocol: http, host: [named.test]}, to: "https://%[1]s", upstream_tls: {server_name: backend.internal}}
  - {name: trusted, match: {protocol: http, host: [trusted.test]}, to: "https://%[1]s", upstream_tls: {%[3]s}}
  - {name: by-ip, match: {protocol: http, host: [by-ip.test]}, to: "https://%[1]s", upstream_tls: {ca: %[4]s}}
  - {name: skip, match: {protocol: http, host: [skip.test]}, to: "https://%[1]s", upstream_tls: {insecure_skip_verify: true}}
  - name: mutual
    match: {protocol: http, host: [mutual.test]}
    to: "https://%[2]s"
    upstream_tls: {%[3]s, cert: %[5]s, key: %[6]s}
  - {name: no-cert, match: {protocol: http, host: [no-cert.test]}, to: "https://%[2]s", upstream_tls: {%[3]s}}
`, open.Addr(), mutual.Addr(), trust, ca, clientPath, keyPath)
	}
	pm := startOpsPM(t, config(0, caPath))
	hc := newL7Client(t, pm.Addr(), "")

	requests := 0
	get := func(t *testing.T, host string, want int) string {
		t.Helper()
		requests++ // each request's own path, to find its log line
		path := fmt.Sprintf("/%d", requests)
		resp, body, err := hc.do(http.MethodGet, "http://"+host+path, "", nil, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", host, err)
		}
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %s %q; want %d", host, resp.Status, body, want)
		}
		l := pm.WaitLog(t, requestLog(path), 10*time.Second)
		if got := numField(l, "status"); got != want {
			t.Errorf("GET %s: request log status %d; want %d (%s)", host, got, want, l)
		}
		if want == http.StatusBadGateway {
			return l.Str("error")
		}
		return string(body)
	}

	t.Run("untrusted upstream gets 502", func(t *testing.T) {
		// The certificate is neither for the URL's IP address nor from a
		// system root: the first is what Go reports.
		if e := get(t, "plain.test", http.StatusBadGateway); !strings.Contains(e, "doesn't contain any IP SANs") {
			t.Errorf("the 502's log error is %q; want the certificate error", e)
		}
		if e := get(t, "named.test", http.StatusBadGateway); !strings.Contains(e, "certificate signed by unknown authority") {
			t.Errorf("the 502's log error with server_name set is %q; want the unknown authority", e)
		}
	})
	t.Run("ca and server_name", func(t *testing.T) {
		if body := get(t, "trusted.test", http.StatusOK); body != "open Host=trusted.test proto=HTTP/1.1 client=" {
			t.Errorf("got %q from the upstream", body)
		}
	})
	t.Run("ca alone checks the URL's IP", func(t *testing.T) {
		if e := get(t, "by-ip.test", http.StatusBadGateway); !strings.Contains(e, "doesn't contain any IP SANs") {
			t.Errorf("the 502's log error is %q; want it to say the certificate is not for 127.0.0.1", e)
		}
	})
	t.Run("insecure_skip_verify", func(t *testing.T) {
		get(t, "skip.test", http.StatusOK)
	})
	t.Run("client certificate", func(t *testing.T) {
		if body := get(t, "mutual.test", http.StatusOK); !strings.HasSuffix(body, "client=portmux.client") {
			t.Errorf("got %q from the upstream; want it to have seen the client certificate", body)
		}
	})
	t.Run("no client certificate gets 502", func(t *testing.T) {
		if e := get(t, "no-cert.test", http.StatusBadGateway); !strings.Contains(e, "certificate required") {
			t.Errorf("the 502's log error is %q; want the upstream's alert", e)
		}
	})

	t.Run("reload reads the rotated CA", func(t *testing.T) {
		rotated, rotatedLeaf := selfSigned(t, "backend.internal")
		open.Rotate(rotated)
		get(t, "trusted.test", http.StatusBadGateway)
		opsWriteFile(t, caPath, certPEM(rotatedLeaf))
		pm.Reload(t, config(1, caPath), true, nil)
		get(t, "trusted.test", http.StatusOK)
	})
	t.Run("reload with a missing CA file is refused", func(t *testing.T) {
		missing := filepath.Join(dir, "gone.pem")
		l := pm.Reload(t, config(2, missing), false, nil)
		if e := l.Str("error"); !strings.Contains(e, "upstream_tls.ca: cannot read") {
			t.Errorf("reload refused with %q; want the upstream_tls.ca problem", e)
		}
		get(t, "trusted.test", http.StatusOK)
	})
}

// tlsUpstream is an HTTPS backend whose certificate can be replaced. It
// answers "<name> Host=<host> proto=<proto> client=<client certificate's
// CN>".
type tlsUpstream struct {
	*httptest.Server
	cert atomic.Pointer[tls.Certificate]
}

// startTLSUpstream starts an HTTPS backend with cert; with clientCA set it
// requires a client certificate that clientCA signed.
func startTLSUpstream(t testing.TB, name string, cert tls.Certificate, clientCA *x509.Certificate) *tlsUpstream {
	t.Helper()
	u := &tlsUpstream{}
	u.cert.Store(&cert)
	u.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cn := ""
		if pc := r.TLS.PeerCertificates; len(pc) > 0 {
			cn = pc[0].Subject.CommonName
		}
		fmt.Fprintf(w, "%s Host=%s proto=%s client=%s", name, r.Host, r.Proto, cn)
	}))
	// Not StartTLS: it would add httptest's own certificate, which
	// crypto/tls serves to clients that send no SNI (an IP address URL).
	conf := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return u.cert.Load(), nil }}
	if clientCA != nil {
		conf.ClientAuth = tls.RequireAndVerifyClientCert
		conf.ClientCAs = x509.NewCertPool()
		conf.ClientCAs.AddCert(clientCA)
	}
	u.Listener = tls.NewListener(u.Listener, conf)
	// Refused handshakes are what some subtests want; keep them out of the
	// test output.
	u.Config.ErrorLog = log.New(io.Discard, "", 0)
	u.Start()
	t.Cleanup(u.Close)
	trackHTTPPeer(t, u.Server)
	return u
}

// Addr is the backend's host:port.
func (u *tlsUpstream) Addr() string { return u.Listener.Addr().String() }

// Rotate serves cert from now on, and closes the connections made with the
// old one, as a restarted backend would.
func (u *tlsUpstream) Rotate(cert tls.Certificate) {
	u.cert.Store(&cert)
	u.CloseClientConnections()
}

// certPEM is c in PEM.
func certPEM(c *x509.Certificate) string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
}

// keyPEM is c's private key in PKCS #8 PEM.
func keyPEM(t testing.TB, c tls.Certificate) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatalf("marshal key: %v", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}
