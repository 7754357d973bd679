package test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a self-signed ECDSA server certificate for the DNS name.
func selfSigned(t testing.TB, name string) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	return selfSignedFor(t, name, x509.ExtKeyUsageServerAuth)
}

// selfSignedFor returns a self-signed ECDSA certificate for the DNS name, for
// usage (a server's or a client's).
func selfSignedFor(t testing.TB, name string, usage x509.ExtKeyUsage) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatalf("serial: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name},
		DNSNames:              []string{name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{usage},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("certificate: %v", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf
}

// tlsBackend is a TLS server for one DNS name. After the handshake it writes
// "<name> <negotiated ALPN>\n" and then echoes what it reads until EOF.
type tlsBackend struct {
	*tcpServer
	Name string
	Cert *x509.Certificate
}

// startTLSBackend starts a TLS backend with a fresh self-signed certificate for name.
func startTLSBackend(t testing.TB, name string) *tlsBackend {
	t.Helper()
	cert, leaf := selfSigned(t, name)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2", "http/1.1", "x-test"},
	}
	b := &tlsBackend{Name: name, Cert: leaf}
	b.tcpServer = startTCPServer(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			return
		}
		if _, err := fmt.Fprintf(tc, "%s %s\n", name, tc.ConnectionState().NegotiatedProtocol); err != nil {
			return
		}
		if _, err := io.Copy(tc, tc); err != nil {
			return
		}
		tc.CloseWrite()
	})
	return b
}

// tlsClientConfig trusts only cert and asks for serverName.
func tlsClientConfig(serverName string, cert *x509.Certificate, alpn ...string) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{ServerName: serverName, RootCAs: pool, NextProtos: alpn}
}

// tlsIdentify dials addr (a TLS backend or portmux) with SNI serverName, trusting only
// cert, and returns the name line the backend answered with and the connection's local
// address. A certificate other than cert fails the handshake, so a nil error proves
// which backend answered.
func tlsIdentify(addr, serverName string, cert *x509.Certificate, alpn ...string) (line, local string, err error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	local = c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	tc := tls.Client(c, tlsClientConfig(serverName, cert, alpn...))
	if err := tc.Handshake(); err != nil {
		return "", local, fmt.Errorf("handshake: %w", err)
	}
	if pc := tc.ConnectionState().PeerCertificates; len(pc) == 0 || !pc[0].Equal(cert) {
		return "", local, fmt.Errorf("peer presented another certificate")
	}
	br := bufio.NewReader(tc)
	line, err = br.ReadString('\n')
	if err != nil {
		return "", local, fmt.Errorf("reading name line: %w", err)
	}
	// Prove the stream is usable both ways: a round trip, then a clean close.
	msg := []byte("ping through " + serverName)
	if _, err := tc.Write(msg); err != nil {
		return "", local, fmt.Errorf("write: %w", err)
	}
	if err := tc.CloseWrite(); err != nil {
		return "", local, fmt.Errorf("close write: %w", err)
	}
	echo, err := io.ReadAll(br)
	if err != nil {
		return "", local, fmt.Errorf("reading echo: %w", err)
	}
	if !bytes.Equal(echo, msg) {
		return "", local, fmt.Errorf("echo %q; want %q", echo, msg)
	}
	return strings.TrimSpace(line), local, nil
}

// clientHello returns the first TLS record a real crypto/tls client sends for
// serverName (its ClientHello).
func clientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		tls.Client(a, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
	}()
	b.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(b, hdr); err != nil {
		t.Fatalf("reading record header: %v", err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(b, rec[5:]); err != nil {
		t.Fatalf("reading record: %v", err)
	}
	a.Close()
	<-done
	if rec[0] != 0x16 {
		t.Fatalf("first record type %#x; want handshake (0x16)", rec[0])
	}
	return rec
}
