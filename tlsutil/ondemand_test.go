package tlsutil

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

func TestAllowPatterns(t *testing.T) {
	p := newOnDemandPolicy(&OnDemand{Allow: []string{"exact.test", "*.Wild.test"}})
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"exact.test", true},
		{"a.exact.test", false},
		{"a.wild.test", true},
		{"wild.test", false},     // the wildcard needs a label
		{"a.b.wild.test", false}, // and only one
		{"a.wild.test.x", false},
		{"other.test", false},
	} {
		if got := p.matches(tc.name); got != tc.want {
			t.Errorf("matches(%q) = %v; want %v", tc.name, got, tc.want)
		}
	}
}

func TestWindowLimiter(t *testing.T) {
	l := &windowLimiter{limit: 2, window: time.Minute, admitted: map[string]time.Time{}}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		name string
		at   time.Duration
		want bool
	}{
		{"a", 0, true},
		{"a", time.Second, true}, // same name again: not counted twice
		{"b", 2 * time.Second, true},
		{"c", 3 * time.Second, false},          // window full
		{"c", time.Minute + time.Second, true}, // "a" has left the window
	}
	for i, s := range steps {
		if got := l.allow(s.name, t0.Add(s.at)); got != s.want {
			t.Errorf("step %d allow(%q, +%v) = %v; want %v", i, s.name, s.at, got, s.want)
		}
	}
}

// TestOnDemandInternal runs on-demand TLS with the internal CA through real
// handshakes: allowed names get a certificate at their first handshake;
// denied, unmatched and rate-limited names fail and get nothing stored.
func TestOnDemandInternal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var mu sync.Mutex
	var asked []string
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := r.URL.Query().Get("domain")
		mu.Lock()
		asked = append(asked, d)
		mu.Unlock()
		if d != "asked.test" {
			http.Error(w, "no", http.StatusForbidden)
		}
	}))
	defer ask.Close()

	storage := t.TempDir()
	log, _ := observed(t)
	m := newManager(t, Options{CA: CAInternal, Storage: storage, Logger: log, OnDemand: &OnDemand{
		Allow:     []string{"*.allowed.test"},
		Ask:       ask.URL + "/check",
		RateLimit: 2, RateWindow: time.Hour,
	}})
	port, lns := loopback(t)
	serveTLS(t, lns, m.TLSConfig())
	// A managed name is obtained up front (not deferred to a handshake)
	// and does not count against the on-demand rate limit.
	if err := m.ManageSync(ctx, []string{"static.test"}); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	if !m.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(internalIssuerKey, "static.test")) {
		t.Fatal("managed name not obtained by ManageSync")
	}
	root, err := m.RootPEM(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roots := poolOf(t, root)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	for i, s := range []struct {
		name string
		ok   bool
	}{
		{"static.test", true},
		{"a.allowed.test", true}, // Allow; 1st new certificate
		{"denied.test", false},   // neither Allow nor Ask
		{"x.y.allowed.test", false},
		{"asked.test", true},      // Ask says 200; 2nd new certificate
		{"b.allowed.test", false}, // rate limit: 2 per hour
		{"a.allowed.test", true},  // already has one: not limited
	} {
		leaf, err := handshake(addr, s.name, roots)
		if s.ok {
			if err != nil {
				t.Errorf("step %d %s: handshake: %v", i, s.name, err)
			} else if !slices.Equal(leaf.DNSNames, []string{s.name}) {
				t.Errorf("step %d %s: SANs %q", i, s.name, leaf.DNSNames)
			}
			continue
		}
		if err == nil {
			t.Errorf("step %d %s: handshake succeeded; want failure", i, s.name)
		}
		if m.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(internalIssuerKey, s.name)) {
			t.Errorf("step %d %s: a certificate was stored", i, s.name)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Contains(asked, "denied.test") || slices.Contains(asked, "a.allowed.test") {
		t.Errorf("ask saw %q; want denied.test asked and a.allowed.test (allowed by pattern) not", asked)
	}
}

// TestOnDemandAskUnreachable: an ask endpoint that is down denies.
func TestOnDemandAskUnreachable(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	url := "http://" + ln.Addr().String() + "/ask"
	ln.Close()
	m := newManager(t, Options{CA: CAInternal, Storage: filepath.Join(t.TempDir(), "s"), OnDemand: &OnDemand{Ask: url}})
	if err := m.decide(context.Background(), "any.test"); err == nil {
		t.Error("decide allowed a name with the ask endpoint down")
	}
}
