package mux

import (
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestMatchName(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"app.example.com", "app.example.com", true},
		{"app.example.com", "other.example.com", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "a.b.example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "", false},
	}
	for _, tt := range tests {
		if got := matchName([]string{tt.pattern}, tt.name); got != tt.want {
			t.Errorf("matchName(%q, %q): got %v; want %v", tt.pattern, tt.name, got, tt.want)
		}
	}
}

func TestTableLookup(t *testing.T) {
	office := netip.MustParsePrefix("10.1.0.0/16")
	table := NewTable([]Route{
		{Name: "ssh-office", Match: Match{Protocols: []Protocol{SSH}, Source: []netip.Prefix{office}}},
		{Name: "git", Match: Match{Protocols: []Protocol{TLS}, SNI: []string{"git.example.com"}}},
		{Name: "h2", Match: Match{Protocols: []Protocol{TLS}, ALPN: []string{"h2"}}},
		{Name: "wild", Match: Match{Protocols: []Protocol{TLS}, SNI: []string{"*.example.com"}}},
		// A relayed route (mode tcp) by host and by path, then in-process
		// HTTP routes (each request is routed again).
		{Name: "tcp-host", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"tcp.example.com"}}},
		{Name: "tcp-path", Match: Match{Protocols: []Protocol{HTTP}, Path: []string{"/tcp"}}},
		{Name: "api", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"api.example.com"}}, PerRequest: true},
		{Name: "web", Match: Match{Protocols: []Protocol{HTTP}}, PerRequest: true},
		{Name: "ftp", Match: Match{Protocols: []Protocol{Silent}}},
		{Name: "rest", Match: Match{}},
	})
	addr := func(s string) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(s), 5000) }
	tests := []struct {
		name string
		info Info
		want string
	}{
		{"ssh from office", Info{Protocol: SSH, Client: addr("10.1.2.3")}, "ssh-office"},
		{"ssh from office, v4-mapped", Info{Protocol: SSH, Client: addr("::ffff:10.1.2.3")}, "ssh-office"},
		{"ssh from elsewhere falls to catch-all", Info{Protocol: SSH, Client: addr("192.0.2.1")}, "rest"},
		{"exact sni before alpn", Info{Protocol: TLS, SNI: "git.example.com", ALPN: []string{"h2"}}, "git"},
		{"alpn", Info{Protocol: TLS, SNI: "x.other.org", ALPN: []string{"http/1.1", "h2"}}, "h2"},
		{"wildcard sni", Info{Protocol: TLS, SNI: "app.example.com"}, "wild"},
		{"no sni", Info{Protocol: TLS}, "rest"},
		{"http host", Info{Protocol: HTTP, Host: "api.example.com", hostKnown: true}, "api"},
		{"http other host", Info{Protocol: HTTP, Host: "www.example.com", hostKnown: true}, "web"},
		{"http host of a relayed route", Info{Protocol: HTTP, Host: "tcp.example.com", hostKnown: true}, "tcp-host"},
		{"http path of a relayed route", Info{Protocol: HTTP, Host: "x", hostKnown: true, Path: "/tcp/a"}, "tcp-path"},
		// Unknown host and path (h2c): a relayed route cannot check its
		// conditions later and does not take the connection; an
		// in-process one does (its requests are routed one by one).
		{"http host and path not known (h2c)", Info{Protocol: HTTP}, "api"},
		{"silent", Info{Protocol: Silent}, "ftp"},
		{"unknown", Info{Protocol: Unknown}, "rest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := table.Lookup(&tt.info)
			if got == nil || got.Name != tt.want {
				t.Errorf("got %v; want %q", got, tt.want)
			}
		})
	}
	if !table.needHost {
		t.Error("table with a Host route does not read headers")
	}
	if r := NewTable(nil).Lookup(&Info{Protocol: HTTP}); r != nil {
		t.Errorf("empty table matched %q", r.Name)
	}
}

func TestMatchPath(t *testing.T) {
	tests := []struct {
		prefix, path string
		want         bool
	}{
		{"/api", "/api", true},
		{"/api", "/api/v1", true},
		{"/api/", "/api/v1", true},
		{"/api", "/apix", false},
		{"/api", "/", false},
		{"/", "/anything", true},
	}
	for _, tt := range tests {
		if got := matchPath([]string{tt.prefix}, tt.path); got != tt.want {
			t.Errorf("matchPath(%q, %q): got %v; want %v", tt.prefix, tt.path, got, tt.want)
		}
	}
}

func TestLookupRequest(t *testing.T) {
	table := NewTable([]Route{
		{Name: "api", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"*.example.com"}, Path: []string{"/api"}}},
		{Name: "site", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"www.example.com"}}},
		{Name: "ssh", Match: Match{Protocols: []Protocol{SSH}}},
	})
	tests := []struct{ url, want string }{
		{"http://www.example.com:8443/api/x", "api"},
		{"http://WWW.example.com/", "site"},
		{"http://other.test/", ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", tt.url, nil)
		got := table.LookupRequest(r)
		if name := routeName(got); name != tt.want {
			t.Errorf("%s: got %q; want %q", tt.url, name, tt.want)
		}
	}
}

func routeName(r *Route) string {
	if r == nil {
		return ""
	}
	return r.Name
}
