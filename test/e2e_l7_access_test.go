package test

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// dotSegmentPaths reach /admin/ once an upstream such as nginx resolves them
// (dot segments, repeated slashes, escaped dots and slashes); the client
// sends them as is, as `curl --path-as-is` does.
var dotSegmentPaths = []string{"/x/../admin/", "//admin/", "/./admin/", "/x/%2e%2e/admin/", "/x/..%2fadmin/", "/%61dmin/"}

// TestE2EL7PathAccess: allow and deny of an HTTP route apply per request,
// and match.path sees the path as the upstream will. A client that a route
// for /admin refuses gets 403 for /admin/ and for every path that resolves
// to it (first request or later on a keep-alive connection, over the direct
// path, h2c and h2 over TLS), while other paths on the same connection are
// served: over HTTP/2 the connection-level match skips paths, and refusing
// the connection there used to cut the client off every route. A path that
// resolves into a route without access rules reaches that route's upstream,
// forwarded as the client sent it.
func TestE2EL7PathAccess(t *testing.T) {
	admin := startL7Backend(t, "admin")
	api := startL7Backend(t, "api")
	web := startL7Backend(t, "web")
	// The same routes at top level and nested in a terminating route,
	// their names prefixed, their lines indented.
	routes := func(prefix, indent string) string {
		return strings.ReplaceAll(fmt.Sprintf(`
- name: %[4]sadmin
  match: {protocol: http, path: [/admin]}
  deny: [127.0.0.0/8]
  to: http://%[1]s
- name: %[4]sapi
  match: {protocol: http, path: [/api/]}
  to: http://%[2]s
- name: %[4]sweb
  match: {protocol: http}
  to: http://%[3]s`, admin.Addr(), api.Addr(), web.Addr(), prefix), "\n", "\n"+indent)
	}
	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + `routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    routes:` + routes("app-", "      ") + routes("", "  ") + "\n"
	pm := startPortmux(t, yaml)

	refused := append([]string{"/admin/"}, dotSegmentPaths...)

	t.Run("first request", func(t *testing.T) {
		for _, p := range refused {
			c, br := rawDial(t, pm.Addr())
			if resp := rawGet(t, c, br, "a.test", p); resp.StatusCode != http.StatusForbidden {
				t.Errorf("GET %s: %s; want 403", p, resp.Status)
			}
			if resp := rawGet(t, c, br, "a.test", "/index.html"); resp.StatusCode != http.StatusOK {
				t.Errorf("GET /index.html after GET %s: %s; want 200 on the same connection", p, resp.Status)
			}
		}
	})
	t.Run("keep-alive", func(t *testing.T) {
		c, br := rawDial(t, pm.Addr())
		if resp := rawGet(t, c, br, "a.test", "/index.html"); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /index.html: %s; want 200", resp.Status)
		}
		for _, p := range refused {
			if resp := rawGet(t, c, br, "a.test", p); resp.StatusCode != http.StatusForbidden {
				t.Errorf("GET %s: %s; want 403", p, resp.Status)
			}
		}
		before := len(api.Seen())
		rawGet(t, c, br, "a.test", "/x/../api/v1")
		if seen := api.Seen(); len(seen) != before+1 || seen[before].Path != "/x/../api/v1" {
			t.Errorf("GET /x/../api/v1: the api upstream saw %+v; want the path as sent", seen[before:])
		}
	})

	// A '#' in the target: the router would take "/admin#/../x" as /x,
	// nginx as /admin. Refused 400, and the connection closed, on the
	// direct path and on a connection net/http serves (handed over by
	// an absolute-form request); the api route, which nothing protects,
	// is refused as well, lest its upstream see a path it did not send.
	t.Run("fragment in the target", func(t *testing.T) {
		for _, p := range []string{"/admin/secret#/../../x", "/admin#", "/api/#x"} {
			for _, first := range []string{"", "GET http://a.test/index.html HTTP/1.1\r\nHost: a.test\r\n\r\n"} {
				c, br := rawDial(t, pm.Addr())
				if first != "" {
					io.WriteString(c, first)
					if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != http.StatusOK {
						t.Fatalf("absolute-form GET: %v %v", resp, err)
					} else {
						io.Copy(io.Discard, resp.Body)
					}
				}
				resp := rawGet(t, c, br, "a.test", p)
				if resp.StatusCode != http.StatusBadRequest || !resp.Close {
					t.Errorf("GET %s (after %q): %s, close %v; want 400 and the connection closed", p, first, resp.Status, resp.Close)
				}
			}
		}
	})

	h2 := func(t *testing.T, c *l7Client, base string) {
		t.Helper()
		// Opaque paths that start with "//" would be read as an authority.
		for _, p := range append([]string{"/admin/"}, dotSegmentPaths[2:]...) {
			u, _ := url.Parse(base)
			u.Opaque = p
			resp, err := c.Do(&http.Request{Method: http.MethodGet, URL: u, Host: u.Host})
			if err != nil {
				t.Fatalf("GET %s: %v", p, err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || resp.ProtoMajor != 2 {
				t.Errorf("GET %s: %s %s; want HTTP/2 403", p, resp.Proto, resp.Status)
			}
		}
		seen, resp, err := c.getSeen(base+"/index.html", "", nil)
		if err != nil || seen.Backend != "web" || resp.ProtoMajor != 2 {
			t.Errorf("GET /index.html: served by %q over %v, %v; want web over HTTP/2", seen.Backend, resp, err)
		}
		if n := len(c.Locals()); n != 1 {
			t.Errorf("the client opened %d connections; want 1", n)
		}
	}
	t.Run("h2c", func(t *testing.T) {
		hc := newH2CClient(t, pm.Addr())
		h2(t, hc, "http://a.test")
	})
	t.Run("h2 over TLS", func(t *testing.T) {
		pm.WaitLog(t, certObtained("localhost"), time.Minute)
		c := newHTTPSClient(t, pm.Addr(), poolFromPEM(t, portmuxTrust(t, yaml)), true)
		h2(t, c.l7Client, "https://localhost:"+portOf(t, pm.Addr()))
	})

	if n := admin.Hits(); n != 0 {
		t.Errorf("the admin upstream got %d requests; want none", n)
	}
}

// TestE2EL7HostTrailingDot: a Host with the trailing dot of a fully qualified
// name is the same host (nginx serves "admin.test." as admin.test), so the
// route for admin.test takes it and its deny applies: 403 on HTTP/1.1 as
// first or later request, and over h2c.
func TestE2EL7HostTrailingDot(t *testing.T) {
	admin := startL7Backend(t, "admin")
	web := startL7Backend(t, "web")
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: admin
    match: {protocol: http, host: [admin.test]}
    deny: [127.0.0.0/8]
    to: http://%s
  - name: web
    match: {protocol: http}
    to: http://%s
`, admin.Addr(), web.Addr()))
	hosts := []string{"admin.test.", "ADMIN.test.:80"}

	c, br := rawDial(t, pm.Addr())
	for _, h := range append(hosts, "web.test", "admin.test.") {
		want := http.StatusForbidden
		if h == "web.test" {
			want = http.StatusOK
		}
		if resp := rawGet(t, c, br, h, "/"); resp.StatusCode != want {
			t.Errorf("Host %s: %s; want %d", h, resp.Status, want)
		}
	}

	hc := newH2CClient(t, pm.Addr())
	for _, h := range hosts {
		resp, body, err := hc.do(http.MethodGet, "http://"+h+"/", "", nil, nil)
		if err != nil || resp.StatusCode != http.StatusForbidden || resp.ProtoMajor != 2 {
			t.Errorf("h2c :authority %s: %v %q, %v; want HTTP/2 403", h, resp, body, err)
		}
	}
	if n := admin.Hits(); n != 0 {
		t.Errorf("the admin upstream got %d requests; want none", n)
	}
}
