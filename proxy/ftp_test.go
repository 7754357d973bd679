package proxy

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/spf13/afero"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The FTP tests run real peers over loopback: an ftpserverlib backend over
// an in-memory afero fs, portmux's gateway behind a "front" listener that
// does what mux does (Claim first, else Serve), and jlaffaye/ftp or a raw
// net/textproto client. On Linux all of 127.0.0.0/8 is loopback, so each
// party gets its own address and the tests can tell who connected whom:
//
//	backend control      127.0.0.1 (portmux dials it from 127.0.0.1)
//	backend passive      0.0.0.0:ephemeral, announced as 192.0.2.1 (TEST-NET-1: ftpUnreachable)
//	front (mux port)     127.0.0.6
//	clients              127.0.0.4, 127.0.0.7; strangers 127.0.0.5
//
// ftpserverlib always binds its passive listeners to every address, so a
// client going straight to the backend's port would reach it; but the
// backend checks that data connections come from its control peer's IP
// (PasvConnectionsCheck, on by default), which is portmux's 127.0.0.1, and
// ftpBackend records the peer of every passive data connection.
const (
	ftpTestUser    = "alice"
	ftpTestPass    = "wonderland"
	ftpFrontIP     = "127.0.0.6"
	ftpClientIP    = "127.0.0.4"
	ftpOtherIP     = "127.0.0.7"
	ftpStrangerIP  = "127.0.0.5"
	ftpUnreachable = "192.0.2.1"
)

// ftpBackend is an ftpserverlib server; the MainDriver of the tests.
type ftpBackend struct {
	srv      *ftpserver.FtpServer
	fs       afero.Fs
	settings *ftpserver.Settings
	ln       net.Listener

	mu        sync.Mutex
	conns     []net.Conn   // control connections, closed at cleanup
	dataPeers []netip.Addr // source IPs of accepted passive data connections
	live      atomic.Int64
}

var (
	_ ftpserver.MainDriver                        = (*ftpBackend)(nil)
	_ ftpserver.MainDriverExtensionPassiveWrapper = (*ftpBackend)(nil)
)

func (b *ftpBackend) GetSettings() (*ftpserver.Settings, error) { return b.settings, nil }

func (b *ftpBackend) ClientConnected(ftpserver.ClientContext) (string, error) {
	b.live.Add(1)
	return "portmux test backend", nil
}

func (b *ftpBackend) ClientDisconnected(ftpserver.ClientContext) { b.live.Add(-1) }

func (b *ftpBackend) AuthUser(_ ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	if user != ftpTestUser || pass != ftpTestPass {
		return nil, errors.New("bad credentials")
	}
	return b.fs, nil
}

func (b *ftpBackend) GetTLSConfig() (*tls.Config, error) { return nil, errors.New("no TLS") }

// WrapPassiveListener records who connects to the backend's data ports.
func (b *ftpBackend) WrapPassiveListener(ln net.Listener) (net.Listener, error) {
	return &peerListener{Listener: ln, b: b}, nil
}

type peerListener struct {
	net.Listener
	b *ftpBackend
}

func (l *peerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.b.mu.Lock()
		l.b.dataPeers = append(l.b.dataPeers, netAddrIP(c.RemoteAddr()))
		l.b.mu.Unlock()
	}
	return c, err
}

// SetDeadline keeps ftpserverlib's accept deadline working through the wrapper.
func (l *peerListener) SetDeadline(t time.Time) error {
	return l.Listener.(interface{ SetDeadline(time.Time) error }).SetDeadline(t)
}

func (b *ftpBackend) Accept() (net.Conn, error) {
	c, err := b.ln.Accept()
	if err == nil {
		b.mu.Lock()
		b.conns = append(b.conns, c)
		b.mu.Unlock()
	}
	return c, err
}

func (b *ftpBackend) Close() error   { return b.ln.Close() }
func (b *ftpBackend) Addr() net.Addr { return b.ln.Addr() }

func (b *ftpBackend) peers() []netip.Addr {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]netip.Addr(nil), b.dataPeers...)
}

// startFTPBackend starts an ftpserverlib server on 127.0.0.1.
func startFTPBackend(t *testing.T) *ftpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &ftpBackend{fs: afero.NewMemMapFs(), ln: ln}
	b.settings = &ftpserver.Settings{
		Listener:                b, // a net.Listener that tracks control connections
		PublicHost:              ftpUnreachable,
		ActiveTransferPortNon20: true, // else it dials from port 20
		IdleTimeout:             60,
		ConnectionTimeout:       10,
	}
	b.srv = ftpserver.NewFtpServer(b)
	if err := b.srv.Listen(); err != nil {
		ln.Close()
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- b.srv.Serve() }()
	t.Cleanup(func() {
		b.srv.Stop()
		<-served
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		ftpWaitFor(t, "backend clients gone", func() bool { return b.live.Load() == 0 })
	})
	return b
}

// ftpWorld is a backend, the gateway and a front listener standing in for mux.
type ftpWorld struct {
	back     *ftpBackend
	gw       *FTP
	claims   *DataClaims
	front    string
	logs     *observer.ObservedLogs
	claimed  atomic.Int64 // connections Claim took
	sniffed  atomic.Int64 // connections Claim left to "sniffing" (here: Serve)
	sessions atomic.Int64 // Serve calls running

	mu   sync.Mutex
	errs []error // what Serve returned
}

// newFTPWorld starts a world; expiry is the claims' (0: default), and mod
// may adjust the gateway before it serves.
func newFTPWorld(t *testing.T, expiry time.Duration, mod func(*FTP)) *ftpWorld {
	t.Helper()
	w := &ftpWorld{back: startFTPBackend(t)}
	core, logs := observer.New(zap.DebugLevel)
	w.logs = logs
	log := zap.New(core)
	w.claims = NewDataClaims(expiry, log)
	w.gw = &FTP{Addr: w.back.Addr().String(), Claims: w.claims, Logger: log, IdleTimeout: time.Minute, Pipes: NewPipes(8)}
	if mod != nil {
		mod(w.gw)
	}
	ln, err := net.Listen("tcp", ftpFrontIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	w.front = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if w.claims.Claim(c) {
				w.claimed.Add(1)
				continue
			}
			w.sniffed.Add(1)
			w.sessions.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer w.sessions.Add(-1)
				_, err := w.gw.Serve(ctx, c, nil)
				w.mu.Lock()
				w.errs = append(w.errs, err)
				w.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		cancel()
		wg.Wait()
		w.claims.Close()
		w.gw.Pipes.Close()
		if w.gw.DataPorts != nil {
			w.gw.DataPorts.Close()
		}
	})
	return w
}

// serveErrors returns what the finished Serve calls returned.
func (w *ftpWorld) serveErrors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

// dialFrom dials addr from the loopback address from, with a hang guard.
func ftpDialFrom(from, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	return c, nil
}

// waitFor polls cond for up to 10s (a hang guard, not a timing assertion).
func ftpWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; !cond(); i++ {
		if i == 1000 {
			t.Errorf("still waiting for %s after 10s", what)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// payload is n deterministic pseudo-random bytes.
func ftpPayload(seed uint64, n int64) io.Reader {
	return io.LimitReader(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}), n)
}

func ftpDigest(t *testing.T, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatalf("reading: %v", err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// fileDigest hashes a file as the backend stored it.
func (b *ftpBackend) fileDigest(t *testing.T, name string) string {
	t.Helper()
	f, err := b.fs.Open(name)
	if err != nil {
		t.Fatalf("backend open %s: %v", name, err)
	}
	defer f.Close()
	return ftpDigest(t, f)
}
