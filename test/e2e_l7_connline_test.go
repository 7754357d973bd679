package test

import (
	"fmt"
	"testing"
	"time"
)

// TestE2EL7ConnectionLineRoute: the connection line of an HTTP connection
// names the route of its first request, also when the connection was handed
// over before any request was read (h2 and HTTP/1.1 inside terminated TLS,
// h2c), when portmux could only take the first HTTP route as a guess; and
// whether that route proxies or serves the request itself (builtin:demo).
func TestE2EL7ConnectionLineRoute(t *testing.T) {
	a, b := startL7Backend(t, "a"), startL7Backend(t, "b")
	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + fmt.Sprintf(`routes:
  - name: site
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    routes:
      - name: site-a
        match: {protocol: http, host: [a.test]}
        to: http://%[1]s
      - name: site-b
        match: {protocol: http, host: [b.test]}
        to: http://%[2]s
      - name: site-demo
        match: {protocol: http, host: [demo.test]}
        to: builtin:demo
  - name: web-a
    match: {protocol: http, host: [a.test]}
    to: http://%[1]s
  - name: web-b
    match: {protocol: http, host: [b.test]}
    to: http://%[2]s
  - name: web-demo
    match: {protocol: http, host: [demo.test]}
    to: builtin:demo
`, a.Addr(), b.Addr())
	pm := startPortmux(t, yaml)
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := poolFromPEM(t, portmuxTrust(t, yaml))
	https, plain := "https://localhost:"+portOf(t, pm.Addr()), "http://"+pm.Addr()

	for _, tc := range []struct {
		name   string
		client func() *l7Client
		base   string
		field  string // the log field that names the first request's route
		prefix string // that route's name, less the first request's host
		want   map[string]string
	}{
		{"h2 over TLS", func() *l7Client { return newHTTPSClient(t, pm.Addr(), roots, true).l7Client }, https,
			"inner_route", "site-", map[string]string{"route": "site", "alpn_negotiated": "h2"}},
		{"HTTP/1.1 over TLS", func() *l7Client { return newHTTPSClient(t, pm.Addr(), roots, false).l7Client }, https,
			"inner_route", "site-", map[string]string{"route": "site", "alpn_negotiated": "http/1.1"}},
		{"h2c", func() *l7Client { return newH2CClient(t, pm.Addr()) }, plain, "route", "web-", map[string]string{}},
		{"HTTP/1.1", func() *l7Client { return newL7Client(t, pm.Addr(), "") }, plain, "route", "web-", map[string]string{}},
	} {
		for _, first := range []string{"b", "demo"} {
			t.Run(tc.name+", first to "+first, func(t *testing.T) {
				client := tc.client()
				for _, host := range []string{first + ".test", "a.test"} { // one connection, two routes
					if host == "demo.test" {
						if resp, body, err := client.do("GET", tc.base+"/first", host, nil, nil); err != nil || resp.StatusCode != 200 {
							t.Fatalf("Host %s: %v %v %q", host, err, resp, body)
						}
					} else if seen, _, err := client.getSeen(tc.base+"/first", host, nil); err != nil || seen.Backend != host[:1] {
						t.Fatalf("Host %s: backend %q, %v", host, seen.Backend, err)
					}
				}
				client.Tr.CloseIdleConnections()
				locals := client.Locals()
				if len(locals) != 1 {
					t.Fatalf("%d connections; want the one", len(locals))
				}
				l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "connection" && l.Str("client") == locals[0] }, 10*time.Second)
				want := map[string]string{"outcome": "ok", tc.field: tc.prefix + first}
				for k, v := range tc.want {
					want[k] = v
				}
				checkFields(t, l, want)
			})
		}
	}
}
