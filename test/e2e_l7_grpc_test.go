package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestE2EL7GRPC: gRPC through the reverse proxy with upstream_http2, against
// grpc-go's own server and client (the standard health service). The client
// speaks h2c to portmux's multiplexed port, or h2 over TLS that portmux
// terminates; upstreams get h2c (http://) or h2 over TLS (https://,
// upstream_tls). A unary call, a status carried only in
// trailers (NotFound) and a server stream whose updates arrive one by one
// while it stays open. Without upstream_http2 the gRPC server cannot be
// reached over HTTP/1.1: the call fails with Unavailable, logged as a 502.
// A WebSocket upgrade cannot cross HTTP/2: 502, and the upstream stays up.
// An upstream that takes only HTTP/1.1 on such a route gets 502.
func TestE2EL7GRPC(t *testing.T) {
	plain := startGRPCHealth(t, nil)
	cert, leaf := selfSigned(t, "grpc.internal")
	ca := filepath.Join(t.TempDir(), "grpc-ca.pem")
	opsWriteFile(t, ca, certPEM(leaf))
	secure := startGRPCHealth(t, &cert)
	other := startGRPCHealth(t, nil) // serves "app" as NOT_SERVING
	other.health.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	h1only := startL7Backend(t, "h1only") // net/http without h2c
	// Behind a gRPC health check: one serves "app", the other does not.
	serving, notServing := startGRPCHealth(t, nil), startGRPCHealth(t, nil)
	notServing.health.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)

	yaml := l7Header(fmt.Sprintf("tls: {ca: internal, storage: %s}\n", certStorage(t))) + fmt.Sprintf(`routes:
  - name: edge
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: http://%[7]s
    upstream_http2: true
  - name: h2c
    match: {protocol: http, host: [h2c.test]}
    to: http://%[1]s
    upstream_http2: true
  - name: h2
    match: {protocol: http, host: [h2.test]}
    to: https://%[2]s
    upstream_http2: true
    upstream_tls: {ca: %[3]s, server_name: grpc.internal}
  - name: h1
    match: {protocol: http, host: [h1.test]}
    to: http://%[4]s
  - name: pair
    match: {protocol: http, host: [pair.test]}
    upstreams: ["http://%[5]s", "http://%[6]s"]
    balance: ip_hash
    upstream_http2: true
  - name: h1only
    match: {protocol: http, host: [h1only.test]}
    to: http://%[8]s
    upstream_http2: true
  - name: checked
    match: {protocol: http, host: [checked.test]}
    upstreams: ["http://%[9]s", "http://%[10]s"]
    upstream_http2: true
    health_check: {grpc: true, grpc_service: app, interval: 200ms}
`, plain.addr, secure.addr, ca, plain.addr, plain.addr, other.addr, plain.addr, h1only.Addr(), serving.addr, notServing.addr)
	pm := startPortmux(t, yaml)

	for _, tc := range []struct {
		authority string
		server    *grpcHealth
	}{{"h2c.test", plain}, {"h2.test", secure}} {
		t.Run(tc.authority, func(t *testing.T) {
			client := dialGRPC(t, pm.Addr(), tc.authority)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()

			resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("Check(app): %v, %v; want SERVING", resp, err)
			}
			_, err = client.Check(ctx, &healthpb.HealthCheckRequest{Service: "unknown"})
			if status.Code(err) != codes.NotFound {
				t.Errorf("Check(unknown): %v; want NotFound, the status in the trailers", err)
			}

			// A server stream: each update is seen while the stream is open.
			watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "app"})
			if err != nil {
				t.Fatalf("Watch: %v", err)
			}
			for i, next := range []healthpb.HealthCheckResponse_ServingStatus{
				healthpb.HealthCheckResponse_NOT_SERVING, healthpb.HealthCheckResponse_SERVING,
			} {
				got, err := watch.Recv()
				if err != nil {
					t.Fatalf("Watch update %d: %v", i, err)
				}
				want := healthpb.HealthCheckResponse_SERVING
				if i > 0 {
					want = healthpb.HealthCheckResponse_NOT_SERVING
				}
				if got.GetStatus() != want {
					t.Fatalf("Watch update %d: %v; want %v", i, got.GetStatus(), want)
				}
				tc.server.health.SetServingStatus("app", next)
			}
			if got, err := watch.Recv(); err != nil || got.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("Watch last update: %v, %v; want SERVING", got, err)
			}
			cancel()

			l := pm.WaitLog(t, func(l logLine) bool {
				return l.Msg() == "request" && l.Str("route") == tc.authority[:strings.IndexByte(tc.authority, '.')] &&
					l.Str("path") == "/grpc.health.v1.Health/Check"
			}, 10*time.Second)
			checkFields(t, l, map[string]string{"proto": "HTTP/2.0", "method": "POST", "upstream": tc.server.addr})
		})
	}

	t.Run("TLS client", func(t *testing.T) {
		// The common deployment: gRPC clients over TLS (ALPN h2) to a
		// route that terminates it.
		pm.WaitLog(t, certObtained("localhost"), time.Minute)
		creds := credentials.NewTLS(&tls.Config{RootCAs: poolFromPEM(t, portmuxTrust(t, yaml))})
		conn, err := grpc.NewClient("passthrough:///"+pm.Addr(), grpc.WithTransportCredentials(creds), grpc.WithAuthority("localhost"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("Check over TLS: %v, %v; want SERVING", resp, err)
		}
	})

	t.Run("HTTP/1.1 client", func(t *testing.T) {
		// Its request takes the route's HTTP/2 transport too, not the
		// direct path's HTTP/1.1 connections: grpc-go answers it itself.
		c, br := rawDial(t, pm.Addr())
		if resp := rawGet(t, c, br, "h2c.test", "/grpc.health.v1.Health/Check"); resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("GET over HTTP/1.1: %s; want grpc-go's own 415 (not a gRPC request), which it sends only over HTTP/2", resp.Status)
		}
	})

	t.Run("upgrade", func(t *testing.T) {
		// HTTP/2 has no Upgrade: 502, and no count against the upstream's
		// passive health. ip_hash keeps this client on one of the pair
		// (told apart by their "app" status) while that one is up; three
		// failures would mark it down and move the client to the other.
		client := dialGRPC(t, pm.Addr(), "pair.test")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		before, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
		if err != nil {
			t.Fatal(err)
		}
		c, br := rawDial(t, pm.Addr())
		for i := 0; i < 4; i++ {
			resp := rawGet(t, c, br, "pair.test", "/ws", "Connection: Upgrade", "Upgrade: websocket",
				"Sec-WebSocket-Version: 13", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==")
			if resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("WebSocket upgrade %d: %s; want 502", i, resp.Status)
			}
		}
		after, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "app"})
		if err != nil || after.GetStatus() != before.GetStatus() {
			t.Errorf("Check after the refused upgrades: %v, %v; want %v from the same upstream, still up", after, err, before.GetStatus())
		}
	})

	t.Run("gRPC health check", func(t *testing.T) {
		// The check asks each upstream's health service about "app": the
		// one NOT_SERVING is taken out, so round robin sends every call
		// to the other.
		pm.WaitLog(t, func(l logLine) bool {
			return l.Msg() == "upstream health changed" && l.Str("route") == "checked" && l.Str("upstream") == notServing.addr &&
				strings.Contains(l.Str("error"), "NOT_SERVING")
		}, 10*time.Second)
		client := dialGRPC(t, pm.Addr(), "checked.test")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for i := range 6 {
			if resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "app"}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("call %d: %v, %v; want SERVING from the upstream the check keeps", i, resp, err)
			}
		}
	})

	t.Run("upstream without HTTP/2", func(t *testing.T) {
		// A misconfigured route: its upstream takes HTTP/1.1 only. 502,
		// with the reason in the request's log line.
		c, br := rawDial(t, pm.Addr())
		if resp := rawGet(t, c, br, "h1only.test", "/h2-to-h1"); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("GET: %s; want 502", resp.Status)
		}
		l := pm.WaitLog(t, requestLog("/h2-to-h1"), 10*time.Second)
		if numField(l, "status") != 502 || l.Str("error") == "" {
			t.Errorf("request line %s; want status 502 with an error", l)
		}
		// It reads the HTTP/2 preface as a request of its own ("PRI *"),
		// never the client's.
		for _, s := range h1only.Seen() {
			if s.Path == "/h2-to-h1" {
				t.Errorf("the HTTP/1.1 upstream got the request: %+v", s)
			}
		}
	})

	t.Run("without upstream_http2", func(t *testing.T) {
		client := dialGRPC(t, pm.Addr(), "h1.test")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: "app"}); status.Code(err) != codes.Unavailable {
			t.Errorf("Check over HTTP/1.1 to a gRPC server: %v; want Unavailable (a 502)", err)
		}
		l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "request" && l.Str("route") == "h1" }, 10*time.Second)
		if got := numField(l, "status"); got != 502 {
			t.Errorf("request line status %d; want 502 (%s)", got, l)
		}
	})

	// Idle HTTP/2 upstream connections each keep a read loop in portmux
	// until the upstream closes them; the goroutine check after the test
	// counts on that.
	plain.stop()
	secure.stop()
	other.stop()
	serving.stop()
	notServing.stop()
}

// grpcHealth is a gRPC server with the standard health service, on
// 127.0.0.1: h2c, or TLS with cert.
type grpcHealth struct {
	addr   string
	health *health.Server
	stop   func() // closes its connections; also when the test ends
}

func startGRPCHealth(t *testing.T, cert *tls.Certificate) *grpcHealth {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if cert != nil {
		opts = append(opts, grpc.Creds(credentials.NewServerTLSFromCert(cert)))
	}
	srv := grpc.NewServer(opts...)
	g := &grpcHealth{addr: ln.Addr().String(), health: health.NewServer()}
	g.health.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, g.health)
	go srv.Serve(ln)
	g.stop = srv.Stop
	t.Cleanup(srv.Stop)
	return g
}

// dialGRPC returns a health client that speaks h2c to addr with the given
// :authority, closed when the test ends.
func dialGRPC(t *testing.T, addr, authority string) healthpb.HealthClient {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return healthpb.NewHealthClient(conn)
}
