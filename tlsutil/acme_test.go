package tlsutil

import (
	"bytes"
	"context"
	"crypto/x509"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// pebble is an in-process Pebble ACME server.
type pebble struct {
	dir      string         // ACME directory URL
	wfeRoot  []byte         // PEM of the directory's own HTTPS certificate
	issuance *x509.CertPool // roots of the certificates Pebble issues
}

// lockedBuffer collects Pebble's log (printed if the test fails); its
// goroutines may still log after the test ends, so no t.Log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// startPebble starts Pebble with its validation authority checking
// challenges on port (both HTTP-01 and TLS-ALPN-01), i.e. the mux port.
func startPebble(t *testing.T, port int) *pebble {
	t.Helper()
	p, _ := startPebbleCounting(t, port, port)
	return p
}

// acmeOptions are Options for p with the challenges answered on port.
func (p *pebble) options(t *testing.T, port int) Options {
	log, _ := observed(t)
	return Options{
		CA: p.dir, TrustedRoots: p.wfeRoot, Email: "test@example.com", Agreed: true,
		Storage: t.TempDir(), ChallengePort: port, Logger: log,
	}
}

// TestACMETLSALPN obtains a certificate from Pebble with TLS-ALPN-01
// answered by handshakes on our own listener, one that offers clients only
// http/1.1 (as a relaying route does): acme-tls/1 is offered besides.
func TestACMETLSALPN(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port, lns := loopback(t) // first: its port is the VA's
	p := startPebble(t, port)
	log, logs := observed(t)
	opts := p.options(t, port)
	opts.Logger, opts.DisableHTTPChallenge = log, true
	m := newManager(t, opts)
	srv := serveTLS(t, lns, OfferingALPN(m.TLSConfig(), []string{"http/1.1"}))

	if err := m.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	if srv.acme.Load() == 0 {
		t.Error("no acme-tls/1 handshake reached our listener")
	}
	leaf, err := handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "localhost", p.issuance)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("SANs %q; want [localhost]", leaf.DNSNames)
	}
	e := waitLog(t, logs, "certificate obtained", "localhost", time.Second)
	if iss, _ := e.ContextMap()["issuer"].(string); !strings.HasPrefix(iss, "127.0.0.1") {
		t.Errorf("issuer %q; want Pebble's (127.0.0.1...)", iss)
	}
}

// TestACMEHTTP01 obtains a certificate from Pebble with HTTP-01 answered by
// HTTPChallengeHandler on a plain HTTP server on the port.
func TestACMEHTTP01(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	port, lns := loopback(t)
	p := startPebble(t, port)
	opts := p.options(t, port)
	opts.DisableTLSALPNChallenge = true
	m := newManager(t, opts)
	var challenges, others atomic.Int32
	fallback := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		others.Add(1)
		http.NotFound(w, r)
	})
	h := m.HTTPChallengeHandler(fallback)
	serveHTTP(t, lns, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if m.IsHTTPChallenge(r) {
			challenges.Add(1)
		}
		h.ServeHTTP(w, r)
	}))

	if err := m.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	if challenges.Load() == 0 || others.Load() != 0 {
		t.Errorf("%d challenge requests and %d others reached the fallback; want >0 and 0", challenges.Load(), others.Load())
	}
	// The port speaks plain HTTP, so serve the certificate elsewhere.
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveTLS(t, []net.Listener{tl}, m.TLSConfig())
	leaf, err := handshake(tl.Addr().String(), "localhost", p.issuance)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("SANs %q; want [localhost]", leaf.DNSNames)
	}
}

// TestACMEOnDemand obtains a certificate from Pebble during the first
// client handshake; the TLS-ALPN-01 validation arrives on the same
// listener while that handshake waits.
func TestACMEOnDemand(t *testing.T) {
	port, lns := loopback(t)
	p := startPebble(t, port)
	opts := p.options(t, port)
	opts.OnDemand = &OnDemand{Allow: []string{"localhost"}}
	m := newManager(t, opts)
	serveTLS(t, lns, m.TLSConfig())
	leaf, err := handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "localhost", p.issuance)
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if !slices.Equal(leaf.DNSNames, []string{"localhost"}) {
		t.Errorf("SANs %q; want [localhost]", leaf.DNSNames)
	}
}

// TestACMEDown points the manager at a closed port: New and Manage return
// at once, the failure is logged with name and issuer, handshakes fail
// fast instead of hanging (even with on-demand allowing the managed name),
// and Close ends the retry loop.
func TestACMEDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	port, lns := loopback(t)
	log, logs := observed(t)

	start := time.Now()
	m := newManager(t, Options{
		CA: "https://" + dead + "/dir", Email: "test@example.com", Agreed: true,
		Storage: filepath.Join(t.TempDir(), "s"), ChallengePort: port, Logger: log,
		OnDemand: &OnDemand{Allow: []string{"localhost"}},
	})
	serveTLS(t, lns, m.TLSConfig())
	if err := m.Manage(context.Background(), []string{"localhost"}); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("New+Manage took %v; want no wait on the CA", d)
	}
	e := waitLog(t, logs, "certificate failed", "localhost", 20*time.Second)
	if iss, _ := e.ContextMap()["issuer"].(string); !strings.HasPrefix(iss, "127.0.0.1") {
		t.Errorf("issuer %q; want the dead CA's key", iss)
	}
	start = time.Now()
	if _, err := handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "localhost", nil); err == nil {
		t.Error("handshake succeeded without a certificate")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("failing handshake took %v", d)
	}
	start = time.Now()
	m.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
}
