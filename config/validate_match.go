package config

import (
	"fmt"
	"net/netip"
	"slices"
)

// validate records the problems of the match at path in p. terminate is set
// for the match of a route that terminates TLS, whose SNI names may also be
// IPv6 addresses.
func (m *Match) validate(p *problems, path string, terminate bool) {
	switch {
	case m.Protocol == "":
		p.add(path+".protocol", "missing protocol (want %s)", list(protocols, "or"))
	case !slices.Contains(protocols, m.Protocol):
		p.add(path+".protocol", "unknown protocol %q (want %s)", m.Protocol, list(protocols, "or"))
	}
	known := m.Protocol == "" || slices.Contains(protocols, m.Protocol)
	only := func(key string, n int, protocol string) bool {
		if n > 0 && known && m.Protocol != protocol {
			p.add(path+"."+key, "only allowed with protocol %s", protocol)
			return false
		}
		return true
	}

	if only("sni", len(m.SNI), ProtocolTLS) {
		for i, name := range m.SNI {
			if a, err := netip.ParseAddr(name); terminate && err == nil && a.Zone() == "" {
				continue
			}
			if err := checkDNSName(name); err != nil {
				p.add(fmt.Sprintf("%s.sni[%d]", path, i), "invalid name %q: %v", name, err)
			}
		}
	}
	if only("alpn", len(m.ALPN), ProtocolTLS) {
		for i, proto := range m.ALPN {
			if problem := alpnNameProblem(proto); problem != "" {
				p.add(fmt.Sprintf("%s.alpn[%d]", path, i), "%s", problem)
			}
		}
	}
	if only("host", len(m.Host), ProtocolHTTP) {
		for i, host := range m.Host {
			if err := checkDNSName(host); err != nil {
				p.add(fmt.Sprintf("%s.host[%d]", path, i), "invalid host %q: %v", host, err)
			}
		}
	}
	if only("path", len(m.Path), ProtocolHTTP) {
		for i, prefix := range m.Path {
			if err := checkPathPrefix(prefix); err != nil {
				p.add(fmt.Sprintf("%s.path[%d]", path, i), "invalid path %q: %v", prefix, err)
			}
		}
	}
	checkSources(p, path+".source", m.Source)
}

// alpnNameProblem describes what makes proto unusable as a TLS application
// protocol name (RFC 7301: 1 to 255 bytes), or returns "".
func alpnNameProblem(proto string) string {
	switch {
	case proto == "":
		return "empty protocol name"
	case len(proto) > 255:
		return "protocol name longer than 255 bytes"
	}
	return ""
}
