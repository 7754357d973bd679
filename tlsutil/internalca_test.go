package tlsutil

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// TestInternalCA obtains certificates offline from the internal CA, serves
// them to a client trusting RootPEM, and checks that a restarted manager on
// the same storage serves the same root and the same stored leaf.
func TestInternalCA(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	storage := filepath.Join(t.TempDir(), "certs") // New creates it
	names := []string{"localhost", "127.0.0.1"}

	// first run
	log, logs := observed(t)
	m := newManager(t, Options{CA: CAInternal, Storage: storage, Logger: log})
	port, lns := loopback(t)
	serveTLS(t, lns, m.TLSConfig())
	if err := m.ManageSync(ctx, names); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	root, err := m.RootPEM(ctx)
	if err != nil {
		t.Fatalf("RootPEM: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	leaf, err := handshake(addr, "localhost", poolOf(t, root))
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "localhost" {
		t.Errorf("DNS SANs %q; want [localhost]", leaf.DNSNames)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > leafLifetime+clockSkew {
		t.Errorf("leaf lifetime %v; want at most %v", life, leafLifetime+clockSkew)
	}
	if len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("ExtKeyUsage %v; want [serverAuth]", leaf.ExtKeyUsage)
	}
	// An IP certificate: the client verifies the IP SAN (and sends no SNI).
	if _, err := handshake(addr, "127.0.0.1", poolOf(t, root)); err != nil {
		t.Errorf("handshake for the IP: %v", err)
	}
	e := waitLog(t, logs, "certificate obtained", "localhost", time.Second)
	if got := e.ContextMap()["issuer"]; got != internalIssuerKey {
		t.Errorf("issuer %q; want %q", got, internalIssuerKey)
	}
	fromDisk, err := RootPEMFromStorage(ctx, storage)
	if err != nil || !bytes.Equal(fromDisk, root) {
		t.Errorf("RootPEMFromStorage = %q, %v; want the manager's root", fromDisk, err)
	}
	m.Close()

	// restart on the same storage
	log2, logs2 := observed(t)
	m2 := newManager(t, Options{CA: CAInternal, Storage: storage, Logger: log2})
	port2, lns2 := loopback(t)
	serveTLS(t, lns2, m2.TLSConfig())
	if err := m2.ManageSync(ctx, names); err != nil {
		t.Fatalf("ManageSync after restart: %v", err)
	}
	root2, err := m2.RootPEM(ctx)
	if err != nil || !bytes.Equal(root2, root) {
		t.Fatalf("root after restart differs (err %v)", err)
	}
	leaf2, err := handshake(net.JoinHostPort("127.0.0.1", strconv.Itoa(port2)), "localhost", poolOf(t, root))
	if err != nil {
		t.Fatalf("handshake after restart: %v", err)
	}
	if leaf2.SerialNumber.Cmp(leaf.SerialNumber) != 0 {
		t.Errorf("leaf serial %v after restart; want the stored %v", leaf2.SerialNumber, leaf.SerialNumber)
	}
	if n := logs2.FilterMessage("certificate obtained").Len(); n != 0 {
		t.Errorf("restart obtained %d certificates; want 0 (reuse storage)", n)
	}

	checkPerms(t, storage)
}

// checkPerms walks dir: directories must be 0700 and files 0600.
func checkPerms(t *testing.T, dir string) {
	t.Helper()
	var sawRootKey bool
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o600)
		if d.IsDir() {
			want = 0o700
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v; want %v", path, got, want)
		}
		if path == filepath.Join(dir, filepath.FromSlash(rootKeyKey)) {
			sawRootKey = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawRootKey {
		t.Errorf("no %s under %s", rootKeyKey, dir)
	}
}

// TestInternalCARootRace has several CAs (as separate processes would)
// create the root of one empty storage at once: they must agree on it.
func TestInternalCARootRace(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n = 4
	serials := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca := &internalCA{storage: &certmagic.FileStorage{Path: dir}}
			root, err := ca.load(ctx)
			if err != nil {
				errs[i] = err
				return
			}
			serials[i] = root.cert.SerialNumber.String()
		}()
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("load %d: %v", i, errs[i])
		}
		if serials[i] != serials[0] {
			t.Errorf("root serial %d = %s; want %s (one shared root)", i, serials[i], serials[0])
		}
	}
}

// TestInternalCAIssueRejects covers CSRs the internal CA must refuse.
func TestInternalCAIssueRejects(t *testing.T) {
	ca := &internalCA{storage: &certmagic.FileStorage{Path: t.TempDir()}}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for _, tc := range []struct {
		name string
		tmpl x509.CertificateRequest
	}{
		{"no names", x509.CertificateRequest{}},
		{"email", x509.CertificateRequest{DNSNames: []string{"a.test"}, EmailAddresses: []string{"a@a.test"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			der, err := x509.CreateCertificateRequest(rand.Reader, &tc.tmpl, key)
			if err != nil {
				t.Fatal(err)
			}
			csr, _ := x509.ParseCertificateRequest(der)
			if _, err := ca.Issue(context.Background(), csr); err == nil {
				t.Errorf("Issue succeeded; want an error")
			}
		})
	}
}

// TestRootPEMFromStorageMissing: the CLI helper never creates a root.
func TestRootPEMFromStorageMissing(t *testing.T) {
	dir := t.TempDir()
	_, err := RootPEMFromStorage(context.Background(), dir)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v; want fs.ErrNotExist", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("storage got %d entries; want none", len(entries))
	}
}

// TestUnmanage: a dropped name is no longer served (a reload removing a
// route), while the other managed name still is.
func TestUnmanage(t *testing.T) {
	ctx := context.Background()
	m := newManager(t, Options{CA: CAInternal, Storage: filepath.Join(t.TempDir(), "s")})
	port, lns := loopback(t)
	serveTLS(t, lns, m.TLSConfig())
	if err := m.ManageSync(ctx, []string{"keep.test", "drop.test"}); err != nil {
		t.Fatal(err)
	}
	root, _ := m.RootPEM(ctx)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	m.Unmanage([]string{"drop.test"})
	if _, err := handshake(addr, "drop.test", poolOf(t, root)); err == nil {
		t.Error("drop.test still served after Unmanage")
	}
	if _, err := handshake(addr, "keep.test", poolOf(t, root)); err != nil {
		t.Errorf("keep.test: %v", err)
	}
}
