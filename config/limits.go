package config

import "fmt"

// Limits bound what clients may take, against floods and exhaustion. Zero
// means no limit. Refused connections are closed at once, counted in the
// portmux_connections_refused_total metric and logged (sampled).
type Limits struct {
	// MaxConns bounds connections open at once. Default 0 (the process's
	// descriptor limit is the bound).
	MaxConns int `koanf:"max_conns"`

	// MaxConnsPerIP bounds the connections one client address has open.
	MaxConnsPerIP int `koanf:"max_conns_per_ip"`

	// RatePerIP bounds new connections per second from one client address,
	// with bursts of up to RateBurst (default: RatePerIP, at least 1).
	RatePerIP float64 `koanf:"rate_per_ip"`
	RateBurst int     `koanf:"rate_burst"`

	// MaxSniffs bounds connections being sniffed at once: silent or slow
	// clients each hold one until sniff_timeout. Default [DefaultMaxSniffs].
	MaxSniffs int `koanf:"max_sniffs"`
}

// ProxyProtocol configures PROXY protocol (v1 and v2) headers sent by a
// load balancer in front of portmux.
type ProxyProtocol struct {
	// Trusted are the addresses (CIDRs or IPs, like match.source) whose
	// PROXY headers are believed. A header from anyone else is refused.
	// Empty: PROXY protocol is off.
	Trusted []string `koanf:"trusted"`

	// Optional lets a trusted source connect without a header (its own
	// address is then the client's). Default false: a trusted source must
	// send one.
	Optional bool `koanf:"optional"`
}

// DefaultMaxSniffs bounds concurrent sniffs by default: enough for any
// legitimate load, small enough that a flood of silent clients costs little.
const DefaultMaxSniffs = 4096

// PROXY protocol versions for Route.SendProxy.
const (
	ProxyV1 = "v1"
	ProxyV2 = "v2"
)

func (l *Limits) validate(p *problems) {
	for _, f := range []struct {
		key string
		v   int
	}{{"max_conns", l.MaxConns}, {"max_conns_per_ip", l.MaxConnsPerIP}, {"rate_burst", l.RateBurst}, {"max_sniffs", l.MaxSniffs}} {
		if f.v < 0 {
			p.add("limits."+f.key, "must not be negative, got %d", f.v)
		}
	}
	if l.RatePerIP < 0 {
		p.add("limits.rate_per_ip", "must not be negative, got %v", l.RatePerIP)
	}
}

func (pp *ProxyProtocol) validate(p *problems) {
	checkSources(p, "proxy_protocol.trusted", pp.Trusted)
	if pp.Optional && len(pp.Trusted) == 0 {
		p.add("proxy_protocol.optional", "needs proxy_protocol.trusted")
	}
}

// checkSources records the problems of a list of CIDRs or IPs at path.
func checkSources(p *problems, path string, sources []string) {
	for i, s := range sources {
		if _, err := ParseSource(s); err != nil {
			p.add(fmt.Sprintf("%s[%d]", path, i), "%v", err)
		}
	}
}
