package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/textproto"
	"sync"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
)

// Test clients: jlaffaye/ftp for passive mode (it has no active mode), and
// a raw net/textproto client for PORT/EPRT and for the odd cases.

// ftpDialog collects jlaffaye's debug output (the control dialogue).
type ftpDialog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *ftpDialog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *ftpDialog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// ftpClient logs in through the front from the loopback address from. Its
// data connections leave from the same address. The session ends when the
// test ends.
func (w *ftpWorld) ftpClient(t *testing.T, from string, opts ...ftp.DialOption) (*ftp.ServerConn, *ftpDialog) {
	t.Helper()
	dialog := &ftpDialog{}
	dial := func(_, addr string) (net.Conn, error) { return ftpDialFrom(from, addr) }
	opts = append([]ftp.DialOption{ftp.DialWithDialFunc(dial), ftp.DialWithDebugOutput(dialog)}, opts...)
	c, err := ftp.Dial(w.front, opts...)
	if err != nil {
		t.Fatalf("ftp dial: %v", err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login(ftpTestUser, ftpTestPass); err != nil {
		t.Fatalf("ftp login: %v", err)
	}
	return c, dialog
}

// ftpSum is the sha256 of what r yields.
func ftpSum(r io.Reader) (string, error) {
	h := sha256.New()
	_, err := io.Copy(h, r)
	return fmt.Sprintf("%x", h.Sum(nil)), err
}

// ftpRoundTrip uploads n bytes, checks what the backend stored and the
// listing, downloads the file back and compares digests. It returns errors
// rather than failing, for use from goroutines.
func ftpRoundTrip(c *ftp.ServerConn, b *ftpBackend, name string, seed uint64, n int64) error {
	want, _ := ftpSum(ftpPayload(seed, n))
	if err := c.Stor(name, ftpPayload(seed, n)); err != nil {
		return fmt.Errorf("STOR %s: %w", name, err)
	}
	f, err := b.fs.Open(name)
	if err != nil {
		return fmt.Errorf("backend open %s: %w", name, err)
	}
	stored, err := ftpSum(f)
	f.Close()
	if err != nil || stored != want {
		return fmt.Errorf("backend stored %s: digest %s, %v; want %s", name, stored, err, want)
	}
	entries, err := c.List("/")
	if err != nil {
		return fmt.Errorf("LIST: %w", err)
	}
	found := false
	for _, e := range entries {
		found = found || "/"+e.Name == name && e.Size == uint64(n)
	}
	if !found {
		return fmt.Errorf("LIST: %s of %d bytes missing from %d entries", name, n, len(entries))
	}
	r, err := c.Retr(name)
	if err != nil {
		return fmt.Errorf("RETR %s: %w", name, err)
	}
	got, err := ftpSum(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil || got != want {
		return fmt.Errorf("RETR %s: digest %s, %v; want %s", name, got, err, want)
	}
	return nil
}

// rawFTP is a hand-driven control connection.
type rawFTP struct {
	c  net.Conn
	tp *textproto.Conn
}

// rawClient connects through the front from the loopback address from and
// reads the greeting.
func (w *ftpWorld) rawClient(t *testing.T, from string) *rawFTP {
	t.Helper()
	c, err := ftpDialFrom(from, w.front)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	r := &rawFTP{c: c, tp: textproto.NewConn(c)}
	if code, msg, err := r.tp.ReadResponse(0); err != nil || code != 220 {
		t.Fatalf("greeting: %d %q, %v; want 220", code, msg, err)
	}
	return r
}

// do sends one command and reads its reply.
func (r *rawFTP) do(cmd string) (int, string, error) {
	if err := r.tp.PrintfLine("%s", cmd); err != nil {
		return 0, "", err
	}
	return r.tp.ReadResponse(0)
}

// expect sends cmd and fails the test unless the reply has code.
func (r *rawFTP) expect(t *testing.T, cmd string, code int) string {
	t.Helper()
	got, msg, err := r.do(cmd)
	if err != nil || got != code {
		t.Fatalf("%s: got %d %q, %v; want %d", cmd, got, msg, err, code)
	}
	return msg
}

func (r *rawFTP) login(t *testing.T) {
	t.Helper()
	r.expect(t, "USER "+ftpTestUser, 331)
	r.expect(t, "PASS "+ftpTestPass, 230)
	r.expect(t, "TYPE I", 200)
}

// active runs one transfer in active mode: verb (PORT or EPRT) announces a
// listener on from, then cmd (STOR x or RETR x) runs; up is sent for STOR,
// the received bytes' digest is returned for RETR, with the address the
// data connection came from.
func (r *rawFTP) active(verb, cmd, from string, up io.Reader) (string, netip.Addr, error) {
	return r.activeShown(verb, cmd, from, netip.Addr{}, up)
}

// activeShown is active with the listener's address shown as shown in the
// PORT or EPRT argument (the listener's own when zero).
func (r *rawFTP) activeShown(verb, cmd, from string, shown netip.Addr, up io.Reader) (string, netip.Addr, error) {
	ln, err := net.Listen("tcp", from+":0")
	if err != nil {
		return "", netip.Addr{}, err
	}
	defer ln.Close()
	at := ln.Addr().(*net.TCPAddr).AddrPort()
	if shown.IsValid() {
		at = netip.AddrPortFrom(shown, at.Port())
	}
	arg := formatEPRT(at)
	if verb == "PORT" {
		arg = formatPORT(at)
	}
	if code, msg, err := r.do(verb + " " + arg); err != nil || code != 200 {
		return "", netip.Addr{}, fmt.Errorf("%s: %d %q, %v", verb, code, msg, err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(time.Minute))
		c, _ := ln.Accept()
		accepted <- c
	}()
	defer func() {
		ln.Close()
		if c := <-accepted; c != nil {
			c.Close()
		}
	}()
	if err := r.tp.PrintfLine("%s", cmd); err != nil {
		return "", netip.Addr{}, err
	}
	if code, msg, err := r.tp.ReadResponse(0); err != nil || code != 150 && code != 125 {
		return "", netip.Addr{}, fmt.Errorf("%s: %d %q, %v", cmd, code, msg, err)
	}
	c := <-accepted
	accepted <- c // for the deferred close
	if c == nil {
		return "", netip.Addr{}, errors.New("no active data connection")
	}
	peer := netAddrIP(c.RemoteAddr())
	var digest string
	if up != nil {
		_, err = io.Copy(c, up)
	} else {
		digest, err = ftpSum(c)
	}
	c.Close()
	if err != nil {
		return "", peer, fmt.Errorf("%s: data: %w", cmd, err)
	}
	if code, msg, err := r.tp.ReadResponse(0); err != nil || code != 226 {
		return "", peer, fmt.Errorf("%s: end: %d %q, %v", cmd, code, msg, err)
	}
	return digest, peer, nil
}
