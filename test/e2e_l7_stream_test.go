package test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestE2EL7SSE: a server-sent event reaches the client while the stream is
// still open (the backend sends the second event only after the client has
// read the first), then the stream ends normally.
func TestE2EL7SSE(t *testing.T) {
	backend := startL7Backend(t, "sse")
	pm := startOneRoute(t, "sse", backend)
	hc := newL7Client(t, pm.Addr(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://sse.test/sse", nil)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("got %s %q; want 200 text/event-stream", resp.Status, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	first, err := readEvent(br)
	if err != nil {
		t.Fatalf("first event (the backend holds the stream open until it is read): %v", err)
	}
	if first != "data: first" {
		t.Errorf("first event %q; want %q", first, "data: first")
	}
	backend.ReleaseSSE()
	second, err := readEvent(br)
	if err != nil || second != "data: second" {
		t.Errorf("second event %q (%v); want %q", second, err, "data: second")
	}
	if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
		t.Errorf("after the last event: %q, %v; want the stream to end", rest, err)
	}
	rl := pm.WaitLog(t, requestLog("/sse"), 10*time.Second)
	if got := numField(rl, "status"); got != http.StatusOK {
		t.Errorf("request line status %d; want 200", got)
	}
}

// readEvent reads one SSE event (lines up to a blank line), joined by "\n".
func readEvent(br *bufio.Reader) (string, error) {
	var lines []string
	for i := 0; i < 100; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			return strings.Join(lines, "\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			return strings.Join(lines, "\n"), nil
		}
		lines = append(lines, line)
	}
	return strings.Join(lines, "\n"), fmt.Errorf("no blank line after 100 lines")
}

// TestE2EL7WebSocket: a gorilla/websocket client and server exchange text and
// binary messages through portmux's one port.
func TestE2EL7WebSocket(t *testing.T) {
	backend := startL7Backend(t, "ws")
	pm := startOneRoute(t, "ws", backend)
	var local string
	d := websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", pm.Addr())
			if err == nil {
				local = c.LocalAddr().String()
			}
			return c, err
		},
		HandshakeTimeout: 30 * time.Second,
	}
	ws, resp, err := d.Dial("ws://ws.test/ws", nil)
	if err != nil {
		status := ""
		if resp != nil {
			status = resp.Status
		}
		t.Fatalf("WebSocket handshake through portmux: %v (response %q)", err, status)
	}
	defer ws.Close()
	if got := resp.Header.Get("X-Backend-Name"); got != "ws" {
		t.Errorf("upgrade answered by %q; want ws", got)
	}
	big, err := io.ReadAll(payload(9, 256<<10))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello")},
		{websocket.BinaryMessage, big},
		{websocket.TextMessage, []byte("bye")},
	}
	for i, m := range msgs {
		ws.SetWriteDeadline(time.Now().Add(30 * time.Second))
		if err := ws.WriteMessage(m.typ, m.data); err != nil {
			t.Fatalf("message %d: write: %v", i, err)
		}
		ws.SetReadDeadline(time.Now().Add(30 * time.Second))
		typ, got, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: read: %v", i, err)
		}
		if typ != m.typ || !bytes.Equal(got, m.data) {
			t.Errorf("message %d: echo type %d, %d bytes; want type %d, %d bytes equal", i, typ, len(got), m.typ, len(m.data))
		}
	}
	ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(5*time.Second))
	ws.Close()
	rl := pm.WaitLog(t, requestLog("/ws"), 20*time.Second)
	if got := numField(rl, "status"); got != http.StatusSwitchingProtocols {
		t.Errorf("request line status %d; want 101\nline: %s", got, rl.Raw)
	}
	cl := pm.WaitLog(t, connOf(local), 20*time.Second)
	checkFields(t, cl, map[string]string{"protocol": "http", "route": "ws", "outcome": "ok"})
}

// TestE2EL7HTTP2: clients speak HTTP/2 to portmux: h2 over terminated TLS
// (internal CA) and h2c with prior knowledge on the plain port; the upstream
// is an HTTP/1.1 backend.
func TestE2EL7HTTP2(t *testing.T) {
	backend := startL7Backend(t, "web")
	yaml := tlsAndPlainConfig(t, backend.Addr())
	pm := startPortmux(t, yaml)

	t.Run("h2 over TLS", func(t *testing.T) {
		pm.WaitLog(t, certObtained("localhost"), time.Minute)
		c := newHTTPSClient(t, pm.Addr(), poolFromPEM(t, portmuxTrust(t, yaml)), true)
		checkH2Multiplexed(t, pm, c.l7Client, "https://localhost:"+portOf(t, pm.Addr())+"/h2/", "app",
			map[string]string{"route": "app", "alpn_negotiated": "h2", "outcome": "ok"})
	})

	t.Run("h2c prior knowledge", func(t *testing.T) {
		hc := newH2CClient(t, pm.Addr())
		checkH2Multiplexed(t, pm, hc, "http://h2c.test/h2c/", "web",
			map[string]string{"protocol": "http", "route": "web", "outcome": "ok"})
	})
}

// checkH2Multiplexed sends three GETs to base+i with c and checks that each
// arrived over HTTP/2, with the X-Forwarded-Proto of base's scheme, and was
// logged on route; and that the three shared one connection, whose log line
// has connFields.
func checkH2Multiplexed(t *testing.T, pm *instance, c *l7Client, base, route string, connFields map[string]string) {
	t.Helper()
	scheme, _, _ := strings.Cut(base, "://")
	for i := 0; i < 3; i++ {
		url := fmt.Sprintf("%s%d", base, i)
		seen, resp, err := c.getSeen(url, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		path := resp.Request.URL.Path
		if resp.ProtoMajor != 2 {
			t.Errorf("%s: proto %s; want HTTP/2", path, resp.Proto)
		}
		if seen.Path != path || seen.Header.Get("X-Forwarded-Proto") != scheme {
			t.Errorf("%s: backend saw path %q, X-Forwarded-Proto %q; want %q, %s", path, seen.Path, seen.Header.Get("X-Forwarded-Proto"), path, scheme)
		}
		rl := pm.WaitLog(t, requestLog(path), 10*time.Second)
		checkFields(t, rl, map[string]string{"proto": "HTTP/2.0", "route": route})
	}
	c.Tr.CloseIdleConnections()
	if n := len(c.Locals()); n != 1 {
		t.Errorf("%d connections for 3 requests; want 1 (multiplexed)", n)
	}
	for _, local := range c.Locals() {
		checkFields(t, pm.WaitLog(t, connOf(local), 10*time.Second), connFields)
	}
}
