package mux

import (
	"crypto/tls"
	"net/http"
	"net/netip"
	"slices"
	"strings"
)

// Match says which connections a route takes. Every non-empty field must
// match; an empty field matches anything.
type Match struct {
	// Protocols the sniffer must have recognised; empty means any.
	Protocols []Protocol
	// SNI names for TLS: exact ("app.example.com") or one-label wildcards
	// ("*.example.com" matches "a.example.com", not "example.com" nor
	// "a.b.example.com", as a wildcard certificate would). Lowercase.
	SNI []string
	// ALPN protocols for TLS: the route matches if the client offers any.
	ALPN []string
	// Host names for HTTP requests (the Host header, port removed), with
	// the same wildcard rule as SNI. Lowercase. At connection level the
	// first request's Host decides. Where it is not known (HTTP/2, and
	// HTTP/1 inside terminated TLS when no route needs it there), a
	// PerRequest route's host conditions pass, as each request is routed
	// on its own (LookupRequest); any other route's fail, since nothing
	// would check them later.
	Host []string
	// Path prefixes for HTTP requests, matching whole segments: "/api"
	// takes "/api" and "/api/v1", not "/apix". At connection level the
	// first request's path decides; where it is unknown, as for Host.
	Path []string
	// Source prefixes the client address must fall in.
	Source []netip.Prefix
}

// Route is one entry of a routing table.
type Route struct {
	// Name identifies the route in logs.
	Name string
	// Match selects the connections the route takes.
	Match Match
	// Handler serves the connections the route takes. Unused when
	// Terminate is set.
	Handler Handler
	// Terminate, when set, makes the route terminate TLS with this config
	// (a TLS route); the decrypted stream is sniffed again and routed by
	// Inner.
	Terminate *tls.Config
	// Inner routes the decrypted stream of a terminated route.
	Inner *Table
	// Allow and Deny are access control, not matching: a client the route
	// takes but refuses (in Deny, or Allow set and it is not in it) is
	// closed, not passed on to a later route. Deny wins.
	Allow, Deny []netip.Prefix
	// PerRequest marks a route whose Handler routes each HTTP request again
	// with the same table and applies Allow and Deny to it (an in-process
	// HTTP server). The connection-level match of such a route is only the
	// first request's, or, over HTTP/2, one that skipped the Host and path
	// conditions, so the connection is not refused by its Allow and Deny:
	// a client denied /admin would otherwise lose every other path on its
	// HTTP/2 connection.
	PerRequest bool
}

// name is r's name, "" for no route.
func (r *Route) name() string {
	if r == nil {
		return ""
	}
	return r.Name
}

// refuses reports whether a connection from client taken by r is closed by
// r's access control at connection level.
func (r *Route) refuses(client netip.Addr) bool {
	return !r.PerRequest && !r.Admits(client)
}

// Admits reports whether the route's allow and deny lists let client in.
func (r *Route) Admits(client netip.Addr) bool {
	if !client.IsValid() { // an address no list can place: fail closed
		return len(r.Allow) == 0 && len(r.Deny) == 0
	}
	if containsAddr(r.Deny, client) {
		return false
	}
	return len(r.Allow) == 0 || containsAddr(r.Allow, client)
}

// Table is an ordered list of routes; the first that matches wins. A Table is
// immutable once built and safe for concurrent use; a reload builds a new one.
type Table struct {
	routes   []Route
	needHost bool // some HTTP route matches on Host: read the request headers
	needPath bool // some HTTP route matches on path: parse the request line
	// tcpByHead: some route that is not PerRequest matches on Host or
	// path. Inside terminated TLS, where an HTTP/1 stream's head is read
	// only for such routes, it is read then.
	tcpByHead bool
}

// NewTable builds a table from routes, in order. It keeps routes' slices; the
// caller must not change them afterwards.
func NewTable(routes []Route) *Table {
	t := &Table{routes: routes}
	for _, r := range routes {
		if len(r.Match.Host) > 0 {
			t.needHost = true
		}
		if len(r.Match.Path) > 0 {
			t.needPath = true
		}
		if !r.PerRequest && (len(r.Match.Host) > 0 || len(r.Match.Path) > 0) {
			t.tcpByHead = true
		}
	}
	return t
}

// Routes returns the table's routes in order. The slice must not be modified.
func (t *Table) Routes() []Route {
	return t.routes
}

// Lookup returns the first route matching info, or nil. For an HTTP head
// cut off by the sniff byte cap it also returns nil at the first route
// that only its unread Host or path could have ruled out: a later route
// must not take a connection such a route might have taken (and refused,
// by its allow and deny lists).
func (t *Table) Lookup(info *Info) *Route {
	for i := range t.routes {
		r := &t.routes[i]
		if r.Match.matches(info, !r.PerRequest) {
			return r
		}
		if info.headCut && r.Match.matches(info, false) {
			return nil
		}
	}
	return nil
}

// matches reports whether info meets m. Host and path conditions pass
// when info does not know them, unless strict.
func (m *Match) matches(info *Info, strict bool) bool {
	if len(m.Protocols) > 0 && !slices.Contains(m.Protocols, info.Protocol) {
		return false
	}
	if len(m.SNI) > 0 && !matchName(m.SNI, info.SNI) {
		return false
	}
	if len(m.Host) > 0 && (info.hostKnown && !matchName(m.Host, info.Host) || !info.hostKnown && strict) {
		return false
	}
	if len(m.ALPN) > 0 && !slices.ContainsFunc(info.ALPN, func(p string) bool { return slices.Contains(m.ALPN, p) }) {
		return false
	}
	if len(m.Path) > 0 && (info.Path != "" && !matchPath(m.Path, info.Path) || info.Path == "" && strict) {
		return false
	}
	if len(m.Source) > 0 && !containsAddr(m.Source, info.Client.Addr()) {
		return false
	}
	return true
}

// LookupRequest routes one HTTP request (each request of a keep-alive or
// HTTP/2 connection may go elsewhere): the first route whose match takes
// the request's Host (without port), path, client and, over TLS, SNI.
func (t *Table) LookupRequest(r *http.Request) *Route {
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	return t.LookupHTTP(r.Host, r.URL.Path, client, r.TLS)
}

// LookupHTTP is LookupRequest for a request known by its Host header (as
// sent), decoded path, client and TLS connection (nil on plain HTTP). Path
// conditions see the path with its dot segments resolved (routingPath).
func (t *Table) LookupHTTP(host, path string, client netip.AddrPort, state *tls.ConnectionState) *Route {
	info := Info{Protocol: HTTP, Host: HostName(host), hostKnown: true, Path: routingPath(path, false), Client: client, Terminated: state != nil}
	if state != nil {
		info.SNI = state.ServerName
		info.NegotiatedProtocol = state.NegotiatedProtocol
	}
	return t.Lookup(&info)
}

// matchPath reports whether path is one of the prefixes or below one, by
// whole segments.
func matchPath(prefixes []string, path string) bool {
	for _, p := range prefixes {
		if _, ok := cutPathPrefix(path, strings.TrimSuffix(p, "/")); ok {
			return true
		}
	}
	return false
}

// cutPathPrefix reports whether path is p or below it, by whole segments,
// and returns what follows p ("" when path is p). p has no trailing
// slash; "" is the root, under which every path falls.
func cutPathPrefix(path, p string) (string, bool) {
	rest, ok := strings.CutPrefix(path, p)
	if !ok || rest != "" && rest[0] != '/' && p != "" {
		return "", false
	}
	return rest, true
}

// matchName reports whether name matches one of the patterns, exact or
// one-label wildcard.
func matchName(patterns []string, name string) bool {
	if name == "" {
		return false
	}
	for _, p := range patterns {
		if p == name {
			return true
		}
		if suffix, ok := strings.CutPrefix(p, "*"); ok {
			if label, ok := strings.CutSuffix(name, suffix); ok && label != "" && !strings.Contains(label, ".") {
				return true
			}
		}
	}
	return false
}

func containsAddr(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
