package config

import "testing"

// httpsRoute is a valid route to an https:// upstream; tests append keys.
const httpsRoute = "{name: s, match: {protocol: http}, to: 'https://backend.internal:8443'"

func TestHTTPRouteProblems(t *testing.T) {
	t.Parallel()
	tests := []problemCase{
		{"on a tcp route", withRoutes("", "{name: r, match: {protocol: any}, to: 'x:1', upstream_tls: {insecure_skip_verify: true}}"),
			`config: routes[0].upstream_tls: only allowed with an http:// target`},
		{"without an https target", withRoutes("", "{name: r, match: {protocol: http}, upstreams: ['http://a:1', 'http://b:1'], upstream_tls: {server_name: a}}"),
			`config: routes[0].upstream_tls: only used with an https:// target`},
		{"on the demo", withRoutes("", "{name: r, match: {protocol: http}, to: builtin:demo, upstream_tls: {server_name: a}}"),
			`config: routes[0].upstream_tls: only used with an https:// target`},
		{"unknown key", withRoutes("", httpsRoute+", upstream_tls: {verify: false}}"),
			`config: routes[0].upstream_tls: unknown key "verify"`},
		{"missing ca", withRoutes("", httpsRoute+", upstream_tls: {ca: testdata/nope.pem}}"),
			`config: routes[0].upstream_tls.ca: cannot read "testdata/nope.pem": no such file or directory`},
		{"ca without certificates", withRoutes("", httpsRoute+", upstream_tls: {ca: testdata/client.key}}"),
			`config: routes[0].upstream_tls.ca: no PEM CERTIFICATE block in "testdata/client.key"`},
		{"ca and skip verify", withRoutes("", httpsRoute+", upstream_tls: {ca: testdata/roots.pem, insecure_skip_verify: true}}"),
			`config: routes[0].upstream_tls.ca: not used with insecure_skip_verify: true (set one or the other)`},
		{"wildcard server name", withRoutes("", httpsRoute+", upstream_tls: {server_name: '*.internal'}}"),
			`config: routes[0].upstream_tls.server_name: invalid name "*.internal": wildcards are not allowed`},
		{"server name with port", withRoutes("", httpsRoute+", upstream_tls: {server_name: 'a.internal:443'}}"),
			`config: routes[0].upstream_tls.server_name: invalid name "a.internal:443": must not include a port`},
		{"cert without key", withRoutes("", httpsRoute+", upstream_tls: {cert: testdata/client.pem}}"),
			`config: routes[0].upstream_tls.key: missing: cert is set, cert and key go together`},
		{"key without cert", withRoutes("", httpsRoute+", upstream_tls: {key: testdata/client.key}}"),
			`config: routes[0].upstream_tls.cert: missing: key is set, cert and key go together`},
		{"missing key file", withRoutes("", httpsRoute+", upstream_tls: {cert: testdata/client.pem, key: testdata/nope.key}}"),
			`config: routes[0].upstream_tls.key: cannot read "testdata/nope.key": no such file or directory`},
		{"cert is a directory", withRoutes("", httpsRoute+", upstream_tls: {cert: testdata, key: testdata/client.key}}"),
			`config: routes[0].upstream_tls.cert: "testdata" is not a regular file`},
		{"key of another certificate", withRoutes("", httpsRoute+", upstream_tls: {cert: testdata/roots.pem, key: testdata/client.key}}"),
			`config: routes[0].upstream_tls.cert: cannot load the key pair "testdata/roots.pem" and "testdata/client.key": tls: private key does not match public key`},
		{"http2 on a tcp route", withRoutes("", "{name: r, match: {protocol: any}, to: 'x:1', upstream_http2: true}"),
			`config: routes[0].upstream_http2: only allowed with an http:// target`},
		{"http2 on the demo", withRoutes("", "{name: r, match: {protocol: http}, to: builtin:demo, upstream_http2: true}"),
			`config: routes[0].upstream_http2: not used with builtin:demo (it has no upstream)`},
		{"http2 not a boolean", withRoutes("", httpRoute+", upstream_http2: h2c}"),
			`config: routes[0].upstream_http2: want true or false, got "h2c"`},
		{"strip prefix on a tcp route", withRoutes("", "{name: r, match: {protocol: http, path: [/a]}, to: 'x:1', strip_prefix: true}"),
			`config: routes[0].strip_prefix: only allowed with an http:// target`},
		{"strip prefix without path", withRoutes("", httpRoute+", strip_prefix: true}"),
			`config: routes[0].strip_prefix: needs match.path (the prefixes to strip)`},
		{"nested", withRoutes("", term("t", "", "{name: n, match: {protocol: http}, to: 'https://x', upstream_tls: {ca: testdata/nope.pem}}")),
			`config: routes[0].routes[0].upstream_tls.ca: cannot read "testdata/nope.pem": no such file or directory`},
	}
	expectProblems(t, tests)
}

func TestHTTPRouteValid(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{
		httpsRoute + ", upstream_tls: {ca: testdata/roots.pem, server_name: backend.example, cert: testdata/client.pem, key: testdata/client.key}}",
		httpsRoute + ", upstream_tls: {insecure_skip_verify: true, server_name: 192.0.2.1}}",
		// One https:// upstream among plain ones is enough.
		"{name: r, match: {protocol: http}, upstreams: ['http://a:1', 'HTTPS://b:1'], upstream_tls: {server_name: b.internal}}",
		httpRoute + ", upstream_http2: true}",
		"{name: r, match: {protocol: http, path: [/api/]}, to: 'http://a:1/base', strip_prefix: true}",
		httpsRoute + ", upstream_http2: true, upstream_tls: {server_name: b.internal}}",
		httpRoute + ", upstream_http2: true, health_check: {grpc: true}}",
		httpRoute + ", upstream_http2: true, health_check: {grpc: true, grpc_service: app.v1.Orders, interval: 2s}}",
		httpRoute + ", upstream_http2: true, health_check: {grpc: false, path: /healthz}}",
	} {
		if _, err := parse(withRoutes("", doc)); err != nil {
			t.Errorf("%s: %v", doc, err)
		}
	}
}
