package test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestE2EHTTP sends real net/http requests through portmux to the HTTP backend.
func TestE2EHTTP(t *testing.T) {
	w := startWorld(t, worldOpts{})
	hc := newHTTPClient(t, w.PM.Addr())

	t.Run("GET", func(t *testing.T) {
		if err := getHello(hc, "web.test"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("POST 1MB", func(t *testing.T) {
		if err := postEcho(hc, "web.test", 31, 1<<20+7); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("POST empty", func(t *testing.T) {
		if err := postEcho(hc, "web.test", 32, 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("log", func(t *testing.T) {
		hc.tr.CloseIdleConnections()
		locals := hc.Locals()
		if len(locals) == 0 {
			t.Fatal("no client connection recorded")
		}
		for _, local := range locals {
			l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
			checkFields(t, l, map[string]string{"protocol": "http", "route": "web", "outcome": "ok"})
		}
	})
}

// lineEndsConfig routes Host api.test to api and every other HTTP request
// to web, both at layer 7: portmux reads each connection's Host to route
// it, as any config with host routes does.
func lineEndsConfig(api, web *l7Backend) string {
	return l7Header("") + fmt.Sprintf(`routes:
  - name: api
    match: {protocol: http, host: [api.test]}
    to: http://%s
  - name: web
    match: {protocol: http}
    to: http://%s
`, api.Addr(), web.Addr())
}

// sendAll writes raw on a new connection to addr, half-closes it as
// `printf ... | nc -N` does, and reads every response until portmux
// closes. It returns them with their bodies and the connection's local
// address.
func sendAll(t *testing.T, addr, raw string) ([]*http.Response, []string, string) {
	t.Helper()
	c, br := rawDial(t, addr)
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if err := closeWrite(c); err != nil {
		t.Fatal(err)
	}
	var resps []*http.Response
	var bodies []string
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resps, bodies = append(resps, resp), append(bodies, string(b))
	}
	return resps, bodies, c.LocalAddr().String()
}

// TestE2EHTTPLineEnds: requests as manual checks and old clients send
// them, which nginx serves: bare LF line ends (RFC 9112 §2.2 lets a
// server take them; `printf 'GET / HTTP/1.0\n\n' | nc -N` is the usual
// check), empty lines before a request line (a server SHOULD ignore at
// least one), including the CRLF some clients send after a POST's body
// before their next, pipelined, request. Each is routed by its Host and
// answered by the upstream, and the connection's line says ok.
func TestE2EHTTPLineEnds(t *testing.T) {
	api, web := startL7Backend(t, "api"), startL7Backend(t, "web")
	pm := startPortmux(t, lineEndsConfig(api, web))
	for _, tc := range []struct {
		name, raw string
		backends  []string // X-Backend-Name of each response, in order
		route     string
	}{
		{"bare LF, HTTP/1.0 without Host", "GET /head HTTP/1.0\n\n", []string{"web"}, "web"},
		{"bare LF with Host", "GET /lf HTTP/1.1\nHost: api.test\nConnection: close\n\n", []string{"api"}, "api"},
		{"empty line first", "\r\nGET /crlf HTTP/1.1\r\nHost: api.test\r\n\r\n", []string{"api"}, "api"},
		{"empty LF lines first", "\n\nGET /lflf HTTP/1.1\nHost: api.test\n\n", []string{"api"}, "api"},
		{"POST, CRLF, pipelined GET", "POST /sink HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhello\r\n" +
			"GET /after HTTP/1.1\r\nHost: api.test\r\n\r\n", []string{"api", "api"}, "api"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resps, bodies, local := sendAll(t, pm.Addr(), tc.raw)
			if len(resps) != len(tc.backends) {
				t.Fatalf("got %d responses %q; want %d", len(resps), bodies, len(tc.backends))
			}
			for i, resp := range resps {
				if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend-Name") != tc.backends[i] {
					t.Errorf("response %d: %s from %q (%q); want 200 from %q", i, resp.Status, resp.Header.Get("X-Backend-Name"), bodies[i], tc.backends[i])
				}
			}
			l := pm.WaitLog(t, connOf(local), 10*time.Second)
			checkFields(t, l, map[string]string{"protocol": "http", "route": tc.route, "outcome": "ok"})
		})
	}
}
