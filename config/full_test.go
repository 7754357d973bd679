package config

import (
	"reflect"
	"testing"
	"time"

	"github.com/knadh/koanf/providers/file"
)

// TestFullFile loads testdata/full.yaml, which sets every key.
func TestFullFile(t *testing.T) {
	t.Parallel()
	const path = "testdata/full.yaml"
	c, err := load(file.Provider(path), path, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:           []string{":443", "[::1]:8443", "localhost:9443"},
		HTTPListen:       ":80",
		SniffTimeout:     2 * time.Second,
		SniffMaxBytes:    4096,
		HandshakeTimeout: 5 * time.Second,
		DialTimeout:      3 * time.Second,
		IdleTimeout:      0,
		ShutdownGrace:    10 * time.Second,
		Log:              Log{Level: "debug", Format: "console"},
		Admin:            Admin{Listen: "[::1]:9091"},
		TLS: TLS{
			CA:           "https://acme.example.net/directory",
			Email:        "ops@example.com",
			AgreeTerms:   true,
			EAB:          EAB{KeyID: "kid-1", MACKey: "c2VjcmV0LW1hYy1rZXk"},
			TrustedRoots: "testdata/roots.pem",
			Storage:      "/var/lib/portmux/certs",
			DefaultSNI:   "default.example.com",
			OnDemand: OnDemand{
				Allow:      []string{"*.tenants.example.com", "shop.example.com"},
				Ask:        "http://127.0.0.1:9000/allowed",
				RateLimit:  10,
				RateWindow: 5 * time.Minute,
			},
		},
		HTTP: HTTP{
			TrustedProxies:        []string{"10.0.0.0/8", "::1"},
			MaxHeaderBytes:        65536,
			ReadHeaderTimeout:     5 * time.Second,
			IdleTimeout:           0,
			SendTimeout:           30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		},
		Limits:        Limits{MaxConns: 10000, MaxConnsPerIP: 64, RatePerIP: 2.5, RateBurst: 10, MaxSniffs: 512},
		ProxyProtocol: ProxyProtocol{Trusted: []string{"10.0.0.0/8"}, Optional: true},
		Routes: []Route{
			{
				Name: "web-tls",
				Match: Match{
					Protocol: ProtocolTLS,
					SNI:      []string{"example.com", "*.example.com"},
					ALPN:     []string{"h2", "http/1.1"},
					Source:   []string{"10.0.0.0/8", "2001:db8::/32", "192.0.2.7"},
				},
				To:          "127.0.0.1:8443",
				TLS:         TLSPassthrough,
				DialTimeout: dur(time.Second),
				IdleTimeout: dur(5 * time.Minute),
			},
			{
				Name: "app",
				Match: Match{
					Protocol: ProtocolTLS,
					SNI:      []string{"app.example.org", "*.app.example.org", "192.0.2.10", "2001:db8::10"},
				},
				TLS:          TLSTerminate,
				RedirectHTTP: true,
				ALPN:         []string{"h2", "http/1.1"},
				To:           "http://127.0.0.1:3000/base",
				PreserveHost: ptr(true),
				Routes: []Route{
					{
						Name: "api",
						Match: Match{
							Protocol: ProtocolHTTP,
							Host:     []string{"api.app.example.org"},
							Path:     []string{"/v1/", "/v2"},
						},
						Upstreams:             []string{"http://10.0.0.1:8080", "https://[2001:db8::1]:8443/api"},
						Mode:                  ModeHTTP,
						Balance:               BalanceLeastConn,
						PreserveHost:          ptr(false),
						StripPrefix:           true,
						MaxBodyBytes:          10 << 20,
						ResponseHeaderTimeout: dur(15 * time.Second),
						HealthCheck:           &HealthCheck{Path: "/healthz", Interval: 5 * time.Second, Timeout: time.Second, Status: 204},
						Passive:               &PassiveHealth{MaxFails: 5, Cooldown: 30 * time.Second},
						UpstreamTLS: &UpstreamTLS{CA: "testdata/roots.pem", ServerName: "api.internal",
							Cert: "testdata/client.pem", Key: "testdata/client.key"},
					},
					{Name: "app-ssh", Match: Match{Protocol: ProtocolSSH}, To: "127.0.0.1:22", Mode: ModeTCP},
				},
			},
			{
				Name:  "web",
				Match: Match{Protocol: ProtocolHTTP, Host: []string{"www.example.com", "*.example.org"}},
				To:    "[::1]:8080",
			},
			{
				Name:          "site",
				Match:         Match{Protocol: ProtocolHTTP, Path: []string{"/"}},
				To:            "https://backend.example.com",
				HealthCheck:   &HealthCheck{GRPC: true, GRPCService: "app.v1.Orders", Interval: 10 * time.Second, Timeout: 2 * time.Second},
				UpstreamTLS:   &UpstreamTLS{InsecureSkipVerify: true},
				UpstreamHTTP2: true,
			},
			{Name: "ssh", Match: Match{Protocol: ProtocolSSH}, To: "backend.internal:22", IdleTimeout: dur(0),
				SendProxy: ProxyV2, Allow: []string{"203.0.113.0/24"}, Deny: []string{"203.0.113.9"}},
			{Name: "ftp", Match: Match{Protocol: ProtocolFTP}, To: "10.1.2.3:21",
				FTP: &FTP{PublicAddress: "203.0.113.5", PublicPort: 443, DataPorts: "30000-30009"}},
			{Name: "demo", Match: Match{Protocol: ProtocolUnknown}, To: BuiltinDemo},
			{Name: "echo_1.x", Match: Match{Protocol: ProtocolAny}, To: BuiltinEcho},
		},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v\nwant %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a loaded config: %v", err)
	}
}
