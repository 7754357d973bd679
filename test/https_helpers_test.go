package test

// Helpers of the automatic-HTTPS tests (e2e_https_*): an in-process Pebble
// (Let's Encrypt's test ACME server) whose validation authority checks
// challenges on portmux's port, `portmux trust`, TLS and HTTPS clients that
// always dial portmux, and certificate log matchers.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// pebbleCA is an in-process Pebble. Its HTTPS front (the ACME directory) starts
// at once, so its URL can go into portmux's config; Start builds the CA, the
// validation authority and the front end once portmux's port is known (the VA
// sends both HTTP-01 and TLS-ALPN-01 validations to that port). Requests that
// arrive before Start wait for it.
type pebbleCA struct {
	// Dir is the ACME directory URL.
	Dir string
	// RootsFile is a PEM file with the front's own HTTPS certificate, for
	// tls.trusted_roots.
	RootsFile string
	// Issuance holds the root of the certificates Pebble issues (set by Start).
	Issuance *x509.CertPool

	only  string // the one challenge type offered, or "" for Pebble's choice
	srv   *httptest.Server
	ready chan struct{}
	log   *syncBuffer

	mu        sync.Mutex
	handler   http.Handler
	chalTypes map[string]string // challenge URL path -> type, from authz answers
	answered  []string          // types of the challenges the client asked to validate
	offered   [][]string        // challenge types in each authz answer, after filtering
}

// syncBuffer collects Pebble's log; its goroutines may log after the test, so
// no t.Log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newPebble starts Pebble's HTTPS front. only, if not "", is the one challenge
// type ("http-01" or "tls-alpn-01") its authorizations offer: the rest are
// removed from the authorization objects on their way to the client (Pebble
// itself offers http-01, tls-alpn-01 and dns-01, and acmez picks one at random
// per process), as a CA that supports only that challenge would.
func newPebble(t *testing.T, only string) *pebbleCA {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	p := &pebbleCA{only: only, ready: make(chan struct{}), log: &syncBuffer{}, chalTypes: map[string]string{}}
	p.srv = httptest.NewTLSServer(http.HandlerFunc(p.serve))
	t.Cleanup(func() {
		p.srv.Close()
		if t.Failed() {
			t.Logf("pebble log:\n%s", p.log.String())
		}
	})
	trackHTTPPeer(t, p.srv) // portmux's ACME client keeps connections to it
	p.Dir = p.srv.URL + wfe.DirectoryPath
	p.RootsFile = filepath.Join(t.TempDir(), "pebble-wfe.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(p.RootsFile, pemBytes, 0o600); err != nil {
		t.Fatalf("writing pebble root: %v", err)
	}
	return p
}

// Start builds Pebble with its VA checking challenges on port.
func (p *pebbleCA) Start(t *testing.T, port int) {
	t.Helper()
	logger := log.New(p.log, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, port, port, false, "", store)
	// No Retry-After (0, 0): acmez then polls every 250ms.
	front := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	pool := x509.NewCertPool()
	pool.AddCert(authority.GetRootCert(0).Cert)
	p.mu.Lock()
	p.Issuance = pool
	p.handler = front.Handler()
	p.mu.Unlock()
	close(p.ready)
}

// Answered returns the challenge types the ACME client asked Pebble to validate.
func (p *pebbleCA) Answered() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.answered...)
}

// Offered returns the challenge types of each authorization sent to the client.
func (p *pebbleCA) Offered() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.offered...)
}

func (p *pebbleCA) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case <-p.ready:
	case <-r.Context().Done():
		return
	case <-time.After(30 * time.Second):
		http.Error(w, "pebble not started", http.StatusServiceUnavailable)
		return
	}
	p.mu.Lock()
	h := p.handler
	if strings.HasPrefix(r.URL.Path, "/chalZ/") && r.Method == http.MethodPost {
		if typ, ok := p.chalTypes[r.URL.Path]; ok {
			p.answered = append(p.answered, typ)
		}
	}
	p.mu.Unlock()
	if !strings.HasPrefix(r.URL.Path, "/authZ/") {
		h.ServeHTTP(w, r)
		return
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	body := p.filterAuthz(rec.Body.Bytes())
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	w.Write(body)
}

// filterAuthz keeps only the offered challenge type in an authorization object
// and remembers each challenge's type by URL path.
func (p *pebbleCA) filterAuthz(body []byte) []byte {
	var authz map[string]any
	if err := json.Unmarshal(body, &authz); err != nil {
		return body
	}
	chals, ok := authz["challenges"].([]any)
	if !ok {
		return body
	}
	var kept []any
	var types []string
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range chals {
		m, _ := c.(map[string]any)
		typ, _ := m["type"].(string)
		if p.only != "" && typ != p.only {
			continue
		}
		if u, _ := m["url"].(string); u != "" {
			if i := strings.Index(u, "/chalZ/"); i >= 0 {
				p.chalTypes[u[i:]] = typ
			}
		}
		kept = append(kept, c)
		types = append(types, typ)
	}
	p.offered = append(p.offered, types)
	authz["challenges"] = kept
	out, err := json.Marshal(authz)
	if err != nil {
		return body
	}
	return out
}

// writeTempFile writes content to a new file named name and returns its path.
func writeTempFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatalf("writing %s: %v", name, err)
	}
	return p
}

// portmuxTrust runs `portmux trust -c FILE` for the config yaml and returns the
// PEM it prints. It fails the test if the command fails.
func portmuxTrust(t testing.TB, yaml string) []byte {
	t.Helper()
	cfg := writeTempFile(t, "trust.yaml", yaml)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, portmuxBin, "trust", "-c", cfg)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("portmux trust: %v\nstderr: %s", err, errb.String())
	}
	return out.Bytes()
}

// poolFromPEM returns a pool of the certificates in pemBytes.
func poolFromPEM(t testing.TB, pemBytes []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("no certificate in %q", pemBytes)
	}
	return p
}

// certObtained matches the "certificate obtained" line for name.
func certObtained(name string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg() == "certificate obtained" && l.Str("name") == name }
}

// tlsDial connects to addr and completes a TLS handshake with cfg. It returns
// the connection and its local address (also on failure, for the log line).
func tlsDial(addr string, cfg *tls.Config) (*tls.Conn, string, error) {
	c, err := dialTCP(addr)
	if err != nil {
		return nil, "", err
	}
	local := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	tc := tls.Client(c, cfg)
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, local, err
	}
	c.SetDeadline(time.Time{})
	return tc, local, nil
}

// leafOf returns the server's leaf certificate of a finished handshake.
func leafOf(tc *tls.Conn) *x509.Certificate {
	pc := tc.ConnectionState().PeerCertificates
	if len(pc) == 0 {
		return nil
	}
	return pc[0]
}

// httpsClient is an HTTPS client that dials portmux (addr) whatever the URL
// says (the URL's host is the SNI) and trusts only roots. With h2 false it
// offers only http/1.1.
type httpsClient struct{ *l7Client }

func newHTTPSClient(t testing.TB, addr string, roots *x509.CertPool, h2 bool) *httpsClient {
	return &httpsClient{newRecordingClient(t, addr, "", func(tr *http.Transport) {
		tr.TLSClientConfig = &tls.Config{RootCAs: roots}
		tr.TLSHandshakeTimeout = 30 * time.Second
		tr.ForceAttemptHTTP2 = h2
		if !h2 {
			tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // no h2
		}
	})}
}

// getSeen does GET url and decodes the l7Backend's seenRequest (200 only).
func (c *httpsClient) getSeen(url string) (seenRequest, *http.Response, error) {
	return c.l7Client.getSeen(url, "", nil)
}

// filesMentioning lists the paths under dir whose path contains name.
func filesMentioning(t testing.TB, dir, name string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(strings.ToLower(p), strings.ToLower(name)) {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	return out
}

// portOf returns the port of host:port as a string.
func portOf(t testing.TB, addr string) string {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return port
}

// certStorage returns a new private (0700) directory for tls.storage.
func certStorage(t testing.TB) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "certs")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatalf("storage dir: %v", err)
	}
	return d
}
