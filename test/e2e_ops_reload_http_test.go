package test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestE2EOpsReloadKeepsNewHTTPConnections: HTTP requests on new connections that
// arrive while a reload swaps the config must all be answered, by the old
// config's backend or the new one's. 4 clients send GET /id back to back, each on
// a new connection, during 150 reloads that move the HTTP route between two
// backends. A connection routed by the old table just as the old generation is
// retired must still get its response.
func TestE2EOpsReloadKeepsNewHTTPConnections(t *testing.T) {
	one, two := startOpsWeb(t, "one", nil, nil), startOpsWeb(t, "two", nil, nil)
	config := func(version int) string {
		to := one.URL
		if version%2 == 1 {
			to = two.URL
		}
		// sniff_timeout: no silent clients here, only a guard.
		return webReloadConfig(version, "sniff_timeout: 10s\nshutdown_grace: 1m\n", to)
	}
	pm := startOpsPM(t, config(0))

	const (
		clients = 4
		reloads = 150
	)
	stop := make(chan struct{})
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		errs   []string
		failed int
		done   int
	)
	deadline := time.Now().Add(10 * time.Minute)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := opsHTTPClient(pm.Addr())
			for i := 0; i < 100_000 && time.Now().Before(deadline); i++ {
				select {
				case <-stop:
					return
				default:
				}
				id, err := opsGetID(hc)
				if err == nil && id != one.ID && id != two.ID {
					err = fmt.Errorf("reached backend %q", id)
				}
				mu.Lock()
				done++
				if err != nil {
					if failed++; len(errs) < 10 {
						errs = append(errs, fmt.Sprintf("client %d request %d: %v", c, i, err))
					}
				}
				mu.Unlock()
			}
		}()
	}
	func() {
		defer func() { close(stop); wg.Wait() }()
		for v := 1; v <= reloads; v++ {
			pm.Reload(t, config(v), true, nil)
		}
	}()

	t.Logf("%d requests during %d reloads", done, reloads)
	if failed > 0 {
		t.Errorf("%d of %d requests failed; the first ones:", failed, done)
		for _, e := range errs {
			t.Errorf("  %s", e)
		}
	}
	var bad []string
	for _, l := range pm.Logs() {
		if n, _ := l.Num("bytes_down"); l.Msg() == "connection" && (l.Str("outcome") != "ok" || n == 0) {
			bad = append(bad, l.Raw)
		}
	}
	if len(bad) > 0 {
		t.Errorf("%d connection(s) ended without a response byte or not ok; the first ones:", len(bad))
		for _, l := range bad[:min(len(bad), 10)] {
			t.Errorf("  %s", l)
		}
	}
	last := one.URL
	if reloads%2 == 1 {
		last = two.URL
	}
	if got, want := pm.Routes(t), []string{"web http -> " + last}; !slices.Equal(got, want) {
		t.Errorf("GET /routes after the last reload: %q; want %q", got, want)
	}
}

// TestE2EOpsReloadEndsKeepAlive: a reload closes the idle HTTP/1.1
// keep-alive connections at once, the direct path's and net/http's, so a
// keep-alive client's next request takes the new route. It does not wait
// for the old generation's retirement (32s here: handshake_timeout 30s).
func TestE2EOpsReloadEndsKeepAlive(t *testing.T) {
	one, two := startOpsWeb(t, "one", nil, nil), startOpsWeb(t, "two", nil, nil)
	config := func(version int, to string) string {
		return webReloadConfig(version, "handshake_timeout: 30s\n", to)
	}
	pm := startOpsPM(t, config(0, one.URL))
	type kept struct {
		c  net.Conn
		br *bufio.Reader
	}
	keptAlive := func(request string) kept {
		t.Helper()
		c, err := dialTCP(pm.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(time.Minute))
		io.WriteString(c, request)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
		}
		if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
			t.Fatalf("%q: %v; want 200 on a kept-alive connection", request, err)
		}
		return kept{c, br}
	}
	idle := map[string]kept{
		"direct path": keptAlive("GET /id HTTP/1.1\r\nHost: ops.test\r\n\r\n"),
		// A chunked request moves its connection to net/http.
		"net/http": keptAlive("POST /echo HTTP/1.1\r\nHost: ops.test\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
	}
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", pm.Addr())
	}}}
	t.Cleanup(hc.CloseIdleConnections)
	if id, err := opsGetID(hc); err != nil || id != one.ID {
		t.Fatalf("before the reload: %q, %v; want %q", id, err, one.ID)
	}

	pm.Reload(t, config(1, two.URL), true, nil)
	for name, k := range idle {
		// A hang guard well below the retirement, which would also close it.
		k.c.SetReadDeadline(time.Now().Add(15 * time.Second))
		if n, err := k.br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Errorf("idle keep-alive connection (%s) after the reload: %d, %v; want it closed", name, n, err)
		}
	}
	if id, err := opsGetID(hc); err != nil || id != two.ID {
		t.Errorf("keep-alive client after the reload: %q, %v; want the new route's %q", id, err, two.ID)
	}
	// Both lines count the config's routes (one), not the table's
	// implicit route for HTTP's 404 and 421 answers.
	for _, msg := range []string{"listening", opsMsgReloaded} {
		lines := pm.Find(func(l logLine) bool { return l.Msg() == msg })
		if len(lines) == 0 {
			t.Errorf("no %q line", msg)
		}
		for _, l := range lines {
			if n, _ := l.Num("routes"); n != 1 {
				t.Errorf("%q line counts %v routes; want 1: %s", msg, n, l)
			}
		}
	}
}

// webReloadConfig is a config of these reload tests: one loopback
// listener, the top-level settings extra, one HTTP route to to; version
// goes in a comment, so that every config (and its hash) differs.
func webReloadConfig(version int, extra, to string) string {
	return fmt.Sprintf(`# version %d
listen: ["127.0.0.1:0"]
admin: {listen: %s}
log: {level: info, format: json}
%sroutes:
  - name: web
    match: {protocol: http}
    to: %s
`, version, adminListen, extra, to)
}
