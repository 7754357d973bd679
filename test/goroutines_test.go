package test

// The goroutine check of every end-to-end test: once a test is done with
// portmux (its clients closed), portmux's goroutines must come back to where
// they were when it was ready, before the test's traffic. A relay, a handler
// or a timer that outlives its connection shows up here, in the test that
// caused it.
//
// The rule: the goroutines of portmux's goroutine profile (admin
// /debug/pprof/goroutine, those of the admin server itself left out: they
// come and go with the scrapes; the lowest of a few scrapes) must come down
// to at most baseline + goroutineSlack + lifetimeGoroutines within
// goroutineWait, where baseline is the count once portmux is ready, before
// the test's traffic, and no connection may still count as active
// (portmux_connections_active: an idle L4 relay holds no goroutine). What
// portmux legitimately holds beyond that is taken out or waited for, never
// allowed as a margin:
//   - idle keep-alive connections to the test's HTTP backends (its upstream
//     pool, 90s idle timeout; its ACME client): the backends close them
//     before each scrape of the check (dropIdlePeerConns);
//   - the generations a reload replaced: the wait is extended until portmux
//     has retired them (retiredBy);
//   - a reload to a config that needs more or fewer goroutines when idle
//     (listeners, health checks): the test wraps it in Reshape, which checks
//     the count before it and takes the baseline again after it;
//   - goroutines a library keeps for the rest of the process once used
//     (lifetimeGoroutines).

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portmux/portmux/config"
)

const (
	// goroutineSlack is how far above its baseline the count may end: none.
	// Some connections cost portmux a single goroutine (one in its sniff, an
	// idle HTTP/2 connection it terminates TLS for; an idle L4 relay costs
	// none: it is parked, see proxy.Parker), so any slack would hide one.
	// Noise is left to the window (goroutineWindow).
	goroutineSlack = 0
	// goroutineWindow is how many scrapes, goroutinePoll apart, make one
	// reading of the count: the lowest of them. The scrapes' own goroutines
	// are not counted (servingGoroutines), but portmux may be running a
	// short-lived one of its own when the profile is taken (a timer's sweep
	// of idle connections, a connection being torn down). A leaked goroutine
	// stays, so it is in every scrape, the lowest included.
	goroutineWindow = 5
	// goroutinePoll is the interval between two scrapes.
	goroutinePoll = 50 * time.Millisecond
	// goroutineWait bounds how long the count may take to come down: idle
	// timeouts, the parker's sweep (each second) and connection teardown
	// need a moment after the last client closed.
	goroutineWait = 10 * time.Second
)

// goroutineReadings are the last goroutineWindow scrapes of the goroutine count.
type goroutineReadings []int

func (r *goroutineReadings) add(n int) {
	*r = append(*r, n)
	if len(*r) > goroutineWindow {
		*r = (*r)[1:]
	}
}

// floor is the reading, once the window is full.
func (r goroutineReadings) floor() (int, bool) {
	if len(r) < goroutineWindow {
		return 0, false
	}
	return slices.Min(r), true
}

// goroutines counts portmux's goroutines, the admin server's left out (see
// servingGoroutines), and the connections it counts as live
// (portmux_connections_active, all labels).
func (p *instance) goroutines() (n, active int, err error) {
	profile, err := p.adminGet("/debug/pprof/goroutine?debug=1")
	if err != nil {
		return 0, 0, err
	}
	if n, err = servingGoroutines(profile); err != nil {
		return 0, 0, fmt.Errorf("parsing the goroutine profile: %w", err)
	}
	body, err := p.adminGet("/metrics")
	if err != nil {
		return 0, 0, err
	}
	m, err := parseOpsMetrics(body)
	if err != nil {
		return 0, 0, fmt.Errorf("parsing /metrics: %w", err)
	}
	for k, v := range m {
		if strings.HasPrefix(k, "portmux_connections_active{") {
			active += int(v)
		}
	}
	return n, active, nil
}

// adminGet returns the body of a GET of path on portmux's admin listener.
func (p *instance) adminGet(path string) (string, error) {
	resp, err := opsAdminClient().Get("http://" + p.admin + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), nil
}

// adminGoroutineLabel is the profiler label portmux puts on the goroutines
// of its admin server (cmd/portmux/admin.go), as a goroutine profile prints
// it.
const adminGoroutineLabel = `"portmux":"admin"`

// servingGoroutines sums the goroutines of a goroutine profile (debug=1:
// groups of identical stacks, each opened by "<count> @ <pcs>" and, when
// they carry profiler labels, followed by "# labels: {...}"), leaving out
// the groups labelled as the admin server's. Those come and go with the
// scrapes themselves: the request being served, the connection of the last
// one, the Prometheus registry's gather workers.
func servingGoroutines(profile string) (int, error) {
	lines := strings.Split(profile, "\n")
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "goroutine profile: total ") {
		return 0, fmt.Errorf("no goroutine profile header in %.80q", profile)
	}
	total, groups := 0, 0
	for i, line := range lines {
		count, _, ok := strings.Cut(line, " @ ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		var n int
		if _, err := fmt.Sscan(count, &n); err != nil {
			return 0, fmt.Errorf("group line %q: %w", line, err)
		}
		groups++
		if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "# labels: ") && strings.Contains(lines[i+1], adminGoroutineLabel) {
			continue
		}
		total += n
	}
	if groups == 0 {
		return 0, fmt.Errorf("no goroutine in %.80q", profile)
	}
	return total, nil
}

// takeBaseline records the goroutine count the check compares with
// (steadyGoroutines), and how many log lines came before it (see
// lifetimeGoroutines).
func (p *instance) takeBaseline(t testing.TB) {
	t.Helper()
	p.baselineLines = len(p.Logs())
	// No dropIdlePeerConns yet: portmux may be talking to a backend (its
	// ACME CA) and would see the connection it was about to reuse close.
	p.baseline = p.steadyGoroutines(t, false)
}

// steadyGoroutines returns the count once it is steady: a window's reading
// that equals the reading of the window before it. A process just started
// may still be starting goroutines (a listener's accept loops come after
// its "listening" line), which a single window taken too early would leave
// out of the baseline. Up to steadyWindows windows.
func (p *instance) steadyGoroutines(t testing.TB, dropIdle bool) int {
	t.Helper()
	prev := p.windowReading(t, dropIdle)
	for range steadyWindows - 1 {
		n := p.windowReading(t, dropIdle)
		if n == prev {
			break
		}
		prev = n
	}
	return prev
}

// windowReading is one reading: the lowest of goroutineWindow scrapes,
// each after dropIdlePeerConns if dropIdle.
func (p *instance) windowReading(t testing.TB, dropIdle bool) int {
	t.Helper()
	var r goroutineReadings
	for {
		if dropIdle {
			dropIdlePeerConns()
		}
		n, _, err := p.goroutines()
		if err != nil {
			t.Fatalf("counting portmux's goroutines: %v\n%s", err, p.dump())
		}
		r.add(n)
		if m, ok := r.floor(); ok {
			return m
		}
		time.Sleep(goroutinePoll)
	}
}

// steadyWindows bounds steadyGoroutines: 10 windows are about 5 s.
const steadyWindows = 10

// checkGoroutines counts portmux's goroutines until the lowest of the last
// goroutineWindow scrapes is at most the limit (see the rule at the top of
// this file), up to goroutineWait after the later of now and the retirement
// of the generations reloads replaced. If it stays above, it fails the test
// with the numbers and portmux's goroutine dump (SIGQUIT, which also ends the
// process) and returns false, as it does once that happened. It does nothing,
// and returns true, when there is nothing to check: the start failed (no
// baseline), or the test ended portmux itself (Terminate: a drain, with
// connections still live), or it exited.
func (p *instance) checkGoroutines(t testing.TB) bool {
	t.Helper()
	if p.quitSent() {
		return false // this check failed before (Reshape)
	}
	if p.baseline == 0 || p.termSent.Load() || p.Exited() {
		if p.baseline != 0 {
			t.Logf("goroutine check skipped: the test ended portmux itself")
		}
		return true
	}
	start := time.Now()
	deadline := start
	if r := p.retiredBy(); r.After(deadline) {
		deadline = r
	}
	deadline = deadline.Add(goroutineWait)
	var (
		r      goroutineReadings
		limit  int
		active int
		err    error
	)
	for {
		limit = p.baseline + goroutineSlack + p.lifetimeGoroutines()
		// Each time: a connection becomes idle only once its response is out.
		dropIdlePeerConns()
		var n int
		if n, active, err = p.goroutines(); err == nil {
			r.add(n)
			// An idle L4 relay is parked with no goroutine: only the
			// connection count shows one that outlived its clients.
			if m, ok := r.floor(); ok && m <= limit && active == 0 {
				t.Logf("portmux goroutines: %d after %v (baseline %d, limit %d)", m, time.Since(start).Round(time.Millisecond), p.baseline, limit)
				return true
			}
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(goroutinePoll)
	}
	got := fmt.Sprintf("last scrapes %v, %d connections still active", []int(r), active)
	if err != nil {
		got += ", then " + err.Error()
	}
	t.Errorf("goroutine leak: portmux (pid %d) runs more goroutines than it did once ready, %v after the test: %s; "+
		"want the lowest of %d scrapes at most %d (baseline %d + slack %d + %d kept by libraries)\n%s",
		p.cmd.Process.Pid, time.Since(start).Round(time.Second), got, goroutineWindow, limit, p.baseline, goroutineSlack,
		limit-p.baseline-goroutineSlack, p.quitDump(t))
	return false
}

// Reshape runs change, a reload to a config that needs another number of
// goroutines when idle (more or fewer listeners, routes with health checks).
// First the count must be back at the baseline, as at the end of a test (a
// leak of the traffic so far fails the test here); then the baseline becomes
// the settled count with the new config, once the replaced generation is
// retired (tens of seconds with a long sniff_timeout). Call it from the test
// goroutine, with no traffic running.
func (p *instance) Reshape(t testing.TB, change func()) {
	t.Helper()
	if !p.checkGoroutines(t) {
		t.FailNow()
	}
	change()
	n := p.settledGoroutines(t)
	t.Logf("goroutine baseline %d, now %d: the config changed", p.baseline, n)
	p.baseline, p.baselineLines = n, len(p.Logs())
}

// Settle tells the check that work portmux started at startup is done (a
// certificate obtained): the baseline drops to the settled count if that is
// lower, as the work's goroutines still ran when it was taken. It never rises,
// so it cannot hide a leak. Call it from the test goroutine, with no traffic
// running.
func (p *instance) Settle(t testing.TB) {
	t.Helper()
	lines := len(p.Logs())
	if n := p.settledGoroutines(t); n < p.baseline {
		t.Logf("goroutine baseline %d lowered to %d: startup work done", p.baseline, n)
		p.baseline, p.baselineLines = n, lines
	}
}

// settledGoroutines waits until the generations replaced by reloads are
// retired and returns steadyGoroutines without idle backend connections.
func (p *instance) settledGoroutines(t testing.TB) int {
	t.Helper()
	time.Sleep(time.Until(p.retiredBy()))
	return p.steadyGoroutines(t, true)
}

// retiredBy is when portmux will have retired the generation replaced by its
// last reload (zero without one). app.retire in cmd/portmux/app.go keeps a
// replaced generation for sniff_timeout + handshake_timeout + 1s after the
// reload (connections that read the old table may still reach it), then stops
// it; keep this in step. The delays are the config file's now: the tests
// that reload keep them, and goroutineWait covers a small change.
func (p *instance) retiredBy() time.Time {
	var last time.Time
	for _, l := range p.Find(func(l logLine) bool { return l.Msg() == "config reloaded" }) {
		at, err := time.Parse("2006-01-02T15:04:05.000Z0700", l.Str("ts"))
		if err != nil {
			at = time.Now() // not later than when it was read
		}
		if at.After(last) {
			last = at
		}
	}
	if last.IsZero() {
		return last
	}
	delay := config.MaxSniffTimeout + config.DefaultHandshakeTimeout // when the file does not load
	if cfg, err := config.Load(p.cfgPath); err == nil {
		delay = cfg.SniffTimeout + cfg.HandshakeTimeout
	}
	return last.Add(delay + time.Second)
}

// lifetimeGoroutines counts the goroutines portmux's libraries started since
// the baseline and keep until the process exits. certmagic starts one rate
// limiter per ACME CA and account at the first certificate order and never
// stops it (acmeclient.go: "TODO: stop rate limiter"); it logs "waiting on
// internal rate limiter" each time it uses it.
func (p *instance) lifetimeGoroutines() int {
	isLimiter := func(l logLine) bool { return l.Msg() == "waiting on internal rate limiter" }
	key := func(l logLine) string { return l.Str("ca") + " " + l.Str("account") }
	lines := p.Logs()
	before := map[string]bool{}
	for _, l := range lines[:p.baselineLines] {
		if isLimiter(l) {
			before[key(l)] = true
		}
	}
	since := map[string]bool{}
	for _, l := range lines[p.baselineLines:] {
		if isLimiter(l) && !before[key(l)] {
			since[key(l)] = true
		}
	}
	return len(since)
}

// quitSent reports whether quitDump ended portmux.
func (p *instance) quitSent() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.quitLine > 0
}

// quitDump sends SIGQUIT to portmux, whose Go runtime then prints the stack
// of every goroutine on stderr and exits (status 2), and returns what it
// printed from there on. dump leaves it out.
func (p *instance) quitDump(t testing.TB) string {
	t.Helper()
	p.termSent.Store(true) // ended here: Terminate must not signal it again
	p.mu.Lock()
	p.quitLine = len(p.lines)
	p.mu.Unlock()
	if err := p.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		return fmt.Sprintf("no goroutine dump: SIGQUIT to pid %d: %v", p.cmd.Process.Pid, err)
	}
	p.awaitExit(t, 30*time.Second, "SIGQUIT")
	var b strings.Builder
	b.WriteString("--- portmux goroutine dump (its stderr after SIGQUIT) ---\n")
	for _, l := range p.Logs()[p.quitLine:] {
		b.WriteString(l.Raw)
		b.WriteByte('\n')
	}
	b.WriteString("--- end of goroutine dump ---")
	return b.String()
}

// httpPeers are the HTTP backends of the running test. portmux keeps idle
// keep-alive connections to them (its upstream pool, 90s idle timeout, its
// ACME client), two goroutines each: not leaks, but they would stay past
// goroutineWait. The tests of this package run one at a time (no top-level
// t.Parallel), so the live peers are the current test's.
var httpPeers struct {
	sync.Mutex
	live map[*http.Server]bool
}

// trackHTTPPeer registers s, started, as an HTTP backend until the test ends.
func trackHTTPPeer(t testing.TB, s *httptest.Server) {
	httpPeers.Lock()
	defer httpPeers.Unlock()
	if httpPeers.live == nil {
		httpPeers.live = map[*http.Server]bool{}
	}
	httpPeers.live[s.Config] = true
	t.Cleanup(func() {
		httpPeers.Lock()
		defer httpPeers.Unlock()
		delete(httpPeers.live, s.Config)
	})
}

// dropIdlePeerConns has every live HTTP backend close its idle connections:
// net/http closes them when keep-alives are turned off (should it stop doing
// so, the check fails: it is never weakened). Keep-alives are turned back on
// at once: the test may go on (a Stop before its end). Only idle ones: a
// request portmux still waits for stays, and so do its goroutines.
func dropIdlePeerConns() {
	httpPeers.Lock()
	defer httpPeers.Unlock()
	for s := range httpPeers.live {
		s.SetKeepAlivesEnabled(false)
		s.SetKeepAlivesEnabled(true)
	}
}

// TestServingGoroutines checks the count the goroutine check relies on
// against this process's own profile: goroutines labelled as portmux labels
// its admin server's, one started under the label and one started by it,
// are all that is left out.
func TestServingGoroutines(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	started := make(chan struct{})
	go pprof.Do(context.Background(), pprof.Labels("portmux", "admin"), func(context.Context) {
		go func() { <-stop }()
		close(started)
		<-stop
	})
	<-started
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	var total int
	if _, err := fmt.Sscanf(b.String(), "goroutine profile: total %d", &total); err != nil {
		t.Fatalf("profile header: %v", err)
	}
	n, err := servingGoroutines(b.String())
	if err != nil {
		t.Fatal(err)
	}
	if total-n != 2 {
		t.Errorf("servingGoroutines = %d of %d, want 2 left out (the labelled ones)\n%s", n, total, b.String())
	}
	if _, err := servingGoroutines("404 page not found\n"); err == nil {
		t.Error("servingGoroutines accepted a body that is no profile")
	}
}
