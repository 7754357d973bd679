package test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestE2EL7HalfClose: clients that shut down their sending side once the
// request is out (printf ... | nc -q1, HTTP/1.0 tools) get their answer,
// through the direct path and through net/http (HTTP/1.0, a chunked
// upload), while the upstream is still working on it. A client whose
// upload stops short gets no answer at all (not an empty 200), and a 499
// request line.
func TestE2EL7HalfClose(t *testing.T) {
	backend := startL7Backend(t, "web")
	pm := startOneRoute(t, "web", backend)
	for _, tc := range []struct {
		name, request string
		field         string // of the upstream's JSON answer
		want          any
	}{
		{"HTTP/1.1", "GET /slow?ms=300 HTTP/1.1\r\nHost: web.test\r\n\r\n", "path", "/slow"},
		{"HTTP/1.0", "GET /slow?ms=300 HTTP/1.0\r\nHost: web.test\r\n\r\n", "path", "/slow"},
		{"chunked upload", "POST /sink HTTP/1.1\r\nHost: web.test\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "n", 5.0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawDial(t, pm.Addr())
			if _, err := io.WriteString(c, tc.request); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer after the half-close: %v", err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var answer map[string]any
			json.Unmarshal(body, &answer)
			if resp.StatusCode != http.StatusOK || answer[tc.field] != tc.want {
				t.Errorf("got %s %q; want 200 with %s %v", resp.Status, body, tc.field, tc.want)
			}
		})
	}
	t.Run("upload cut short", func(t *testing.T) {
		c, _ := rawDial(t, pm.Addr())
		io.WriteString(c, "POST /cut-short HTTP/1.1\r\nHost: web.test\r\nContent-Length: 100000\r\n\r\n"+strings.Repeat("x", 10))
		c.(*net.TCPConn).CloseWrite()
		if got, _ := io.ReadAll(c); len(got) > 0 {
			t.Errorf("got %q; want the connection closed without an answer", got)
		}
		l := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "request" && l.Str("path") == "/cut-short" }, 10*time.Second)
		if n, _ := l.Num("status"); n != 499 {
			t.Errorf("request line status %v; want 499\nline: %s", n, l.Raw)
		}
	})
}
