package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

var (
	protocols  = []string{ProtocolTLS, ProtocolHTTP, ProtocolSSH, ProtocolFTP, ProtocolSilent, ProtocolUnknown, ProtocolAny}
	builtins   = []string{BuiltinDemo, BuiltinEcho}
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"json", "console"}
)

// Validate checks every constraint of c and returns an *Error listing all
// problems, or nil. It does not modify c. SNI and Host entries are checked
// case-insensitively; Load and Parse store them lowercased.
func (c *Config) Validate() error {
	var p problems
	c.validate(&p)
	return p.err(nil)
}

// validate records the problems of c in p.
func (c *Config) validate(p *problems) {
	if len(c.Listen) == 0 {
		p.add("listen", "at least one address required")
	}
	seen := map[string]int{}
	for i, addr := range c.Listen {
		path := fmt.Sprintf("listen[%d]", i)
		if err := checkHostPort(addr, 0); err != nil {
			p.add(path, "invalid address %q: %v", addr, err)
		} else if first, dup := seen[addr]; dup {
			p.add(path, "duplicate address %q (first used by listen[%d])", addr, first)
		} else {
			seen[addr] = i
		}
	}

	checkDuration(p, "sniff_timeout", c.SniffTimeout, 1, MaxSniffTimeout)
	if c.SniffMaxBytes < MinSniffMaxBytes || c.SniffMaxBytes > MaxSniffMaxBytes {
		p.add("sniff_max_bytes", "must be between %d and %d, got %d",
			MinSniffMaxBytes, MaxSniffMaxBytes, c.SniffMaxBytes)
	}
	checkDuration(p, "dial_timeout", c.DialTimeout, 1, 0)
	checkDuration(p, "idle_timeout", c.IdleTimeout, 0, 0)
	checkDuration(p, "shutdown_grace", c.ShutdownGrace, 0, 0)
	checkOneOf(p, "log.level", "level", c.Log.Level, logLevels)
	checkOneOf(p, "log.format", "format", c.Log.Format, logFormats)

	if len(c.Routes) == 0 {
		p.add("routes", "at least one route required")
	}
	names := map[string]int{}
	for i := range c.Routes {
		path := fmt.Sprintf("routes[%d]", i)
		r := &c.Routes[i]
		if first, dup := names[r.Name]; dup && r.Name != "" {
			p.add(path+".name", "duplicate name %q (first used by routes[%d])", r.Name, first)
		} else if !dup {
			names[r.Name] = i
		}
		r.validate(p, path)
	}
}

// validate records the problems of the route at path in p.
func (r *Route) validate(p *problems, path string) {
	switch {
	case r.Name == "":
		p.add(path+".name", "missing name")
	case !validName(r.Name):
		p.add(path+".name", `invalid name %q: want lowercase letters, digits, "_", "." or "-", starting with a letter or digit`, r.Name)
	}

	switch {
	case r.To == "":
		p.add(path+".to", "missing target")
	case strings.HasPrefix(r.To, "builtin:"):
		if !slices.Contains(builtins, r.To) {
			p.add(path+".to", "unknown builtin target %q (want %s)", r.To, list(builtins, "or"))
		}
	default:
		if err := checkHostPort(r.To, 1); err != nil {
			p.add(path+".to", "invalid address %q: %v", r.To, err)
		}
	}

	isTLS := r.Match.Protocol == ProtocolTLS
	switch r.TLS {
	case "", TLSPassthrough:
		if r.TLS != "" && !isTLS {
			p.add(path+".tls", "only allowed with protocol tls")
		}
	default:
		p.add(path+".tls", "unknown tls mode %q (want %q)", r.TLS, TLSPassthrough)
	}
	if r.DialTimeout != nil {
		checkDuration(p, path+".dial_timeout", *r.DialTimeout, 1, 0)
	}
	if r.IdleTimeout != nil {
		checkDuration(p, path+".idle_timeout", *r.IdleTimeout, 0, 0)
	}
	r.Match.validate(p, path+".match")
}

// validate records the problems of the match at path in p.
func (m *Match) validate(p *problems, path string) {
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
			if err := checkDNSName(name); err != nil {
				p.add(fmt.Sprintf("%s.sni[%d]", path, i), "invalid name %q: %v", name, err)
			}
		}
	}
	if only("alpn", len(m.ALPN), ProtocolTLS) {
		for i, proto := range m.ALPN {
			switch {
			case proto == "":
				p.add(fmt.Sprintf("%s.alpn[%d]", path, i), "empty protocol name")
			case len(proto) > 255:
				p.add(fmt.Sprintf("%s.alpn[%d]", path, i), "protocol name longer than 255 bytes")
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
	for i, src := range m.Source {
		if _, err := ParseSource(src); err != nil {
			p.add(fmt.Sprintf("%s.source[%d]", path, i), "%v", err)
		}
	}
}

// checkDuration records a problem if d is below lo or, when hi > 0, above hi.
// lo is 0 (zero allowed) or 1 (must be positive).
func checkDuration(p *problems, path string, d, lo, hi time.Duration) {
	switch {
	case lo > 0 && d <= 0:
		p.add(path, "must be greater than 0, got %s", d)
	case d < 0:
		p.add(path, "must not be negative, got %s", d)
	case hi > 0 && d > hi:
		p.add(path, "must be at most %s, got %s", hi, d)
	}
}

// checkOneOf records a problem if v is not one of want.
func checkOneOf(p *problems, path, what, v string, want []string) {
	if !slices.Contains(want, v) {
		p.add(path, "unknown %s %q (want %s)", what, v, list(want, "or"))
	}
}

// list renders words as "a, b or c".
func list(words []string, conj string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " " + conj + " " + words[len(words)-1]
}
