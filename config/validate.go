package config

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"json", "console"}
)

// Validate checks every constraint of c and returns an *Error listing all
// problems, or nil. It does not modify c; it reads the files named by
// tls.trusted_roots and the routes' upstream_tls sections. SNI and Host
// entries are checked case-insensitively; Load and Parse store them
// lowercased. The defaults of optional sections (health_check,
// passive_health, tls.on_demand) are filled in by Load and Parse only: a
// Config built in code must spell them out.
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
	addrs := map[string]string{} // address -> path of its first use
	for i, addr := range c.Listen {
		checkListen(p, fmt.Sprintf("listen[%d]", i), addr, addrs)
	}
	if c.HTTPListen != "" {
		checkListen(p, "http_listen", c.HTTPListen, addrs)
	}
	if c.Admin.Listen != "" {
		checkListen(p, "admin.listen", c.Admin.Listen, addrs)
	}

	checkDuration(p, "sniff_timeout", c.SniffTimeout, 1, MaxSniffTimeout)
	if c.SniffMaxBytes < MinSniffMaxBytes || c.SniffMaxBytes > MaxSniffMaxBytes {
		p.add("sniff_max_bytes", "must be between %d and %d, got %d",
			MinSniffMaxBytes, MaxSniffMaxBytes, c.SniffMaxBytes)
	}
	checkDuration(p, "handshake_timeout", c.HandshakeTimeout, 1, 0)
	checkDuration(p, "dial_timeout", c.DialTimeout, 1, 0)
	checkDuration(p, "idle_timeout", c.IdleTimeout, 0, 0)
	checkDuration(p, "shutdown_grace", c.ShutdownGrace, 0, 0)
	checkOneOf(p, "log.level", "level", c.Log.Level, logLevels)
	checkOneOf(p, "log.format", "format", c.Log.Format, logFormats)
	c.TLS.validate(p, slices.ContainsFunc(c.Routes, Route.Terminates))
	c.HTTP.validate(p)
	c.Limits.validate(p)
	c.ProxyProtocol.validate(p)

	if len(c.Routes) == 0 {
		p.add("routes", "at least one route required")
	}
	v := &routeCheck{tls: &c.TLS, names: map[string]string{}}
	for i := range c.Routes {
		v.route(p, &c.Routes[i], fmt.Sprintf("routes[%d]", i), false)
	}
}

// checkListen records a problem if addr, the listen address at path, is
// invalid or already used. seen maps addresses to the path of their first
// use.
func checkListen(p *problems, path, addr string, seen map[string]string) {
	if err := checkHostPort(addr, 0); err != nil {
		p.add(path, "invalid address %q: %v", addr, err)
	} else if first, dup := seen[addr]; dup {
		p.add(path, "duplicate address %q (first used by %s)", addr, first)
	} else {
		seen[addr] = path
	}
}

// validate records the problems of the http section in p.
func (h *HTTP) validate(p *problems) {
	checkSources(p, "http.trusted_proxies", h.TrustedProxies)
	if h.MaxHeaderBytes < MinMaxHeaderBytes || h.MaxHeaderBytes > MaxMaxHeaderBytes {
		p.add("http.max_header_bytes", "must be between %d and %d, got %d",
			MinMaxHeaderBytes, MaxMaxHeaderBytes, h.MaxHeaderBytes)
	}
	checkDuration(p, "http.read_header_timeout", h.ReadHeaderTimeout, 1, 0)
	checkDuration(p, "http.idle_timeout", h.IdleTimeout, 0, 0)
	checkDuration(p, "http.send_timeout", h.SendTimeout, 0, 0)
	checkDuration(p, "http.response_header_timeout", h.ResponseHeaderTimeout, 1, 0)
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
