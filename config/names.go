package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ParseSource parses a Match.Source entry: a CIDR such as "10.0.0.0/8" or
// "2001:db8::/32", or a bare IP such as "192.0.2.7", which becomes a /32
// (IPv4) or /128 (IPv6) prefix. The prefix is masked: "10.1.2.3/8" yields
// 10.0.0.0/8. IPv6 zones are refused. IPv4-mapped IPv6 forms are unmapped
// ("::ffff:192.0.2.7" yields 192.0.2.7/32, "::ffff:10.0.0.0/104" yields
// 10.0.0.0/8), so callers should Unmap the addresses they match.
func ParseSource(s string) (netip.Prefix, error) {
	fail := func(why string) (netip.Prefix, error) {
		return netip.Prefix{}, fmt.Errorf("invalid source %q: %s", s, why)
	}
	ip, bitsText, hasBits := strings.Cut(s, "/")
	addr, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		return fail(`want a CIDR such as "10.0.0.0/8" or an IP address`)
	case addr.Zone() != "":
		return fail("IPv6 zones are not allowed")
	case !hasBits:
		addr = addr.Unmap()
		return netip.PrefixFrom(addr, addr.BitLen()), nil
	}
	if !digits(bitsText) {
		return fail("prefix length is not a number")
	}
	if bits, err := strconv.Atoi(bitsText); err != nil || bits > addr.BitLen() {
		return fail(fmt.Sprintf("prefix length out of range (want 0-%d)", addr.BitLen()))
	}
	bits, _ := strconv.Atoi(bitsText)
	if addr.Is4In6() && bits >= 96 {
		addr, bits = addr.Unmap(), bits-96
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

// checkHostPort checks a host:port address whose numeric port is at least
// minPort. For minPort 0 (a listen address) the host may be empty; otherwise
// (a dial target) it is required.
func checkHostPort(addr string, minPort int) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		var ae *net.AddrError
		if !errors.As(err, &ae) {
			return err
		}
		switch ae.Err {
		case "missing port in address":
			return errors.New("missing port")
		case "too many colons in address":
			return errors.New(`missing port, or an IPv6 address without brackets (write "[2001:db8::1]:443")`)
		}
		return errors.New(strings.TrimSuffix(ae.Err, " in address"))
	}
	switch n, err := strconv.Atoi(port); {
	case port == "":
		return errors.New("missing port")
	case !digits(port):
		return fmt.Errorf("port %q is not a number", port)
	case err != nil || n > 65535 || n < minPort:
		return errors.New("port out of range")
	}
	if strings.HasPrefix(addr, "[") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return fmt.Errorf("invalid IPv6 address %q", host)
		}
		return nil
	}
	switch {
	case host == "" && minPort == 0:
		return nil
	case host == "":
		return errors.New("missing host")
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if err := checkHostname(host); err != nil {
		return fmt.Errorf("invalid host %q: %v", host, err)
	}
	return nil
}

// checkDNSName checks an SNI or Host match entry: a host name, or "*."
// followed by a host name. The wildcard stands for exactly one label.
func checkDNSName(name string) error {
	if strings.Contains(name, ":") {
		return errors.New("must not include a port")
	}
	rest, wild := strings.CutPrefix(name, "*.")
	if wild && rest == "" {
		return errors.New(`"*." needs a domain after it, as in "*.example.com"`)
	}
	if strings.Contains(rest, "*") {
		return errors.New(`"*" is only allowed as the whole first label, as in "*.example.com"`)
	}
	return checkHostname(rest)
}

// checkHostname checks a DNS host name, case-insensitively. Labels hold
// letters, digits, "-" and "_"; a trailing dot is refused because TLS SNI and
// HTTP Host values do not carry one.
func checkHostname(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > 253:
		return errors.New("longer than 253 characters")
	case strings.HasSuffix(s, "."):
		return errors.New("must not end with a dot")
	}
	for label := range strings.SplitSeq(s, ".") {
		switch {
		case label == "":
			return errors.New("empty label")
		case len(label) > 63:
			return fmt.Errorf("label %q longer than 63 characters", label)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("label %q starts or ends with \"-\"", label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("invalid character %q", r)
			}
		}
	}
	return nil
}

// validName reports whether s matches [a-z0-9][a-z0-9_.-]*.
func validName(s string) bool {
	for i, r := range s {
		lower := r >= 'a' && r <= 'z' || r >= '0' && r <= '9'
		if !lower && (i == 0 || r != '_' && r != '.' && r != '-') {
			return false
		}
	}
	return s != ""
}

// digits reports whether s is a non-empty string of ASCII digits.
func digits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// checkCertName checks a name a certificate is for, such as tls.default_sni:
// a DNS name without wildcard, or an IP address.
func checkCertName(name string) error {
	if strings.HasPrefix(name, "*") {
		return errors.New("wildcards are not allowed")
	}
	if a, err := netip.ParseAddr(name); err == nil {
		if a.Zone() != "" {
			return errors.New("IPv6 zones are not allowed")
		}
		return nil
	}
	return checkDNSName(name)
}
