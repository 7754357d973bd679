package tlsutil

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startRedis starts a redis-server of the test's own on a free loopback
// port, without persistence, and returns its redis:// URL (db 0). extra
// are more redis-server options. The test is skipped if redis-server is
// not installed.
func startRedis(t *testing.T, extra ...string) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skipf("redis-server not installed (Debian: apt-get install redis-server; test/run does it as root): %v", err)
	}
	for range 5 {
		port := freePort(t)
		args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", t.TempDir()}, extra...)
		out := &lockedBuffer{}
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			cmd.Wait()
			close(exited)
		}()
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
			if t.Failed() {
				out.mu.Lock()
				t.Logf("redis-server log:\n%s", out.buf.String())
				out.mu.Unlock()
			}
		})
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if waitRedis(addr, exited) {
			return "redis://" + addr + "/0"
		}
		// Most likely someone else took the port meanwhile: try another.
	}
	t.Fatal("redis-server did not start")
	return ""
}

// waitRedis waits until a redis-server at addr answers PING (over plain
// TCP; with a password it answers NOAUTH), or it exited, or 10s passed.
func waitRedis(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			fmt.Fprint(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// newRedis returns a RedisStorage on url, closed when the test ends.
func newRedis(t *testing.T, url string) *RedisStorage {
	t.Helper()
	s, err := NewRedisStorage(url, nil)
	if err != nil {
		t.Fatalf("NewRedisStorage(%q): %v", url, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// crash makes s behave like a process that died: its lock renewals stop
// without releasing anything, and its connections close.
func (s *RedisStorage) crash() {
	s.mu.Lock()
	held := s.locks
	s.locks = map[string]*heldLock{}
	s.closed = true
	s.mu.Unlock()
	for _, l := range held {
		l.stop()
	}
	s.client.Close()
}

func TestRedisURL(t *testing.T) {
	for _, tc := range []struct {
		url        string
		addr       string
		db         int
		tls        bool
		prefix     string
		ttl        time.Duration
		wantErr    string
		wantString string
	}{
		{url: "redis://redis:6379/0", addr: "redis:6379", prefix: "portmux", ttl: DefaultRedisLockTTL,
			wantString: "RedisStorage:redis://redis:6379/0?prefix=portmux"},
		{url: "redis://h", addr: "h:6379", prefix: "portmux", ttl: DefaultRedisLockTTL},
		{url: "REDIS://h:7000/3?prefix=prod-eu&lock_ttl=30s", addr: "h:7000", db: 3, prefix: "prod-eu", ttl: 30 * time.Second},
		{url: "rediss://u:s3cret@cache.example.com/1?dial_timeout=2s", addr: "cache.example.com:6379", db: 1, tls: true, prefix: "portmux", ttl: DefaultRedisLockTTL,
			wantString: "RedisStorage:rediss://u:xxxxx@cache.example.com/1?dial_timeout=2s&prefix=portmux"},
		{url: "redis://[::1]:6380/0", addr: "[::1]:6380", prefix: "portmux", ttl: DefaultRedisLockTTL},
		{url: "redis:///0", wantErr: "want redis://host"},
		{url: "http://h:6379", wantErr: "want redis://host"},
		{url: "redis://h/x", wantErr: "invalid database number"},
		{url: "redis://h/0?prefix=a:b", wantErr: "prefix"},
		{url: "redis://h/0?prefix=", wantErr: "prefix"},
		{url: "redis://h/0?lock_ttl=10ms", wantErr: "lock_ttl"},
		{url: "redis://h/0?lock_ttl=ten", wantErr: "lock_ttl"},
		{url: "rediss://h/0?skip_verify=true", wantErr: "skip_verify"},
		{url: "redis://h/0?colour=blue", wantErr: "unexpected option"},
		{url: "redis://u:s3cret@h/0#frag", wantErr: "fragment"},
		{url: "redis://u:s3cret@h:port/0", wantErr: "invalid"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			s, err := NewRedisStorage(tc.url, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v; want one containing %q", err, tc.wantErr)
				}
				if strings.Contains(err.Error(), "s3cret") {
					t.Errorf("error %q shows the password", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewRedisStorage: %v", err)
			}
			defer s.Close()
			o := s.client.Options()
			if o.Addr != tc.addr || o.DB != tc.db || (o.TLSConfig != nil) != tc.tls || s.prefix != tc.prefix || s.lockTTL != tc.ttl {
				t.Errorf("addr %q db %d tls %v prefix %q ttl %v; want %q %d %v %q %v",
					o.Addr, o.DB, o.TLSConfig != nil, s.prefix, s.lockTTL, tc.addr, tc.db, tc.tls, tc.prefix, tc.ttl)
			}
			if tc.tls && (o.TLSConfig.InsecureSkipVerify || o.TLSConfig.RootCAs != nil) {
				t.Error("rediss: want verification against the system roots")
			}
			if tc.wantString != "" && s.String() != tc.wantString {
				t.Errorf("String() = %q; want %q", s.String(), tc.wantString)
			}
			if strings.Contains(s.String(), "s3cret") {
				t.Errorf("String() %q shows the password", s.String())
			}
		})
	}
}

// TestRedisPrefixes: two prefixes on one database do not see each
// other's keys or locks.
func TestRedisPrefixes(t *testing.T) {
	ctx := context.Background()
	url := startRedis(t)
	a, b := newRedis(t, url+"?prefix=a"), newRedis(t, url+"?prefix=b")
	if err := a.Store(ctx, "certificates/x/x.crt", []byte("A")); err != nil {
		t.Fatal(err)
	}
	if b.Exists(ctx, "certificates") {
		t.Error("prefix b sees prefix a's keys")
	}
	if _, err := b.Load(ctx, "certificates/x/x.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("b.Load: %v; want fs.ErrNotExist", err)
	}
	if err := a.Lock(ctx, "l"); err != nil {
		t.Fatal(err)
	}
	defer a.Unlock(ctx, "l")
	if ok, err := b.TryLock(ctx, "l"); !ok || err != nil {
		t.Errorf("b.TryLock = %v, %v; want true (separate lock namespaces)", ok, err)
	}
	b.Unlock(ctx, "l")
	// Lock keys never show up as data.
	if keys, err := a.List(ctx, "", true); err != nil || strings.Join(keys, ",") != "certificates,certificates/x,certificates/x/x.crt" {
		t.Errorf("a.List(\"\", true) = %q, %v", keys, err)
	}
}

// TestRedisAuth: a password in the URL is used and never shown.
func TestRedisAuth(t *testing.T) {
	ctx := context.Background()
	url := startRedis(t, "--requirepass", "s3cret")
	good := newRedis(t, strings.Replace(url, "redis://", "redis://:s3cret@", 1))
	if err := good.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatalf("Store with the password: %v", err)
	}
	bad := newRedis(t, strings.Replace(url, "redis://", "redis://:wrong@", 1))
	err := bad.Store(ctx, "k", []byte("v"))
	if err == nil || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Store with a wrong password: %v; want an error without the password", err)
	}
	none := newRedis(t, url)
	if _, err := none.Load(ctx, "k"); err == nil || errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load without the password: %v; want an auth error", err)
	}
}

// TestRedisTLS: rediss:// talks TLS and verifies the server against the
// system roots, so a server certificate from an unknown CA is refused.
func TestRedisTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "redis.crt"), filepath.Join(dir, "redis.key")
	writeServerCert(t, certFile, keyFile)
	plain := startRedis(t, "--tls-port", strconv.Itoa(freePort(t)), "--tls-cert-file", certFile,
		"--tls-key-file", keyFile, "--tls-ca-cert-file", certFile, "--tls-auth-clients", "no")
	// startRedis returned the plain port; find the TLS one from the config.
	s := newRedis(t, plain)
	tlsPort, err := s.client.ConfigGet(context.Background(), "tls-port").Result()
	if err != nil {
		t.Fatalf("CONFIG GET tls-port: %v", err)
	}
	rs := newRedis(t, "rediss://127.0.0.1:"+tlsPort["tls-port"]+"/0")
	err = rs.Store(context.Background(), "k", []byte("v"))
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("Store over TLS to a server with an unknown CA: %v; want x509.UnknownAuthorityError", err)
	}
	// The same server with its CA trusted (set before the first dial):
	// TLS works.
	pool := x509.NewCertPool()
	pem, _ := os.ReadFile(certFile)
	pool.AppendCertsFromPEM(pem)
	trusted := newRedis(t, "rediss://127.0.0.1:"+tlsPort["tls-port"]+"/0")
	trusted.client.Options().TLSConfig.RootCAs = pool
	if err := trusted.Store(context.Background(), "k", []byte("v")); err != nil {
		t.Errorf("Store over TLS with the CA trusted: %v", err)
	}
}

// writeServerCert writes a self-signed certificate for 127.0.0.1.
func writeServerCert(t *testing.T, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := randomSerial()
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "test redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// TestRedisUnlockAfterCancel: certmagic unlocks with the context of work
// that was canceled; the lock must still be released.
func TestRedisUnlockAfterCancel(t *testing.T) {
	url := startRedis(t)
	s := newRedis(t, url)
	ctx, cancel := context.WithCancel(context.Background())
	if err := s.Lock(ctx, "issue_cert_a"); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := s.Unlock(ctx, "issue_cert_a"); err != nil {
		t.Fatalf("Unlock with a canceled context: %v", err)
	}
	if n, _ := s.client.Exists(context.Background(), s.lockKey("issue_cert_a")).Result(); n != 0 {
		t.Error("lock key still there")
	}
	if err := s.Unlock(context.Background(), "issue_cert_a"); err == nil {
		t.Error("second Unlock succeeded")
	}
}

// TestRedisLockLost: a holder that could not renew in time (here: its key
// deleted behind its back, as if it expired) learns it at Unlock, and
// does not delete the lock someone else took meanwhile.
func TestRedisLockLost(t *testing.T) {
	ctx := context.Background()
	url := startRedis(t)
	a, b := newRedis(t, url+"?lock_ttl=1s"), newRedis(t, url+"?lock_ttl=1s")
	if err := a.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	a.client.Del(ctx, a.lockKey("x"))
	if err := b.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx, "x"); !errors.Is(err, errLockLost) {
		t.Errorf("a.Unlock: %v; want errLockLost", err)
	}
	if ok, _ := a.TryLock(ctx, "x"); ok {
		t.Error("a took b's lock after its own Unlock")
	}
	if err := b.Unlock(ctx, "x"); err != nil {
		t.Errorf("b.Unlock: %v", err)
	}
}

// TestRedisCloseReleases: Close releases held locks at once.
func TestRedisCloseReleases(t *testing.T) {
	ctx := context.Background()
	url := startRedis(t)
	a, b := newRedis(t, url), newRedis(t, url)
	if err := a.Lock(ctx, "x"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if ok, err := b.TryLock(ctx, "x"); !ok || err != nil {
		t.Errorf("TryLock after the holder's Close = %v, %v; want true", ok, err)
	}
	if err := a.Unlock(ctx, "x"); err != nil {
		t.Errorf("Unlock after Close: %v; want nil (Close released it)", err)
	}
	if _, err := a.TryLock(ctx, "y"); err == nil {
		t.Error("TryLock after Close succeeded")
	}
	b.Unlock(ctx, "x")
}

// TestRedisInternalCAOneRoot: managers sharing a Redis storage share one
// internal CA root, made once even when they start together, and
// RootPEMFromStorage reads it from the URL.
func TestRedisInternalCAOneRoot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := startRedis(t)
	const n = 3
	roots := make([][]byte, n)
	errs := make(chan error, n)
	for i := range n {
		m := newManager(t, Options{CA: CAInternal, Storage: url})
		go func() {
			var err error
			roots[i], err = m.RootPEM(ctx)
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("RootPEM: %v", err)
		}
	}
	for i := 1; i < n; i++ {
		if !bytes.Equal(roots[i], roots[0]) {
			t.Fatalf("replica %d has another root", i)
		}
	}
	got, err := RootPEMFromStorage(ctx, url)
	if err != nil || !bytes.Equal(got, roots[0]) {
		t.Errorf("RootPEMFromStorage(url) = %v; want the replicas' root", err)
	}
	if _, err := RootPEMFromStorage(ctx, url+"?prefix=other"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("RootPEMFromStorage(other prefix): %v; want fs.ErrNotExist", err)
	}
}

// TestNewRedisStorageOption: New takes a Redis URL as Options.Storage
// without connecting (a Redis that is down cannot delay startup), and
// refuses a bad one.
func TestNewRedisStorageOption(t *testing.T) {
	start := time.Now()
	m := newManager(t, Options{CA: CAInternal, Storage: "redis://127.0.0.1:1/0"})
	if d := time.Since(start); d > time.Second {
		t.Errorf("New took %v; want no connection attempt", d)
	}
	if _, ok := m.storage.(*RedisStorage); !ok {
		t.Errorf("storage %T; want *RedisStorage", m.storage)
	}
	if _, err := New(Options{CA: CAInternal, Storage: "redis://u:s3cret@h/0?prefix=a:b"}); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("New with a bad prefix: %v; want an error without the password", err)
	}
	if _, err := New(Options{CA: CAInternal, Storage: "rediss://h/0?skip_verify=true"}); err == nil {
		t.Error("New accepted skip_verify")
	}
}
