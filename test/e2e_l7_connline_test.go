package test

import (
	"fmt"
	"testing"
	"time"
)

// TestE2EL7ConnectionLineRoute: the connection line of an HTTP connection
// names the route of its first request, also when the connection was handed
// over before any request was read (h2 and HTTP/1.1 inside terminated TLS,
// h2c), when portmux could only take the first HTTP route as a guess.
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
  - name: web-a
    match: {protocol: http, host: [a.test]}
    to: http://%[1]s
  - name: web-b
    match: {protocol: http, host: [b.test]}
    to: http://%[2]s
`, a.Addr(), b.Addr())
	pm := startPortmux(t, yaml)
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := poolFromPEM(t, portmuxTrust(t, yaml))
	https, plain := "https://localhost:"+portOf(t, pm.Addr()), "http://"+pm.Addr()

	for _, tc := range []struct {
		name   string
		client *l7Client
		base   string
		want   map[string]string
	}{
		{"h2 over TLS", newHTTPSClient(t, pm.Addr(), roots, true).l7Client, https,
			map[string]string{"route": "site", "inner_route": "site-b", "alpn_negotiated": "h2"}},
		{"HTTP/1.1 over TLS", newHTTPSClient(t, pm.Addr(), roots, false).l7Client, https,
			map[string]string{"route": "site", "inner_route": "site-b", "alpn_negotiated": "http/1.1"}},
		{"h2c", newH2CClient(t, pm.Addr()), plain, map[string]string{"route": "web-b"}},
		{"HTTP/1.1", newL7Client(t, pm.Addr(), ""), plain, map[string]string{"route": "web-b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, host := range []string{"b.test", "a.test"} { // one connection, two routes
				if seen, _, err := tc.client.getSeen(tc.base+"/first", host, nil); err != nil || seen.Backend != host[:1] {
					t.Fatalf("Host %s: backend %q, %v", host, seen.Backend, err)
				}
			}
			tc.client.Tr.CloseIdleConnections()
			locals := tc.client.Locals()
			if len(locals) != 1 {
				t.Fatalf("%d connections; want the one", len(locals))
			}
			l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "connection" && l.Str("client") == locals[0] }, 10*time.Second)
			tc.want["outcome"] = "ok"
			checkFields(t, l, tc.want)
		})
	}
}
