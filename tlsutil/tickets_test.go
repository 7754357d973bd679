package tlsutil

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestSessionTicketsOutliveConfig: a client that got a ticket from one
// server *tls.Config resumes its session on a second one (a config reload
// builds a new one) when both share a SessionTickets, over TLS 1.2 and
// 1.3; without sharing it makes a full handshake (the control).
func TestSessionTicketsOutliveConfig(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := newManager(t, Options{CA: CAInternal, Storage: filepath.Join(t.TempDir(), "certs")})
	if err := m.ManageSync(ctx, []string{"localhost"}); err != nil {
		t.Fatalf("ManageSync: %v", err)
	}
	root, err := m.RootPEM(ctx)
	if err != nil {
		t.Fatalf("RootPEM: %v", err)
	}
	roots := poolOf(t, root)

	tickets := NewSessionTickets()
	serve := func(share bool) string {
		cfg := m.TLSConfig()
		if share {
			tickets.Share(cfg)
		}
		_, lns := loopback(t)
		serveTLS(t, lns[:1], cfg)
		return lns[0].Addr().String()
	}
	first, second, unshared := serve(true), serve(true), serve(false)

	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			client := &tls.Config{ServerName: "localhost", RootCAs: roots, MinVersion: version, MaxVersion: version,
				ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			if resumed := dialForTicket(t, first, client); resumed {
				t.Fatal("first connection resumed a session; the cache was empty")
			}
			if resumed := dialForTicket(t, second, client); !resumed {
				t.Error("second config, same tickets: full handshake; want the session resumed")
			}
			if resumed := dialForTicket(t, unshared, client); resumed {
				t.Error("control: a config with its own tickets resumed the session")
			}
		})
	}
}

// dialForTicket connects with client, reads until the server closes (which
// takes in a TLS 1.3 ticket, sent after the handshake) and reports whether
// the session was resumed.
func dialForTicket(t *testing.T, addr string, client *tls.Config) bool {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, client)
	if err != nil {
		t.Fatalf("handshake with %s: %v", addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("reading from %s: %v", addr, err)
	}
	return c.ConnectionState().DidResume
}
