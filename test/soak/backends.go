package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
)

// Credentials and names the backends and clients agree on.
const (
	ftpUser     = "soak"
	ftpPass     = "soak-pass"
	tlsName     = "echo.soak.test"
	maxHTTPBody = 4 << 20
)

// backends are the servers behind portmux, all on loopback: a TCP echo
// (behind the ssh route), a TLS echo (TLS passthrough), an HTTP origin
// (L7 route) and an FTP server. Close stops them all.
type backends struct {
	echo, tlsEcho, origin net.Listener
	ftp                   *ftpServer
	roots                 *x509.CertPool
	httpSrv               *http.Server
	wg                    sync.WaitGroup
}

func startBackends() (*backends, error) {
	b := &backends{}
	var err error
	if b.echo, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, err
	}
	b.wg.Add(1)
	go b.serveEcho(b.echo, nil)

	cert, roots, err := selfSigned(tlsName)
	if err != nil {
		b.Close()
		return nil, err
	}
	b.roots = roots
	if b.tlsEcho, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		b.Close()
		return nil, err
	}
	b.wg.Add(1)
	go b.serveEcho(b.tlsEcho, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})

	if b.origin, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		b.Close()
		return nil, err
	}
	b.httpSrv = &http.Server{Handler: http.HandlerFunc(originHandler), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: log.New(io.Discard, "", 0)}
	b.wg.Add(1)
	go func() { defer b.wg.Done(); b.httpSrv.Serve(b.origin) }()

	if b.ftp, err = startFTP(); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// Close stops every backend and waits for their loops.
func (b *backends) Close() {
	for _, ln := range []net.Listener{b.echo, b.tlsEcho} {
		if ln != nil {
			ln.Close()
		}
	}
	if b.httpSrv != nil {
		b.httpSrv.Close()
	}
	if b.ftp != nil {
		b.ftp.stop()
	}
	b.wg.Wait()
}

// serveEcho accepts on ln and echoes each connection (over TLS if cfg is set).
func (b *backends) serveEcho(ln net.Listener, cfg *tls.Config) {
	defer b.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go echoConn(c, cfg)
	}
}

// echoConn copies a connection's input back until EOF, then half-closes
// (so a half-closing client still gets everything) and closes.
func echoConn(c net.Conn, cfg *tls.Config) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute)) // hang guard
	if cfg == nil {
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
		return
	}
	tc := tls.Server(c, cfg)
	if _, err := io.Copy(tc, tc); err == nil {
		tc.CloseWrite()
	}
}

// originHandler answers a POST with its body and the body's SHA-256, so
// the client checks both directions; anything else gets "ok".
func originHandler(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		io.WriteString(w, "ok\n")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxHTTPBody))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	sum := sha256.Sum256(body)
	w.Header().Set("X-Soak-Sha256", hex.EncodeToString(sum[:]))
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Write(body)
}

func selfSigned(name string) (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// ftpServer is github.com/fclairamb/ftpserverlib over an in-memory afero
// file system, passive only, on ports found free at start.
type ftpServer struct {
	srv      *ftpserver.FtpServer
	ln       net.Listener
	fs       afero.Fs
	settings *ftpserver.Settings
	served   chan error
	live     atomic.Int64
}

var _ ftpserver.MainDriver = (*ftpServer)(nil)

func startFTP() (*ftpServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	ports, err := freePorts(16)
	if err != nil {
		ln.Close()
		return nil, err
	}
	s := &ftpServer{ln: ln, fs: afero.NewMemMapFs(), served: make(chan error, 1)}
	s.settings = &ftpserver.Settings{
		Listener:                 ln,
		PublicHost:               "127.0.0.1",
		PassiveTransferPortRange: &portList{ports: ports},
		DisableActiveMode:        true,
		// Passive listeners bind 0.0.0.0 in ftpserverlib v0.32.3 (not
		// configurable); each lives for one transfer and only takes a
		// connection from the control connection's IP (portmux's 127.0.0.1).
		PasvConnectionsCheck: ftpserver.IPMatchRequired,
		IdleTimeout:          30,
		ConnectionTimeout:    10,
		Banner:               "portmux soak ftp",
	}
	s.srv = ftpserver.NewFtpServer(s)
	s.srv.Logger = slog.New(slog.DiscardHandler)
	if err := s.srv.Listen(); err != nil {
		ln.Close()
		return nil, fmt.Errorf("ftp listen: %w", err)
	}
	go func() { s.served <- s.srv.Serve() }()
	return s, nil
}

func (s *ftpServer) addr() string { return s.ln.Addr().String() }

func (s *ftpServer) stop() {
	s.srv.Stop()
	select {
	case <-s.served:
	case <-time.After(5 * time.Second):
	}
}

func (s *ftpServer) GetSettings() (*ftpserver.Settings, error) { return s.settings, nil }

func (s *ftpServer) ClientConnected(ftpserver.ClientContext) (string, error) {
	s.live.Add(1)
	return "portmux soak ftp", nil
}

func (s *ftpServer) ClientDisconnected(ftpserver.ClientContext) { s.live.Add(-1) }

func (s *ftpServer) AuthUser(_ ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	if user != ftpUser || pass != ftpPass {
		return nil, errors.New("bad credentials")
	}
	return s.fs, nil
}

func (s *ftpServer) GetTLSConfig() (*tls.Config, error) { return nil, errors.New("no TLS") }

// portList is a PasvPortGetter over a fixed list of ports.
type portList struct {
	ports []int
	next  atomic.Uint32
}

func (p *portList) FetchNext() (int, int, bool) {
	port := p.ports[int(p.next.Add(1))%len(p.ports)]
	return port, port, true
}

func (p *portList) NumberAttempts() int { return len(p.ports) }

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
