package test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// HTTP/2 connections that portmux terminates send their writes through a
// coalescing buffer (mux/coalesce.go): these tests drain such connections,
// with a client that reads and with one that stopped reading.

// opsDrainH2Config terminates TLS for localhost (internal CA) in front of
// web (route app), and sends plain HTTP, h2c included, to web too (route
// plain).
func opsDrainH2Config(admin, grace, storage, web string) string {
	return fmt.Sprintf(`listen: ["127.0.0.1:0"]
sniff_timeout: 10s
admin: {listen: %q}
shutdown_grace: %s
log: {level: info, format: json}
tls: {ca: internal, storage: %s}
routes:
  - name: app
    match: {protocol: tls, sni: [localhost]}
    tls: terminate
    to: %s
  - name: plain
    match: {protocol: http}
    to: %s
`, admin, grace, storage, web, web)
}

// startOpsH2 starts portmux with opsDrainH2Config and returns it with the
// base URL of its HTTPS side and the trusted roots for it.
func startOpsH2(t *testing.T, grace string, web *opsWeb) (*opsPM, string, *tls.Config) {
	t.Helper()
	yaml := opsDrainH2Config(closedPort(t), grace, certStorage(t), web.URL)
	pm := startOpsPM(t, yaml)
	pm.WaitLog(t, certObtained("localhost"), time.Minute)
	roots := &tls.Config{RootCAs: poolFromPEM(t, portmuxTrust(t, yaml))}
	return pm, "https://localhost:" + portOf(t, pm.Addr()), roots
}

// TestE2EOpsDrainHTTP2: SIGTERM while a 32 MB download over h2 is held by
// its backend part way through. When the backend goes on, the download
// completes intact on the same connection, and portmux exits 0 with the
// connection logged ok, all its bytes counted, and no warning.
func TestE2EOpsDrainHTTP2(t *testing.T) {
	const n, hold, seed = 32 << 20, 4 << 20, 91
	gate := newOpsGate(t)
	web := startOpsWeb(t, "drain-h2", gate, nil)
	pm, base, tlsConf := startOpsH2(t, "2m", web)
	hc := newHTTPSClient(t, pm.Addr(), tlsConf.RootCAs, true)

	var got opsCounter
	done := make(chan error, 1)
	go func() {
		done <- opsDownloadURL(hc.Client, fmt.Sprintf("%s/held?seed=%d&n=%d&hold=%d", base, seed, n, hold), seed, n, &got)
	}()
	if err := gate.WaitReached(time.Minute); err != nil {
		t.Fatal(err)
	}
	pm.Terminate(t)
	waitDraining(t, pm)
	if pm.Exited() {
		t.Fatalf("portmux exited with an h2 download in flight, inside shutdown_grace\n%s", pm.dump())
	}
	gate.Open()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("h2 download across the drain: %v", err)
		}
	case <-time.After(5 * time.Minute):
		t.Fatalf("h2 download still running 5m after the backend was released (%d bytes)", got.n.Load())
	}
	hc.Tr.CloseIdleConnections()
	pm.Stop(t) // exit 0, no race
	locals := hc.Locals()
	if len(locals) != 1 {
		t.Fatalf("%d client connections; want 1", len(locals))
	}
	l := pm.WaitLog(t, connOf(locals[0]), time.Second)
	checkFields(t, l, map[string]string{"route": "app", "alpn_negotiated": "h2", "outcome": "ok"})
	if down := numField(l, "bytes_down"); down < n {
		t.Errorf("bytes_down %d; want at least the %d bytes of the body", down, n)
	}
	if ls := pm.Find(func(l logLine) bool { return l.Level() == "warn" || l.Level() == "error" }); len(ls) > 0 {
		t.Errorf("warnings or errors during a drain that finished within the grace: %v", ls)
	}
}

// TestE2EOpsDrainHTTP2ClientStopsReading: an h2 client, over TLS and over
// h2c, stops reading its socket in the middle of a 256 MB download, so
// portmux's sends to it block with bytes queued. SIGTERM with a 1s grace:
// when the grace ends portmux closes the connection at once (logged as
// shutdown), without waiting for the queued bytes, and exits 0.
func TestE2EOpsDrainHTTP2ClientStopsReading(t *testing.T) {
	t.Run("h2 over TLS", func(t *testing.T) { drainStalledH2(t, true) })
	t.Run("h2c", func(t *testing.T) { drainStalledH2(t, false) })
}

func drainStalledH2(t *testing.T, overTLS bool) {
	const n = 256 << 20
	web := startOpsWeb(t, "stalled-h2", newOpsGate(t), nil)
	pm, base, tlsConf := startOpsH2(t, "1s", web)
	route := "app"

	stall, stalled := make(chan struct{}), make(chan struct{})
	defer close(stall)
	locals := make(chan string, 1)
	dial := func(ctx context.Context) (net.Conn, error) {
		c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", pm.Addr())
		if err != nil {
			return nil, err
		}
		c.(*net.TCPConn).SetReadBuffer(64 << 10)
		locals <- c.LocalAddr().String()
		sc := &stallingConn{Conn: c, after: 8 << 20, stalled: stalled, stall: stall}
		if !overTLS {
			return sc, nil
		}
		tc := tls.Client(sc, &tls.Config{ServerName: "localhost", RootCAs: tlsConf.RootCAs, NextProtos: []string{"h2"}})
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		return tc, nil
	}
	tr := &http.Transport{
		// Flow control lets portmux send far more than the socket buffers
		// hold, so its sends block on the socket.
		HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 20, MaxReceiveBufferPerConnection: 64 << 20},
	}
	if overTLS {
		tr.ForceAttemptHTTP2 = true
		tr.DialTLSContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
	} else {
		var protos http.Protocols
		protos.SetUnencryptedHTTP2(true) // prior knowledge: the preface first
		tr.Protocols = &protos
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }
		base, route = "http://h2c.test", "plain"
	}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(fmt.Sprintf("%s/blob?seed=3&n=%d", base, n))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("proto %s; want HTTP/2", resp.Proto)
	}
	go io.Copy(io.Discard, resp.Body) // until the socket reads stall
	select {
	case <-stalled:
	case <-time.After(time.Minute):
		t.Fatal("the client read less than 8 MB in 1m")
	}
	local := <-locals
	pm.Terminate(t)
	pm.Stop(t) // exit 0 within its guard
	l := pm.WaitLog(t, connOf(local), time.Second)
	checkFields(t, l, map[string]string{"route": route, "outcome": "shutdown"})
	pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "drain grace ended: closed the remaining connections" }, time.Second)
	// Not a speed check: a close that waited for the queued bytes would
	// come 5s (closeFlushTimeout) after the grace at the earliest.
	term := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "shutting down: draining live connections" }, time.Second)
	if d := logTime(t, l).Sub(logTime(t, term)); d >= 5*time.Second {
		t.Errorf("connection closed %v after SIGTERM with a 1s grace; want it closed when the grace ended", d)
	}
}

// stallingConn passes reads through until after bytes have been read, then
// closes stalled and blocks reads until stall is closed: a client that stops
// reading its socket.
type stallingConn struct {
	net.Conn
	after   int
	read    int
	stalled chan<- struct{}
	stall   <-chan struct{}
}

func (c *stallingConn) Read(p []byte) (int, error) {
	if c.read >= c.after {
		if c.stalled != nil {
			close(c.stalled)
			c.stalled = nil
		}
		<-c.stall
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p[:min(len(p), c.after-c.read)])
	c.read += n
	return n, err
}
