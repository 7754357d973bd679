package config

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// term returns a route that terminates TLS for a.example.com, with extra
// keys (in flow style, each followed by ", ") and nested routes.
func term(name, extra string, nested ...string) string {
	s := "{name: " + name + ", match: {protocol: tls, sni: [a.example.com]}, tls: terminate, " + extra
	if len(nested) > 0 {
		s += "routes: ["
		for i, n := range nested {
			if i > 0 {
				s += ", "
			}
			s += n
		}
		s += "], "
	}
	return s + "}"
}

// httpRoute is a valid HTTP (L7) route; tests append keys after its target.
const httpRoute = "{name: h, match: {protocol: http}, to: 'http://127.0.0.1:8080'"

func TestRouteProblems(t *testing.T) {
	t.Parallel()
	tests := []problemCase{
		// match.path.
		{"path on tls", withRoutes("", "{name: r, match: {protocol: tls, path: [/a]}, to: 'x:1'}"),
			`config: routes[0].match.path: only allowed with protocol http`},
		{"path without slash", withRoutes("", "{name: r, match: {protocol: http, path: [/ok, api]}, to: 'x:1'}"),
			`config: routes[0].match.path[1]: invalid path "api": must start with "/"`},
		{"path with query", withRoutes("", "{name: r, match: {protocol: http, path: ['/a?b=1']}, to: 'x:1'}"),
			`config: routes[0].match.path[0]: invalid path "/a?b=1": must not contain "?" or "#"`},
		{"path with space", withRoutes("", "{name: r, match: {protocol: http, path: ['/a b']}, to: 'x:1'}"),
			`config: routes[0].match.path[0]: invalid path "/a b": must not contain spaces or control characters`},

		// URL targets.
		{"url with query", withRoutes("", httpRoute+"}", "{name: r, match: {protocol: http}, to: 'http://a.example/x?y=1'}"),
			`config: routes[1].to: invalid URL "http://a.example/x?y=1": must not contain a query`},
		{"url with fragment", withRoutes("", "{name: r, match: {protocol: http}, to: 'http://a.example/#top'}"),
			`config: routes[0].to: invalid URL "http://a.example/#top": must not contain a fragment`},
		{"url with user info", withRoutes("", "{name: r, match: {protocol: http}, to: 'https://u:p@a.example'}"),
			`config: routes[0].to: invalid URL "https://u:p@a.example": must not contain user info`},
		{"url without host", withRoutes("", "{name: r, match: {protocol: http}, to: 'http:///x'}"),
			`config: routes[0].to: invalid URL "http:///x": missing host`},
		{"url port out of range", withRoutes("", "{name: r, match: {protocol: http}, to: 'http://a.example:70000'}"),
			`config: routes[0].to: invalid URL "http://a.example:70000": port out of range`},
		{"url bad host", withRoutes("", "{name: r, match: {protocol: http}, to: 'http://a..b/'}"),
			`config: routes[0].to: invalid URL "http://a..b/": invalid host "a..b": empty label`},
		{"url unclosed bracket", withRoutes("", "{name: r, match: {protocol: http}, to: 'http://[::1/x'}"),
			`config: routes[0].to: invalid URL "http://[::1/x": missing ']' in host`},
		{"url ipv6 zone", withRoutes("", "{name: r, match: {protocol: http}, to: 'http://[fe80::1%25eth0]'}"),
			`config: routes[0].to: invalid URL "http://[fe80::1%25eth0]": invalid IPv6 address "fe80::1%eth0"`},
		{"url ipv6 without brackets", withRoutes("", "{name: r, match: {protocol: http}, to: 'http://2001:db8::1/'}"),
			`config: routes[0].to: invalid URL "http://2001:db8::1/": an IPv6 address needs brackets (write "http://[2001:db8::1]:8080")`},
		{"url other scheme", withRoutes("", "{name: r, match: {protocol: any}, to: 'tcp://a.example:1'}"),
			`config: routes[0].to: invalid URL "tcp://a.example:1": want an http:// or https:// URL`},

		// upstreams.
		{"upstream not a url", withRoutes("", "{name: r, match: {protocol: http}, upstreams: ['http://a:1', '10.0.0.1:80']}"),
			`config: routes[0].upstreams[1]: invalid URL "10.0.0.1:80": want an http:// or https:// URL`},
		{"duplicate upstream", withRoutes("", "{name: r, match: {protocol: http}, upstreams: ['http://a:1', 'http://b:1', 'http://a:1']}"),
			`config: routes[0].upstreams[2]: duplicate upstream "http://a:1" (first used by upstreams[0])`},
		{"to and upstreams", withRoutes("", route, "{name: r2, match: {protocol: http}, to: 'http://a:1', upstreams: ['http://b:1']}"),
			`config: routes[1]: set either to or upstreams, not both`},
		{"upstreams not a list", withRoutes("", "{name: r, match: {protocol: http}, upstreams: {a: 1}}"),
			`config: routes[0].upstreams: want a list, got a mapping`},
		{"terminating route without target or routes", withRoutes("", "{name: r, match: {protocol: tls, sni: [a.com]}, tls: terminate}"),
			`config: routes[0].to: missing target (set to, upstreams or routes)`},

		// mode.
		{"unknown mode", withRoutes("", "{name: r, match: {protocol: any}, to: 'x:1', mode: l7}"),
			`config: routes[0].mode: unknown mode "l7" (want tcp or http)`},
		{"tcp mode with url", withRoutes("", "{name: r, match: {protocol: http}, to: 'http://x', mode: tcp}"),
			`config: routes[0].mode: mode tcp needs a host:port or builtin:echo target, got "http://x"`},
		{"tcp mode with upstreams", withRoutes("", "{name: r, match: {protocol: http}, upstreams: ['http://x'], mode: tcp}"),
			`config: routes[0].mode: mode tcp needs a host:port or builtin:echo target, got "upstreams"`},
		{"tcp mode with demo", withRoutes("", "{name: r, match: {protocol: http}, to: builtin:demo, mode: tcp}"),
			`config: routes[0].mode: mode tcp needs a host:port or builtin:echo target, got "builtin:demo"`},
		{"http mode with host port", withRoutes("", "{name: r, match: {protocol: http}, to: 'x:80', mode: http}"),
			`config: routes[0].mode: mode http needs an http:// or https:// target or builtin:demo, got "x:80"`},
		{"http mode with echo", withRoutes("", "{name: r, match: {protocol: any}, to: builtin:echo, mode: http}"),
			`config: routes[0].mode: mode http needs an http:// or https:// target or builtin:demo, got "builtin:echo"`},
		{"mode without target", withRoutes("", term("t", "mode: http, ", route)),
			`config: routes[0].mode: mode http needs a target (set to or upstreams)`},

		// Keys of HTTP routes on TCP routes.
		{"balance on tcp", withRoutes("", "{name: r, match: {protocol: http}, to: 'x:1', balance: round_robin}"),
			`config: routes[0].balance: only allowed with an http:// target`},
		{"preserve host on tcp", withRoutes("", "{name: r, match: {protocol: any}, to: builtin:echo, preserve_host: false}"),
			`config: routes[0].preserve_host: only allowed with an http:// target`},
		{"max body on tcp", withRoutes("", "{name: r, match: {protocol: any}, to: 'x:1', max_body_bytes: 10}"),
			`config: routes[0].max_body_bytes: only allowed with an http:// target`},
		{"response header timeout on tcp", withRoutes("", "{name: r, match: {protocol: any}, to: 'x:1', response_header_timeout: 1s}"),
			`config: routes[0].response_header_timeout: only allowed with an http:// target`},
		{"health check on tcp", withRoutes("", "{name: r, match: {protocol: any}, to: 'x:1', health_check: {path: /}}"),
			`config: routes[0].health_check: only allowed with an http:// target`},
		{"passive health on tcp", withRoutes("", "{name: r, match: {protocol: any}, to: 'x:1', passive_health: {max_fails: 1}}"),
			`config: routes[0].passive_health: only allowed with an http:// target`},
		{"balance on a terminating route without target", withRoutes("", term("t", "balance: ip_hash, ", route)),
			`config: routes[0].balance: only allowed with an http:// target`},

		// HTTP targets and protocols.
		{"http target with ssh", withRoutes("", "{name: r, match: {protocol: ssh}, to: 'http://x'}"),
			`config: routes[0].to: an http:// target needs protocol http (or tls: terminate)`},
		{"http target with tls passthrough", withRoutes("", "{name: r, match: {protocol: tls}, to: 'https://x'}"),
			`config: routes[0].to: an http:// target needs protocol http (or tls: terminate)`},
		{"upstreams with unknown", withRoutes("", "{name: r, match: {protocol: unknown}, upstreams: ['http://x']}"),
			`config: routes[0].upstreams: an http:// target needs protocol http (or tls: terminate)`},
		{"http target with silent", withRoutes("", "{name: r, match: {protocol: silent}, to: 'http://x'}"),
			`config: routes[0].to: an http:// target needs protocol http (or tls: terminate)`},

		// Keys of HTTP routes.
		{"unknown balance", withRoutes("", httpRoute+", balance: random}"),
			`config: routes[0].balance: unknown balance "random" (want round_robin, least_conn or ip_hash)`},
		{"negative max body", withRoutes("", httpRoute+", max_body_bytes: -1}"),
			`config: routes[0].max_body_bytes: must not be negative, got -1`},
		{"float max body", withRoutes("", httpRoute+", max_body_bytes: 1.5}"),
			`config: routes[0].max_body_bytes: want an integer, got 1.5`},
		{"preserve host not a bool", withRoutes("", httpRoute+", preserve_host: 'no'}"),
			`config: routes[0].preserve_host: want true or false, got "no"`},
		{"zero response header timeout", withRoutes("", httpRoute+", response_header_timeout: 0s}"),
			`config: routes[0].response_header_timeout: must be greater than 0, got 0s`},
		{"health check without path", withRoutes("", httpRoute+", health_check: {interval: 1s}}"),
			`config: routes[0].health_check.path: missing path`},
		{"empty health check", withRoutes("", httpRoute+", health_check: {}}"),
			`config: routes[0].health_check.path: missing path`},
		{"health check relative path", withRoutes("", httpRoute+", health_check: {path: healthz}}"),
			`config: routes[0].health_check.path: must start with "/", got "healthz"`},
		{"health check zero interval", withRoutes("", httpRoute+", health_check: {path: /, interval: 0s}}"),
			`config: routes[0].health_check.interval: must be greater than 0, got 0s`},
		{"health check timeout not below interval", withRoutes("", httpRoute+", health_check: {path: /, interval: 1s, timeout: 1s}}"),
			`config: routes[0].health_check.timeout: must be less than interval (1s), got 1s`},
		{"health check zero timeout", withRoutes("", httpRoute+", health_check: {path: /, timeout: 0s}}"),
			`config: routes[0].health_check.timeout: must be greater than 0, got 0s`},
		{"health check status", withRoutes("", httpRoute+", health_check: {path: /, status: 600}}"),
			`config: routes[0].health_check.status: must be between 100 and 599, got 600`},
		{"health check not a mapping", withRoutes("", httpRoute+", health_check: /healthz}"),
			`config: routes[0].health_check: want a mapping of keys, got "/healthz"`},
		{"grpc health check without http2", withRoutes("", httpRoute+", health_check: {grpc: true}}"),
			`config: routes[0].health_check.grpc: needs upstream_http2: true (gRPC runs over HTTP/2)`},
		{"grpc health check with a path", withRoutes("", httpRoute+", upstream_http2: true, health_check: {grpc: true, path: /healthz}}"),
			`config: routes[0].health_check.path: not used with grpc: true (the check is the gRPC health service's Check call)`},
		{"grpc health check with a status", withRoutes("", httpRoute+", upstream_http2: true, health_check: {grpc: true, status: 200}}"),
			`config: routes[0].health_check.status: not used with grpc: true (healthy means SERVING)`},
		{"grpc service without grpc", withRoutes("", httpRoute+", health_check: {path: /, grpc_service: app}}"),
			`config: routes[0].health_check.grpc_service: only with grpc: true`},
		{"grpc not a boolean", withRoutes("", httpRoute+", upstream_http2: true, health_check: {grpc: yes please}}"),
			`config: routes[0].health_check.grpc: want true or false, got "yes please"`},
		{"health check unknown key", withRoutes("", httpRoute+", health_check: {path: /, every: 1s}}"),
			`config: routes[0].health_check: unknown key "every"`},
		{"passive health zero fails", withRoutes("", httpRoute+", passive_health: {max_fails: 0}}"),
			`config: routes[0].passive_health.max_fails: must be at least 1, got 0`},
		{"passive health zero cooldown", withRoutes("", httpRoute+", passive_health: {cooldown: 0s}}"),
			`config: routes[0].passive_health.cooldown: must be greater than 0, got 0s`},

		// Terminating TLS.
		{"terminate on http", withRoutes("", "{name: r, match: {protocol: http}, to: 'x:1', tls: terminate}"),
			`config: routes[0].tls: only allowed with protocol tls`},
		{"terminate without sni", withRoutes("", "{name: r, match: {protocol: tls}, to: 'x:1', tls: terminate}"),
			`config: routes[0].match.sni: a terminating route without sni needs tls.on_demand or tls.default_sni (nothing to get a certificate for)`},
		{"acme wildcard", withRoutes("tls: {ca: letsencrypt, agree_terms: true}",
			"{name: r, match: {protocol: tls, sni: [a.example.com, '*.example.com']}, to: 'x:1', tls: terminate}"),
			`config: routes[0].match.sni[1]: wildcard "*.example.com" needs tls.ca: internal or tls.on_demand (ACME validates wildcards only by DNS)`},
		{"acme without email", withRoutes("tls: {ca: letsencrypt, agree_terms: true}",
			"{name: r, match: {protocol: tls, sni: [a.example.com]}, to: 'x:1', tls: terminate}"),
			`config: tls.email: required to use the ACME CA "letsencrypt" (its account and expiry notices)`},
		{"ipv6 sni without terminate", withRoutes("", "{name: r, match: {protocol: tls, sni: ['2001:db8::1']}, to: 'x:1'}"),
			`config: routes[0].match.sni[0]: invalid name "2001:db8::1": must not include a port`},
		{"redirect without terminate", withRoutes("", "{name: r, match: {protocol: tls}, to: 'x:1', redirect_http: true}"),
			`config: routes[0].redirect_http: only allowed with tls: terminate`},
		{"routes without terminate", withRoutes("", "{name: r, match: {protocol: tls}, to: 'x:1', routes: ["+route+"]}"),
			`config: routes[0].routes: only allowed with tls: terminate`},

		// Offered ALPN.
		{"alpn without terminate", withRoutes("", "{name: r, match: {protocol: tls}, to: 'x:1', alpn: [h2]}"),
			`config: routes[0].alpn: only allowed with tls: terminate (to match on the client's protocols, use match.alpn)`},
		{"nested alpn", withRoutes("", term("t", "", "{name: n, match: {protocol: http}, to: 'x:1', alpn: [h2]}")),
			`config: routes[0].routes[0].alpn: not allowed in a nested route (the outer route's handshake offers it)`},
		{"empty alpn", withRoutes("", term("t", "to: 'x:1', alpn: [], ")),
			`config: routes[0].alpn: empty list (leave alpn out for the default)`},
		{"empty alpn name", withRoutes("", term("t", "to: 'x:1', alpn: [h2, ''], ")),
			`config: routes[0].alpn[1]: empty protocol name`},
		{"acme alpn", withRoutes("", term("t", "to: 'x:1', alpn: [acme-tls/1], ")),
			`config: routes[0].alpn[0]: "acme-tls/1" is reserved: portmux offers it itself for ACME TLS-ALPN-01 challenges`},
		{"duplicate alpn", withRoutes("", term("t", "to: 'x:1', alpn: [h2, http/1.1, h2], ")),
			`config: routes[0].alpn[2]: duplicate protocol "h2" (first at alpn[0])`},

		// Nested routes.
		{"nested terminate", withRoutes("", term("t", "", "{name: n, match: {protocol: tls, sni: [b.example.com]}, to: 'x:1', tls: terminate}")),
			`config: routes[0].routes[0].tls: terminate is not allowed in a nested route (the stream is already decrypted)`},
		{"nested routes", withRoutes("", term("t", "", "{name: n, match: {protocol: any}, to: 'x:1', routes: ["+route+"]}")),
			`config: routes[0].routes[0].routes: not allowed in a nested route (routes nest one level only)`},
		{"nested redirect", withRoutes("", term("t", "", "{name: n, match: {protocol: any}, to: 'x:1', redirect_http: true}")),
			`config: routes[0].routes[0].redirect_http: not allowed in a nested route`},
		{"nested bad target", withRoutes("", route, "{name: b, match: {protocol: any}, to: 'x:1'}",
			term("t", "", "{name: n1, match: {protocol: http}, to: 'http://x'}", "{name: n2, match: {protocol: any}, to: 'backend'}")),
			`config: routes[2].routes[1].to: invalid address "backend": missing port`},
		{"nested http target with ssh", withRoutes("", term("t", "", "{name: n, match: {protocol: ssh}, to: 'http://x'}")),
			`config: routes[0].routes[0].to: an http:// target needs protocol http (or tls: terminate)`},
		{"nested tls with http target", withRoutes("", term("t", "", "{name: n, match: {protocol: tls, sni: [b.com]}, to: 'http://x'}")),
			`config: routes[0].routes[0].to: an http:// target needs protocol http (or tls: terminate)`},
		{"nested missing target", withRoutes("", term("t", "", "{name: n, match: {protocol: http}}")),
			`config: routes[0].routes[0].to: missing target (set to or upstreams)`},
		{"nested unknown key", withRoutes("", term("t", "", route, "{name: n, match: {protocol: any}, backnd: 'x:1'}")),
			`config: routes[0].routes[1]: unknown key "backnd"`},
		{"nested match problem", withRoutes("", term("t", "", "{name: n, match: {protocol: http, path: [x]}, to: 'x:1'}")),
			`config: routes[0].routes[0].match.path[0]: invalid path "x": must start with "/"`},
		{"nested health check", withRoutes("", term("t", "", "{name: n, match: {protocol: http}, to: 'http://x', health_check: {path: /, status: 99}}")),
			`config: routes[0].routes[0].health_check.status: must be between 100 and 599, got 99`},
		{"duplicate name in a nested route", withRoutes("", "{name: web, match: {protocol: http}, to: 'x:1'}", route, "{name: b, match: {protocol: any}, to: 'x:1'}",
			term("t", "", "{name: web, match: {protocol: http}, to: 'http://x'}")),
			`config: routes[3].routes[0].name: duplicate name "web" (first used by routes[0])`},
		{"duplicate name of a nested route", withRoutes("", term("t", "", "{name: api, match: {protocol: http}, to: 'http://x'}"),
			"{name: api, match: {protocol: any}, to: 'x:1'}"),
			`config: routes[1].name: duplicate name "api" (first used by routes[0].routes[0])`},
		{"duplicate name within nested routes", withRoutes("", term("t", "", route, route)),
			`config: routes[0].routes[1].name: duplicate name "r" (first used by routes[0].routes[0])`},
	}
	expectProblems(t, tests)
}

// TestRoutesValid covers routes that must be accepted, with the mode they
// get.
func TestRoutesValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		top   string
		route string
		http  bool // want IsHTTP
	}{
		{"host:port", "", "{name: r, match: {protocol: http}, to: 'x:80'}", false},
		{"echo", "", "{name: r, match: {protocol: any}, to: builtin:echo}", false},
		{"demo with any protocol", "", "{name: r, match: {protocol: unknown}, to: builtin:demo}", true},
		{"url", "", "{name: r, match: {protocol: http}, to: 'https://a.example:8443/base/'}", true},
		{"url in capitals", "", "{name: r, match: {protocol: http}, to: 'HTTP://a.example'}", true},
		{"url with ipv6", "", "{name: r, match: {protocol: any}, to: 'http://[2001:db8::1]'}", true},
		{"upstreams", "", "{name: r, match: {protocol: http}, upstreams: ['http://a:1', 'http://b:1'], balance: ip_hash}", true},
		{"explicit tcp", "", "{name: r, match: {protocol: http}, to: 'x:80', mode: tcp}", false},
		{"explicit http", "", "{name: r, match: {protocol: http}, to: 'http://x', mode: http}", true},
		{"explicit http demo", "", "{name: r, match: {protocol: tls}, to: builtin:demo, mode: http}", true},
		{"terminate to url", "", term("t", "to: 'http://x', "), true},
		{"terminate to host:port", "", term("t", "to: 'x:22', "), false},
		{"terminate with routes only", "", term("t", "redirect_http: true, ", httpRoute+"}"), false},
		{"terminate with ip and wildcard sni", "",
			"{name: r, match: {protocol: tls, sni: ['*.a.com', '192.0.2.1', '2001:db8::1']}, tls: terminate, to: 'x:1'}", false},
		{"terminate without sni, on demand", "tls: {on_demand: {ask: 'http://127.0.0.1:1/ask'}}",
			"{name: r, match: {protocol: tls}, tls: terminate, to: 'x:1'}", false},
		{"terminate without sni, default sni", "tls: {default_sni: a.com}",
			"{name: r, match: {protocol: tls}, tls: terminate, to: 'x:1'}", false},
		{"acme wildcard with on demand", "tls: {ca: letsencrypt, agree_terms: true, email: a@a.com, on_demand: {allow: ['*.a.com']}}",
			"{name: r, match: {protocol: tls, sni: ['*.a.com']}, tls: terminate, to: 'x:1'}", false},
		{"nested tls passthrough", "",
			term("t", "", "{name: n, match: {protocol: tls, sni: [b.com]}, to: 'x:1', tls: passthrough}"), false},
		{"zero max body", "", httpRoute + ", max_body_bytes: 0}", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parse(withRoutes(tt.top, tt.route))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Routes[0].IsHTTP(); got != tt.http {
				t.Errorf("got IsHTTP %v; want %v", got, tt.http)
			}
		})
	}
}

// TestOfferedALPN: a terminating route offers HTTP/2 only when portmux's
// HTTP proxy serves its requests, unless alpn says otherwise.
func TestOfferedALPN(t *testing.T) {
	t.Parallel()
	h2, h1 := []string{"h2", "http/1.1"}, []string{"http/1.1"}
	tests := []struct {
		name  string
		route string
		want  []string
	}{
		{"http target", term("t", "to: 'http://x', "), h2},
		{"upstreams", term("t", "upstreams: ['http://a:1', 'http://b:1'], "), h2},
		{"demo", term("t", "to: builtin:demo, "), h2},
		{"host:port target", term("t", "to: 'x:80', "), h1},
		{"http url relayed", term("t", "to: 'x:80', mode: tcp, "), h1},
		{"nested http route", term("t", "to: 'x:22', ", httpRoute+"}"), h2},
		{"nested relays only", term("t", "", "{name: a, match: {protocol: http, host: [a.test]}, to: 'x:80'}",
			"{name: s, match: {protocol: ssh}, to: 'x:22'}"), h1},
		{"set", term("t", "to: 'x:80', alpn: [h2], "), []string{"h2"}},
		{"set for an http target", term("t", "to: 'http://x', alpn: [http/1.1, imap], "), []string{"http/1.1", "imap"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parse(withRoutes("", tt.route))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Routes[0].OfferedALPN(); !slices.Equal(got, tt.want) {
				t.Errorf("OfferedALPN() = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestSectionDefaults checks that the defaults of health_check,
// passive_health and tls.on_demand are filled in only when the section is
// written, nested routes included.
func TestSectionDefaults(t *testing.T) {
	t.Parallel()
	c, err := parse(withRoutes("tls: {on_demand: {ask: 'http://127.0.0.1:1'}}",
		httpRoute+", health_check: {path: /h}, passive_health: {cooldown: 1m}}",
		httpRoute[:len("{name: ")]+"h2"+httpRoute[len("{name: h"):]+"}",
		term("t", "", "{name: n, match: {protocol: http}, to: 'http://x', health_check: {path: /, interval: 30s}, passive_health: {max_fails: 1}}"),
		// An interval below twice the default timeout halves it.
		"{name: short, match: {protocol: http}, to: 'http://x', health_check: {path: /, interval: 1s}}",
		// A gRPC check has no status to default.
		"{name: grpc, match: {protocol: http}, to: 'http://x', upstream_http2: true, health_check: {grpc: true}}",
	))
	if err != nil {
		t.Fatal(err)
	}
	r0, r1, n, short, grpc := c.Routes[0], c.Routes[1], c.Routes[2].Routes[0], c.Routes[3], c.Routes[4]
	for _, tt := range []struct{ got, want any }{
		{c.TLS.OnDemand.RateWindow, time.Minute},
		{*r0.HealthCheck, HealthCheck{Path: "/h", Interval: 10 * time.Second, Timeout: 2 * time.Second, Status: 200}},
		{*r0.Passive, PassiveHealth{MaxFails: 3, Cooldown: time.Minute}},
		{r0.PassiveHealth(), PassiveHealth{MaxFails: 3, Cooldown: time.Minute}},
		{r1.HealthCheck == nil && r1.Passive == nil, true},
		{r1.PassiveHealth(), PassiveHealth{MaxFails: 3, Cooldown: 10 * time.Second}},
		{*n.HealthCheck, HealthCheck{Path: "/", Interval: 30 * time.Second, Timeout: 2 * time.Second, Status: 200}},
		{n.PassiveHealth(), PassiveHealth{MaxFails: 1, Cooldown: 10 * time.Second}},
		{*short.HealthCheck, HealthCheck{Path: "/", Interval: time.Second, Timeout: 500 * time.Millisecond, Status: 200}},
		{*grpc.HealthCheck, HealthCheck{GRPC: true, Interval: 10 * time.Second, Timeout: 2 * time.Second}},
	} {
		if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
			t.Errorf("got %+v; want %+v", tt.got, tt.want)
		}
	}
}

func TestFTPSection(t *testing.T) {
	tests := []struct {
		name, route, want string
	}{
		{"valid", "{name: f, match: {protocol: ftp}, to: 'x:21', ftp: {public_address: 203.0.113.5, data_ports: 30000-30009}}", ""},
		{"wrong protocol", "{name: f, match: {protocol: ssh}, to: 'x:22', ftp: {data_ports: 30000-30009}}",
			`config: routes[0].ftp: only allowed with protocol ftp`},
		{"bad address", "{name: f, match: {protocol: ftp}, to: 'x:21', ftp: {public_address: nope}}",
			`config: routes[0].ftp.public_address: invalid IP address "nope"`},
		{"bad range", "{name: f, match: {protocol: ftp}, to: 'x:21', ftp: {data_ports: '30000'}}",
			`config: routes[0].ftp.data_ports: invalid range "30000": want "FIRST-LAST" such as "30000-30009"`},
		{"reversed range", "{name: f, match: {protocol: ftp}, to: 'x:21', ftp: {data_ports: 30009-30000}}",
			`config: routes[0].ftp.data_ports: invalid range "30009-30000": want 1024 <= first <= last <= 65535`},
		{"privileged range", "{name: f, match: {protocol: ftp}, to: 'x:21', ftp: {data_ports: 20-21}}",
			`config: routes[0].ftp.data_ports: invalid range "20-21": want 1024 <= first <= last <= 65535`},
		{"too large", "{name: f, match: {protocol: ftp}, to: 'x:21', ftp: {data_ports: 10000-20000}}",
			`config: routes[0].ftp.data_ports: range "10000-20000" has 10001 ports: at most 1000`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(withRoutes("", tt.route)))
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got %q; want %q", got, tt.want)
			}
		})
	}
}

func TestHardeningKeys(t *testing.T) {
	t.Setenv("PORTMUX_LIMITS__RATE_PER_IP", "2.5")
	cfg, err := Parse([]byte(withRoutes("limits: {max_conns: 100, max_conns_per_ip: 10}\nproxy_protocol: {trusted: [10.0.0.0/8]}",
		"{name: s, match: {protocol: ssh}, to: 'x:22', send_proxy: v2, allow: [192.0.2.0/24], deny: [192.0.2.9]}")))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.RatePerIP != 2.5 || cfg.Limits.MaxConns != 100 || cfg.Limits.MaxSniffs != DefaultMaxSniffs ||
		cfg.ProxyProtocol.Trusted[0] != "10.0.0.0/8" || cfg.Routes[0].SendProxy != ProxyV2 || len(cfg.Routes[0].Deny) != 1 {
		t.Fatalf("got %+v %+v %+v", cfg.Limits, cfg.ProxyProtocol, cfg.Routes[0])
	}
	tests := []struct{ name, head, route, want string }{
		{"negative limit", "limits: {max_conns: -1}", "{name: s, match: {protocol: ssh}, to: 'x:22'}",
			`config: limits.max_conns: must not be negative, got -1`},
		{"bad trusted", "proxy_protocol: {trusted: [nope]}", "{name: s, match: {protocol: ssh}, to: 'x:22'}",
			`config: proxy_protocol.trusted[0]: invalid source "nope": want a CIDR such as "10.0.0.0/8" or an IP address`},
		{"optional without trusted", "proxy_protocol: {optional: true}", "{name: s, match: {protocol: ssh}, to: 'x:22'}",
			`config: proxy_protocol.optional: needs proxy_protocol.trusted`},
		{"send_proxy version", "", "{name: s, match: {protocol: ssh}, to: 'x:22', send_proxy: v3}",
			`config: routes[0].send_proxy: unknown version "v3" (want v1 or v2)`},
		{"send_proxy on http", "", "{name: s, match: {protocol: http}, to: 'http://x', send_proxy: v1}",
			`config: routes[0].send_proxy: only allowed with a host:port target`},
		{"bad deny", "", "{name: s, match: {protocol: ssh}, to: 'x:22', deny: [10.0.0.0/99]}",
			`config: routes[0].deny[0]: invalid source "10.0.0.0/99": prefix length out of range (want 0-32)`},
	}
	t.Setenv("PORTMUX_LIMITS__RATE_PER_IP", "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(withRoutes(tt.head, tt.route)))
			if err == nil || err.Error() != tt.want {
				t.Errorf("got %v; want %q", err, tt.want)
			}
		})
	}
}
