package tlsutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// observed returns a logger that records everything in memory (not via
// t.Log: certmagic goroutines may log after the test ends) and prints the
// records if the test fails.
func observed(t *testing.T) (*zap.Logger, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("TLSUTIL_DUMP") != "" {
			for _, e := range logs.All() {
				t.Logf("%s %s %s %v", e.Level, e.LoggerName, e.Message, e.ContextMap())
			}
		}
	})
	return zap.New(core), logs
}

// waitLog waits until a record with message msg and field name=name exists.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg, name string, timeout time.Duration) observer.LoggedEntry {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range logs.FilterMessage(msg).All() {
			if e.ContextMap()["name"] == name {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log %q with name=%q within %v", msg, name, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// newManager calls New and closes the manager when the test ends.
func newManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	m, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// loopback listens on 127.0.0.1 and, when the host has it, on ::1 with the
// same port, so "localhost" reaches us whichever address a resolver (here,
// Pebble's VA) picks first.
func loopback(t *testing.T) (int, []net.Listener) {
	t.Helper()
	for range 10 {
		ln4, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln4.Addr().(*net.TCPAddr).Port
		ln6, err := net.Listen("tcp", net.JoinHostPort("::1", strconv.Itoa(port)))
		if err == nil {
			return port, []net.Listener{ln4, ln6}
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			ln4.Close() // the ::1 side is taken: try another port
			continue
		}
		return port, []net.Listener{ln4} // no IPv6 loopback here
	}
	t.Fatal("no free port on both 127.0.0.1 and ::1")
	return 0, nil
}

// tlsServer completes TLS handshakes with a config and closes each
// connection; it counts the acme-tls/1 handshakes (TLS-ALPN-01 validations).
type tlsServer struct {
	acme atomic.Int32
	wg   sync.WaitGroup
}

// serveTLS serves lns until the test ends.
func serveTLS(t *testing.T, lns []net.Listener, cfg *tls.Config) *tlsServer {
	t.Helper()
	s := &tlsServer{}
	for _, ln := range lns {
		s.wg.Add(1)
		go s.acceptLoop(ln, cfg)
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		s.wg.Wait()
	})
	return s
}

func (s *tlsServer) acceptLoop(ln net.Listener, cfg *tls.Config) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go s.handshake(c, cfg)
	}
}

func (s *tlsServer) handshake(c net.Conn, cfg *tls.Config) {
	defer s.wg.Done()
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tc := tls.Server(c, cfg)
	if tc.HandshakeContext(ctx) == nil && tc.ConnectionState().NegotiatedProtocol == "acme-tls/1" {
		s.acme.Add(1)
	}
}

// serveHTTP serves h on lns until the test ends.
func serveHTTP(t *testing.T, lns []net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			srv.Serve(ln)
		}()
	}
	t.Cleanup(func() {
		srv.Close()
		wg.Wait()
	})
}

// handshake dials addr as a TLS client for serverName trusting roots and
// returns the verified leaf.
func handshake(addr, serverName string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: serverName, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}}) // as browsers
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	certs := conn.ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return nil, fmt.Errorf("no peer certificate")
	}
	return certs[0], nil
}

// poolOf returns a pool holding the certificates in pemBytes.
func poolOf(t *testing.T, pemBytes []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("no certificate in %q", pemBytes)
	}
	return p
}
