package test

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// garbagePrefix starts every "random bytes" payload: no protocol begins with NUL.
var garbagePrefix = []byte{0x00, 0x01, 0x02, 0x03}

// garbage returns garbagePrefix followed by n bytes of payload(seed).
func garbage(t testing.TB, seed uint64, n int64) []byte {
	t.Helper()
	b, err := io.ReadAll(io.MultiReader(bytes.NewReader(garbagePrefix), payload(seed, n)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sendAndWaitClosed writes data (from a goroutine: the write may fail once portmux
// closes) and waits up to 10s for portmux to close the connection. It returns the
// connection's local address and what was read back.
func sendAndWaitClosed(t *testing.T, addr string, data []byte) (string, []byte) {
	t.Helper()
	c, err := dialTCP(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		wrote <- err
	}()
	got, err := waitClosed(c, 10*time.Second)
	if err != nil {
		t.Fatalf("portmux did not close the connection: %v", err)
	}
	if err := <-wrote; err != nil && !isClosedErr(err) {
		t.Errorf("write: %v; want success or a closed-connection error", err)
	}
	return local, got
}

// TestE2EUnrecognized: bytes that match no protocol, and no fallback route: portmux
// closes the connection and logs outcome unrecognized; no backend hears of it.
func TestE2EUnrecognized(t *testing.T) {
	w := startWorld(t, worldOpts{})
	local, got := sendAndWaitClosed(t, w.PM.Addr(), garbage(t, 51, 4096))
	if len(got) != 0 {
		t.Errorf("read %d bytes (%q...) before close; want none", len(got), trunc(string(got)))
	}
	l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, l, map[string]string{"outcome": "unrecognized", "protocol": "unknown", "route": ""})
	if n := w.FTP.Accepted() + w.Echo.Accepted() + w.ReplyEOF.Accepted() + w.SSH.Accepted(); n != 0 {
		t.Errorf("backends accepted %d connections; want 0", n)
	}
}

// TestE2EFallback: with a {protocol: unknown} route the same bytes are relayed, both
// ways and exactly, to the fallback (echo) backend.
func TestE2EFallback(t *testing.T) {
	w := startWorld(t, worldOpts{FallbackTo: toEcho})
	sent, got, local, err := roundTrip(w.PM.Addr(), garbagePrefix, 52, 256<<10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got != sent {
		t.Errorf("echo through fallback: got %+v; want %+v", got, sent)
	}
	l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, l, map[string]string{"outcome": "ok", "protocol": "unknown", "route": "fallback", "backend": w.Echo.Addr()})
	checkBytes(t, l, "bytes_up", sent.N)
	checkBytes(t, l, "bytes_down", sent.N)
}

// TestE2EOversizedLine: a 200 KB first line of letters with no newline is closed, as
// unrecognized or oversized (sniff_max_bytes is 64 KiB), never relayed.
func TestE2EOversizedLine(t *testing.T) {
	w := startWorld(t, worldOpts{})
	line := make([]byte, 200<<10)
	for i := range line {
		line[i] = 'a' + byte(i%26)
	}
	local, got := sendAndWaitClosed(t, w.PM.Addr(), line)
	if len(got) != 0 {
		t.Errorf("read %d bytes (%q...) before close; want none", len(got), trunc(string(got)))
	}
	l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
	if o := l.Str("outcome"); o != "unrecognized" && o != "oversized" {
		t.Errorf("outcome %q; want unrecognized or oversized\nline: %s", o, l.Raw)
	}
	if l.Str("route") != "" {
		t.Errorf("route %q; want none\nline: %s", l.Str("route"), l.Raw)
	}
	if n := w.FTP.Accepted() + w.Echo.Accepted() + w.SSH.Accepted(); n != 0 {
		t.Errorf("backends accepted %d connections; want 0", n)
	}
}

// TestE2EClientClosed: a client that connects and closes at once is logged as
// client_closed and never handed to the silent (FTP) route.
func TestE2EClientClosed(t *testing.T) {
	w := startWorld(t, worldOpts{})
	c, err := dialTCP(w.PM.Addr())
	if err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().String()
	c.Close()

	l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, l, map[string]string{"outcome": "client_closed", "route": ""})
	// The line is written when portmux is done with the connection, so no dial to
	// the FTP backend can follow it; stop portmux to be sure, then count.
	w.PM.Stop(t)
	if n := w.FTP.Accepted(); n != 0 {
		t.Errorf("FTP backend accepted %d connections; want 0", n)
	}
}

// TestE2EMalformedHTTP: a request that starts as HTTP does (a method and
// a space, then a path) but whose request line no server can take gets
// an HTTP answer with Connection: close, not a silent close, and its
// connection line says bad_request with the status: a space in the
// target 400, a version other than HTTP/1 505 (HTTP/2.0 and HTTP/3 in
// HTTP/1 syntax), a request line over 64 KiB (sniff_max_bytes and
// http.max_header_bytes) 414, even though the Host that routing looks
// for never arrives. No upstream sees any of them, and the line names no
// route of theirs (":http", as for requests no route takes).
func TestE2EMalformedHTTP(t *testing.T) {
	api, web := startL7Backend(t, "api"), startL7Backend(t, "web")
	pm := startPortmux(t, lineEndsConfig(api, web))
	long := "GET /" + strings.Repeat("a", 70<<10) + " HTTP/1.1\r\nHost: api.test\r\n\r\n"
	for _, tc := range []struct {
		name, raw string
		status    int
	}{
		{"space in the target", "GET /a b HTTP/1.1\r\nHost: api.test\r\n\r\n", http.StatusBadRequest},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: api.test\r\n\r\n", http.StatusHTTPVersionNotSupported},
		{"HTTP/3", "GET / HTTP/3\r\nHost: api.test\r\n\r\n", http.StatusHTTPVersionNotSupported},
		{"request line over 64 KiB", long, http.StatusRequestURITooLong},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resps, bodies, local := sendAll(t, pm.Addr(), tc.raw)
			if len(resps) != 1 || resps[0].StatusCode != tc.status || !resps[0].Close || len(bodies[0]) > 200 {
				t.Fatalf("got %d responses %q; want one %d with a short body and Connection: close", len(resps), bodies, tc.status)
			}
			l := pm.WaitLog(t, connOf(local), 10*time.Second)
			// No route took the request: not the route of its Host.
			checkFields(t, l, map[string]string{"protocol": "http", "outcome": "bad_request", "route": ":http"})
			if !strings.Contains(l.Str("error"), strconv.Itoa(tc.status)) {
				t.Errorf("connection line's error %q; want the %d\nline: %s", l.Str("error"), tc.status, l.Raw)
			}
		})
	}
	if n := api.Hits() + web.Hits(); n != 0 {
		t.Errorf("upstreams got %d requests; want none", n)
	}
}
