package tlsutil

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// Storage keys and parameters of the internal CA. The root lives in the
// certmagic storage so that instances sharing a storage share the root.
const (
	internalIssuerKey = "portmux-internal"
	rootCertKey       = "portmux/ca/root.crt"
	rootKeyKey        = "portmux/ca/root.key"
	rootLockName      = "portmux_ca_root"
	rootCommonName    = "portmux internal root CA"
	rootLifetime      = 10 * 365 * 24 * time.Hour
	leafLifetime      = 7 * 24 * time.Hour // certmagic renews at 1/3 left
	// clockSkew backdates NotBefore so clients a little behind still accept.
	clockSkew = 5 * time.Minute
)

// internalCA is a certmagic.Issuer that signs CSRs with a local root. It
// needs no network, so it works offline for localhost, LAN names and IPs.
// It is safe for concurrent use.
type internalCA struct {
	storage certmagic.Storage

	mu   sync.Mutex // held while loading, so the root is read or made once
	root *caRoot
}

// caRoot is a loaded root: its certificate, key and PEM.
type caRoot struct {
	cert *x509.Certificate
	key  crypto.Signer
	pem  []byte
}

var _ certmagic.Issuer = (*internalCA)(nil)

// IssuerKey implements certmagic.Issuer. It is stable: certmagic stores
// certificates under it, so a restart finds them again.
func (*internalCA) IssuerKey() string { return internalIssuerKey }

// Issue implements certmagic.Issuer: it signs a 7-day serverAuth leaf for
// the CSR's DNS names and IPs and returns leaf + root as PEM.
func (ca *internalCA) Issue(ctx context.Context, csr *x509.CertificateRequest) (*certmagic.IssuedCertificate, error) {
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("internal ca: csr signature: %w", err)
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, errors.New("internal ca: only DNS names and IP addresses are issued")
	}
	if len(csr.DNSNames) == 0 && len(csr.IPAddresses) == 0 {
		return nil, errors.New("internal ca: csr has no DNS name or IP address")
	}
	root, err := ca.load(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	notAfter := now.Add(leafLifetime)
	if notAfter.After(root.cert.NotAfter) {
		notAfter = root.cert.NotAfter
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		usage |= x509.KeyUsageKeyEncipherment // RSA key exchange in TLS 1.2
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		DNSNames:              csr.DNSNames,
		IPAddresses:           csr.IPAddresses,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.cert, csr.PublicKey, root.key)
	if err != nil {
		return nil, fmt.Errorf("internal ca: signing: %w", err)
	}
	chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return &certmagic.IssuedCertificate{Certificate: append(chain, root.pem...)}, nil
}

// load returns the root, reading it from storage or creating it once.
func (ca *internalCA) load(ctx context.Context) (*caRoot, error) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.root != nil {
		return ca.root, nil
	}
	root, err := loadRoot(ctx, ca.storage)
	if errors.Is(err, fs.ErrNotExist) {
		root, err = createRoot(ctx, ca.storage)
	}
	if err != nil {
		return nil, err
	}
	ca.root = root
	return root, nil
}

// createRoot makes and stores a root unless another process did first: the
// storage lock orders racing processes, and the one that waited reloads.
func createRoot(ctx context.Context, s certmagic.Storage) (*caRoot, error) {
	if err := s.Lock(ctx, rootLockName); err != nil {
		return nil, fmt.Errorf("internal ca: locking root: %w", err)
	}
	// Unlock even if ctx ended meanwhile: a left-over lock file blocks the
	// next process until it goes stale.
	defer s.Unlock(context.WithoutCancel(ctx), rootLockName)

	if root, err := loadRoot(ctx, s); !errors.Is(err, fs.ErrNotExist) {
		return root, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: rootCommonName, Organization: []string{"portmux"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(rootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // it signs leaves only
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("internal ca: creating root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	// Key first, certificate last: loadRoot looks for the certificate, so a
	// crash in between leaves "no root" rather than a root without its key.
	if err := s.Store(ctx, rootKeyKey, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return nil, fmt.Errorf("internal ca: storing root key: %w", err)
	}
	if err := s.Store(ctx, rootCertKey, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return nil, fmt.Errorf("internal ca: storing root: %w", err)
	}
	return loadRoot(ctx, s)
}

// loadRoot reads the root from storage. A missing root wraps fs.ErrNotExist.
func loadRoot(ctx context.Context, s certmagic.Storage) (*caRoot, error) {
	certPEM, err := s.Load(ctx, rootCertKey)
	if err != nil {
		return nil, fmt.Errorf("internal ca: loading root: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, err
	}
	keyPEM, err := s.Load(ctx, rootKeyKey)
	if err != nil {
		// Not fs.ErrNotExist for the caller: a root without its key must
		// not be silently replaced, or every issued certificate goes untrusted.
		return nil, fmt.Errorf("internal ca: loading root key: %v", err)
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("internal ca: root key: no PEM block")
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("internal ca: root key: %w", err)
	}
	key, ok := parsed.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("internal ca: root key: unsupported type %T", parsed)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("internal ca: root key does not match root certificate")
	}
	return &caRoot{cert: cert, key: key, pem: certPEM}, nil
}

// parseCertPEM parses the first CERTIFICATE block of b.
func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("internal ca: root: no CERTIFICATE PEM block")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("internal ca: root: %w", err)
	}
	return cert, nil
}

// randomSerial returns a random positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return n.Add(n, big.NewInt(1)), nil // never zero
}

// RootPEMFromStorage returns the internal CA's root certificate (PEM) kept
// in the storage Options.Storage would name (a FileStorage directory or a
// Redis URL), for a `portmux trust` command. It never creates a root: if
// none exists yet the error wraps fs.ErrNotExist.
func RootPEMFromStorage(ctx context.Context, storageDir string) ([]byte, error) {
	var s certmagic.Storage = &certmagic.FileStorage{Path: storageDir}
	where := storageDir
	if IsRedisURL(storageDir) {
		rs, err := NewRedisStorage(storageDir, nil)
		if err != nil {
			return nil, err
		}
		defer rs.Close()
		s, where = rs, rs.display
	}
	b, err := s.Load(ctx, rootCertKey)
	if err != nil {
		return nil, fmt.Errorf("internal ca root in %s (created at the first certificate with ca: internal): %w", where, err)
	}
	if _, err := parseCertPEM(b); err != nil {
		return nil, err
	}
	return b, nil
}
