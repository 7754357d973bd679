package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/spf13/afero"
)

// pendingBackend returns the prepared backend data connection of the only
// pending expectation (white box: the test must see it closed later).
func (w *ftpWorld) pendingBackend(t *testing.T) net.Conn {
	t.Helper()
	w.claims.mu.Lock()
	defer w.claims.mu.Unlock()
	if len(w.claims.pending) != 1 {
		t.Fatalf("%d data connections expected; want 1", len(w.claims.pending))
	}
	for _, e := range w.claims.pending {
		return e.backend
	}
	return nil
}

// checkClosed fails unless c was closed by portmux.
func checkClosed(t *testing.T, c net.Conn) {
	t.Helper()
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("prepared backend data connection: read error %v; want it closed", err)
	}
}

// TestFTPDataClaimOnlyClientIP: while a data connection is expected, one
// from another IP is not claimed (mux sniffs it as usual); the client's is.
func TestFTPDataClaimOnlyClientIP(t *testing.T) {
	w := newFTPWorld(t, 0, nil)
	afero.WriteFile(w.back.fs, "/hello.txt", []byte("hello through portmux\n"), 0o644)
	r := w.rawClient(t, ftpClientIP)
	r.login(t)
	r.expect(t, "EPSV", 229)

	w.rawClient(t, ftpStrangerIP) // gets a greeting: handled as a new control connection
	if got := w.claimed.Load(); got != 0 {
		t.Fatalf("claimed %d connections from a stranger; want 0", got)
	}
	if got := w.claims.Pending(); got != 1 {
		t.Fatalf("%d data connections expected after the stranger; want 1", got)
	}

	d, err := ftpDialFrom(ftpClientIP, w.front)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if code, msg, err := r.do("RETR /hello.txt"); err != nil || code != 150 {
		t.Fatalf("RETR: %d %q, %v", code, msg, err)
	}
	got, err := io.ReadAll(d)
	if err != nil || string(got) != "hello through portmux\n" {
		t.Errorf("RETR data %q, %v", got, err)
	}
	if code, msg, err := r.tp.ReadResponse(0); err != nil || code != 226 {
		t.Errorf("RETR end: %d %q, %v", code, msg, err)
	}
	if got := w.claimed.Load(); got != 1 {
		t.Errorf("claimed %d connections; want 1", got)
	}
}

// TestFTPDataClaimExpiry: an expectation nobody takes expires, its backend
// connection is closed, and a late data connection is not claimed.
func TestFTPDataClaimExpiry(t *testing.T) {
	w := newFTPWorld(t, 200*time.Millisecond, nil)
	r := w.rawClient(t, ftpClientIP)
	r.login(t)
	r.expect(t, "PASV", 227)
	back := w.pendingBackend(t)
	ftpWaitFor(t, "expiry", func() bool { return w.claims.Pending() == 0 })
	checkClosed(t, back)
	// The line is written just after the expectation leaves the table.
	ftpWaitFor(t, "expiry log", func() bool {
		return w.logs.FilterMessage("ftp data connection expectation expired").Len() >= 1
	})
	expired := w.logs.FilterMessage("ftp data connection expectation expired").AllUntimed()
	if len(expired) != 1 {
		t.Fatalf("expiry logged %d times; want once", len(expired))
	}
	// The line names the session (client and backend of its control
	// connection), where its client was sent and the backend's data
	// address, not the table's internal key (port 0 for the mux port).
	fields := expired[0].ContextMap()
	want := map[string]string{
		"client":    r.c.LocalAddr().String(),
		"backend":   w.gw.Addr,
		"announced": w.front,
		"data":      back.RemoteAddr().String(),
	}
	for k, v := range want {
		if got := fmt.Sprint(fields[k]); got != v {
			t.Errorf("expiry log field %s = %q; want %q", k, got, v)
		}
	}
	if _, ok := fields["port"]; ok {
		t.Errorf("expiry log has a port field: %v", fields)
	}
	w.rawClient(t, ftpClientIP) // a greeting: not claimed
	if got := w.claimed.Load(); got != 0 {
		t.Errorf("claimed %d late connections; want 0", got)
	}
	r.expect(t, "NOOP", 200) // the control connection lives on
}

// TestFTPDataNeverOpened: a client that asks for passive mode and never
// connects leaves nothing behind: a new PASV replaces its expectation, and
// the end of its control connection drops it (goleak checks goroutines).
func TestFTPDataNeverOpened(t *testing.T) {
	w := newFTPWorld(t, 0, nil)
	r := w.rawClient(t, ftpClientIP)
	r.login(t)
	r.expect(t, "EPSV", 229)
	first := w.pendingBackend(t)
	r.expect(t, "EPSV", 229)
	checkClosed(t, first)
	second := w.pendingBackend(t)
	r.c.Close()
	ftpWaitFor(t, "session end", func() bool { return w.sessions.Load() == 0 })
	if got := w.claims.Pending(); got != 0 {
		t.Errorf("%d data connections still expected after the session; want 0", got)
	}
	checkClosed(t, second)
}

// TestFTPAuthTLSRefused: explicit FTPS is answered by portmux, never
// forwarded, and the session goes on in plain text.
func TestFTPAuthTLSRefused(t *testing.T) {
	w := newFTPWorld(t, 0, nil)
	r := w.rawClient(t, ftpClientIP)
	for _, cmd := range []string{"AUTH TLS", "auth ssl"} {
		if msg := r.expect(t, cmd, 534); !strings.Contains(msg, "plain FTP only") {
			t.Errorf("%s: reply %q does not say why", cmd, msg)
		}
	}
	r.login(t)
	if got := w.logs.FilterMessage("ftp explicit TLS refused").Len(); got != 2 {
		t.Errorf("%d refusals logged; want 2", got)
	}
}

// TestFTPActiveRefused: PORT and EPRT may only name the client's own IP
// (no FTP bounce), and bad arguments are refused before the backend.
func TestFTPActiveRefused(t *testing.T) {
	w := newFTPWorld(t, 0, nil)
	r := w.rawClient(t, ftpClientIP)
	r.login(t)
	cases := []struct {
		cmd  string
		code int
	}{
		{"PORT 10,0,0,1,4,1", 500},
		{"PORT 127,0,0,5,4,1", 500},
		{"EPRT |1|127.0.0.5|1025|", 522},
		{"EPRT |2|::1|1025|", 522},
		{"PORT 127,0,0,4,0,0", 501},
		{"PORT 1,2,3", 501},
		{"EPRT |3|127.0.0.4|1025|", 501},
	}
	for _, tc := range cases {
		r.expect(t, tc.cmd, tc.code)
	}
	if got := w.logs.FilterMessage("ftp data address refused: not the client's own").Len(); got != 4 {
		t.Errorf("%d refusals logged; want 4", got)
	}
	r.expect(t, "NOOP", 200)
}

// TestFTPActiveUnspecified: a client that announces the unspecified address
// (lftp over loopback sends "EPRT |2|::|port|") means itself: portmux
// connects to the client's own IP at that port.
func TestFTPActiveUnspecified(t *testing.T) {
	w := newFTPWorld(t, 0, nil)
	r := w.rawClient(t, ftpClientIP)
	r.login(t)
	want, _ := ftpSum(ftpPayload(3, 64<<10))
	if _, _, err := r.active("PORT", "STOR /small.bin", ftpClientIP, ftpPayload(3, 64<<10)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ verb, shown string }{{"EPRT", "::"}, {"EPRT", "0.0.0.0"}, {"PORT", "0.0.0.0"}} {
		got, peer, err := r.activeShown(tc.verb, "RETR /small.bin", ftpClientIP, netip.MustParseAddr(tc.shown), nil)
		if err != nil {
			t.Fatalf("%s naming %s: %v", tc.verb, tc.shown, err)
		}
		if got != want || peer != netip.MustParseAddr(ftpFrontIP) {
			t.Errorf("%s naming %s: digest %s from %s; want %s from %s", tc.verb, tc.shown, got, peer, want, ftpFrontIP)
		}
	}
	if got := w.logs.FilterMessage("ftp data address refused: not the client's own").Len(); got != 0 {
		t.Errorf("%d refusals logged; want none", got)
	}
}

// TestFTPPublicIPv6: PASV cannot name an IPv6 address; EPSV still works.
func TestFTPPublicIPv6(t *testing.T) {
	w := newFTPWorld(t, 0, func(f *FTP) { f.PublicAddr = netip.MustParseAddr("2001:db8::21") })
	r := w.rawClient(t, ftpClientIP)
	r.login(t)
	r.expect(t, "PASV", 425)
	msg := r.expect(t, "EPSV", 229)
	if _, err := parse229(msg); err != nil {
		t.Errorf("EPSV reply %q: %v", msg, err)
	}
}

// TestFTPLineTooLong: an endless control line closes the session.
func TestFTPLineTooLong(t *testing.T) {
	w := newFTPWorld(t, 0, nil)
	r := w.rawClient(t, ftpClientIP)
	r.c.Write([]byte("NOOP " + strings.Repeat("x", maxFTPLine)))
	if _, err := io.ReadAll(r.c); err != nil && !isReset(err) {
		t.Errorf("after a long line: %v; want the connection closed", err)
	}
	ftpWaitFor(t, "session end", func() bool { return w.sessions.Load() == 0 })
	if errs := w.serveErrors(); len(errs) != 1 || !errors.Is(errs[0], ErrFTPLineTooLong) {
		t.Errorf("Serve returned %v; want [%v]", errs, ErrFTPLineTooLong)
	}
}

// TestFTPLongAddressRefused: LPRT and LPSV would name data addresses the
// gateway neither rewrites nor checks (no bounce protection): refused, and
// the session goes on.
func TestFTPLongAddressRefused(t *testing.T) {
	w := newFTPWorld(t, 0, nil)
	r := w.rawClient(t, ftpClientIP)
	r.login(t)
	for _, cmd := range []string{"LPSV", "LPRT 4,4,192,0,2,1,2,4,1"} {
		if msg := r.expect(t, cmd, 502); !strings.Contains(msg, "not supported through portmux") {
			t.Errorf("%s: got %q", cmd, msg)
		}
	}
	r.expect(t, "NOOP", 200)
}
