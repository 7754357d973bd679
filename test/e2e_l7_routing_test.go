package test

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestE2EL7HostRoutingOneConnection: each request is routed by its own Host,
// not by the connection's first one. One keep-alive connection (one TCP
// connection, proven by the client's dials and by portmux's single connection
// line) alternates Host a.test and b.test; each request reaches its backend.
func TestE2EL7HostRoutingOneConnection(t *testing.T) {
	a := startL7Backend(t, "a")
	b := startL7Backend(t, "b")
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: route-a
    match: {protocol: http, host: [a.test]}
    to: http://%s
  - name: route-b
    match: {protocol: http, host: [b.test]}
    to: http://%s
`, a.Addr(), b.Addr()))
	hc := newL7Client(t, pm.Addr(), "")
	hc.Tr.MaxConnsPerHost = 1

	const n = 10
	for i := 0; i < n; i++ {
		host, want := "a.test", "a"
		if i%2 == 1 {
			host, want = "b.test", "b"
		}
		path := fmt.Sprintf("/one-conn/%d", i)
		// The URL's host is the same for all: one pool key, one connection.
		seen, _, err := hc.getSeen("http://portmux.test"+path, host, nil)
		if err != nil {
			t.Fatalf("request %d (Host %s): %v", i, host, err)
		}
		if seen.Backend != want || seen.Host != host {
			t.Errorf("request %d (Host %s): served by %q with Host %q; want %q", i, host, seen.Backend, seen.Host, want)
		}
		rl := pm.WaitLog(t, requestLog(path), 10*time.Second)
		checkFields(t, rl, map[string]string{"route": "route-" + want, "host": host})
	}
	if a.Hits() != n/2 || b.Hits() != n/2 {
		t.Errorf("backend a got %d, b got %d requests; want %d each", a.Hits(), b.Hits(), n/2)
	}
	hc.Tr.CloseIdleConnections()
	locals := hc.Locals()
	if len(locals) != 1 {
		t.Fatalf("client opened %d connections; want 1", len(locals))
	}
	pm.WaitLog(t, connOf(locals[0]), 10*time.Second)
	pm.Stop(t) // every line written
	conns := pm.Find(func(l logLine) bool { return l.Msg() == "connection" })
	if len(conns) != 1 {
		t.Errorf("%d connection lines; want 1 (one TCP connection)", len(conns))
	}
	for _, l := range conns {
		t.Logf("connection line: %s", l.Raw)
	}
}

// TestE2EL7PathRouting: match.path prefixes by whole segments, per request,
// also on one keep-alive connection.
func TestE2EL7PathRouting(t *testing.T) {
	api := startL7Backend(t, "api")
	web := startL7Backend(t, "web")
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: api
    match: {protocol: http, path: [/api]}
    to: http://%s
  - name: web
    match: {protocol: http}
    to: http://%s
`, api.Addr(), web.Addr()))
	hc := newL7Client(t, pm.Addr(), "")
	hc.Tr.MaxConnsPerHost = 1
	for _, tc := range []struct{ path, want string }{
		{"/api", "api"},
		{"/index.html", "web"},
		{"/api/v1/users", "api"},
		{"/apix", "web"},
		{"/api/", "api"},
		{"/API/upper", "web"},
		{"/", "web"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			seen, _, err := hc.getSeen("http://paths.test"+tc.path, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			if seen.Backend != tc.want || seen.Path != tc.path {
				t.Errorf("%s: served by %q (path %q); want %q", tc.path, seen.Backend, seen.Path, tc.want)
			}
			rl := pm.WaitLog(t, requestLog(tc.path), 10*time.Second)
			checkFields(t, rl, map[string]string{"route": tc.want})
		})
	}
	if n := len(hc.Locals()); n != 1 {
		t.Errorf("client opened %d connections; want 1", n)
	}
}

// TestE2EL7StripPrefix: strip_prefix forwards the path below the match.path
// prefix the request fell under (after the target's base path), with the
// query, and names the prefix in X-Forwarded-Prefix (a client's own value is
// replaced, and dropped on other routes: it is not a trusted proxy); the
// access log keeps the client's path. The path is the one
// routing saw: "/x/../api/v1" is stripped as "/api/v1". Other routes forward
// paths as sent. Over HTTP/1.1 and h2c.
func TestE2EL7StripPrefix(t *testing.T) {
	api := startL7Backend(t, "api")
	web := startL7Backend(t, "web")
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: api
    match: {protocol: http, path: [/api/]}
    strip_prefix: true
    to: http://%s
  - name: app
    match: {protocol: http, path: [/app]}
    strip_prefix: true
    to: http://%s/base
  - name: web
    match: {protocol: http}
    to: http://%s
`, api.Addr(), web.Addr(), web.Addr()))

	type want struct{ backend, path, query, prefix string }
	cases := []struct {
		path string
		want want
	}{
		{"/api/users?x=1", want{"api", "/users", "x=1", "/api"}},
		{"/api", want{"api", "/", "", "/api"}},
		{"/app/page", want{"web", "/base/page", "", "/app"}},
		{"/index.html", want{"web", "/index.html", "", ""}},
	}
	check := func(t *testing.T, seen seenRequest, w want) {
		t.Helper()
		got := want{seen.Backend, seen.Path, seen.Query, seen.Header.Get("X-Forwarded-Prefix")}
		if got != w {
			t.Errorf("upstream saw %+v; want %+v", got, w)
		}
	}
	for _, client := range []struct {
		name string
		c    *l7Client
	}{{"HTTP/1.1", newL7Client(t, pm.Addr(), "")}, {"h2c", newH2CClient(t, pm.Addr())}} {
		t.Run(client.name, func(t *testing.T) {
			for _, tc := range cases {
				seen, _, err := client.c.getSeen("http://strip.test"+tc.path, "", http.Header{"X-Forwarded-Prefix": {"/spoofed"}})
				if err != nil {
					t.Fatalf("GET %s: %v", tc.path, err)
				}
				check(t, seen, tc.want)
			}
		})
	}

	t.Run("dot segments", func(t *testing.T) {
		c, br := rawDial(t, pm.Addr())
		before := len(api.Seen())
		if resp := rawGet(t, c, br, "strip.test", "/x/../api/v1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /x/../api/v1: %s", resp.Status)
		}
		check(t, api.Seen()[before], want{"api", "/v1", "", "/api"})
	})

	l := pm.WaitLog(t, requestLog("/api/users"), 10*time.Second)
	checkFields(t, l, map[string]string{"route": "api"})
}
