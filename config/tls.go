package config

import "time"

// TLS configures how routes that terminate TLS get their certificates. It
// has no effect when no route terminates TLS.
type TLS struct {
	// CA issues the certificates: CAInternal (the default, a local CA),
	// CALetsEncrypt, CALetsEncryptStaging, CAZeroSSL, or the https:// URL
	// of an ACME directory. Every value but CAInternal is an ACME CA.
	CA string `koanf:"ca"`

	// Email is the optional ACME account email. If set, it has one "@"
	// with text on both sides.
	Email string `koanf:"email"`

	// AgreeTerms accepts the ACME CA's terms of service. It must be true
	// when CA is an ACME CA and a route terminates TLS.
	AgreeTerms bool `koanf:"agree_terms"`

	// EAB is the ACME external account binding. Required with CAZeroSSL;
	// elsewhere both keys or neither.
	EAB EAB `koanf:"eab"`

	// TrustedRoots is the path of a PEM file of extra roots to trust for
	// the ACME server, such as a private one. If set, the file must exist
	// and hold at least one CERTIFICATE block; Validate reads it.
	TrustedRoots string `koanf:"trusted_roots"`

	// Storage is where certificates and keys are kept: an absolute
	// directory path, or a Redis URL (redis:// or rediss://) that several
	// replicas share. The empty string (the default) leaves the choice to
	// the program, which uses a per-user data directory.
	Storage string `koanf:"storage"`

	// DefaultSNI is the name whose certificate is used for ClientHellos
	// without SNI on terminating routes. If set, it is a DNS name without
	// wildcard, or an IP address. Lowercased by Load and Parse.
	DefaultSNI string `koanf:"default_sni"`

	// OnDemand obtains certificates during the first handshake for names
	// that no route lists. See OnDemand.Enabled.
	OnDemand OnDemand `koanf:"on_demand"`
}

// EAB is an ACME external account binding (RFC 8555, section 7.3.4), as
// ZeroSSL hands out.
type EAB struct {
	// KeyID is the key identifier given by the CA.
	KeyID string `koanf:"key_id"`

	// MACKey is the MAC key given by the CA, as given (base64url).
	MACKey string `koanf:"mac_key"`
}

// OnDemand configures on-demand TLS: a certificate is obtained during the
// first handshake for a name the client sends, if Allow or Ask allows it.
// The zero value disables it.
type OnDemand struct {
	// Allow lists the names allowed: exact DNS names or "*.example.com",
	// as in Match.SNI. Lowercased by Load and Parse.
	Allow []string `koanf:"allow"`

	// Ask is an http:// or https:// URL asked whether a name is allowed.
	Ask string `koanf:"ask"`

	// RateLimit is how many new certificates may be obtained per
	// RateWindow; 0 means no limit. Must be >= 0.
	RateLimit int `koanf:"rate_limit"`

	// RateWindow is the window of RateLimit. Load and Parse fill in
	// [DefaultRateWindow] when the on_demand section is written without
	// it. Must be > 0 when on-demand TLS is enabled.
	RateWindow time.Duration `koanf:"rate_window"`
}

// CA values for TLS.CA besides an ACME directory URL.
const (
	// CAInternal is a local CA whose root clients must be told to trust.
	CAInternal = "internal"
	// CALetsEncrypt is Let's Encrypt's production ACME CA.
	CALetsEncrypt = "letsencrypt"
	// CALetsEncryptStaging is Let's Encrypt's staging ACME CA, for tests.
	CALetsEncryptStaging = "letsencrypt-staging"
	// CAZeroSSL is ZeroSSL's ACME CA; it needs EAB.
	CAZeroSSL = "zerossl"
)

// DefaultRateWindow is the default of tls.on_demand.rate_window.
const DefaultRateWindow = time.Minute

// Enabled reports whether on-demand TLS is configured: any of its keys is
// set. Load and Parse also enable it for an on_demand section that is
// written but empty, so that Validate refuses it.
func (o OnDemand) Enabled() bool {
	return len(o.Allow) > 0 || o.Ask != "" || o.RateLimit != 0 || o.RateWindow != 0
}

// ACME reports whether CA names an ACME CA, that is anything but
// CAInternal.
func (t TLS) ACME() bool { return t.CA != CAInternal }
