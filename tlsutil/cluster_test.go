package tlsutil

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"go.uber.org/zap"
)

// Cluster tests: replicas are Managers sharing one Redis storage (our own
// redis-server) and one in-process Pebble. Replicas in this process share
// certmagic's process-wide challenge memory, which would answer a
// challenge without reading storage; a replica that must answer from
// storage alone therefore runs as a separate process (this test binary,
// running TestReplicaProcess).

// acmeCounts counts requests that reached Pebble's front end.
type acmeCounts struct {
	orders, accounts atomic.Int32
}

// startPebbleCounting starts Pebble (in-process) with its VA checking
// HTTP-01 on httpPort and TLS-ALPN-01 on tlsPort, and counts the orders and
// accounts created.
func startPebbleCounting(t *testing.T, httpPort, tlsPort int) (*pebble, *acmeCounts) {
	t.Helper()
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	out := &lockedBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			out.mu.Lock()
			t.Logf("pebble log:\n%s", out.buf.String())
			out.mu.Unlock()
		}
	})
	logger := log.New(out, "pebble ", log.Lmicroseconds)
	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "default"}})
	validator := va.New(logger, httpPort, tlsPort, false, "", store)
	w := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	front := w.Handler()
	counts := &acmeCounts{}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			switch r.URL.Path {
			case "/order-plz":
				counts.orders.Add(1)
			case "/sign-me-up":
				counts.accounts.Add(1)
			}
		}
		front.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(authority.GetRootCert(0).Cert)
	return &pebble{
		dir:      srv.URL + wfe.DirectoryPath,
		wfeRoot:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}),
		issuance: pool,
	}, counts
}

// replicaOptions are the Options of a cluster replica on port.
func replicaOptions(p *pebble, storage string, port int, log *zap.Logger) Options {
	return Options{
		CA: p.dir, TrustedRoots: p.wfeRoot, Email: "test@example.com", Agreed: true,
		Storage: storage, ChallengePort: port, Logger: log,
	}
}

// TestClusterOneOrder: three replicas asked for the same new name at
// once place exactly one ACME order (and register one account) between
// them, and all three serve the same certificate.
func TestClusterOneOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	url := startRedis(t)
	const n = 3
	ports := make([]int, n)
	lns := make([][]net.Listener, n)
	for i := range n {
		ports[i], lns[i] = loopback(t)
	}
	// Pebble validates on replica 0; whichever replica wins the lock,
	// replica 0 answers (here from the shared process memory or storage).
	p, counts := startPebbleCounting(t, ports[0], ports[0])
	managers := make([]*Manager, n)
	for i := range n {
		log, _ := observed(t)
		opts := replicaOptions(p, url, ports[i], log)
		opts.DisableHTTPChallenge = true // the listeners speak TLS only
		managers[i] = newManager(t, opts)
		serveTLS(t, lns[i], managers[i].TLSConfig())
	}

	errs := make(chan error, n)
	for _, m := range managers {
		go func() { errs <- m.ManageSync(ctx, []string{"localhost"}) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("ManageSync: %v", err)
		}
	}
	if got := counts.orders.Load(); got != 1 {
		t.Errorf("%d ACME orders; want 1 for 3 replicas", got)
	}
	if got := counts.accounts.Load(); got != 1 {
		t.Errorf("%d ACME accounts registered; want 1", got)
	}
	var serial string
	for i, port := range ports {
		leaf, err := handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "localhost", p.issuance)
		if err != nil {
			t.Fatalf("replica %d: handshake: %v", i, err)
		}
		if i == 0 {
			serial = leaf.SerialNumber.String()
		} else if leaf.SerialNumber.String() != serial {
			t.Errorf("replica %d serves serial %s; replica 0 serves %s", i, leaf.SerialNumber, serial)
		}
	}
}

// TestClusterInternalCA: replicas with the internal CA share one root and
// one leaf per name through Redis.
func TestClusterInternalCA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := startRedis(t)
	var serials []string
	var root []byte
	for i := range 3 {
		m := newManager(t, Options{CA: CAInternal, Storage: url})
		port, lns := loopback(t)
		serveTLS(t, lns, m.TLSConfig())
		if err := m.ManageSync(ctx, []string{"localhost"}); err != nil {
			t.Fatalf("replica %d: ManageSync: %v", i, err)
		}
		r, err := m.RootPEM(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if root == nil {
			root = r
		} else if !bytes.Equal(r, root) {
			t.Fatalf("replica %d has another root", i)
		}
		leaf, err := handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), "localhost", poolOf(t, root))
		if err != nil {
			t.Fatalf("replica %d: handshake: %v", i, err)
		}
		serials = append(serials, leaf.SerialNumber.String())
	}
	if serials[1] != serials[0] || serials[2] != serials[0] {
		t.Errorf("serials %q; want one certificate", serials)
	}
}

// TestClusterChallengeOnOtherReplica: replica A places the order, and the
// CA's validation reaches replica B, another process that shares only
// Redis with A; B answers from the challenge token in storage.
func TestClusterChallengeOnOtherReplica(t *testing.T) {
	for _, tc := range []struct {
		challenge         string
		noHTTP, noTLSALPN bool
	}{
		{"http-01", false, true},
		{"tls-alpn-01", true, false},
	} {
		t.Run(tc.challenge, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			url := startRedis(t)
			bTLSPort, bTLS := loopback(t)
			bHTTPPort, bHTTP := loopback(t)
			p, counts := startPebbleCounting(t, bHTTPPort, bTLSPort)
			b := startReplica(t, replicaConfig{
				Storage: url, CA: p.dir, Roots: p.wfeRoot,
				DisableHTTP: tc.noHTTP, DisableTLSALPN: tc.noTLSALPN,
				TLSListeners: len(bTLS), HTTPListeners: len(bHTTP),
			}, append(bTLS, bHTTP...)...)

			aPort, aLns := loopback(t)
			log, _ := observed(t)
			opts := replicaOptions(p, url, aPort, log)
			opts.DisableHTTPChallenge, opts.DisableTLSALPNChallenge = tc.noHTTP, tc.noTLSALPN
			a := newManager(t, opts)
			aSrv := serveTLS(t, aLns, a.TLSConfig())
			if err := a.ManageSync(ctx, []string{"localhost"}); err != nil {
				t.Fatalf("replica A: ManageSync: %v", err)
			}
			if got := aSrv.acme.Load(); got != 0 {
				t.Errorf("%d validations reached replica A; want them all at B", got)
			}
			if got := b.served(tc.challenge); got == 0 {
				t.Errorf("replica B logged no %s answer from storage (distributed)", tc.challenge)
			}
			if got := counts.orders.Load(); got != 1 {
				t.Errorf("%d orders; want 1", got)
			}
		})
	}
}

// TestClusterCrashedLockHolder: replica C, a process, takes the issuance
// lock and places an order, and is killed (SIGKILL: no unlock, no
// cleanup) while its validation hangs. Replica D is not blocked forever:
// it gets the lock once C's renewals stop and it expires (lock_ttl=3s),
// then obtains the certificate with an order of its own.
func TestClusterCrashedLockHolder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	url := startRedis(t) + "?lock_ttl=3s"
	dPort, dLns := loopback(t) // the VA's port; D serves it only after the kill
	p, counts := startPebbleCounting(t, dPort, dPort)
	c := startReplica(t, replicaConfig{
		Storage: url, CA: p.dir, Roots: p.wfeRoot, DisableHTTP: true, Manage: []string{"localhost"},
	})

	rs := newRedis(t, url)
	lock := rs.lockKey("issue_cert_localhost")
	for counts.orders.Load() == 0 || rs.client.Exists(ctx, lock).Val() == 0 {
		if ctx.Err() != nil {
			t.Fatal("replica C placed no order under the lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.kill()
	killed := time.Now()
	left := rs.client.PTTL(ctx, lock).Val()
	if left <= 0 {
		t.Fatalf("lock TTL after the kill: %v; want the crashed holder's lock still there", left)
	}

	log, _ := observed(t)
	opts := replicaOptions(p, url, dPort, log)
	opts.DisableHTTPChallenge = true
	d := newManager(t, opts)
	serveTLS(t, dLns, d.TLSConfig())
	if err := d.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("replica D: ManageSync: %v", err)
	}
	waited := time.Since(killed)
	t.Logf("replica D obtained the certificate %v after the kill", waited)
	if waited < left-200*time.Millisecond || waited > 30*time.Second {
		t.Errorf("replica D waited %v; want the %v C's lock had left, plus an order", waited, left)
	}
	if got := counts.orders.Load(); got != 2 {
		t.Errorf("%d orders; want 2 (C's abandoned one and D's)", got)
	}
	if _, err := handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(dPort)), "localhost", p.issuance); err != nil {
		t.Errorf("handshake with D: %v", err)
	}
}
