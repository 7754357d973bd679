package config

import (
	"fmt"
	"slices"
	"strings"
)

var (
	protocols = []string{ProtocolTLS, ProtocolHTTP, ProtocolSSH, ProtocolFTP, ProtocolSilent, ProtocolUnknown, ProtocolAny}
	builtins  = []string{BuiltinDemo, BuiltinEcho}
	modes     = []string{ModeTCP, ModeHTTP}
	balances  = []string{BalanceRoundRobin, BalanceLeastConn, BalanceIPHash}
)

// target is the kind of a route's target, as written.
type target int

const (
	targetNone target = iota // no to and no upstreams
	targetTCP                // a host:port or builtin:echo
	targetHTTP               // an http(s) URL, upstreams or builtin:demo
	targetBad                // unusable: mode checks would only add noise
)

// routeCheck holds what checking a route needs beyond the route itself.
type routeCheck struct {
	tls   *TLS
	names map[string]string // route name -> path of the first route using it
}

// route records the problems of the route r at path in p. nested is set for
// the routes of a route that terminates TLS.
func (v *routeCheck) route(p *problems, r *Route, path string, nested bool) {
	switch first, dup := v.names[r.Name]; {
	case r.Name == "":
		p.add(path+".name", "missing name")
	case !validName(r.Name):
		p.add(path+".name", `invalid name %q: want lowercase letters, digits, "_", "." or "-", starting with a letter or digit`, r.Name)
	case dup:
		p.add(path+".name", "duplicate name %q (first used by %s)", r.Name, first)
	default:
		v.names[r.Name] = path
	}

	kind := r.checkTarget(p, path)
	r.checkMode(p, path, kind)
	v.checkTLS(p, r, path, nested)
	if r.DialTimeout != nil {
		checkDuration(p, path+".dial_timeout", *r.DialTimeout, 1, 0)
	}
	if r.IdleTimeout != nil {
		checkDuration(p, path+".idle_timeout", *r.IdleTimeout, 0, 0)
	}
	r.Match.validate(p, path+".match", r.Terminates() && !nested)
	checkSources(p, path+".allow", r.Allow)
	checkSources(p, path+".deny", r.Deny)
	switch r.SendProxy {
	case "", ProxyV1, ProxyV2:
		if r.SendProxy != "" && kind != targetTCP {
			p.add(path+".send_proxy", "only allowed with a host:port target")
		}
	default:
		p.add(path+".send_proxy", "unknown version %q (want v1 or v2)", r.SendProxy)
	}
	if r.FTP != nil {
		if r.Match.Protocol != ProtocolFTP {
			p.add(path+".ftp", "only allowed with protocol ftp")
		}
		r.FTP.validate(p, path+".ftp")
	}

	if len(r.Routes) > 0 {
		switch {
		case nested:
			p.add(path+".routes", "not allowed in a nested route (routes nest one level only)")
			return
		case !r.Terminates():
			p.add(path+".routes", "only allowed with tls: %s", TLSTerminate)
		}
		for i := range r.Routes {
			v.route(p, &r.Routes[i], fmt.Sprintf("%s.routes[%d]", path, i), true)
		}
	}
}

// checkTarget records the problems of to and upstreams and returns the kind
// of target they make.
func (r *Route) checkTarget(p *problems, path string) target {
	kind := targetNone
	switch to := r.To; {
	case to == "":
	case strings.HasPrefix(to, "builtin:"):
		kind = map[string]target{BuiltinDemo: targetHTTP, BuiltinEcho: targetTCP}[to]
		if kind == targetNone {
			p.add(path+".to", "unknown builtin target %q (want %s)", to, list(builtins, "or"))
			kind = targetBad
		}
	case strings.Contains(to, "://"):
		if err := checkTargetURL(to); err != nil {
			p.add(path+".to", "invalid URL %q: %v", to, err)
		}
		kind = targetHTTP
		if !isURL(to) {
			kind = targetBad
		}
	default:
		if err := checkHostPort(to, 1); err != nil {
			p.add(path+".to", "invalid address %q: %v", to, err)
		}
		kind = targetTCP
	}

	seen := map[string]int{}
	for i, u := range r.Upstreams {
		upath := fmt.Sprintf("%s.upstreams[%d]", path, i)
		if err := checkTargetURL(u); err != nil {
			p.add(upath, "invalid URL %q: %v", u, err)
		} else if first, dup := seen[u]; dup {
			p.add(upath, "duplicate upstream %q (first used by upstreams[%d])", u, first)
		} else {
			seen[u] = i
		}
	}

	switch {
	case r.To != "" && len(r.Upstreams) > 0:
		p.add(path, "set either to or upstreams, not both")
		return targetBad
	case len(r.Upstreams) > 0:
		return targetHTTP
	case r.To != "":
		return kind
	case r.Terminates() && len(r.Routes) > 0:
		return targetNone
	case r.Terminates():
		p.add(path+".to", "missing target (set to, upstreams or routes)")
	default:
		p.add(path+".to", "missing target (set to or upstreams)")
	}
	return targetBad
}

// checkMode records the problems of mode, of the keys that only HTTP routes
// take, and of an HTTP target with a protocol that cannot carry it.
func (r *Route) checkMode(p *problems, path string, kind target) {
	if r.Mode != "" && !slices.Contains(modes, r.Mode) {
		p.add(path+".mode", "unknown mode %q (want %s)", r.Mode, list(modes, "or"))
		return
	}
	got := r.To
	if got == "" {
		got = "upstreams"
	}
	switch {
	case kind == targetBad:
		return
	case r.Mode == "":
	case kind == targetNone:
		p.add(path+".mode", "mode %s needs a target (set to or upstreams)", r.Mode)
		return
	case r.Mode == ModeTCP && kind == targetHTTP:
		p.add(path+".mode", "mode tcp needs a host:port or %s target, got %q", BuiltinEcho, got)
		return
	case r.Mode == ModeHTTP && kind == targetTCP:
		p.add(path+".mode", "mode http needs an http:// or https:// target or %s, got %q", BuiltinDemo, got)
		return
	}
	if kind != targetHTTP {
		r.checkNotHTTP(p, path)
		return
	}
	if r.To != BuiltinDemo && !r.Terminates() && slices.Contains(protocols, r.Match.Protocol) &&
		r.Match.Protocol != ProtocolHTTP && r.Match.Protocol != ProtocolAny {
		key := ".to"
		if r.To == "" {
			key = ".upstreams"
		}
		p.add(path+key, "an http:// target needs protocol http (or tls: %s)", TLSTerminate)
	}
	r.checkHTTP(p, path)
}

// checkNotHTTP records a problem for each key of an HTTP route set on r,
// which is not one.
func (r *Route) checkNotHTTP(p *problems, path string) {
	for _, k := range []struct {
		key string
		set bool
	}{
		{"balance", r.Balance != ""},
		{"preserve_host", r.PreserveHost != nil},
		{"max_body_bytes", r.MaxBodyBytes != 0},
		{"response_header_timeout", r.ResponseHeaderTimeout != nil},
		{"health_check", r.HealthCheck != nil},
		{"passive_health", r.Passive != nil},
		{"upstream_tls", r.UpstreamTLS != nil},
		{"upstream_http2", r.UpstreamHTTP2},
		{"strip_prefix", r.StripPrefix},
	} {
		if k.set {
			p.add(path+"."+k.key, "only allowed with an http:// target")
		}
	}
}

// checkHTTP records the problems of the keys of an HTTP route.
func (r *Route) checkHTTP(p *problems, path string) {
	if r.Balance != "" {
		checkOneOf(p, path+".balance", "balance", r.Balance, balances)
	}
	if r.MaxBodyBytes < 0 {
		p.add(path+".max_body_bytes", "must not be negative, got %d", r.MaxBodyBytes)
	}
	if r.ResponseHeaderTimeout != nil {
		checkDuration(p, path+".response_header_timeout", *r.ResponseHeaderTimeout, 1, 0)
	}
	if hc := r.HealthCheck; hc != nil {
		r.checkHealthCheck(p, path+".health_check", hc)
	}
	if r.UpstreamTLS != nil {
		r.checkUpstreamTLS(p, path+".upstream_tls")
	}
	if r.StripPrefix && len(r.Match.Path) == 0 {
		p.add(path+".strip_prefix", "needs match.path (the prefixes to strip)")
	}
	if r.UpstreamHTTP2 && r.To == BuiltinDemo {
		p.add(path+".upstream_http2", "not used with %s (it has no upstream)", BuiltinDemo)
	}
	if ph := r.Passive; ph != nil {
		if ph.MaxFails < 1 {
			p.add(path+".passive_health.max_fails", "must be at least 1, got %d", ph.MaxFails)
		}
		checkDuration(p, path+".passive_health.cooldown", ph.Cooldown, 1, 0)
	}
}

// checkHealthCheck checks a route's health_check section, hc, at hpath.
func (r *Route) checkHealthCheck(p *problems, hpath string, hc *HealthCheck) {
	if hc.GRPC {
		if !r.UpstreamHTTP2 {
			p.add(hpath+".grpc", "needs upstream_http2: true (gRPC runs over HTTP/2)")
		}
		if hc.Path != "" {
			p.add(hpath+".path", "not used with grpc: true (the check is the gRPC health service's Check call)")
		}
		if hc.Status != 0 {
			p.add(hpath+".status", "not used with grpc: true (healthy means SERVING)")
		}
	} else {
		switch {
		case hc.Path == "":
			p.add(hpath+".path", "missing path")
		case !strings.HasPrefix(hc.Path, "/"):
			p.add(hpath+".path", `must start with "/", got %q`, hc.Path)
		}
		if hc.GRPCService != "" {
			p.add(hpath+".grpc_service", "only with grpc: true")
		}
		if hc.Status < 100 || hc.Status > 599 {
			p.add(hpath+".status", "must be between 100 and 599, got %d", hc.Status)
		}
	}
	checkDuration(p, hpath+".interval", hc.Interval, 1, 0)
	checkDuration(p, hpath+".timeout", hc.Timeout, 1, 0)
	if hc.Timeout > 0 && hc.Interval > 0 && hc.Timeout >= hc.Interval {
		p.add(hpath+".timeout", "must be less than interval (%s), got %s", hc.Interval, hc.Timeout)
	}
}
