package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// spoofed are X-Forwarded-* headers a client makes up.
func spoofed() http.Header {
	return http.Header{
		"X-Forwarded-For":   {"203.0.113.9"},
		"X-Forwarded-Proto": {"https"},
		"X-Forwarded-Host":  {"evil.test"},
		"Forwarded":         {"for=203.0.113.9;proto=https"},
		"X-Real-Ip":         {"203.0.113.9"},
		"X-Forwarded-Port":  {"443"},
		"X-Forwarded-Ssl":   {"on"},
	}
}

// TestE2EL7Headers checks the request headers the upstream gets from an
// untrusted client (http.trusted_proxies empty): X-Forwarded-For/Host/Proto
// and X-Real-IP describe the real client and replace made-up ones, other
// X-Forwarded-* the client sends are dropped, hop-by-hop headers are removed both
// ways, Host is preserved by default and replaced by the upstream's with
// preserve_host: false.
func TestE2EL7Headers(t *testing.T) {
	keep := startL7Backend(t, "keep")
	nokeep := startL7Backend(t, "nokeep")
	pm := startPortmux(t, l7Header("")+fmt.Sprintf(`routes:
  - name: nokeep
    match: {protocol: http, host: [nokeep.test]}
    preserve_host: false
    to: http://%s
  - name: keep
    match: {protocol: http}
    to: http://%s
`, nokeep.Addr(), keep.Addr()))
	hc := newL7Client(t, pm.Addr(), "")

	t.Run("forwarded from the real client", func(t *testing.T) {
		seen, _, err := hc.getSeen("http://web.test:8080/fwd", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "web.test:8080"}
		for k, w := range want {
			if got := joinComma(seen.Header.Values(k)); got != w {
				t.Errorf("upstream got %s %q; want %q", k, got, w)
			}
		}
		if seen.Backend != "keep" || seen.Host != "web.test:8080" {
			t.Errorf("backend %q saw Host %q; want keep with the client's Host web.test:8080", seen.Backend, seen.Host)
		}
	})

	// HTTP/1.1 takes the direct path, h2c net/http's ReverseProxy.
	for _, client := range []struct {
		name string
		c    *l7Client
	}{{"HTTP/1.1", hc}, {"h2c", newH2CClient(t, pm.Addr())}} {
		t.Run("spoofed headers replaced/"+client.name, func(t *testing.T) {
			seen, _, err := client.c.getSeen("http://web.test/spoof", "", spoofed())
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "web.test", "Forwarded": "",
				"X-Real-Ip": "127.0.0.1", "X-Forwarded-Port": "", "X-Forwarded-Ssl": ""}
			for k, w := range want {
				if got := joinComma(seen.Header.Values(k)); got != w {
					t.Errorf("upstream got %s %q; want %q (the client's value must not pass)", k, got, w)
				}
			}
		})
	}

	t.Run("hop-by-hop removed", func(t *testing.T) {
		hop := http.Header{
			"Connection":          {"X-Hop"},
			"X-Hop":               {"secret"},
			"Keep-Alive":          {"timeout=5"},
			"Proxy-Connection":    {"keep-alive"},
			"Proxy-Authorization": {"Basic dXNlcjpwYXNz"},
			"X-End-To-End":        {"yes"},
		}
		// Control: the client really sends them (the backend, dialled directly,
		// sees them).
		direct := newL7Client(t, keep.Addr(), "")
		dseen, _, err := direct.getSeen("http://web.test/hop-direct", "", hop)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization"} {
			if dseen.Header.Get(k) == "" {
				t.Fatalf("control: backend dialled directly did not see %s; the client does not send it", k)
			}
		}

		seen, resp, err := hc.getSeen("http://web.test/hop", "", hop)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization"} {
			if v := seen.Header.Values(k); len(v) != 0 {
				t.Errorf("upstream got hop-by-hop request header %s %q; want it removed", k, v)
			}
		}
		if got := seen.Header.Get("X-End-To-End"); got != "yes" {
			t.Errorf("upstream got X-End-To-End %q; want yes (end-to-end headers pass)", got)
		}
		// Response direction: the backend's hop-by-hop headers stop at portmux.
		for _, k := range []string{"X-Resp-Hop", "Keep-Alive"} {
			if v := resp.Header.Values(k); len(v) != 0 {
				t.Errorf("client got hop-by-hop response header %s %q; want it removed", k, v)
			}
		}
		if got := resp.Header.Get("X-End-To-End"); got != "kept" {
			t.Errorf("client got X-End-To-End %q; want kept", got)
		}
	})

	t.Run("content coding left to the client", func(t *testing.T) {
		// A client that asks for no compression (curl's default) must get
		// none, and its upstream must not be asked for any: a streamed
		// body takes net/http's Transport, which by default asks for gzip
		// on its own and decodes the answer, losing Content-Length and
		// weakening ETags on the way.
		plain := newRecordingClient(t, pm.Addr(), "", func(tr *http.Transport) { tr.DisableCompression = true })
		body := io.MultiReader(strings.NewReader("streamed, "), strings.NewReader("so chunked"))
		resp, got, err := plain.do(http.MethodPost, "http://web.test/coding", "", nil, body)
		if err != nil {
			t.Fatal(err)
		}
		var seen seenRequest
		if err := json.Unmarshal(got, &seen); err != nil {
			t.Fatalf("%s: decoding %q: %v", resp.Status, got, err)
		}
		if seen.TransferEncoding == nil {
			t.Fatalf("control: upstream got the body with Content-Length %d; want it chunked", seen.ContentLength)
		}
		if v := seen.Header.Values("Accept-Encoding"); len(v) != 0 {
			t.Errorf("upstream got Accept-Encoding %q; the client sent none", v)
		}
	})

	t.Run("preserve_host false", func(t *testing.T) {
		seen, _, err := hc.getSeen("http://nokeep.test/nokeep", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		if seen.Backend != "nokeep" {
			t.Fatalf("served by %q; want nokeep", seen.Backend)
		}
		if seen.Host != nokeep.Addr() {
			t.Errorf("upstream got Host %q; want the upstream's own %q", seen.Host, nokeep.Addr())
		}
		if got := seen.Header.Get("X-Forwarded-Host"); got != "nokeep.test" {
			t.Errorf("upstream got X-Forwarded-Host %q; want the client's nokeep.test", got)
		}
	})
}

// TestE2EL7TrustedProxies: with http.trusted_proxies covering the client
// (127.0.0.0/8), its X-Forwarded-* and X-Real-IP are kept, and
// X-Forwarded-For is extended with the client's address.
func TestE2EL7TrustedProxies(t *testing.T) {
	keep := startL7Backend(t, "keep")
	pm := startOneRouteWith(t, "http: {trusted_proxies: [127.0.0.0/8]}\n", "keep", keep)
	hc := newL7Client(t, pm.Addr(), "")

	seen, _, err := hc.getSeen("http://web.test/trusted", "", spoofed())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"X-Forwarded-For": "203.0.113.9, 127.0.0.1", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.test",
		"X-Real-Ip": "203.0.113.9", "X-Forwarded-Port": "443", "X-Forwarded-Ssl": "on"}
	for k, w := range want {
		if got := joinComma(seen.Header.Values(k)); got != w {
			t.Errorf("upstream got %s %q; want %q", k, got, w)
		}
	}

	seen, _, err = hc.getSeen("http://web.test/trusted-plain", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http", "X-Forwarded-Host": "web.test"}
	for k, w := range want {
		if got := joinComma(seen.Header.Values(k)); got != w {
			t.Errorf("without headers of its own: upstream got %s %q; want %q", k, got, w)
		}
	}
}
