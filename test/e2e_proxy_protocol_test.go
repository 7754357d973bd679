package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// TestE2EProxyProtocolIn: behind a trusted load balancer that sends PROXY
// headers (written by go-proxyproto, as HAProxy's send-proxy and
// send-proxy-v2 do), the header's client is the client: in the upstream's
// X-Forwarded-For and in the connection log. Without a header, or with a
// v1 line sent in two pieces, the connection is refused and logged.
func TestE2EProxyProtocolIn(t *testing.T) {
	backend := startL7Backend(t, "app")
	pm := startOneRouteWith(t, "proxy_protocol: {trusted: [127.0.0.1/32]}\n", "app", backend)

	for _, version := range []byte{1, 2} {
		t.Run(fmt.Sprintf("v%d header", version), func(t *testing.T) {
			client := fmt.Sprintf("198.51.100.%d:4242", version)
			getBehindBalancer(t, pm.Addr(), version, client)
			l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "connection" && l.Str("client") == client }, 10*time.Second)
			checkFields(t, l, map[string]string{"route": "app", "outcome": "ok"})
		})
	}

	for name, parts := range map[string][]string{
		"no header":           {"GET /pp HTTP/1.1\r\nHost: web.test\r\n\r\n"},
		"v1 header in pieces": {"PROXY TCP4 198.51.100.9 ", "127.0.0.1 4242 80\r\nGET /pp HTTP/1.1\r\nHost: web.test\r\n\r\n"},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := dialTCP(pm.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			local := c.LocalAddr().String()
			for i, part := range parts {
				if i > 0 {
					time.Sleep(50 * time.Millisecond) // a separate segment
				}
				c.Write([]byte(part))
			}
			if got, err := waitClosed(c, 10*time.Second); err != nil || len(got) != 0 {
				t.Fatalf("read %q, %v; want the connection closed without a byte", got, err)
			}
			pm.WaitLog(t, func(l logLine) bool {
				return l.Msg() == "connection refused" && l.Str("reason") == "proxy_header" && l.Str("client") == local
			}, 10*time.Second)
		})
	}
	if n := backend.Hits(); n != 2 {
		t.Errorf("backend got %d requests; want the 2 with a valid header", n)
	}
}

// getBehindBalancer sends GET /pp on a new connection that starts with a
// PROXY header (version 1 or 2) naming client, and checks that the
// upstream's X-Forwarded-For names client's IP.
func getBehindBalancer(t *testing.T, addr string, version byte, client string) {
	t.Helper()
	c, err := dialTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	src, _ := net.ResolveTCPAddr("tcp", client)
	if _, err := proxyproto.HeaderProxyFromAddrs(version, src, c.RemoteAddr()).WriteTo(c); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /pp HTTP/1.1\r\nHost: web.test\r\nConnection: close\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("response behind a v%d header: %v", version, err)
	}
	body, _ := io.ReadAll(resp.Body)
	var seen seenRequest
	if err := json.Unmarshal(body, &seen); err != nil {
		t.Fatalf("%s: decoding %q: %v", resp.Status, body, err)
	}
	if got := seen.Header.Get("X-Forwarded-For"); got != src.IP.String() {
		t.Errorf("upstream got X-Forwarded-For %q; want the header's client %s", got, src.IP)
	}
}

// TestE2EOpsReloadAdmission: limits and proxy_protocol change on reload,
// for the connections accepted afterwards; a connection open across the
// reload (an echo session: the reload ends idle HTTP keep-alive) goes on
// and still counts against the limits.
func TestE2EOpsReloadAdmission(t *testing.T) {
	backend := startL7Backend(t, "app")
	config := func(version int, extra string) string {
		return fmt.Sprintf("# version %d\n", version) + l7Header(extra) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: http}
    to: http://%s
  - name: echo
    match: {protocol: unknown}
    to: builtin:echo
`, backend.Addr())
	}
	pm := startOpsPM(t, config(0, "limits: {max_conns_per_ip: 1}\n"))

	held, err := dialTCP(pm.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	held.SetDeadline(time.Now().Add(time.Minute))
	echo := func(when string) {
		t.Helper()
		line := "{held " + when + "}\n"
		if err := opsEchoExact(held, []byte(line)); err != nil {
			t.Fatalf("echo session %s: %v", when, err)
		}
	}
	echo("before the reload")
	refused := func(when string) {
		t.Helper()
		c, err := dialTCP(pm.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got, err := waitClosed(c, 10*time.Second); err != nil || len(got) != 0 {
			t.Fatalf("%s: read %q, %v; want the connection refused", when, got, err)
		}
		pm.WaitLog(t, func(l logLine) bool {
			return l.Msg() == "connection refused" && l.Str("client") == c.LocalAddr().String()
		}, 10*time.Second)
	}
	refused("a second connection under max_conns_per_ip 1")

	pm.Reload(t, config(1, "limits: {max_conns_per_ip: 2}\nproxy_protocol: {trusted: [127.0.0.1/32], optional: true}\n"), true, nil)
	if n := pm.Count(func(l logLine) bool { return l.Msg() == "setting changed: it applies after a restart" }); n != 0 {
		t.Errorf("%d restart-only warnings; limits and proxy_protocol apply on reload", n)
	}
	echo("after the reload")
	getBehindBalancer(t, pm.Addr(), 2, "198.51.100.20:4242")
	c, err := dialTCP(pm.Addr()) // the second of 127.0.0.1's two, without a header
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "GET /second HTTP/1.1\r\nHost: web.test\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("second connection under max_conns_per_ip 2: %v", err)
	}
	refused("a third connection under max_conns_per_ip 2, the one held across the reload counted")
}
