package mux

import (
	"net/netip"
	"net/url"
	"strings"
	"testing"
)

func TestRoutingPath(t *testing.T) {
	tests := []struct {
		in      string
		escaped bool
		want    string
	}{
		{"/admin/", false, "/admin/"},
		{"/x/../admin/", false, "/admin/"},
		{"//admin/", false, "/admin/"},
		{"/./admin", false, "/admin"},
		{"/admin/./x/", false, "/admin/x/"},
		{"/a/b/..", false, "/a/"},
		{"/a/.", false, "/a/"},
		{"/..", false, "/"},
		{"/../../etc", false, "/etc"},
		{"/.well-known/acme-challenge/t", false, "/.well-known/acme-challenge/t"},
		{"/a..b/c.", false, "/a..b/c."},
		// Escaped (a request line): decoded first, so encoded dots and
		// slashes resolve as the upstream would read them.
		{"/%61dmin/", true, "/admin/"},
		{"/x/%2e%2e/admin", true, "/admin"},
		{"/x/..%2fadmin/", true, "/admin/"},
		{"/x/%2E%2E%2Fadmin", true, "/admin"},
		{"/bad%zz/../admin", true, "/admin"}, // not decodable: resolved as is
		// Decoded already (net/http's URL.Path): a "%" is a character.
		{"/100%25/x", false, "/100%25/x"},
		{"", false, ""},
		{"*", false, "*"},
	}
	for _, tt := range tests {
		if got := routingPath(tt.in, tt.escaped); got != tt.want {
			t.Errorf("routingPath(%q, %v): got %q; want %q", tt.in, tt.escaped, got, tt.want)
		}
	}
}

// Paths with nothing to resolve, the common case, cost nothing per request.
func TestRoutingPathAllocations(t *testing.T) {
	for _, p := range []string{"/api/v1/users", "/.well-known/acme-challenge/t", "/static/"} {
		if n := testing.AllocsPerRun(100, func() { routingPath(p, true) }); n != 0 {
			t.Errorf("routingPath(%q): %v allocations; want 0", p, n)
		}
	}
}

// A route that refuses a client on /admin cannot be passed by a path that
// an upstream resolves to /admin: such a path is routed as /admin.
func TestLookupHTTPDotSegments(t *testing.T) {
	table := NewTable([]Route{
		{Name: "admin", Match: Match{Protocols: []Protocol{HTTP}, Path: []string{"/admin"}}},
		{Name: "web", Match: Match{Protocols: []Protocol{HTTP}}},
	})
	client := netip.MustParseAddrPort("192.0.2.1:1234")
	for _, p := range []string{"/admin/", "/x/../admin/", "//admin/x", "/./admin", "/admin/../admin/x"} {
		if got := routeName(table.LookupHTTP("a.test", p, client, nil)); got != "admin" {
			t.Errorf("LookupHTTP(%q): route %q; want admin", p, got)
		}
	}
	for _, p := range []string{"/admin/../x", "/x/admin", "/adminx"} {
		if got := routeName(table.LookupHTTP("a.test", p, client, nil)); got != "web" {
			t.Errorf("LookupHTTP(%q): route %q; want web", p, got)
		}
	}
}

// FuzzRoutingPath: what routingPath gives a rooted path is rooted, has no
// empty, "." or ".." segment, keeps a final slash, and is its own routing
// path; decoding first gives the same as routing the decoded path.
func FuzzRoutingPath(f *testing.F) {
	for _, s := range []string{"/", "/admin/", "/x/../admin/", "//a//b/", "/./a/.", "/%2e%2e/%2F/x", "/a/b/../../..", "/.well-known/x", "/%zz/../a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !strings.HasPrefix(p, "/") {
			return
		}
		r := routingPath(p, false)
		if !strings.HasPrefix(r, "/") {
			t.Fatalf("routingPath(%q) = %q: not rooted", p, r)
		}
		for i, seg := range strings.Split(strings.TrimSuffix(r[1:], "/"), "/") {
			if r != "/" && (seg == "" || seg == "." || seg == "..") {
				t.Fatalf("routingPath(%q) = %q: segment %d is %q", p, r, i, seg)
			}
		}
		if strings.HasSuffix(p, "/") && !strings.HasSuffix(r, "/") {
			t.Fatalf("routingPath(%q) = %q: lost the final slash", p, r)
		}
		if again := routingPath(r, false); again != r {
			t.Fatalf("routingPath(%q) = %q, but routingPath of that is %q", p, r, again)
		}
		if d, err := url.PathUnescape(p); err == nil {
			if got, want := routingPath(p, true), routingPath(d, false); got != want {
				t.Fatalf("routingPath(%q, escaped) = %q; want %q, that of the decoded path", p, got, want)
			}
		}
	})
}

func TestStripPathPrefix(t *testing.T) {
	tests := []struct {
		prefixes     []string
		path         string
		rest, prefix string
		ok           bool
	}{
		{[]string{"/api/"}, "/api/users", "/users", "/api", true},
		{[]string{"/api"}, "/api", "/", "/api", true},
		{[]string{"/api/"}, "/api/", "/", "/api", true},
		{[]string{"/api"}, "/apix/y", "/apix/y", "", false},
		{[]string{"/v1", "/api"}, "/api/v1/x", "/v1/x", "/api", true},
		{[]string{"/api"}, "/x/../api//users/", "/users/", "/api", true}, // as routed
		{[]string{"/", "/api"}, "/api/users", "/api/users", "", false},   // "/" strips nothing
	}
	for _, tt := range tests {
		rest, prefix, ok := StripPathPrefix(tt.prefixes, tt.path)
		if rest != tt.rest || prefix != tt.prefix || ok != tt.ok {
			t.Errorf("StripPathPrefix(%q, %q) = %q, %q, %v; want %q, %q, %v", tt.prefixes, tt.path, rest, prefix, ok, tt.rest, tt.prefix, tt.ok)
		}
	}
}
