package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestE2EHTTPSOfferedALPN: what a terminating route offers in ALPN follows
// what serves its decrypted stream. A route relaying to an HTTP/1.1 server
// offers http/1.1 alone, so a client that would take HTTP/2 (Go's, curl,
// browsers) speaks HTTP/1.1, which the backend reads; a client that takes
// only h2 fails the handshake. alpn: [h2] relays gRPC over TLS to an h2c
// server. A route served by the reverse proxy still negotiates h2.
func TestE2EHTTPSOfferedALPN(t *testing.T) {
	web, grpcServer := startL7Backend(t, "web"), startGRPCHealth(t, nil)
	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + fmt.Sprintf(`routes:
  - name: relay
    match: {protocol: tls, sni: [relay.test]}
    tls: terminate
    to: %[1]s
  - name: grpc
    match: {protocol: tls, sni: [grpc.test]}
    tls: terminate
    alpn: [h2]
    to: %[2]s
  - name: proxied
    match: {protocol: tls, sni: [proxied.test]}
    tls: terminate
    to: http://%[1]s
`, web.Addr(), grpcServer.addr)
	pm := startPortmux(t, yaml)
	for _, name := range []string{"relay.test", "grpc.test", "proxied.test"} {
		pm.WaitLog(t, certObtained(name), time.Minute)
	}
	roots := poolFromPEM(t, portmuxTrust(t, yaml))
	port := portOf(t, pm.Addr())

	t.Run("relayed HTTP/1.1 backend", func(t *testing.T) {
		c := newHTTPSClient(t, pm.Addr(), roots, true) // offers h2 and http/1.1
		seen, resp, err := c.getSeen("https://relay.test:" + port + "/relayed")
		if err != nil {
			t.Fatalf("GET through the relaying route: %v", err)
		}
		if resp.Proto != "HTTP/1.1" || seen.Proto != "HTTP/1.1" || seen.Backend != "web" {
			t.Errorf("client spoke %s, backend %q got %s; want HTTP/1.1 end to end", resp.Proto, seen.Backend, seen.Proto)
		}
		c.Tr.CloseIdleConnections()
		l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "connection" && l.Str("route") == "relay" }, 10*time.Second)
		checkFields(t, l, map[string]string{"alpn_negotiated": "http/1.1", "backend": web.Addr(), "outcome": "ok"})
	})

	t.Run("h2-only client to a relaying route", func(t *testing.T) {
		_, local, err := tlsDial(pm.Addr(), &tls.Config{ServerName: "relay.test", RootCAs: roots, NextProtos: []string{"h2"}})
		if err == nil {
			t.Fatal("handshake offering only h2 succeeded; want no_application_protocol")
		}
		l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "connection" && l.Str("client") == local }, 10*time.Second)
		checkFields(t, l, map[string]string{"route": "relay", "outcome": "tls_handshake_failed"})
		if web.Hits() != 1 {
			t.Errorf("backend hits %d; want only the first subtest's request", web.Hits())
		}
	})

	t.Run("alpn h2 relays gRPC to an h2c server", func(t *testing.T) {
		creds := credentials.NewTLS(&tls.Config{RootCAs: roots})
		conn, err := grpc.NewClient("passthrough:///"+pm.Addr(), grpc.WithTransportCredentials(creds), grpc.WithAuthority("grpc.test"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check: %v, %v; want SERVING", resp, err)
		}
		conn.Close()
		l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "connection" && l.Str("route") == "grpc" }, 10*time.Second)
		checkFields(t, l, map[string]string{"alpn_negotiated": "h2", "backend": grpcServer.addr, "outcome": "ok"})
	})

	t.Run("proxied route negotiates h2", func(t *testing.T) {
		c := newHTTPSClient(t, pm.Addr(), roots, true)
		seen, resp, err := c.getSeen("https://proxied.test:" + port + "/proxied")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Proto != "HTTP/2.0" || seen.Path != "/proxied" {
			t.Errorf("client spoke %s, backend saw %q; want HTTP/2.0 and /proxied", resp.Proto, seen.Path)
		}
	})
}
