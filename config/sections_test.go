package config

import (
	"os"
	"path/filepath"
	"testing"
)

// terminating is a valid route that terminates TLS for one name.
const terminating = "{name: t, match: {protocol: tls, sni: [a.example.com]}, tls: terminate, to: 'http://127.0.0.1:3000'}"

// TestSectionProblems covers the top-level keys and sections other than
// routes: http_listen, handshake_timeout, admin, tls and http.
func TestSectionProblems(t *testing.T) {
	t.Parallel()
	tests := []problemCase{
		// http_listen, handshake_timeout, admin.
		{"http listen missing port", withRoutes("http_listen: 'localhost'", route),
			`config: http_listen: invalid address "localhost": missing port`},
		{"http listen same as listen", withRoutes("listen: [':443', ':80']\nhttp_listen: ':80'", route),
			`config: http_listen: duplicate address ":80" (first used by listen[1])`},
		{"http listen not a string", withRoutes("http_listen: 80", route),
			`config: http_listen: want a string, got 80`},
		{"zero handshake timeout", withRoutes("handshake_timeout: 0s", route),
			`config: handshake_timeout: must be greater than 0, got 0s`},
		{"admin listen bad port", withRoutes("admin: {listen: '127.0.0.1:x'}", route),
			`config: admin.listen: invalid address "127.0.0.1:x": port "x" is not a number`},
		{"admin listen same as http listen", withRoutes("http_listen: ':80'\nadmin: {listen: ':80'}", route),
			`config: admin.listen: duplicate address ":80" (first used by http_listen)`},
		{"unknown key in admin", withRoutes("admin: {addr: ':1'}", route),
			`config: admin: unknown key "addr"`},

		// tls.ca, agree_terms, email, eab.
		{"unknown ca", withRoutes("tls: {ca: lets-encrypt}", route),
			`config: tls.ca: unknown ca "lets-encrypt" (want internal, letsencrypt, letsencrypt-staging, zerossl or an https:// ACME directory URL)`},
		{"empty ca", withRoutes("tls: {ca: ''}", route),
			`config: tls.ca: missing ca (want internal, letsencrypt, letsencrypt-staging, zerossl or an https:// ACME directory URL)`},
		{"http ca url", withRoutes("tls: {ca: 'http://acme.example/dir'}", route),
			`config: tls.ca: invalid ca "http://acme.example/dir": an ACME directory URL must start with https://`},
		{"ca url without host", withRoutes("tls: {ca: 'https:///dir'}", route),
			`config: tls.ca: invalid ca "https:///dir": missing host`},
		{"acme without agreement", withRoutes("tls: {ca: letsencrypt}", terminating),
			`config: tls.agree_terms: must be true to use the ACME CA "letsencrypt" (you accept its terms of service)`},
		{"acme url without agreement", withRoutes("tls: {ca: 'https://acme.example/dir', agree_terms: false}", terminating),
			`config: tls.agree_terms: must be true to use the ACME CA "https://acme.example/dir" (you accept its terms of service)`},
		{"agree terms not a bool", withRoutes("tls: {agree_terms: 'yes'}", route),
			`config: tls.agree_terms: want true or false, got "yes"`},
		{"email without at", withRoutes("tls: {email: admin.example.com}", route),
			`config: tls.email: invalid email "admin.example.com": want an address such as "admin@example.com"`},
		{"email with two ats", withRoutes("tls: {email: 'a@b@c'}", route),
			`config: tls.email: invalid email "a@b@c": want an address such as "admin@example.com"`},
		{"email without local part", withRoutes("tls: {email: '@example.com'}", route),
			`config: tls.email: invalid email "@example.com": want an address such as "admin@example.com"`},
		{"zerossl without eab key id", withRoutes("tls: {ca: zerossl, agree_terms: true, eab: {mac_key: m}}", route),
			`config: tls.eab.key_id: required with ca zerossl`},
		{"zerossl without eab mac key", withRoutes("tls: {ca: zerossl, agree_terms: true}", route),
			`config: tls.eab.mac_key: required with ca zerossl`},
		{"half an eab", withRoutes("tls: {ca: letsencrypt, eab: {key_id: k}}", route),
			`config: tls.eab: set both key_id and mac_key, or neither`},
		{"unknown key in eab", withRoutes("tls: {eab: {kid: k}}", route),
			`config: tls.eab: unknown key "kid"`},

		// tls.storage, default_sni, trusted_roots.
		{"relative storage", withRoutes("tls: {storage: certs}", route),
			`config: tls.storage: must be an absolute path or a redis:// or rediss:// URL, got "certs"`},
		{"storage url of another scheme", withRoutes("tls: {storage: 'http://redis:6379'}", route),
			`config: tls.storage: unsupported URL scheme "http": want an absolute path or a redis:// or rediss:// URL`},
		{"redis storage without host", withRoutes("tls: {storage: 'redis:///0'}", route),
			`config: tls.storage: invalid Redis URL "redis:///0": missing host`},
		{"redis storage bad port", withRoutes("tls: {storage: 'redis://u:s3cret@redis:port/0'}", route),
			`config: tls.storage: invalid Redis URL: invalid port ":port" after host`},
		{"redis storage port out of range", withRoutes("tls: {storage: 'redis://u:s3cret@redis:70000/0'}", route),
			`config: tls.storage: invalid Redis URL "redis://u:xxxxx@redis:70000/0": port out of range`},
		{"redis storage bad database", withRoutes("tls: {storage: 'rediss://redis/zero'}", route),
			`config: tls.storage: invalid Redis URL "rediss://redis/zero": the path must be a database number such as /0, got "/zero"`},
		{"redis storage with fragment", withRoutes("tls: {storage: 'redis://redis/0#x'}", route),
			`config: tls.storage: invalid Redis URL "redis://redis/0#x": must not contain a fragment`},
		{"wildcard default sni", withRoutes("tls: {default_sni: '*.example.com'}", route),
			`config: tls.default_sni: invalid name "*.example.com": wildcards are not allowed`},
		{"default sni with port", withRoutes("tls: {default_sni: 'example.com:443'}", route),
			`config: tls.default_sni: invalid name "example.com:443": must not include a port`},
		{"missing trusted roots", withRoutes("tls: {trusted_roots: testdata/nope.pem}", route),
			`config: tls.trusted_roots: cannot read "testdata/nope.pem": no such file or directory`},
		{"trusted roots is a directory", withRoutes("tls: {trusted_roots: testdata}", route),
			`config: tls.trusted_roots: "testdata" is not a regular file`},
		{"trusted roots without certificates", withRoutes("tls: {trusted_roots: testdata/full.yaml}", route),
			`config: tls.trusted_roots: no PEM CERTIFICATE block in "testdata/full.yaml"`},

		// tls.on_demand.
		{"on demand with only a rate limit", withRoutes("tls: {on_demand: {rate_limit: 5}}", route),
			`config: tls.on_demand: needs allow or ask (refusing to issue certificates for any name)`},
		{"on demand with only a rate window", withRoutes("tls: {on_demand: {rate_window: 1h}}", route),
			`config: tls.on_demand: needs allow or ask (refusing to issue certificates for any name)`},
		{"empty on demand section", withRoutes("tls: {on_demand: {}}", route),
			`config: tls.on_demand: needs allow or ask (refusing to issue certificates for any name)`},
		{"on demand bad allow", withRoutes("tls: {on_demand: {allow: [ok.com, 'a.*.com']}}", route),
			`config: tls.on_demand.allow[1]: invalid name "a.*.com": "*" is only allowed as the whole first label, as in "*.example.com"`},
		{"on demand ask not a url", withRoutes("tls: {on_demand: {ask: 'localhost:9000/ask'}}", route),
			`config: tls.on_demand.ask: invalid URL "localhost:9000/ask": want an http:// or https:// URL`},
		{"on demand ask without host", withRoutes("tls: {on_demand: {ask: 'http:///ask'}}", route),
			`config: tls.on_demand.ask: invalid URL "http:///ask": missing host`},
		{"on demand ask with fragment", withRoutes("tls: {on_demand: {ask: 'https://a.example/ok#x'}}", route),
			`config: tls.on_demand.ask: invalid URL "https://a.example/ok#x": must not contain a fragment`},
		{"on demand negative rate limit", withRoutes("tls: {on_demand: {allow: [a.com], rate_limit: -1}}", route),
			`config: tls.on_demand.rate_limit: must not be negative, got -1`},
		{"on demand zero rate window", withRoutes("tls: {on_demand: {allow: [a.com], rate_window: 0s}}", route),
			`config: tls.on_demand.rate_window: must be greater than 0, got 0s`},
		{"on demand rate window bare number", withRoutes("tls: {on_demand: {allow: [a.com], rate_window: 60}}", route),
			`config: tls.on_demand.rate_window: want a duration such as "1s" or "500ms", got 60`},

		// http.
		{"bad trusted proxy", withRoutes("http: {trusted_proxies: [10.0.0.0/8, 10.0.0.0/99]}", route),
			`config: http.trusted_proxies[1]: invalid source "10.0.0.0/99": prefix length out of range (want 0-32)`},
		{"max header bytes too small", withRoutes("http: {max_header_bytes: 1024}", route),
			`config: http.max_header_bytes: must be between 4096 and 16777216, got 1024`},
		{"max header bytes too large", withRoutes("http: {max_header_bytes: 16777217}", route),
			`config: http.max_header_bytes: must be between 4096 and 16777216, got 16777217`},
		{"zero read header timeout", withRoutes("http: {read_header_timeout: 0s}", route),
			`config: http.read_header_timeout: must be greater than 0, got 0s`},
		{"negative http idle timeout", withRoutes("http: {idle_timeout: -1s}", route),
			`config: http.idle_timeout: must not be negative, got -1s`},
		{"negative send timeout", withRoutes("http: {send_timeout: -5s}", route),
			`config: http.send_timeout: must not be negative, got -5s`},
		{"zero response header timeout", withRoutes("http: {response_header_timeout: 0s}", route),
			`config: http.response_header_timeout: must be greater than 0, got 0s`},
		{"unknown key in http", withRoutes("http: {trusted_proxy: [10.0.0.1]}", route),
			`config: http: unknown key "trusted_proxy"`},
	}
	expectProblems(t, tests)
}

// TestSectionsValid covers documents that must be accepted.
func TestSectionsValid(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, doc string }{
		{"admin disabled", withRoutes("admin: {listen: ''}", route)},
		{"acme without terminating routes needs no agreement", withRoutes("tls: {ca: letsencrypt}", route)},
		{"internal ca needs no agreement", withRoutes("tls: {ca: internal}", terminating)},
		{"acme with agreement", withRoutes("tls: {ca: letsencrypt, agree_terms: true, email: a@b.c}", terminating)},
		{"eab with another ca", withRoutes("tls: {ca: 'https://acme.example/dir', eab: {key_id: k, mac_key: m}}", route)},
		{"ip default sni", withRoutes("tls: {default_sni: '2001:db8::1'}", route)},
		{"ask with a query", withRoutes("tls: {on_demand: {ask: 'https://auth.example/ok?token=x'}}", route)},
		{"zero rate limit is unlimited", withRoutes("tls: {on_demand: {allow: [a.com], rate_limit: 0}}", route)},
		{"http limits", withRoutes("http: {max_header_bytes: 4096, idle_timeout: 0s, send_timeout: 0s}", route)},
		{"storage directory", withRoutes("tls: {storage: /var/lib/portmux/certs}", terminating)},
		{"redis storage", withRoutes("tls: {storage: 'redis://redis:6379/0'}", terminating)},
		{"redis storage defaults", withRoutes("tls: {storage: 'redis://10.0.0.5'}", terminating)},
		{"redis storage with password and options", withRoutes("tls: {storage: 'rediss://portmux:s3cret@[2001:db8::5]:6380/2?prefix=eu&lock_ttl=30s'}", terminating)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := parse(tt.doc); err != nil {
				t.Errorf("got %v; want nil", err)
			}
		})
	}
}

// TestTrustedRoots checks the content of tls.trusted_roots.
func TestTrustedRoots(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	roots, err := os.ReadFile("testdata/roots.pem")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		content string
		want    string // "" for valid
	}{
		{"root", string(roots), ""},
		{"key then root", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" + string(roots), ""},
		{"only a key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "no PEM CERTIFICATE block in %q"},
		{"garbage certificate", string(roots) + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
			"%q: certificate 2: x509: malformed certificate"},
		{"empty", "", "no PEM CERTIFICATE block in %q"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(dir, string(rune('a'+i))+".pem")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			err := checkRoots(path)
			if tt.want == "" {
				if err != nil {
					t.Errorf("got %v; want nil", err)
				}
				return
			}
			if want := sprintf(tt.want, path); err == nil || err.Error() != want {
				t.Errorf("got %v; want %q", err, want)
			}
		})
	}
}
