package config

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// FuzzParse checks that parsing never panics, that every rejection is an
// *Error of one-line "config: " problems, and that an accepted config
// validates again.
func FuzzParse(f *testing.F) {
	// The smallest valid document.
	f.Add([]byte(minimal))
	// Every key set.
	if full, err := os.ReadFile("testdata/full.yaml"); err == nil {
		f.Add(full)
	}
	// Empty input: defaults only, then "no routes".
	f.Add([]byte(""))
	// Nulls, single strings where lists are expected, and flow style.
	f.Add([]byte("log:\nlisten: ':1'\nroutes: [{name: a, match: {protocol: tls, sni: '*.A.com'}, to: 'x:1'}]\n"))
	// Wrong types at every level.
	f.Add([]byte("listen: {a: 1}\nsniff_timeout: 3\nsniff_max_bytes: 1.5\nroutes: [1, [2], {match: 3}]\n"))
	// Unknown and non-string keys, duplicate keys, anchors and aliases.
	f.Add([]byte("1: a\n? [x]\n: y\nr: &a {name: b}\nroutes: [*a, *a]\n"))
	// YAML that does not parse, and a document that is a list.
	f.Add([]byte("a: [\n"))
	f.Add([]byte("- a\n- b\n"))
	// HTTP targets, modes and the sections of HTTP routes, with defaults to
	// fill and sections of the wrong type.
	f.Add([]byte("routes: [{name: a, match: {protocol: http, path: [/a]}, upstreams: ['http://x', 'y:1'], mode: tcp, health_check: {path: /}, passive_health: 3}]\n"))
	// A terminating route with nested routes nested again, and on-demand TLS.
	f.Add([]byte("tls: {ca: letsencrypt, on_demand: {}}\nroutes: [{name: t, match: {protocol: tls, sni: ['*.a']}, tls: terminate, routes: [{name: t, tls: terminate, routes: [{}]}]}]\n"))
	// A file path for Validate to read.
	f.Add([]byte("tls: {trusted_roots: /dev/null, storage: rel, email: '@'}\nhttp: {trusted_proxies: x}\nroutes: [{name: a, match: {protocol: any}, to: builtin:echo}]\n"))
	// Strings with newlines and quotes in values and keys.
	f.Add([]byte("\"a\\nb\": 1\nroutes: [{name: \"x\\ny\", to: \"\\\"\"}]\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := load(bytesProvider(data), "", noEnv)
		if err != nil {
			var cerr *Error
			if !errors.As(err, &cerr) {
				t.Fatalf("got %T %v; want *Error", err, err)
			}
			if len(cerr.Problems) == 0 {
				t.Fatal("got an *Error with no problems")
			}
			for _, p := range cerr.Problems {
				if !strings.HasPrefix(p, "config: ") || strings.Contains(p, "\n") {
					t.Errorf("got problem %q; want one line starting with \"config: \"", p)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("accepted config does not validate: %v", err)
		}
	})
}
