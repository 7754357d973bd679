package config

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// maxRootsBytes caps the size of tls.trusted_roots. A system CA bundle is a
// few hundred KiB.
const maxRootsBytes = 4 << 20

// validate records the problems of the tls section in p. terminates tells
// whether a route terminates TLS, which makes an ACME CA's terms matter.
func (t *TLS) validate(p *problems, terminates bool) {
	wantCA := fmt.Sprintf("%s, %s, %s, %s or an https:// ACME directory URL",
		CAInternal, CALetsEncrypt, CALetsEncryptStaging, CAZeroSSL)
	if t.CA == "" {
		p.add("tls.ca", "missing ca (want %s)", wantCA)
	} else if err := checkCA(t.CA); err != nil {
		p.add("tls.ca", "%v", err)
	} else if terminates && t.ACME() && !t.AgreeTerms {
		p.add("tls.agree_terms", "must be true to use the ACME CA %q (you accept its terms of service)", t.CA)
	}
	if t.Email != "" {
		if err := checkEmail(t.Email); err != nil {
			p.add("tls.email", "%v", err)
		}
	} else if terminates && t.ACME() && t.CA != "" {
		// The CA's expiry notices go there, and without one certmagic
		// would stop and ask for it on standard input.
		p.add("tls.email", "required to use the ACME CA %q (its account and expiry notices)", t.CA)
	}
	switch {
	case t.CA == CAZeroSSL:
		if t.EAB.KeyID == "" {
			p.add("tls.eab.key_id", "required with ca %s", CAZeroSSL)
		}
		if t.EAB.MACKey == "" {
			p.add("tls.eab.mac_key", "required with ca %s", CAZeroSSL)
		}
	case (t.EAB.KeyID == "") != (t.EAB.MACKey == ""):
		p.add("tls.eab", "set both key_id and mac_key, or neither")
	}
	if t.TrustedRoots != "" {
		if err := checkRoots(t.TrustedRoots); err != nil {
			p.add("tls.trusted_roots", "%v", err)
		}
	}
	if t.Storage != "" {
		if err := checkStorage(t.Storage); err != nil {
			p.add("tls.storage", "%v", err)
		}
	}
	if t.DefaultSNI != "" {
		if err := checkCertName(t.DefaultSNI); err != nil {
			p.add("tls.default_sni", "invalid name %q: %v", t.DefaultSNI, err)
		}
	}
	t.OnDemand.validate(p)
}

// validate records the problems of tls.on_demand in p, if it is enabled.
func (o *OnDemand) validate(p *problems) {
	if !o.Enabled() {
		return
	}
	if len(o.Allow) == 0 && o.Ask == "" {
		p.add("tls.on_demand", "needs allow or ask (refusing to issue certificates for any name)")
	}
	for i, name := range o.Allow {
		if err := checkDNSName(name); err != nil {
			p.add(fmt.Sprintf("tls.on_demand.allow[%d]", i), "invalid name %q: %v", name, err)
		}
	}
	if o.Ask != "" {
		if err := checkAskURL(o.Ask); err != nil {
			p.add("tls.on_demand.ask", "invalid URL %q: %v", o.Ask, err)
		}
	}
	if o.RateLimit < 0 {
		p.add("tls.on_demand.rate_limit", "must not be negative, got %d", o.RateLimit)
	}
	checkDuration(p, "tls.on_demand.rate_window", o.RateWindow, 1, 0)
}

// checkStorage checks tls.storage: an absolute directory path, or the URL
// of a Redis server shared by replicas, redis://[user:password@]host[:port][/db]
// or rediss:// (TLS). Query parameters are left to the storage, which
// checks them at startup. Messages never repeat a URL's password.
func checkStorage(s string) error {
	scheme, _, isURL := strings.Cut(s, "://")
	if !isURL {
		if !filepath.IsAbs(s) {
			return fmt.Errorf("must be an absolute path or a redis:// or rediss:// URL, got %q", s)
		}
		return nil
	}
	if !strings.EqualFold(scheme, "redis") && !strings.EqualFold(scheme, "rediss") {
		return fmt.Errorf("unsupported URL scheme %q: want an absolute path or a redis:// or rediss:// URL", scheme)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.Error() would repeat the URL, password included
		}
		return fmt.Errorf("invalid Redis URL: %v", err)
	}
	shown := u.Redacted()
	if err := checkURLHost(u); err != nil {
		return fmt.Errorf("invalid Redis URL %q: %v", shown, err)
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 {
			return fmt.Errorf("invalid Redis URL %q: the path must be a database number such as /0, got %q", shown, u.Path)
		}
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return fmt.Errorf("invalid Redis URL %q: must not contain a fragment", shown)
	}
	return nil
}

// checkRoots checks that the file at path is a regular file of PEM blocks
// with at least one certificate, and that every certificate parses.
func checkRoots(path string) error {
	if err := checkRegularFile(path); err != nil {
		return err
	}
	// The size is read through a limit rather than from fi: files such as
	// those in /proc report 0.
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %v", path, unwrapPath(err))
	}
	defer f.Close()
	rest, err := io.ReadAll(io.LimitReader(f, maxRootsBytes+1))
	switch {
	case err != nil:
		return fmt.Errorf("cannot read %q: %v", path, unwrapPath(err))
	case len(rest) > maxRootsBytes:
		return fmt.Errorf("%q is larger than %d bytes", path, maxRootsBytes)
	}
	n := 0
	for {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		n++
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("%q: certificate %d: %v", path, n, err)
		}
	}
	if n == 0 {
		return fmt.Errorf("no PEM CERTIFICATE block in %q", path)
	}
	return nil
}

// checkRegularFile checks that path names a regular file, as a file of
// PEM blocks must be.
func checkRegularFile(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %v", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%q is not a regular file", path)
	}
	return nil
}

// unwrapPath returns the cause of a *fs.PathError, whose message would
// repeat the path, or err itself.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// checkTLS records the problems of a route's tls mode and redirect_http, and
// those of a terminating route's names, which depend on the tls section.
func (v *routeCheck) checkTLS(p *problems, r *Route, path string, nested bool) {
	isTLS := r.Match.Protocol == ProtocolTLS
	switch r.TLS {
	case "", TLSPassthrough:
		if r.TLS != "" && !isTLS {
			p.add(path+".tls", "only allowed with protocol tls")
		}
	case TLSTerminate:
		switch {
		case nested:
			p.add(path+".tls", "%s is not allowed in a nested route (the stream is already decrypted)", TLSTerminate)
		case !isTLS:
			p.add(path+".tls", "only allowed with protocol tls")
		default:
			v.checkNames(p, r, path)
		}
	default:
		p.add(path+".tls", "unknown tls mode %q (want %s or %s)", r.TLS, TLSPassthrough, TLSTerminate)
	}
	switch {
	case !r.RedirectHTTP:
	case nested:
		p.add(path+".redirect_http", "not allowed in a nested route")
	case !r.Terminates():
		p.add(path+".redirect_http", "only allowed with tls: %s", TLSTerminate)
	}
	checkOfferedALPN(p, r, path, nested)
}

// acmeTLSProtocol is the ALPN protocol of ACME TLS-ALPN-01 challenges (RFC
// 8737), which the certificate manager offers on every terminating route
// (acmez.ACMETLS1Protocol; config imports no ACME library, deps_test.go).
const acmeTLSProtocol = "acme-tls/1"

// checkOfferedALPN records the problems of the alpn list a terminating
// route offers to clients.
func checkOfferedALPN(p *problems, r *Route, path string, nested bool) {
	switch {
	case r.ALPN == nil:
		return
	case nested:
		p.add(path+".alpn", "not allowed in a nested route (the outer route's handshake offers it)")
		return
	case !r.Terminates():
		p.add(path+".alpn", "only allowed with tls: %s (to match on the client's protocols, use match.alpn)", TLSTerminate)
		return
	case len(r.ALPN) == 0:
		p.add(path+".alpn", "empty list (leave alpn out for the default)")
	}
	seen := map[string]int{}
	for i, proto := range r.ALPN {
		at := fmt.Sprintf("%s.alpn[%d]", path, i)
		if problem := alpnNameProblem(proto); problem != "" {
			p.add(at, "%s", problem)
		} else if proto == acmeTLSProtocol {
			p.add(at, "%q is reserved: portmux offers it itself for ACME TLS-ALPN-01 challenges", proto)
		} else if first, dup := seen[proto]; dup {
			p.add(at, "duplicate protocol %q (first at alpn[%d])", proto, first)
		} else {
			seen[proto] = i
		}
	}
}

// checkNames records the problems of the certificate names of r, a route
// that terminates TLS: its match.sni. The names themselves are checked with
// the match.
func (v *routeCheck) checkNames(p *problems, r *Route, path string) {
	onDemand := v.tls.OnDemand.Enabled()
	if len(r.Match.SNI) == 0 && !onDemand && v.tls.DefaultSNI == "" {
		p.add(path+".match.sni", "a terminating route without sni needs tls.on_demand or tls.default_sni (nothing to get a certificate for)")
	}
	if !v.tls.ACME() || onDemand {
		return
	}
	for i, name := range r.Match.SNI {
		if strings.HasPrefix(name, "*.") {
			p.add(fmt.Sprintf("%s.match.sni[%d]", path, i),
				"wildcard %q needs tls.ca: %s or tls.on_demand (ACME validates wildcards only by DNS)", name, CAInternal)
		}
	}
}
