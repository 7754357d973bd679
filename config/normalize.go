package config

import (
	"strings"
	"time"
)

// sectionDefaults fills the defaults of optional sections into raw, the
// merged layers before decoding. Such a section (a route's health_check or
// passive_health, tls.on_demand) is off when absent, so its defaults cannot
// live in the default layer; they apply only to a section that is written.
// Filling them before decoding, rather than replacing zero values after,
// keeps an explicit zero (interval: 0s) an error.
func sectionDefaults(raw map[string]any) {
	if t, ok := raw["tls"].(map[string]any); ok {
		fill(t["on_demand"], map[string]any{"rate_window": DefaultRateWindow})
	}
	routeDefaults(raw["routes"])
}

// routeDefaults fills the section defaults of each route in routes, a
// decoded YAML list, and of their nested routes.
func routeDefaults(routes any) {
	list, _ := routes.([]any)
	for _, r := range list {
		m, ok := r.(map[string]any)
		if !ok {
			continue
		}
		hc := map[string]any{
			"interval": DefaultHealthInterval,
			"timeout":  healthTimeout(m["health_check"]),
		}
		if !grpcHealthCheck(m["health_check"]) {
			hc["status"] = DefaultHealthStatus // a gRPC check has no status
		}
		fill(m["health_check"], hc)
		fill(m["passive_health"], map[string]any{
			"max_fails": DefaultMaxFails,
			"cooldown":  DefaultCooldown,
		})
		routeDefaults(m["routes"])
	}
}

// healthTimeout is the default timeout of a health_check section:
// DefaultHealthTimeout, or half the written interval if that is shorter,
// so that "interval: 1s" alone is valid. A value the decoder will refuse
// is left to it.
func healthTimeout(section any) any {
	m, _ := section.(map[string]any)
	s, _ := m["interval"].(string)
	if d, err := time.ParseDuration(s); err == nil && d > 0 && d/2 < DefaultHealthTimeout {
		return d / 2
	}
	return DefaultHealthTimeout
}

// grpcHealthCheck reports whether a health_check section says grpc: true.
// Only a YAML boolean can: the decoder refuses anything else, and the
// environment cannot reach a route.
func grpcHealthCheck(section any) bool {
	m, _ := section.(map[string]any)
	grpc, _ := m["grpc"].(bool)
	return grpc
}

// fill sets the keys of defs that section lacks, if section is a mapping.
// Anything else is left for the decoder to report.
func fill(section any, defs map[string]any) {
	m, ok := section.(map[string]any)
	if !ok {
		return
	}
	for k, v := range defs {
		if _, set := m[k]; !set {
			m[k] = v
		}
	}
}

// normalize lowercases the names that are matched case-insensitively.
func (c *Config) normalize() {
	c.TLS.DefaultSNI = strings.ToLower(c.TLS.DefaultSNI)
	lower(c.TLS.OnDemand.Allow)
	normalizeRoutes(c.Routes)
}

// normalizeRoutes lowercases the SNI and Host names of routes and of their
// nested routes.
func normalizeRoutes(routes []Route) {
	for i := range routes {
		lower(routes[i].Match.SNI)
		lower(routes[i].Match.Host)
		normalizeRoutes(routes[i].Routes)
	}
}

// lower lowercases every entry of names in place.
func lower(names []string) {
	for i := range names {
		names[i] = strings.ToLower(names[i])
	}
}
