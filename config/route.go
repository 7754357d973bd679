package config

import (
	"strings"
	"time"
)

// Route sends connections accepted by Match to its target: To, Upstreams
// or, for a route that terminates TLS, its nested Routes.
//
// A route is either a TCP route, which relays bytes to a host:port, or an
// HTTP (L7) route, which serves requests through the reverse proxy; see Mode
// and IsHTTP. The keys from Balance on apply to HTTP routes only.
type Route struct {
	// Name identifies the route in logs. Required and unique across
	// routes, nested ones included; it matches [a-z0-9][a-z0-9_.-]*.
	Name string `koanf:"name"`

	// Match selects the connections this route handles.
	Match Match `koanf:"match"`

	// To is the target. One of:
	//   - a host:port with a numeric port in 1-65535 (a TCP target);
	//   - an http:// or https:// URL with a host, an optional port and
	//     an optional base path, without query, fragment or user info (an
	//     HTTP target);
	//   - BuiltinDemo (an HTTP target) or BuiltinEcho (a TCP target).
	// To and Upstreams are mutually exclusive and one is required, except
	// that a route that terminates TLS may have only nested Routes.
	To string `koanf:"to"`

	// Upstreams lists several HTTP targets, with the same rules as an
	// http:// To, between which Balance chooses. Mutually exclusive with
	// To.
	Upstreams []string `koanf:"upstreams"`

	// Mode is "" (derived from the target), ModeTCP or ModeHTTP. When set,
	// it must agree with the target. Use IsHTTP for the effective mode.
	Mode string `koanf:"mode"`

	// TLS is "", TLSPassthrough or TLSTerminate, and may be set only when
	// Match.Protocol is ProtocolTLS. The empty string means passthrough:
	// the encrypted stream is forwarded untouched. TLSTerminate is refused
	// in nested routes.
	TLS string `koanf:"tls"`

	// RedirectHTTP, only on a route that terminates TLS, redirects plain
	// HTTP requests whose Host is one of Match.SNI to https.
	RedirectHTTP bool `koanf:"redirect_http"`

	// ALPN, only on a route that terminates TLS, lists the application
	// protocols its handshake offers, in order of preference. nil means
	// the default (see OfferedALPN). acme-tls/1 (ACME TLS-ALPN-01
	// challenges) is always offered besides and must not be listed.
	ALPN []string `koanf:"alpn"`

	// Routes, only on a route that terminates TLS, are tried in order on
	// the decrypted stream; To or Upstreams, if set, take what none of
	// them matches. Nested routes have the same schema and rules, but may
	// neither terminate TLS nor have Routes of their own.
	Routes []Route `koanf:"routes"`

	// DialTimeout overrides Config.DialTimeout for this route when not
	// nil. Must be > 0.
	DialTimeout *time.Duration `koanf:"dial_timeout"`

	// IdleTimeout overrides Config.IdleTimeout for this route when not
	// nil. Zero disables it. Must be >= 0.
	IdleTimeout *time.Duration `koanf:"idle_timeout"`

	// Balance chooses among Upstreams: "" (which means BalanceRoundRobin),
	// BalanceRoundRobin, BalanceLeastConn or BalanceIPHash. HTTP routes
	// only.
	Balance string `koanf:"balance"`

	// PreserveHost forwards the client's Host header to the upstream when
	// nil or true; false sends the upstream's host instead. See
	// PreservesHost. HTTP routes only.
	PreserveHost *bool `koanf:"preserve_host"`

	// StripPrefix removes the match.path prefix a request's path falls
	// under before it is forwarded (after a base path of the target is
	// prepended), and names it in X-Forwarded-Prefix. Needs Match.Path.
	// HTTP routes only.
	StripPrefix bool `koanf:"strip_prefix"`

	// MaxBodyBytes caps the size of request bodies; 0 means no limit.
	// Must be >= 0. HTTP routes only.
	MaxBodyBytes int64 `koanf:"max_body_bytes"`

	// ResponseHeaderTimeout overrides HTTP.ResponseHeaderTimeout for this
	// route when not nil. Must be > 0. HTTP routes only.
	ResponseHeaderTimeout *time.Duration `koanf:"response_header_timeout"`

	// HealthCheck enables active health checks of the upstreams when not
	// nil. Load and Parse fill its absent keys with defaults. HTTP routes
	// only.
	HealthCheck *HealthCheck `koanf:"health_check"`

	// Passive is the passive_health section as written, or nil. Load and
	// Parse fill its absent keys with defaults. Use PassiveHealth for the
	// effective settings. HTTP routes only.
	Passive *PassiveHealth `koanf:"passive_health"`

	// UpstreamTLS configures how the route's https:// upstreams are
	// verified and what client certificate they are shown; nil means
	// verify against the system roots, no client certificate. HTTP routes
	// with at least one https:// target only.
	UpstreamTLS *UpstreamTLS `koanf:"upstream_tls"`

	// UpstreamHTTP2 speaks HTTP/2 to the upstreams instead of HTTP/1.1:
	// with prior knowledge (h2c) to http:// ones, negotiated by ALPN over
	// TLS to https:// ones. gRPC servers need it. HTTP routes with an
	// http:// or https:// target only.
	UpstreamHTTP2 bool `koanf:"upstream_http2"`

	// SendProxy sends the backend a PROXY protocol header ("v1" or "v2")
	// naming the real client, so SSH, FTP and other TCP backends can see
	// it. Only with a host:port target (HTTP upstreams get
	// X-Forwarded-For instead).
	SendProxy string `koanf:"send_proxy"`

	// Allow and Deny are access control (CIDRs or IPs, like match.source):
	// a client the route takes but refuses (in Deny, or Allow is set and
	// it is not in it) is closed, not passed on to a later route. Deny
	// wins.
	Allow []string `koanf:"allow"`
	Deny  []string `koanf:"deny"`

	// FTP configures the FTP gateway; only with protocol ftp (whose routes
	// always relay through the gateway, with or without this section).
	FTP *FTP `koanf:"ftp"`
}

// HealthCheck configures active health checks: each upstream is sent
// GET Path every Interval and is healthy while it answers Status within
// Timeout; or, with GRPC, asked by the standard gRPC health service.
type HealthCheck struct {
	// Path is the request path. Required unless GRPC; starts with "/".
	Path string `koanf:"path"`

	// GRPC checks with the gRPC health service's Check call (grpc.health.v1)
	// instead of GET Path: healthy while it answers SERVING. Only with
	// upstream_http2; Path and Status are not used.
	GRPC bool `koanf:"grpc"`

	// GRPCService is the service the Check call asks about; empty asks
	// about the server as a whole. Only with GRPC.
	GRPCService string `koanf:"grpc_service"`

	// Interval is the time between checks of one upstream. Default
	// [DefaultHealthInterval]; must be > 0.
	Interval time.Duration `koanf:"interval"`

	// Timeout bounds one check. Default [DefaultHealthTimeout], or half of
	// a written Interval if that is shorter; must be
	// > 0 and less than Interval.
	Timeout time.Duration `koanf:"timeout"`

	// Status is the expected response status. Default
	// [DefaultHealthStatus] unless GRPC; must be in [100, 599].
	Status int `koanf:"status"`
}

// UpstreamTLS is the TLS client side of an HTTP route towards its https://
// upstreams, as nginx's proxy_ssl_* directives and Caddy's transport tls_*
// options.
type UpstreamTLS struct {
	// CA is the path of a PEM file of the roots that upstream
	// certificates must chain to, instead of the system roots (a private
	// or self-signed CA). If set, the file must exist and hold at least
	// one CERTIFICATE block; Validate reads it.
	CA string `koanf:"ca"`

	// ServerName is the name sent as SNI and verified in the upstream's
	// certificate; empty means each upstream URL's host. A DNS name or an
	// IP address, without wildcard.
	ServerName string `koanf:"server_name"`

	// InsecureSkipVerify accepts any upstream certificate: the connection
	// is encrypted but the upstream is not authenticated. Not together
	// with CA.
	InsecureSkipVerify bool `koanf:"insecure_skip_verify"`

	// Cert and Key are the paths of a PEM certificate (chain) and its
	// private key, shown to upstreams that ask for a client certificate
	// (mutual TLS). Both or neither; Validate loads them.
	Cert string `koanf:"cert"`
	Key  string `koanf:"key"`
}

// PassiveHealth configures passive health checks: an upstream that fails
// MaxFails requests in a row is skipped for Cooldown.
type PassiveHealth struct {
	// MaxFails is the number of consecutive failures that mark an
	// upstream down. Default [DefaultMaxFails]; must be >= 1.
	MaxFails int `koanf:"max_fails"`

	// Cooldown is how long a failed upstream is skipped. Default
	// [DefaultCooldown]; must be > 0.
	Cooldown time.Duration `koanf:"cooldown"`
}

// Mode values for Route.Mode.
const (
	// ModeTCP relays the connection's bytes to a host:port.
	ModeTCP = "tcp"
	// ModeHTTP serves HTTP requests through the reverse proxy.
	ModeHTTP = "http"
)

// TLS modes for Route.TLS.
const (
	// TLSPassthrough forwards TLS untouched.
	TLSPassthrough = "passthrough"
	// TLSTerminate completes the TLS handshake in portmux, with a
	// certificate for the names in Match.SNI (see Config.TLS), and routes
	// the decrypted stream.
	TLSTerminate = "terminate"
)

// Balance values for Route.Balance.
const (
	// BalanceRoundRobin takes each upstream in turn.
	BalanceRoundRobin = "round_robin"
	// BalanceLeastConn takes the upstream with the fewest requests in
	// flight.
	BalanceLeastConn = "least_conn"
	// BalanceIPHash sends a client IP to the same upstream while the set of
	// healthy upstreams is stable.
	BalanceIPHash = "ip_hash"
)

// Defaults of the route sections health_check and passive_health.
const (
	// DefaultHealthInterval is the default of health_check.interval.
	DefaultHealthInterval = 10 * time.Second
	// DefaultHealthTimeout is the default of health_check.timeout.
	DefaultHealthTimeout = 2 * time.Second
	// DefaultHealthStatus is the default of health_check.status.
	DefaultHealthStatus = 200
	// DefaultMaxFails is the default of passive_health.max_fails.
	DefaultMaxFails = 3
	// DefaultCooldown is the default of passive_health.cooldown.
	DefaultCooldown = 10 * time.Second
)

// IsHTTP reports whether r is an HTTP (L7) route: Mode is ModeHTTP, or Mode
// is empty and the target is an http:// or https:// URL, Upstreams, or
// BuiltinDemo. Otherwise r relays TCP (or, if it terminates TLS and has no
// target, only routes to its nested Routes).
func (r Route) IsHTTP() bool {
	switch r.Mode {
	case ModeHTTP:
		return true
	case ModeTCP:
		return false
	}
	return len(r.Upstreams) > 0 || r.To == BuiltinDemo || isURL(r.To)
}

// Terminates reports whether r terminates TLS.
func (r Route) Terminates() bool { return r.TLS == TLSTerminate }

// OfferedALPN is the list of application protocols the handshake of r, a
// route that terminates TLS, offers: ALPN when set; otherwise h2 and
// http/1.1 when an HTTP route (r itself or a nested one) serves the
// decrypted requests, which HTTP/2 clients then reach with HTTP/2; and
// http/1.1 alone when every target relays bytes, since a relayed backend
// would get HTTP/2 it most likely does not speak.
func (r Route) OfferedALPN() []string {
	if r.ALPN != nil {
		return r.ALPN
	}
	served := r.IsHTTP()
	for _, n := range r.Routes {
		served = served || n.IsHTTP()
	}
	if served {
		return []string{"h2", "http/1.1"}
	}
	return []string{"http/1.1"}
}

// PreservesHost reports whether the client's Host header is forwarded:
// PreserveHost is nil or true.
func (r Route) PreservesHost() bool { return r.PreserveHost == nil || *r.PreserveHost }

// PassiveHealth returns the effective passive health settings of r: Passive
// if set, otherwise DefaultMaxFails and DefaultCooldown. Passive health
// checking is always on for HTTP routes.
func (r Route) PassiveHealth() PassiveHealth {
	if r.Passive != nil {
		return *r.Passive
	}
	return PassiveHealth{MaxFails: DefaultMaxFails, Cooldown: DefaultCooldown}
}

// isHTTPSURL reports whether s starts with an https:// scheme, in any case.
func isHTTPSURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && strings.EqualFold(scheme, "https")
}

// isURL reports whether s starts with an http:// or https:// scheme, in any
// case.
func isURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	return ok && (strings.EqualFold(scheme, "http") || strings.EqualFold(scheme, "https"))
}
