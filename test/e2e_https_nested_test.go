package test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestE2EHTTPSSSHInsideTLS: a terminating route re-sniffs the decrypted stream.
// A real SSH client speaking over a tls.Conn (no ALPN) reaches the nested ssh
// route's server and runs a command; an h2 client on the same route still
// reaches the HTTP target.
func TestE2EHTTPSSSHInsideTLS(t *testing.T) {
	backend := startL7Backend(t, "app")
	sshd := startSSHServer(t)
	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%s
    routes:
      - name: ssh-in-tls
        match: {protocol: ssh}
        to: %s
`, backend.Addr(), sshd.Addr())
	pm := startPortmux(t, yaml)
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := poolFromPEM(t, portmuxTrust(t, yaml))

	t.Run("ssh", func(t *testing.T) {
		tc, local, err := tlsDial(pm.Addr(), &tls.Config{ServerName: "localhost", RootCAs: roots})
		if err != nil {
			t.Fatalf("TLS handshake: %v", err)
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(60 * time.Second)) // hang guard
		sc, chans, reqs, err := ssh.NewClientConn(tc, pm.Addr(), &ssh.ClientConfig{
			User:            sshUser,
			Auth:            []ssh.AuthMethod{ssh.Password(sshPassword)},
			HostKeyCallback: ssh.FixedHostKey(sshd.HostKey),
			Timeout:         10 * time.Second,
		})
		if err != nil {
			t.Fatalf("SSH handshake inside TLS: %v", err)
		}
		client := ssh.NewClient(sc, chans, reqs)
		var out bytes.Buffer
		in := "hello through TLS then SSH\n"
		if _, err := sshRun(client, "cat", strings.NewReader(in), &out); err != nil {
			t.Fatalf("ssh cat: %v", err)
		}
		if out.String() != in {
			t.Errorf("cat echoed %q; want %q", out.String(), in)
		}
		if err := sshGen(client, 1<<20+11); err != nil {
			t.Errorf("ssh gen 1 MiB inside TLS: %v", err)
		}
		client.Close()
		cl := pm.WaitLog(t, connOf(local), 10*time.Second)
		checkFields(t, cl, map[string]string{"protocol": "tls", "route": "app", "sni": "localhost",
			"inner_protocol": "ssh", "inner_route": "ssh-in-tls", "backend": sshd.Addr(), "outcome": "ok"})
	})

	t.Run("h2 on the same route", func(t *testing.T) {
		c := newHTTPSClient(t, pm.Addr(), roots, true)
		seen, resp, err := c.getSeen("https://localhost:" + portOf(t, pm.Addr()) + "/beside-ssh")
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || seen.Backend != "app" {
			t.Errorf("proto %s backend %q; want HTTP/2 from app", resp.Proto, seen.Backend)
		}
	})
}

// TestE2EHTTPSRedirectHTTP: with redirect_http, a plain HTTP request to the same
// port for one of the route's names gets a 308 to https on that port, path and
// query kept; the backend sees nothing, also from an h2c client while a
// relayed route follows. On http_listen, whose port speaks no TLS, the
// redirect goes to the default HTTPS port instead.
func TestE2EHTTPSRedirectHTTP(t *testing.T) {
	backend := startL7Backend(t, "app")
	plainAddr := closedPort(t)
	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\nhttp_listen: %q\n", certStorage(t), plainAddr)) + fmt.Sprintf(`routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    redirect_http: true
    to: http://%s
  - name: other-plain
    match: {protocol: http}
    to: %s
`, backend.Addr(), backend.Addr())
	pm := startPortmux(t, yaml)
	port := portOf(t, pm.Addr())
	hc := newL7Client(t, pm.Addr(), "")

	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			resp, body, err := hc.do(method, "http://localhost:"+port+"/some/path?q=1", "", nil, strings.NewReader("x"))
			if err != nil {
				t.Fatalf("plain %s: %v", method, err)
			}
			want := "https://localhost:" + port + "/some/path?q=1"
			if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
				t.Errorf("got %s Location %q (body %q); want 308 Location %q", resp.Status, resp.Header.Get("Location"), body, want)
			}
		})
	}
	t.Run("h2c", func(t *testing.T) {
		// No Host before the first request: the connection goes to the
		// HTTP server (which redirects by each request's :authority), not
		// to the relayed route after the redirect.
		resp, body, err := newH2CClient(t, pm.Addr()).do(http.MethodGet, "http://localhost:"+port+"/some/path?q=1", "", nil, nil)
		if err != nil {
			t.Fatalf("h2c GET: %v", err)
		}
		want := "https://localhost:" + port + "/some/path?q=1"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("got %s Location %q (body %q); want 308 Location %q", resp.Status, resp.Header.Get("Location"), body, want)
		}
	})
	t.Run("on http_listen", func(t *testing.T) {
		plain := newL7Client(t, plainAddr, "")
		resp, body, err := plain.do(http.MethodGet, "http://localhost:"+portOf(t, plainAddr)+"/some/path?q=1", "", nil, nil)
		if err != nil {
			t.Fatalf("plain GET on http_listen: %v", err)
		}
		const want = "https://localhost/some/path?q=1"
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
			t.Errorf("got %s Location %q (body %q); want 308 Location %q", resp.Status, resp.Header.Get("Location"), body, want)
		}
	})
	if backend.Hits() != 0 {
		t.Errorf("backend got %d plain request(s); want 0 (redirected)", backend.Hits())
	}

	// The redirect target works.
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := poolFromPEM(t, portmuxTrust(t, yaml))
	c := newHTTPSClient(t, pm.Addr(), roots, true)
	if _, _, err := c.getSeen("https://localhost:" + port + "/some/path?q=1"); err != nil {
		t.Errorf("following the redirect: %v", err)
	}
}

// TestE2EHTTPSNestedTCPByHost: inside terminated TLS, relayed (mode tcp)
// routes chosen by Host. An HTTP/1.1 client, with ALPN or without (as
// openssl s_client), reaches the route of the Host it sends, each host its
// own backend. An HTTP/2 client has no Host to route by at connection
// level: no relayed host route takes it (it is not sent to the first one).
func TestE2EHTTPSNestedTCPByHost(t *testing.T) {
	a, b := startL7Backend(t, "a"), startL7Backend(t, "b")
	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + fmt.Sprintf(`routes:
  - name: site
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    alpn: [h2, http/1.1] # h2 too, which by default a relaying route does not offer
    routes:
      - name: tcp-a
        match: {protocol: http, host: [a.test]}
        to: %s
      - name: tcp-b
        match: {protocol: http, host: [b.test]}
        to: %s
`, a.Addr(), b.Addr())
	pm := startPortmux(t, yaml)
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := poolFromPEM(t, portmuxTrust(t, yaml))
	base := "https://localhost:" + portOf(t, pm.Addr())

	t.Run("HTTP/1.1 with ALPN", func(t *testing.T) {
		c := newHTTPSClient(t, pm.Addr(), roots, false)
		for _, host := range []string{"b.test", "a.test"} {
			seen, _, err := c.l7Client.getSeen(base+"/by-alpn", host, nil)
			if err != nil {
				t.Fatalf("Host %s: %v", host, err)
			}
			if want := strings.TrimSuffix(host, ".test"); seen.Backend != want {
				t.Errorf("Host %s reached backend %q; want %q", host, seen.Backend, want)
			}
			c.Tr.CloseIdleConnections() // a relayed connection keeps its first route
		}
	})
	t.Run("HTTP/1.1 without ALPN", func(t *testing.T) {
		tc, _, err := tlsDial(pm.Addr(), &tls.Config{ServerName: "localhost", RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		defer tc.Close()
		tc.SetDeadline(time.Now().Add(30 * time.Second))
		resp := rawGet(t, tc, bufio.NewReader(tc), "b.test", "/no-alpn", "Connection: close")
		if got := resp.Header.Get("X-Backend-Name"); got != "b" {
			t.Errorf("Host b.test reached backend %q; want b", got)
		}
	})
	t.Run("HTTP/2", func(t *testing.T) {
		c := newHTTPSClient(t, pm.Addr(), roots, true)
		if _, _, err := c.getSeen(base + "/over-h2"); err == nil {
			t.Fatal("an HTTP/2 request was served; want no route to take the connection")
		}
		l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "connection" && l.Str("alpn_negotiated") == "h2" }, 10*time.Second)
		checkFields(t, l, map[string]string{"outcome": "no_route", "inner_route": ""})
	})
}
