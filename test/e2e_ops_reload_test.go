package test

import (
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// opsReloadWorld holds the backends of the reload test and renders its configs.
type opsReloadWorld struct {
	SSH        *sshServer
	Web1, Web2 *opsWeb
	TLSA       *tlsBackend
	FTP        *ftpServer
	Echo       *tcpServer
	Ticks      *opsTicks
	Admin      string // a free loopback port for the admin listener
}

func startOpsReloadWorld(t *testing.T) *opsReloadWorld {
	ticks := newOpsTicks()
	return &opsReloadWorld{
		SSH:   startSSHServer(t),
		Web1:  startOpsWeb(t, "one", nil, ticks),
		Web2:  startOpsWeb(t, "two", nil, ticks),
		TLSA:  startTLSBackend(t, "a.test"),
		FTP:   startFTPServer(t),
		Echo:  startEcho(t),
		Ticks: ticks,
		Admin: closedPort(t),
	}
}

// opsP2 is the host of the listener that config B adds: another loopback
// address, port 0, so the port is the kernel's choice each time it opens.
const opsP2 = "127.0.0.2"

// config renders variant 'A', 'B' (adds a listener on opsP2, renames the HTTP
// route web to site and moves it to the second backend) or 'X' (A with an
// invalid duration). version goes into a comment: each file, and so each hash,
// is different. sniff_timeout is 3s, not 1s: a client that is slow to send its
// first bytes on a loaded machine would be taken for a silent (FTP) client.
func (w *opsReloadWorld) config(variant byte, version int) string {
	listen := `["127.0.0.1:0"]`
	web, webTo, dial := "web", w.Web1.URL, "5s"
	switch variant {
	case 'B':
		listen = `["127.0.0.1:0", "` + opsP2 + `:0"]`
		web, webTo = "site", w.Web2.URL
	case 'X':
		dial = "soon" // not a duration: the whole file is refused
	}
	return fmt.Sprintf(`# portmux reload test: config %c, version %d
listen: %s
admin: {listen: "%s"}
sniff_timeout: 3s
dial_timeout: %s
idle_timeout: 1h
shutdown_grace: 2m
log: {level: info, format: json}
routes:
  - name: ssh
    match: {protocol: ssh}
    to: %s
  - name: %s
    match: {protocol: http}
    to: %s
  - name: tls-a
    match: {protocol: tls, sni: [a.test]}
    to: %s
  - name: ftp
    match: {protocol: ftp}
    to: %s
  - name: echo
    match: {protocol: unknown}
    to: %s
`, variant, version, listen, w.Admin, dial, w.SSH.Addr(), web, webTo, w.TLSA.Addr(), w.FTP.Addr(), w.Echo.Addr())
}

// table is the routing table GET /routes must show for variant A or B.
func (w *opsReloadWorld) table(variant byte) []string {
	web := "web http -> " + w.Web1.URL
	if variant == 'B' {
		web = "site http -> " + w.Web2.URL
	}
	return []string{
		"ssh ssh -> " + w.SSH.Addr(),
		web,
		"tls-a tls sni=a.test -> " + w.TLSA.Addr(),
		"ftp ftp -> " + w.FTP.Addr(),
		"echo unknown -> " + w.Echo.Addr(),
	}
}

// webID is the HTTP backend variant A or B routes to.
func (w *opsReloadWorld) webID(variant byte) string {
	if variant == 'B' {
		return w.Web2.ID
	}
	return w.Web1.ID
}

func opsIsP2Listening(l logLine) bool {
	return l.Msg() == "listening" && strings.HasPrefix(l.Str("addr"), opsP2+":")
}

// TestE2EOpsReloadUnderLoad sends 60 SIGHUPs (config B, an invalid config, config
// A, in turn) while 8 workers keep opening SSH, HTTP, TLS passthrough, echo and
// FTP connections through the kept listener, 2 more send small HTTP requests
// back to back (each on a new connection), and long-lived connections of each
// protocol move a checked chunk after each reload. No connection may fail and no
// byte may be lost or changed. After each reload GET /routes and a fresh HTTP
// request show the table in force (unchanged after the invalid config); the
// listener B adds accepts, survives the invalid config, and refuses after A
// removes it, while a connection it accepted goes on. Then POST /reload (422 for
// the invalid file, 200 for a valid one), and the reload counters, log lines
// and echo byte counters must agree with what was done.
func TestE2EOpsReloadUnderLoad(t *testing.T) {
	opsNeedLoopbackNet(t) // the added listener and the FTP clients use 127.0.x.y
	w := startOpsReloadWorld(t)
	version := 0
	pm := startOpsPM(t, w.config('A', version))
	if got, want := pm.Routes(t), w.table('A'); !slices.Equal(got, want) {
		t.Fatalf("GET /routes at start:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	const (
		workers = 8
		rapid   = 2
		span    = 5  // reloads a long-lived connection lives through
		sighups = 60 // B, X, A, B, X, A, ...
	)
	load := newOpsLoad(opsLoadWorld{Addr: pm.Addr(), HostKey: w.SSH.HostKey, TLSCert: w.TLSA,
		WebIDs: []string{w.Web1.ID, w.Web2.ID}, Ticks: w.Ticks})
	load.Start(workers, rapid, span)
	defer func() {
		if err := load.Stop(); err != nil {
			t.Error(err)
		}
	}()
	check := opsNewChecker(t, w, pm)

	running := byte('A')
	var echoExtra int64 // echo bytes the test goroutine moved itself
	for i := 1; i <= sighups; i++ {
		// Let the load make progress between two reloads (a hang guard, not a
		// timing check).
		if err := opsWaitProgress(load, 3, 2*time.Minute); err != nil {
			t.Fatalf("before reload %d: %v", i, err)
		}
		variant := "BXA"[(i-1)%3]
		version++
		pm.Reload(t, w.config(variant, version), variant != 'X', nil)
		if variant != 'X' {
			running = variant
		}
		echoExtra += check.afterReload(i, variant, running)
		w.Ticks.Advance()
	}

	t.Run("POST /reload", func(t *testing.T) {
		version++
		var code int
		var body string
		var err error
		post := func() { code, body, err = pm.AdminDo(http.MethodPost, "/reload") }
		pm.Reload(t, w.config('X', version), false, post)
		if err != nil || code != http.StatusUnprocessableEntity || !strings.Contains(body, "dial_timeout") {
			t.Errorf("POST /reload with an invalid file: %d %q, %v; want 422 naming dial_timeout", code, body, err)
		}
		if got, want := pm.Routes(t), w.table(running); !slices.Equal(got, want) {
			t.Errorf("GET /routes after a refused POST /reload:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		version++
		pm.Reload(t, w.config('A', version), true, post)
		if err != nil || code != http.StatusOK {
			t.Errorf("POST /reload with a valid file: %d %q, %v; want 200", code, body, err)
		}
		if got, want := pm.Routes(t), w.table('A'); !slices.Equal(got, want) {
			t.Errorf("GET /routes after POST /reload:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	if err := load.Stop(); err != nil {
		t.Fatal(err)
	}
	summary, errs, nerrs := load.Report()
	t.Log(summary)
	if nerrs > 0 {
		t.Errorf("%d client operation(s) failed during the reloads; the first %d:", nerrs, len(errs))
		for _, err := range errs {
			t.Errorf("  %v", err)
		}
	}
	load.mu.Lock()
	for _, kind := range opsKinds {
		if !slices.ContainsFunc(load.spanned[kind], func(n int) bool { return n >= span }) {
			t.Errorf("no long-lived %s connection lived through %d reloads (spans %v)", kind, span, load.spanned[kind])
		}
	}
	load.mu.Unlock()

	okReloads, failedReloads := 2*sighups/3+1, sighups/3+1 // + the two POST /reload
	m := pm.WaitMetrics(t, func(m opsMetrics) bool {
		return m.Get("portmux_bytes_total", "route", "echo", "direction", "down") >= float64(load.echoBytes.Load()+echoExtra)
	})
	for _, c := range []struct {
		result string
		want   int
	}{{"ok", okReloads}, {"failed", failedReloads}} {
		if got := m.Get("portmux_reloads_total", "result", c.result); got != float64(c.want) {
			t.Errorf("portmux_reloads_total{result=%q} = %g; want %d\n%s", c.result, got, c.want, m.Series("portmux_reloads_total"))
		}
	}
	if got, want := m.Series("portmux_config_info"), opsKey("portmux_config_info", "hash", opsHash(w.config('A', version)))+" 1"; got != want {
		t.Errorf("portmux_config_info:\n%s\nwant:\n%s", got, want)
	}
	echo := load.echoBytes.Load() + echoExtra
	for _, dir := range []string{"up", "down"} {
		if got := m.Get("portmux_bytes_total", "route", "echo", "direction", dir); got != float64(echo) {
			t.Errorf("portmux_bytes_total{route=\"echo\",direction=%q} = %.0f; want %d (every byte the echo clients sent)", dir, got, echo)
		}
	}
	for _, c := range []struct {
		what  string
		match func(logLine) bool
		want  int
	}{
		{"SIGHUP log lines", func(l logLine) bool { return l.Msg() == "SIGHUP: reloading config" }, sighups},
		{"\"config reloaded\" log lines", func(l logLine) bool { return l.Msg() == opsMsgReloaded }, okReloads},
		{"\"reload refused\" log lines", opsIsRefused, failedReloads},
	} {
		if got := pm.Count(c.match); got != c.want {
			t.Errorf("%d %s; want %d", got, c.what, c.want)
		}
	}
	opsCheckConnLines(t, pm, map[string]bool{opsMsgRefused: true})
}

// opsWaitProgress waits until the load finished n more short operations.
func opsWaitProgress(load *opsLoad, n int64, guard time.Duration) error {
	target := load.ops.Load() + n
	end := time.Now().Add(guard)
	for load.ops.Load() < target {
		if time.Now().After(end) {
			summary, errs, _ := load.Report()
			return fmt.Errorf("the load made no progress in %v: %s; errors %v", guard, summary, errs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// opsCheckConnLines fails for every connection that did not end ok and for
// every warn or error line whose message is not in allowed.
func opsCheckConnLines(t *testing.T, pm *opsPM, allowed map[string]bool) {
	t.Helper()
	bad := 0
	for _, l := range pm.Logs() {
		lv := l.Level()
		switch {
		case l.Msg() == "connection" && l.Str("outcome") != "ok":
		case lv != "info" && lv != "debug" && !allowed[l.Msg()]:
		default:
			continue
		}
		if bad++; bad <= 20 {
			t.Errorf("unexpected log line: %s", l.Raw)
		}
	}
	if bad > 20 {
		t.Errorf("... %d unexpected log lines in all", bad)
	}
}

// opsChecker runs the checks after each reload of the reload test, from the
// test goroutine.
type opsChecker struct {
	t  *testing.T
	w  *opsReloadWorld
	pm *opsPM
	hc *http.Client

	p2       string       // the listener B added, while open
	p2Conn   *net.TCPConn // a connection it accepted, kept across its close
	p2Closed int          // times the test saw that listener closed and refusing
}

func opsNewChecker(t *testing.T, w *opsReloadWorld, pm *opsPM) *opsChecker {
	return &opsChecker{t: t, w: w, pm: pm, hc: opsHTTPClient(pm.Addr())}
}

// afterReload checks reload i of variant, with running now in force. It
// returns the bytes it sent through the echo route.
func (c *opsChecker) afterReload(i int, variant, running byte) (echoed int64) {
	t := c.t
	t.Helper()
	if got, want := c.pm.Routes(t), c.w.table(running); !slices.Equal(got, want) {
		t.Fatalf("reload %d (%c): GET /routes:\n%s\nwant the table of %c:\n%s", i, variant, strings.Join(got, "\n"), running, strings.Join(want, "\n"))
	}
	if id, err := opsGetID(c.hc); err != nil || id != c.w.webID(running) {
		t.Fatalf("reload %d (%c): a new HTTP request reached %q, %v; want backend %q", i, variant, id, err, c.w.webID(running))
	}
	p2s := c.pm.Find(opsIsP2Listening)
	switch variant {
	case 'B':
		if len(p2s) != i/3+1 {
			t.Fatalf("reload %d (B): %d \"listening\" lines for %s so far; want %d", i, len(p2s), opsP2, i/3+1)
		}
		c.p2 = p2s[len(p2s)-1].Str("addr")
		echoed += c.echoVia(i, c.p2)
		if c.p2Conn == nil && c.p2Closed == 0 {
			conn, err := dialTCP(c.p2)
			if err != nil {
				t.Fatalf("reload %d (B): dial the added listener %s: %v", i, c.p2, err)
			}
			conn.SetDeadline(time.Now().Add(5 * time.Minute))
			c.p2Conn = conn
			if err := opsEchoExact(conn, opsEchoPrefix); err != nil {
				t.Fatalf("reload %d (B): long-lived connection on %s: %v", i, c.p2, err)
			}
			echoed += int64(len(opsEchoPrefix))
		}
	case 'X':
		if running == 'B' {
			echoed += c.echoVia(i, c.p2) // the refused file closed nothing
		}
	case 'A':
		if c.p2 == "" {
			break
		}
		refused, err := opsRefused(c.p2)
		if !refused {
			t.Fatalf("reload %d (A): dial %s (the listener A removes): %v; want connection refused", i, c.p2, err)
		}
		c.p2Closed++
		if c.p2Conn != nil {
			if err := opsEchoChunk(c.p2Conn, uint64(9000+i), 256<<10); err != nil {
				t.Fatalf("reload %d (A): the connection accepted by the removed listener %s: %v", i, c.p2, err)
			}
			if err := opsCloseClean(c.p2Conn); err != nil {
				t.Fatalf("reload %d (A): closing the connection of the removed listener: %v", i, err)
			}
			c.p2Conn.Close()
			c.p2Conn = nil
			echoed += 256 << 10
		}
		c.p2 = ""
	}
	if variant == 'X' && len(p2s) != (i+1)/3 {
		t.Fatalf("reload %d (X): %d \"listening\" lines for %s; want %d (a refused file opens nothing)", i, len(p2s), opsP2, (i+1)/3)
	}
	return echoed
}

// echoVia does an echo round trip through addr.
func (c *opsChecker) echoVia(i int, addr string) int64 {
	c.t.Helper()
	sent, got, _, err := roundTrip(addr, opsEchoPrefix, uint64(8000+i), 64<<10, 2*time.Minute)
	if err != nil || got != sent {
		c.t.Fatalf("reload %d: echo through %s: got %+v, %v; want %+v", i, addr, got, err, sent)
	}
	return sent.N
}
