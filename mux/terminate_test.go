package mux

import (
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
	"strings"
	"testing"
	"time"

	"github.com/mholt/acmez/v3"
)

// selfSigned returns a certificate for name and a pool trusting it.
func selfSigned(t *testing.T, name string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// terminatedWorld serves one terminated route for "app.test" whose inner
// routes record what they receive.
func terminatedWorld(t *testing.T) (*world, *x509.CertPool) {
	cert, pool := selfSigned(t, "app.test")
	w := newWorld(t, allRoutes()...)
	inner := []Route{
		{Name: "inner-http", Match: Match{Protocols: []Protocol{HTTP}}},
		{Name: "inner-ssh", Match: Match{Protocols: []Protocol{SSH}}},
		{Name: "inner-silent", Match: Match{Protocols: []Protocol{Silent}}},
	}
	for i := range inner {
		name := inner[i].Name
		inner[i].Handler = HandlerFunc(func(ctx context.Context, c *Conn) Result {
			defer c.NetConn.Close()
			_, isTLS := c.NetConn.(*tls.Conn)
			c.NetConn.Write([]byte("hello:" + name + "\n"))
			rest, _ := io.ReadAll(c.NetConn)
			w.got <- seen{route: name, info: c.Info, stream: append(c.Prefix, rest...)}
			if !isTLS {
				t.Errorf("inner handler got %T; want *tls.Conn", c.NetConn)
			}
			return Result{}
		})
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1", acmez.ACMETLS1Protocol}}
	routes := append([]Route{{
		Name: "app", Match: Match{Protocols: []Protocol{TLS}, SNI: []string{"app.test"}},
		Terminate: cfg, Inner: NewTable(inner),
	}}, w.srv.Table().Routes()...)
	w.srv.SetTable(NewTable(routes))
	return w, pool
}

func TestTerminateRoutesDecryptedStream(t *testing.T) {
	w, pool := terminatedWorld(t)
	tests := []struct {
		name, route string
		alpn        []string
		send        string
		proto       Protocol
	}{
		{"h2 by alpn", "inner-http", []string{"h2"}, h2Preface, HTTP},
		{"http/1.1 by alpn", "inner-http", []string{"http/1.1"}, "GET / HTTP/1.1\r\nHost: app.test\r\n\r\n", HTTP},
		{"ssh inside tls, sniffed", "inner-ssh", nil, "SSH-2.0-OpenSSH_9.2\r\npayload", SSH},
		{"silent inside tls", "inner-silent", nil, "", Silent},
		{"http sniffed after an empty line", "inner-http", nil, "\r\nGET / HTTP/1.1\r\nHost: app.test\r\n\r\n", HTTP},
		// Clearly HTTP, longer than the sniff may read (4096): HTTP, for
		// the HTTP server to answer 414.
		{"request line over the sniff cap", "inner-http", nil, "GET /" + strings.Repeat("a", 5000), HTTP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", w.addr, &tls.Config{ServerName: "app.test", RootCAs: pool, NextProtos: tt.alpn})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if tt.send != "" {
				io.WriteString(c, tt.send)
			}
			greeting := make([]byte, len("hello:"+tt.route+"\n"))
			if _, err := io.ReadFull(c, greeting); err != nil || string(greeting) != "hello:"+tt.route+"\n" {
				t.Fatalf("got %q, %v", greeting, err)
			}
			c.CloseWrite()
			s := w.next()
			if s.route != tt.route || s.info.Protocol != tt.proto || !s.info.Terminated || s.info.SNI != "app.test" {
				t.Fatalf("got %s %+v", s.route, s.info)
			}
			if string(s.stream) != tt.send {
				t.Errorf("inner handler got %q; want %q", s.stream, tt.send)
			}
		})
	}
}

func TestTerminateFailures(t *testing.T) {
	w, pool := terminatedWorld(t)
	t.Run("acme-tls/1 handshake is answered and closed", func(t *testing.T) {
		c, err := tls.Dial("tcp", w.addr, &tls.Config{ServerName: "app.test", RootCAs: pool, NextProtos: []string{acmez.ACMETLS1Protocol}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if n, _ := c.Read(make([]byte, 1)); n != 0 {
			t.Fatal("data after an ACME challenge handshake")
		}
		w.connLog(func(f map[string]any) bool {
			return f["client"] == c.LocalAddr().String() && f["outcome"] == OutcomeACMEChallenge
		})
	})
	// openssl s_client -servername app.test. sends the dot: the hello is
	// routed to app.test's route, but crypto/tls refuses it (RFC 6066
	// §3), and the log line says why.
	t.Run("sni with a trailing dot", func(t *testing.T) {
		c := w.dial()
		c.Write(helloWithSNI(t, "app.test."))
		reply, _ := io.ReadAll(c)
		if len(reply) < 7 || reply[0] != 21 || reply[6] != alertDecodeError {
			t.Errorf("got %q; want a decode_error alert", reply)
		}
		f := w.connLog(func(f map[string]any) bool { return f["client"] == c.LocalAddr().String() })
		if f["route"] != "app" || f["outcome"] != OutcomeHandshakeFailed || f["sni"] != "app.test" ||
			!strings.Contains(fmt.Sprint(f["error"]), `SNI "app.test." with a trailing dot`) {
			t.Errorf("log line %v; want route app, outcome %s, sni app.test and an error naming the dot", f, OutcomeHandshakeFailed)
		}
	})
	t.Run("client refuses the certificate", func(t *testing.T) {
		c, err := tls.Dial("tcp", w.addr, &tls.Config{ServerName: "app.test"}) // system roots: untrusted
		if err == nil {
			c.Close()
			t.Fatal("handshake with an untrusted certificate succeeded")
		}
		w.connLog(outcome(OutcomeHandshakeFailed))
	})
}
