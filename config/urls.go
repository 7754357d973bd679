package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"unicode"
)

// wantHTTPURL is the message for a value that is not an http(s) URL.
const wantHTTPURL = "want an http:// or https:// URL"

// checkTargetURL checks an HTTP target (a route's to or upstreams entry): an
// http:// or https:// URL with a host, an optional port and an optional base
// path, without user info, query or fragment.
func checkTargetURL(s string) error {
	u, err := parseHTTPURL(s)
	switch {
	case err != nil:
		return err
	case u.User != nil:
		return errors.New("must not contain user info")
	case strings.Contains(s, "?"):
		return errors.New("must not contain a query")
	case strings.Contains(s, "#"):
		return errors.New("must not contain a fragment")
	}
	return nil
}

// checkAskURL checks tls.on_demand.ask: an http:// or https:// URL with a
// host. portmux adds the name to ask about as a query parameter.
func checkAskURL(s string) error {
	u, err := parseHTTPURL(s)
	switch {
	case err != nil:
		return err
	case strings.Contains(s, "#"):
		return errors.New("must not contain a fragment")
	case u.User != nil:
		return errors.New("must not contain user info")
	}
	return nil
}

// parseHTTPURL parses an http:// or https:// URL and checks its host and
// port.
func parseHTTPURL(s string) (*url.URL, error) {
	if !isURL(s) {
		return nil, errors.New(wantHTTPURL)
	}
	_, rest, _ := strings.Cut(s, "://")
	host, _, _ := strings.Cut(rest, "/")
	host = host[strings.LastIndex(host, "@")+1:]
	if strings.Count(host, ":") > 1 && !strings.HasPrefix(host, "[") {
		// url.Parse would say `invalid port ":db8::1" after host`.
		return nil, errors.New(`an IPv6 address needs brackets (write "http://[2001:db8::1]:8080")`)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, err
	}
	return u, checkURLHost(u)
}

// checkURLHost checks the host and optional port of u.
func checkURLHost(u *url.URL) error {
	switch {
	case u.Host == "":
		return errors.New("missing host")
	case u.Port() != "" || strings.HasSuffix(u.Host, ":"):
		return checkHostPort(u.Host, 1)
	case strings.HasPrefix(u.Host, "["):
		if a, err := netip.ParseAddr(u.Hostname()); err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Errorf("invalid IPv6 address %q", u.Hostname())
		}
		return nil
	}
	if _, err := netip.ParseAddr(u.Host); err == nil {
		return nil
	}
	if err := checkHostname(u.Host); err != nil {
		return fmt.Errorf("invalid host %q: %v", u.Host, err)
	}
	return nil
}

// checkCA checks tls.ca: a CA name or an https:// ACME directory URL.
func checkCA(ca string) error {
	switch ca {
	case CAInternal, CALetsEncrypt, CALetsEncryptStaging, CAZeroSSL:
		return nil
	}
	scheme, _, isURL := strings.Cut(ca, "://")
	if !isURL {
		return fmt.Errorf("unknown ca %q (want %s, %s, %s, %s or an https:// ACME directory URL)",
			ca, CAInternal, CALetsEncrypt, CALetsEncryptStaging, CAZeroSSL)
	}
	if !strings.EqualFold(scheme, "https") {
		return fmt.Errorf("invalid ca %q: an ACME directory URL must start with https://", ca)
	}
	u, err := url.Parse(ca)
	if err == nil {
		err = checkURLHost(u)
	} else {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
	}
	if err != nil {
		return fmt.Errorf("invalid ca %q: %v", ca, err)
	}
	return nil
}

// checkEmail checks an email address loosely: one "@" with text on both
// sides, and no spaces or control characters.
func checkEmail(s string) error {
	local, domain, _ := strings.Cut(s, "@")
	if strings.Count(s, "@") != 1 || local == "" || domain == "" || strings.ContainsFunc(s, badRune) {
		return fmt.Errorf(`invalid email %q: want an address such as "admin@example.com"`, s)
	}
	return nil
}

// checkPathPrefix checks a match.path entry.
func checkPathPrefix(s string) error {
	switch {
	case !strings.HasPrefix(s, "/"):
		return errors.New(`must start with "/"`)
	case strings.ContainsAny(s, "?#"):
		return errors.New(`must not contain "?" or "#"`)
	case strings.ContainsFunc(s, badRune):
		return errors.New("must not contain spaces or control characters")
	}
	return nil
}

// badRune reports whether r is a space or a control character.
func badRune(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }
