package test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// instance is one running portmux process. Its stderr is parsed line by line (JSON
// log lines) in a goroutine; every method is safe for concurrent use.
type instance struct {
	cmd     *exec.Cmd
	cfgPath string // the config file
	addr    string
	admin   string // the admin listener's address, from its "admin listening" line

	// baseline is the goroutine count once portmux was ready, 0 until then (the
	// goroutine check is then skipped: the start itself failed), and
	// baselineLines the number of log lines before it. See goroutines_test.go.
	baseline      int
	baselineLines int

	mu       sync.Mutex
	lines    []logLine
	out      bytes.Buffer // stdout, for failure messages
	quitLine int          // index of the first line after SIGQUIT (quitDump); 0 before

	exited  chan struct{} // closed when the process has exited and stderr is drained
	waitErr error         // set before exited is closed

	stopOnce sync.Once
	termSent atomic.Bool
	dumped   atomic.Bool // the logs were already part of a failure message
}

// launchPortmux starts `portmux run -c path extra...` with its logs read
// into the returned instance; the caller waits for it and stops it.
func launchPortmux(t testing.TB, path string, extra ...string) *instance {
	t.Helper()
	p := &instance{cfgPath: path, exited: make(chan struct{})}
	p.cmd = exec.Command(portmuxBin, append([]string{"run", "-c", path}, extra...)...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = lockedWriter{&p.mu, &p.out}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("stderr pipe: %v", err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting portmux: %v", err)
	}
	go p.readLogs(stderr)
	return p
}

// startPortmux writes yaml to a config file and starts portmux on it
// (startInstance). The config must enable the admin listener (adminListen).
func startPortmux(t testing.TB, yaml string) *instance {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "portmux.yaml")
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatalf("writing config: %v", err)
	}
	return startInstance(t, cfg, func() string { return "portmux config:\n" + yaml })
}

// adminListen is the admin address of the configs the tests write: every
// portmux the tests start needs its admin listener (the goroutine check reads
// its goroutine profile and /metrics), several run at once, and port 0 lets the
// kernel pick a free port that stays bound (no pick-then-close race); the
// harness learns it from the "admin listening" line. Not "127.0.0.1:0": the
// configs listen there, and config validation refuses the same address
// string twice.
const adminListen = "localhost:0"

// startInstance starts `portmux run -c path extra...`, waits for its first
// "listening" line and its "admin listening" line, and records the goroutine
// baseline. When the test ends (or when the test calls Stop) the goroutines
// are checked, then portmux is stopped with SIGTERM and must exit 0 without a
// data race (instance.Stop). describe tells the config for failure messages.
func startInstance(t testing.TB, path string, describe func() string, extra ...string) *instance {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("portmux binary not available: %v", buildErr)
	}
	p := launchPortmux(t, path, extra...)
	// Registered now, so that it runs after the cleanups of everything the
	// test creates from here on (its clients): t.Cleanup is last in, first out.
	t.Cleanup(func() {
		p.Stop(t)
		if t.Failed() && !p.dumped.Load() {
			t.Logf("%s\n%s", describe(), p.dump())
		}
	})
	l, err := p.waitFor(func(l logLine) bool { return l.Msg() == "listening" && l.Str("addr") != "" }, 30*time.Second)
	if err != nil {
		t.Fatalf("portmux did not start: %v\n%s\n%s", err, describe(), p.dump())
	}
	p.addr = l.Str("addr")
	// Logged after every "listening" line; it never comes when admin.listen
	// is "": the guard then fails the test.
	l, err = p.waitFor(func(l logLine) bool { return l.Msg() == "admin listening" && l.Str("addr") != "" }, 30*time.Second)
	if err != nil {
		t.Fatalf("portmux admin listener did not start (every e2e config must enable it: admin: {listen: %s}): %v\n%s\n%s",
			adminListen, err, describe(), p.dump())
	}
	p.admin = l.Str("addr")
	p.takeBaseline(t)
	return p
}

// cleanEnv is the test's environment without PORTMUX_* variables, which would
// override the config file.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PORTMUX_") {
			env = append(env, kv)
		}
	}
	return env
}

// readLogs is the named goroutine that parses stderr, then reaps the process.
func (p *instance) readLogs(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		l := parseLogLine(sc.Text())
		p.mu.Lock()
		p.lines = append(p.lines, l)
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r) // a line longer than 4 MiB: drain the rest
	p.waitErr = p.cmd.Wait()
	close(p.exited)
}

// Addr is the address of portmux's (first) listener.
func (p *instance) Addr() string { return p.addr }

// Logs returns a copy of the log lines so far.
func (p *instance) Logs() []logLine {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]logLine(nil), p.lines...)
}

// Find returns the log lines so far that match.
func (p *instance) Find(match func(logLine) bool) []logLine {
	var out []logLine
	for _, l := range p.Logs() {
		if match(l) {
			out = append(out, l)
		}
	}
	return out
}

// WaitLog waits up to timeout for a log line that matches and returns the first one.
// It fails the test (from the test goroutine only) with the logs if none shows up.
func (p *instance) WaitLog(t testing.TB, match func(logLine) bool, timeout time.Duration) logLine {
	t.Helper()
	l, err := p.waitFor(match, timeout)
	if err != nil {
		t.Fatalf("%v\n%s", err, p.dump())
	}
	return l
}

var errNoLogLine = errors.New("no matching log line")

func (p *instance) waitFor(match func(logLine) bool, timeout time.Duration) (logLine, error) {
	deadline := time.Now().Add(timeout)
	for seen := 0; ; {
		lines := p.Logs()
		for _, l := range lines[seen:] {
			if match(l) {
				return l, nil
			}
		}
		seen = len(lines)
		select {
		case <-p.exited:
			for _, l := range p.Logs()[seen:] {
				if match(l) {
					return l, nil
				}
			}
			return logLine{}, errors.Join(errNoLogLine, errors.New("portmux exited: "+exitString(p.waitErr)))
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return logLine{}, errors.Join(errNoLogLine, errors.New("timed out after "+timeout.String()))
		}
	}
}

// Terminate sends SIGTERM and returns at once; Stop then waits for the exit.
func (p *instance) Terminate(t testing.TB) {
	t.Helper()
	if p.termSent.Swap(true) {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
}

// Stop checks portmux's goroutines (checkGoroutines), then sends SIGTERM
// (unless Terminate did), waits for the process, and fails the test unless it
// exited 0 with no data race reported. If it hangs, only its own PID is killed.
// Stop may be called more than once; the first call does the work. A test that
// calls it before its end must have closed its clients first.
func (p *instance) Stop(t testing.TB) {
	t.Helper()
	p.stopOnce.Do(func() {
		if !p.termSent.Load() && p.Exited() {
			t.Errorf("portmux exited before it was stopped: %s\n%s", exitString(p.waitErr), p.dump())
			return
		}
		// false: the check failed and SIGQUIT (its goroutine dump) ended the
		// process, so its exit status says nothing more.
		if p.checkGoroutines(t) {
			p.Terminate(t)
			if !p.awaitExit(t, 45*time.Second, "SIGTERM") {
				return
			}
			if p.waitErr != nil {
				t.Errorf("portmux exit after SIGTERM: %s; want exit status 0\n%s", exitString(p.waitErr), p.dump())
			}
		}
		if races := p.Find(func(l logLine) bool { return strings.Contains(l.Raw, "DATA RACE") }); len(races) > 0 {
			t.Errorf("portmux reported %d data race(s)\n%s", len(races), p.dump())
		}
	})
}

// awaitExit waits up to guard for the process to exit after signal. If it does
// not, it fails the test, kills its PID (only) and returns false.
func (p *instance) awaitExit(t testing.TB, guard time.Duration, signal string) bool {
	t.Helper()
	select {
	case <-p.exited:
		return true
	case <-time.After(guard):
	}
	t.Errorf("portmux still running %v after %s; killing pid %d\n%s", guard, signal, p.cmd.Process.Pid, p.dump())
	p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		t.Errorf("portmux pid %d did not die after SIGKILL", p.cmd.Process.Pid)
	}
	return false
}

// Exited reports whether the process has exited.
func (p *instance) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// dump formats the last log lines (and stdout) for a failure message.
func (p *instance) dump() string {
	p.dumped.Store(true)
	const max = 300
	lines := p.Logs()
	p.mu.Lock()
	if p.quitLine > 0 {
		lines = lines[:p.quitLine] // the goroutine dump is in the check's own message
	}
	p.mu.Unlock()
	var b strings.Builder
	b.WriteString("--- portmux stderr")
	if len(lines) > max {
		b.WriteString(" (last 300 lines)")
		lines = lines[len(lines)-max:]
	}
	b.WriteString(" ---\n")
	for _, l := range lines {
		b.WriteString(l.Raw)
		b.WriteByte('\n')
	}
	p.mu.Lock()
	if p.out.Len() > 0 {
		b.WriteString("--- portmux stdout ---\n")
		b.Write(p.out.Bytes())
	}
	p.mu.Unlock()
	b.WriteString("--- end ---")
	return b.String()
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// lockedWriter serializes writes to w with mu.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (lw lockedWriter) Write(b []byte) (int, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.Write(b)
}
