package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startGRPCHealthServer runs grpc-go's server with its standard health
// service on loopback (h2c) and returns its URL and health state.
func startGRPCHealthServer(t *testing.T) (*url.URL, *health.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}, hs
}

// h2cClient speaks HTTP/2 with prior knowledge, as an upstream_http2
// route's transport does to http:// upstreams.
func h2cClient(t *testing.T) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// TestGRPCHealthCheck: a gRPC check asks a real gRPC server's health
// service, and only SERVING is healthy; a server that is not gRPC's fails
// with the reason.
func TestGRPCHealthCheck(t *testing.T) {
	grpcURL, hs := startGRPCHealthServer(t)
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("batch", healthpb.HealthCheckResponse_NOT_SERVING)
	plainH2C := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not gRPC")
	}))
	plainH2C.Config.Protocols = new(http.Protocols)
	plainH2C.Config.Protocols.SetUnencryptedHTTP2(true)
	plainH2C.Start()
	t.Cleanup(plainH2C.Close)
	plainURL, _ := url.Parse(plainH2C.URL)
	// An HTTP/1.1 server's answer to a request in HTTP/2, sent once the
	// request's HEADERS frame is in: without the races of net/http's
	// server, which answers the preface alone (the client may not have
	// sent its request yet) and closes with frames unread (the reset may
	// reach the client before the answer).
	h1URL, _ := url.Parse("http://" + listen(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		preface := make([]byte, len("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		if _, err := io.ReadFull(br, preface); err != nil {
			return
		}
		for {
			var head [9]byte // length (3), type, flags, stream (4)
			if _, err := io.ReadFull(br, head[:]); err != nil {
				return
			}
			if _, err := br.Discard(int(head[0])<<16 | int(head[1])<<8 | int(head[2])); err != nil {
				return
			}
			if head[3] == 1 { // HEADERS
				break
			}
		}
		io.WriteString(c, "HTTP/1.1 505 HTTP Version Not Supported\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
		c.CloseWrite()
		io.Copy(io.Discard, br) // until the client closes
	}))

	client := h2cClient(t)
	for _, tc := range []struct {
		name    string
		url     *url.URL
		service string
		wantErr string // "" for healthy
	}{
		{"server as a whole", grpcURL, "", ""},
		{"serving service", grpcURL, "app", ""},
		{"service not serving", grpcURL, "batch", "NOT_SERVING, want SERVING"},
		{"unknown service", grpcURL, "nosuch", `grpc-status 5 "unknown service"`},
		{"HTTP/2 server without gRPC", plainURL, "", "no grpc-status in the reply"},
		{"server without HTTP/2", h1URL, "", "looked like an HTTP/1.1 header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := HealthCheck{GRPC: true, GRPCService: tc.service, Timeout: 5 * time.Second}
			err := checkOnce(context.Background(), client, &Upstream{URL: tc.url}, hc)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("check: %v; want healthy", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("check: %v; want an error with %q", err, tc.wantErr)
			}
		})
	}
}

// TestGRPCHealthChecksMarkDownAndUp: RunHealthChecks with GRPC follows a
// service's serving status.
func TestGRPCHealthChecksMarkDownAndUp(t *testing.T) {
	u, hs := startGRPCHealthServer(t)
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	pool := NewPool([]*url.URL{u}, RoundRobin)
	changes := make(chan bool, 4)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		pool.RunHealthChecks(ctx, HealthCheck{GRPC: true, GRPCService: "app", Interval: 20 * time.Millisecond}, h2cClient(t),
			func(_ *Upstream, ok bool, _ error) { changes <- ok })
	})
	defer func() { cancel(); wg.Wait() }()
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_NOT_SERVING)
	if ok := <-changes; ok || pool.Upstreams[0].Healthy() {
		t.Fatal("upstream whose service is NOT_SERVING not marked down")
	}
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	if ok := <-changes; !ok || !pool.Upstreams[0].Healthy() {
		t.Fatal("upstream serving again not marked up")
	}
}
