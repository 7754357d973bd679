package tlsutil

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// CA names accepted in Options.CA besides an ACME directory URL.
const (
	CALetsEncrypt        = "letsencrypt"
	CALetsEncryptStaging = "letsencrypt-staging"
	CAZeroSSL            = "zerossl"
	CAInternal           = "internal"
)

// Options configure a Manager. The zero value is not valid: CA and Storage
// are required, and an ACME CA also needs Email, Agreed and ChallengePort.
type Options struct {
	// CA is "letsencrypt", "letsencrypt-staging", "zerossl", "internal" or
	// the https:// URL of an ACME directory.
	CA string
	// TrustedRoots is optional PEM: roots trusted for the ACME directory in
	// addition to the system pool (e.g. Pebble's). Nil means the system pool.
	TrustedRoots []byte
	// Email is the ACME account email. Required for ACME CAs (certmagic
	// would otherwise prompt on stdin in ManageSync); unused by "internal".
	Email string
	// Agreed says the CA's terms of service were agreed. Required for ACME CAs.
	Agreed bool
	// EAB is the external account binding. Required for "zerossl".
	EAB *EAB
	// Storage is where certificates, keys, the ACME account, challenge
	// tokens and the internal CA live: either the directory of a certmagic
	// FileStorage (certmagic writes files 0600 and directories 0700; New
	// creates the directory 0700 if it is missing and warns if an existing
	// one is open to other users), or a Redis URL, redis://host:6379/0 or
	// rediss:// for TLS (see NewRedisStorage), which replicas share: they
	// then obtain each certificate once and answer each other's ACME
	// challenges.
	Storage string
	// ChallengePort is the mux port. certmagic's solvers see it in use and
	// trust the mux to answer: TLS-ALPN-01 inside TLSConfig's handshakes,
	// HTTP-01 through HTTPChallengeHandler (the CA still connects to ports
	// 443 and 80, which must reach portmux). Required for ACME CAs. Call
	// Manage only once the mux listens there: otherwise certmagic binds the
	// port itself for the duration of a challenge.
	ChallengePort int
	// DisableHTTPChallenge and DisableTLSALPNChallenge turn off one ACME
	// challenge type; turning off both is an error.
	DisableHTTPChallenge, DisableTLSALPNChallenge bool
	// OnDemand, if not nil, obtains certificates during the first handshake
	// for names it allows. Nil means only names given to Manage are served.
	OnDemand *OnDemand
	// Logger receives certmagic's logs and the certificate events. Nil
	// means no logging.
	Logger *zap.Logger
}

// EAB is an ACME external account binding (RFC 8555 §7.3.4), as ZeroSSL
// and some other CAs hand out.
type EAB struct {
	KeyID  string
	MACKey string // base64url, as the CA gives it
}

// OnDemand configures on-demand TLS. Allow and Ask are alternatives: a name
// is allowed if it matches Allow or, failing that, Ask answers 200. Names
// given to Manage are always allowed.
type OnDemand struct {
	// Allow lists exact names or "*.example.com" patterns, which match one
	// label: a.example.com but neither example.com nor a.b.example.com.
	Allow []string
	// Ask is an http(s) URL; GET Ask?domain=NAME answering 200 allows NAME.
	// Anything else, an error or no answer within 5s denies it.
	Ask string
	// RateLimit is how many new certificates on-demand may obtain per
	// RateWindow. Only names without a certificate in storage count, each
	// once per window. 0 means no limit.
	RateLimit  int
	RateWindow time.Duration
}

// errOpenIssuer is returned by New for on-demand TLS that would give a
// certificate to any name a client sends.
var errOpenIssuer = errors.New("on-demand TLS needs allow or ask: refusing to be an open issuer")

// directoryURL maps Options.CA to an ACME directory URL, or "" for the
// internal CA.
func directoryURL(ca string) (string, error) {
	switch ca {
	case "":
		return "", errors.New("ca is required")
	case CAInternal:
		return "", nil
	case CALetsEncrypt:
		return certmagic.LetsEncryptProductionCA, nil
	case CALetsEncryptStaging:
		return certmagic.LetsEncryptStagingCA, nil
	case CAZeroSSL:
		return certmagic.ZeroSSLProductionCA, nil
	}
	u, err := url.Parse(ca)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", fmt.Errorf("ca %q: want letsencrypt, letsencrypt-staging, zerossl, internal or an https:// ACME directory URL", ca)
	}
	return ca, nil
}

// validate checks o and returns the ACME directory URL ("" for internal).
func (o *Options) validate() (string, error) {
	dir, err := directoryURL(o.CA)
	if err != nil {
		return "", err
	}
	if o.Storage == "" {
		return "", errors.New("storage is required")
	}
	if dir != "" {
		switch {
		case o.Email == "":
			return "", fmt.Errorf("ca %s: email is required", o.CA)
		case !o.Agreed:
			return "", fmt.Errorf("ca %s: the CA's terms must be agreed", o.CA)
		case o.CA == CAZeroSSL && (o.EAB == nil || o.EAB.KeyID == "" || o.EAB.MACKey == ""):
			return "", errors.New("ca zerossl: eab key id and mac key are required")
		case o.ChallengePort <= 0 || o.ChallengePort > 65535:
			return "", fmt.Errorf("ca %s: challenge port %d out of range", o.CA, o.ChallengePort)
		case o.DisableHTTPChallenge && o.DisableTLSALPNChallenge:
			return "", errors.New("both ACME challenges are disabled: no certificate could be obtained")
		}
	}
	if o.EAB != nil && (o.EAB.KeyID == "" || o.EAB.MACKey == "") {
		return "", errors.New("eab needs both key id and mac key")
	}
	if o.TrustedRoots != nil {
		if _, err := rootPool(o.TrustedRoots); err != nil {
			return "", err
		}
	}
	if od := o.OnDemand; od != nil {
		if len(od.Allow) == 0 && od.Ask == "" {
			return "", errOpenIssuer
		}
		for _, p := range od.Allow {
			if err := validPattern(p); err != nil {
				return "", err
			}
		}
		if od.Ask != "" {
			u, err := url.Parse(od.Ask)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return "", fmt.Errorf("on-demand ask %q: want an http(s) URL", od.Ask)
			}
		}
		if od.RateLimit < 0 || (od.RateLimit > 0 && od.RateWindow <= 0) {
			return "", fmt.Errorf("on-demand rate limit %d per %v: want a count >= 0 and, with a count, a window > 0", od.RateLimit, od.RateWindow)
		}
	}
	return dir, nil
}

// validPattern accepts "name.example" or "*.name.example" (one wildcard
// label, leftmost only).
func validPattern(p string) error {
	rest := strings.TrimPrefix(p, "*.")
	if rest == "" || strings.ContainsAny(rest, "*/: ") || strings.HasPrefix(rest, ".") || strings.HasSuffix(rest, ".") || strings.Contains(rest, "..") {
		return fmt.Errorf("on-demand allow %q: want a name or *.name", p)
	}
	return nil
}

// rootPool returns the system roots plus the certificates in pemBytes.
func rootPool(pemBytes []byte) (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool() // e.g. no system store in a scratch image
	}
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, errors.New("trusted roots: no certificate found in PEM")
	}
	return pool, nil
}

// openStorage returns the storage Options.Storage names and its closer.
func openStorage(storage string, log *zap.Logger) (certmagic.Storage, func(), error) {
	if IsRedisURL(storage) {
		rs, err := NewRedisStorage(storage, log.Named("storage"))
		if err != nil {
			return nil, nil, err
		}
		return rs, func() { rs.Close() }, nil
	}
	if err := prepareStorageDir(storage, log); err != nil {
		return nil, nil, err
	}
	return &certmagic.FileStorage{Path: storage}, func() {}, nil
}

// prepareStorageDir creates dir 0700, or warns if an existing one is open
// to other users (we do not chmod a directory the operator chose).
func prepareStorageDir(dir string, log *zap.Logger) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("storage: %w", err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("storage: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("storage %s: not a directory", dir)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		log.Warn("storage directory is accessible by other users", zap.String("path", dir), zap.Stringer("mode", fi.Mode().Perm()))
	}
	return nil
}
