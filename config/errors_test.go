package config

import (
	"slices"
	"strings"
	"testing"
)

// route is a valid route in YAML flow style; tests append fields or replace it.
const route = "{name: r, match: {protocol: any}, to: builtin:echo}"

// withRoutes returns a document with top-level lines top and the given routes.
func withRoutes(top string, routes ...string) string {
	return top + "\nroutes:\n  - " + strings.Join(routes, "\n  - ") + "\n"
}

func TestProblems(t *testing.T) {
	t.Parallel()
	tests := []problemCase{
		// Unknown keys.
		{"unknown top-level key", withRoutes("sniff_timout: 1s", route),
			`config: unknown key "sniff_timout"`},
		{"key in wrong case", withRoutes("Listen: [':1']", route),
			`config: unknown key "Listen"`},
		{"unknown key in log", withRoutes("log: {levl: debug}", route),
			`config: log: unknown key "levl"`},
		{"unknown key in route", withRoutes("", route, "{name: b, match: {protocol: any}, backnd: x}"),
			`config: routes[1]: unknown key "backnd"`},
		{"unknown key in match", withRoutes("", "{name: r, match: {protocol: http, hosts: [a]}, to: builtin:echo}"),
			`config: routes[0].match: unknown key "hosts"`},

		// Durations.
		{"bare number duration", withRoutes("sniff_timeout: 3", route),
			`config: sniff_timeout: want a duration such as "1s" or "500ms", got 3`},
		{"garbage duration", withRoutes("dial_timeout: soon", route),
			`config: dial_timeout: want a duration such as "1s" or "500ms", got "soon"`},
		{"day unit refused", withRoutes("shutdown_grace: 1d", route),
			`config: shutdown_grace: want a duration such as "1s" or "500ms", got "1d"`},
		{"float duration", withRoutes("idle_timeout: 1.5", route),
			`config: idle_timeout: want a duration such as "1s" or "500ms", got 1.5`},
		{"negative idle timeout", withRoutes("idle_timeout: -1s", route),
			`config: idle_timeout: must not be negative, got -1s`},
		{"negative shutdown grace", withRoutes("shutdown_grace: -5s", route),
			`config: shutdown_grace: must not be negative, got -5s`},
		{"zero sniff timeout", withRoutes("sniff_timeout: 0s", route),
			`config: sniff_timeout: must be greater than 0, got 0s`},
		{"sniff timeout too long", withRoutes("sniff_timeout: 2m", route),
			`config: sniff_timeout: must be at most 1m0s, got 2m0s`},
		{"negative dial timeout", withRoutes("dial_timeout: -1s", route),
			`config: dial_timeout: must be greater than 0, got -1s`},
		{"route dial timeout zero", withRoutes("", "{name: r, match: {protocol: any}, to: builtin:echo, dial_timeout: 0s}"),
			`config: routes[0].dial_timeout: must be greater than 0, got 0s`},
		{"route idle timeout negative", withRoutes("", "{name: r, match: {protocol: any}, to: builtin:echo, idle_timeout: -1ms}"),
			`config: routes[0].idle_timeout: must not be negative, got -1ms`},
		{"route duration bare number", withRoutes("", "{name: r, match: {protocol: any}, to: builtin:echo, idle_timeout: 30}"),
			`config: routes[0].idle_timeout: want a duration such as "1s" or "500ms", got 30`},

		// Other types and ranges.
		{"sniff max bytes too small", withRoutes("sniff_max_bytes: 100", route),
			`config: sniff_max_bytes: must be between 1024 and 1048576, got 100`},
		{"sniff max bytes string", withRoutes("sniff_max_bytes: '4096'", route),
			`config: sniff_max_bytes: want an integer, got "4096"`},
		{"sniff max bytes float", withRoutes("sniff_max_bytes: 4096.5", route),
			`config: sniff_max_bytes: want an integer, got 4096.5`},
		{"bad log level", withRoutes("log: {level: loud}", route),
			`config: log.level: unknown level "loud" (want debug, info, warn or error)`},
		{"bad log format", withRoutes("log: {format: text}", route),
			`config: log.format: unknown format "text" (want json or console)`},
		{"routes not a list", "routes: web\n",
			`config: routes: want a list, got "web"`},
		{"route not a mapping", withRoutes("", "42"),
			`config: routes[0]: want a mapping of keys, got 42`},
		{"name not a string", withRoutes("", "{name: 123, match: {protocol: any}, to: builtin:echo}"),
			`config: routes[0].name: want a string, got 123`},
		{"listen not a list", withRoutes("listen: {a: 1}", route),
			`config: listen: want a list, got a mapping`},

		// Addresses.
		{"listen port out of range", withRoutes("listen: ['1.2.3.4:99999']", route),
			`config: listen[0]: invalid address "1.2.3.4:99999": port out of range`},
		{"listen missing port", withRoutes("listen: [':443', '1.2.3.4']", route),
			`config: listen[1]: invalid address "1.2.3.4": missing port`},
		{"listen named port", withRoutes("listen: [':https']", route),
			`config: listen[0]: invalid address ":https": port "https" is not a number`},
		{"listen ipv6 without brackets", withRoutes("listen: ['::1:443']", route),
			`config: listen[0]: invalid address "::1:443": missing port, or an IPv6 address without brackets (write "[2001:db8::1]:443")`},
		{"listen bad host", withRoutes("listen: ['a..b:443']", route),
			`config: listen[0]: invalid address "a..b:443": invalid host "a..b": empty label`},
		{"listen empty", withRoutes("listen: []", route),
			`config: listen: at least one address required`},
		{"listen duplicate", withRoutes("listen: [':443', ':443']", route),
			`config: listen[1]: duplicate address ":443" (first used by listen[0])`},
		{"target missing port", withRoutes("", "{name: r, match: {protocol: any}, to: backend}"),
			`config: routes[0].to: invalid address "backend": missing port`},
		{"target port zero", withRoutes("", "{name: r, match: {protocol: any}, to: 'backend:0'}"),
			`config: routes[0].to: invalid address "backend:0": port out of range`},
		{"target port out of range", withRoutes("", "{name: r, match: {protocol: any}, to: 'backend:70000'}"),
			`config: routes[0].to: invalid address "backend:70000": port out of range`},
		{"target missing host", withRoutes("", "{name: r, match: {protocol: any}, to: ':80'}"),
			`config: routes[0].to: invalid address ":80": missing host`},
		{"unknown builtin", withRoutes("", "{name: r, match: {protocol: any}, to: 'builtin:ftp'}"),
			`config: routes[0].to: unknown builtin target "builtin:ftp" (want builtin:demo or builtin:echo)`},
		{"missing target", withRoutes("", route, route, "{name: c, match: {protocol: any}}"),
			`config: routes[2].to: missing target (set to or upstreams)`},

		// Names.
		{"missing name", withRoutes("", "{match: {protocol: any}, to: builtin:echo}"),
			`config: routes[0].name: missing name`},
		{"uppercase name", withRoutes("", "{name: Web, match: {protocol: any}, to: builtin:echo}"),
			`config: routes[0].name: invalid name "Web": want lowercase letters, digits, "_", "." or "-", starting with a letter or digit`},
		{"name starting with dash", withRoutes("", "{name: -web, match: {protocol: any}, to: builtin:echo}"),
			`config: routes[0].name: invalid name "-web": want lowercase letters, digits, "_", "." or "-", starting with a letter or digit`},
		{"duplicate name", withRoutes("", "{name: web, match: {protocol: any}, to: builtin:echo}", "{name: b, match: {protocol: any}, to: builtin:echo}",
			"{name: c, match: {protocol: any}, to: builtin:echo}", "{name: web, match: {protocol: any}, to: builtin:echo}"),
			`config: routes[3].name: duplicate name "web" (first used by routes[0])`},

		// Match.
		{"missing protocol", withRoutes("", "{name: r, match: {}, to: builtin:echo}"),
			`config: routes[0].match.protocol: missing protocol (want tls, http, ssh, ftp, silent, unknown or any)`},
		{"bad protocol", withRoutes("", "{name: r, match: {protocol: tcp}, to: builtin:echo}"),
			`config: routes[0].match.protocol: unknown protocol "tcp" (want tls, http, ssh, ftp, silent, unknown or any)`},
		{"sni on http", withRoutes("", "{name: r, match: {protocol: http, sni: [a.com]}, to: builtin:echo}"),
			`config: routes[0].match.sni: only allowed with protocol tls`},
		{"alpn on ssh", withRoutes("", "{name: r, match: {protocol: ssh, alpn: [h2]}, to: builtin:echo}"),
			`config: routes[0].match.alpn: only allowed with protocol tls`},
		{"host on tls", withRoutes("", "{name: r, match: {protocol: tls, host: [a.com]}, to: builtin:echo}"),
			`config: routes[0].match.host: only allowed with protocol http`},
		{"empty alpn", withRoutes("", "{name: r, match: {protocol: tls, alpn: [h2, '']}, to: builtin:echo}"),
			`config: routes[0].match.alpn[1]: empty protocol name`},
		{"bare wildcard", withRoutes("", "{name: r, match: {protocol: tls, sni: ['*.']}, to: builtin:echo}"),
			`config: routes[0].match.sni[0]: invalid name "*.": "*." needs a domain after it, as in "*.example.com"`},
		{"inner wildcard", withRoutes("", "{name: r, match: {protocol: tls, sni: [ok.com, 'a.*.com']}, to: builtin:echo}"),
			`config: routes[0].match.sni[1]: invalid name "a.*.com": "*" is only allowed as the whole first label, as in "*.example.com"`},
		{"partial wildcard", withRoutes("", "{name: r, match: {protocol: http, host: ['*foo.com']}, to: builtin:echo}"),
			`config: routes[0].match.host[0]: invalid host "*foo.com": "*" is only allowed as the whole first label, as in "*.example.com"`},
		{"host with port", withRoutes("", "{name: r, match: {protocol: http, host: ['a.com:8080']}, to: builtin:echo}"),
			`config: routes[0].match.host[0]: invalid host "a.com:8080": must not include a port`},
		{"sni trailing dot", withRoutes("", "{name: r, match: {protocol: tls, sni: ['a.com.']}, to: builtin:echo}"),
			`config: routes[0].match.sni[0]: invalid name "a.com.": must not end with a dot`},
		{"bad cidr", withRoutes("", "{name: r, match: {protocol: any, source: [10.0.0.0/8, 10.0.0.0/33]}, to: builtin:echo}"),
			`config: routes[0].match.source[1]: invalid source "10.0.0.0/33": prefix length out of range (want 0-32)`},
		{"source not an ip", withRoutes("", "{name: r, match: {protocol: any, source: [lan]}, to: builtin:echo}"),
			`config: routes[0].match.source[0]: invalid source "lan": want a CIDR such as "10.0.0.0/8" or an IP address`},

		// TLS mode.
		{"tls on non-tls route", withRoutes("", "{name: r, match: {protocol: http}, to: builtin:echo, tls: passthrough}"),
			`config: routes[0].tls: only allowed with protocol tls`},
		{"unknown tls mode", withRoutes("", "{name: r, match: {protocol: tls}, to: builtin:echo, tls: reencrypt}"),
			`config: routes[0].tls: unknown tls mode "reencrypt" (want passthrough or terminate)`},

		// Routes.
		{"no routes", "listen: [':443']\n", `config: routes: at least one route required`},
		{"empty routes", "routes: []\n", `config: routes: at least one route required`},
		{"empty document", "", `config: routes: at least one route required`},

		// YAML.
		{"yaml syntax", "listen: [':443'\nroutes: x\n", `config: yaml: line 1: did not find expected ',' or ']'`},
		{"yaml duplicate key", "log: {level: info}\nlog: {level: debug}\n", `config: yaml: line 2: mapping key "log" already defined at line 1`},
		{"yaml not a mapping", "- a\n", `config: yaml: line 1: the document must be a mapping of keys, not !!seq`},
	}
	expectProblems(t, tests)
}

// TestProblemsTogether checks that one error reports every problem, each on
// its own line, and that a decoding problem hides the validation problem it
// would cause.
func TestProblemsTogether(t *testing.T) {
	t.Parallel()
	doc := withRoutes("sniff_timeout: 3\nlisten: ['1.2.3.4:99999']\nfoo: bar",
		"{name: web, match: {protocol: http, sni: [a.com]}, to: 'x:1'}",
		"{name: web, match: {protocol: tls}, backnd: 'x:1'}",
	)
	_, err := parse(doc)
	got := problemsOf(t, err)
	want := []string{
		`config: sniff_timeout: want a duration such as "1s" or "500ms", got 3`,
		`config: routes[1]: unknown key "backnd"`,
		`config: unknown key "foo"`,
		`config: listen[0]: invalid address "1.2.3.4:99999": port out of range`,
		`config: routes[0].match.sni: only allowed with protocol tls`,
		`config: routes[1].name: duplicate name "web" (first used by routes[0])`,
		`config: routes[1].to: missing target (set to or upstreams)`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("got %q; want %q", got, want)
	}
	if got, want := err.Error(), strings.Join(want, "\n"); got != want {
		t.Errorf("got %q; want %q", got, want)
	}
}

// TestNoProblemsOnValid checks that Validate of a parsed config agrees.
func TestNoProblemsOnValid(t *testing.T) {
	t.Parallel()
	c, err := parse(withRoutes("listen: ':1'", route))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("got %v; want nil", err)
	}
}

// problemCase is a document and one problem its error must list, exactly.
type problemCase struct{ name, doc, want string }

// expectProblems parses each case's document (in parallel) and checks that
// the error lists the case's problem.
func expectProblems(t *testing.T, tests []problemCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parse(tt.doc)
			if got := problemsOf(t, err); !slices.Contains(got, tt.want) {
				t.Errorf("got %q; want %q among the problems", got, tt.want)
			}
		})
	}
}
