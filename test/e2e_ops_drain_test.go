package test

import (
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// opsDrainConfig routes HTTP to web (an L7 route) and everything unrecognised
// to bulk (a TCP relay).
func opsDrainConfig(admin, grace, web, bulk string) string {
	return fmt.Sprintf(`listen: ["127.0.0.1:0"]
sniff_timeout: 10s   # no silent clients here: only a guard
admin: {listen: %q}
shutdown_grace: %s
log: {level: info, format: json}
routes:
  - name: web
    match: {protocol: http}
    to: %s
  - name: bulk
    match: {protocol: unknown}
    to: %s
`, admin, grace, web, bulk)
}

// opsBulk asks a source backend (startOpsSource) for its stream through addr and
// checks that it is n bytes of payload(seed). It sends the connection's local
// address on local first.
func opsBulk(addr string, seed uint64, n int64, progress io.Writer, local chan<- string) error {
	c, err := dialTCP(addr)
	if err != nil {
		local <- ""
		return err
	}
	defer c.Close()
	local <- c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(5 * time.Minute))
	if _, err := io.WriteString(c, "{bulk}\n"); err != nil {
		return fmt.Errorf("request: %w", err)
	}
	got, err := digestOf(io.TeeReader(c, progress))
	if err != nil {
		return fmt.Errorf("reading after %d bytes: %w", got.N, err)
	}
	if want, _ := digestOf(payload(seed, n)); got != want {
		return fmt.Errorf("stream %+v; want %+v", got, want)
	}
	return nil
}

// TestE2EOpsDrain: SIGTERM while a 200 MB TCP download and a 64 MB HTTP download
// are in flight, each held by its backend part way through. /readyz turns 503
// while /healthz stays 200, new connections are refused once the listener is
// closed, and portmux keeps running; when the backends go on, both downloads
// complete intact (sha256) and portmux exits 0 without hitting the grace (2m).
func TestE2EOpsDrain(t *testing.T) {
	const (
		tcpN, tcpHold   = 200 << 20, 64 << 20
		httpN, httpHold = 64 << 20, 16 << 20
		tcpSeed         = 77
		httpSeed        = 78
	)
	gate := newOpsGate(t)
	src := startOpsSource(t, tcpSeed, tcpN, tcpHold, gate)
	web := startOpsWeb(t, "drain", gate, nil)
	pm := startOpsPM(t, opsDrainConfig(closedPort(t), "2m", web.URL, src.Addr()))

	type result struct {
		what string
		err  error
	}
	results := make(chan result, 2)
	locals := make(chan string, 1)
	var tcpGot, httpGot opsCounter
	go func() { results <- result{"TCP download", opsBulk(pm.Addr(), tcpSeed, tcpN, &tcpGot, locals)} }()
	go func() {
		path := fmt.Sprintf("/held?seed=%d&n=%d&hold=%d", httpSeed, httpN, httpHold)
		results <- result{"HTTP download", opsDownload(opsHTTPClient(pm.Addr()), path, httpSeed, httpN, &httpGot)}
	}()
	local := <-locals
	for range 2 {
		if err := gate.WaitReached(time.Minute); err != nil {
			t.Fatalf("%v (received so far: TCP %d, HTTP %d bytes)", err, tcpGot.n.Load(), httpGot.n.Load())
		}
	}
	for i := 0; tcpGot.n.Load() == 0 || httpGot.n.Load() == 0; i++ {
		if i == 600 {
			t.Fatalf("downloads not started after 30s: TCP %d, HTTP %d bytes", tcpGot.n.Load(), httpGot.n.Load())
		}
		time.Sleep(50 * time.Millisecond)
	}

	pm.Terminate(t)
	waitDraining(t, pm)
	if code, body, err := pm.AdminDo(http.MethodGet, "/healthz"); err != nil || code != http.StatusOK {
		t.Errorf("GET /healthz while draining: %d %q, %v; want 200 (alive)", code, body, err)
	}
	for i := 0; ; i++ {
		refused, err := opsRefused(pm.Addr())
		if refused {
			break
		}
		if i == 200 {
			t.Fatalf("portmux still accepting 10s after SIGTERM (last dial: %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if pm.Exited() {
		t.Fatalf("portmux exited with two downloads in flight, inside shutdown_grace\n%s", pm.dump())
	}
	if got := tcpGot.n.Load(); got >= tcpN {
		t.Fatalf("TCP download already complete (%d bytes) before the backend was released", got)
	}

	gate.Open()
	for range 2 {
		select {
		case r := <-results:
			if r.err != nil {
				t.Errorf("%s across the drain: %v", r.what, r.err)
			}
		case <-time.After(5 * time.Minute):
			t.Fatalf("downloads still running 5m after the backends were released: TCP %d, HTTP %d bytes", tcpGot.n.Load(), httpGot.n.Load())
		}
	}

	pm.Stop(t) // exit 0, no race
	l := pm.WaitLog(t, connOf(local), time.Second)
	checkFields(t, l, map[string]string{"route": "bulk", "outcome": "ok", "backend": src.Addr()})
	checkBytes(t, l, "bytes_down", tcpN)
	for _, msg := range []string{"shutting down: draining live connections", "stopped"} {
		if n := pm.Count(func(l logLine) bool { return l.Msg() == msg }); n != 1 {
			t.Errorf("%d %q log lines; want 1", n, msg)
		}
	}
	if ls := pm.Find(func(l logLine) bool { return l.Level() == "warn" || l.Level() == "error" }); len(ls) > 0 {
		t.Errorf("warnings or errors during a drain that finished within the grace: %v", ls)
	}
}

// waitDraining waits, after SIGTERM, for /readyz to answer 503.
func waitDraining(t *testing.T, pm *opsPM) {
	t.Helper()
	for i := 0; ; i++ {
		code, body, err := pm.AdminDo(http.MethodGet, "/readyz")
		if err != nil {
			t.Fatalf("GET /readyz after SIGTERM: %v; want 503 while draining\n%s", err, pm.dump())
		}
		if code == http.StatusServiceUnavailable {
			return
		}
		if code != http.StatusOK || i == 200 {
			t.Fatalf("GET /readyz after SIGTERM: %d %q; want 503 while draining", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestE2EOpsDrainGraceEnds: with shutdown_grace 1s, SIGTERM while an idle TCP
// connection and a held HTTP download are open. When the grace ends portmux
// closes both (the client sees the close; generous guards), logs outcome
// shutdown, and exits 0.
func TestE2EOpsDrainGraceEnds(t *testing.T) {
	gate := newOpsGate(t)
	web := startOpsWeb(t, "grace", gate, nil)
	echo := startEcho(t)
	pm := startOpsPM(t, opsDrainConfig(closedPort(t), "1s", web.URL, echo.Addr()))

	c, err := dialTCP(pm.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(time.Minute))
	if err := opsEchoExact(c, []byte("{idle}\n")); err != nil {
		t.Fatal(err)
	}
	download := make(chan error, 1)
	go func() {
		download <- opsDownload(opsHTTPClient(pm.Addr()), "/held?seed=5&n=8388608&hold=1048576", 5, 8<<20, io.Discard)
	}()
	if err := gate.WaitReached(time.Minute); err != nil {
		t.Fatal(err)
	}

	pm.Terminate(t)
	if _, err := waitClosed(c, time.Minute); err != nil {
		t.Fatalf("idle connection after SIGTERM with a 1s grace: %v; want it closed", err)
	}
	select {
	case err := <-download:
		if err == nil {
			t.Error("held HTTP download completed; want it cut when the grace ended")
		}
	case <-time.After(time.Minute):
		t.Fatal("held HTTP download still open 1m after SIGTERM with a 1s grace")
	}
	pm.Stop(t) // exit 0, no race
	l := pm.WaitLog(t, connOf(local), time.Second)
	checkFields(t, l, map[string]string{"route": "bulk", "outcome": "shutdown"})
	pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "drain grace ended: closed the remaining connections" }, time.Second)
	pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "stopped" }, time.Second)
}
