package tlsutil

import (
	"context"
	"errors"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestOptionsValidate(t *testing.T) {
	dir := t.TempDir()
	acmeOK := func(o Options) Options {
		o.Email, o.Agreed, o.Storage, o.ChallengePort = "a@example.com", true, dir, 443
		return o
	}
	for _, tc := range []struct {
		name string
		opts Options
		want string // substring of the error; "" = valid
	}{
		{"internal", Options{CA: "internal", Storage: dir}, ""},
		{"letsencrypt", acmeOK(Options{CA: "letsencrypt"}), ""},
		{"staging", acmeOK(Options{CA: "letsencrypt-staging"}), ""},
		{"directory url", acmeOK(Options{CA: "https://acme.example.com/directory"}), ""},
		{"zerossl with eab", acmeOK(Options{CA: "zerossl", EAB: &EAB{KeyID: "k", MACKey: "m"}}), ""},
		{"no ca", Options{Storage: dir}, "ca is required"},
		{"bad ca", acmeOK(Options{CA: "letsencrypts"}), `ca "letsencrypts"`},
		{"http directory", acmeOK(Options{CA: "http://acme.example.com/dir"}), "https://"},
		{"no storage", Options{CA: "internal"}, "storage is required"},
		{"zerossl without eab", acmeOK(Options{CA: "zerossl"}), "eab"},
		{"half an eab", acmeOK(Options{CA: "letsencrypt", EAB: &EAB{KeyID: "k"}}), "eab"},
		{"acme without email", Options{CA: "letsencrypt", Agreed: true, Storage: dir, ChallengePort: 443}, "email"},
		{"acme not agreed", Options{CA: "letsencrypt", Email: "a@b.c", Storage: dir, ChallengePort: 443}, "agreed"},
		{"acme without port", Options{CA: "letsencrypt", Email: "a@b.c", Agreed: true, Storage: dir}, "challenge port"},
		{"no challenge left", acmeOK(Options{CA: "letsencrypt", DisableHTTPChallenge: true, DisableTLSALPNChallenge: true}), "both ACME challenges"},
		{"bad trusted roots", acmeOK(Options{CA: "letsencrypt", TrustedRoots: []byte("nope")}), "trusted roots"},
		{"on-demand open", Options{CA: "internal", Storage: dir, OnDemand: &OnDemand{}}, errOpenIssuer.Error()},
		{"on-demand allow", Options{CA: "internal", Storage: dir, OnDemand: &OnDemand{Allow: []string{"*.a.test", "b.test"}}}, ""},
		{"on-demand bad pattern", Options{CA: "internal", Storage: dir, OnDemand: &OnDemand{Allow: []string{"a.*.test"}}}, "allow"},
		{"on-demand bad ask", Options{CA: "internal", Storage: dir, OnDemand: &OnDemand{Ask: "ftp://x/ask"}}, "ask"},
		{"rate without window", Options{CA: "internal", Storage: dir, OnDemand: &OnDemand{Ask: "http://x/ask", RateLimit: 3}}, "rate limit"},
		{"rate with window", Options{CA: "internal", Storage: dir, OnDemand: &OnDemand{Ask: "http://x/ask", RateLimit: 3, RateWindow: time.Minute}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := New(tc.opts)
			if m != nil {
				m.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("New: %v; want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("New error %v; want one containing %q", err, tc.want)
			}
		})
	}
}

// TestNewStorageDir: New creates a missing storage directory 0700 and
// refuses a file.
func TestNewStorageDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	m := newManager(t, Options{CA: CAInternal, Storage: dir})
	_ = m
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("storage dir: %v, %v; want mode 0700", fi, err)
	}
	file := filepath.Join(t.TempDir(), "f")
	os.WriteFile(file, nil, 0o600)
	if _, err := New(Options{CA: CAInternal, Storage: file}); err == nil {
		t.Error("New accepted a file as storage")
	}
}

// TestRootPEMNotInternal and the challenge helpers on an ACME manager
// (no network is used: nothing is managed).
func TestACMEHelpersOffline(t *testing.T) {
	m := newManager(t, Options{CA: "letsencrypt-staging", Email: "a@example.com", Agreed: true, Storage: t.TempDir(), ChallengePort: 8443})
	if _, err := m.RootPEM(context.Background()); !errors.Is(err, ErrNotInternal) {
		t.Errorf("RootPEM err = %v; want ErrNotInternal", err)
	}
	for _, tc := range []struct {
		method, path string
		want         bool
	}{
		{"GET", "/.well-known/acme-challenge/abc", true},
		{"POST", "/.well-known/acme-challenge/abc", false},
		{"GET", "/index.html", false},
	} {
		r := httptest.NewRequest(tc.method, "http://a.test"+tc.path, nil)
		if got := m.IsHTTPChallenge(r); got != tc.want {
			t.Errorf("IsHTTPChallenge(%s %s) = %v; want %v", tc.method, tc.path, got, tc.want)
		}
	}
	cfg := m.TLSConfig()
	if cfg.MinVersion != 0x0303 || len(cfg.NextProtos) != 3 || cfg.NextProtos[2] != "acme-tls/1" || cfg.GetCertificate == nil {
		t.Errorf("TLSConfig: min %x, protos %q", cfg.MinVersion, cfg.NextProtos)
	}
	m.Close()
	if err := m.Manage(context.Background(), []string{"a.test"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Manage after Close: %v; want ErrClosed", err)
	}
}
