package test

// Helpers of the e2e_ops_* tests (live operations: reload, drain, metrics,
// --watch): a portmux whose config file the test owns and rewrites, its admin
// listener (metrics, health, routes), and backends that tell who they are or
// hold a transfer until the test lets it go.

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// opsPM is a running portmux started with `portmux run -c cfgPath [extra...]`.
// Every method is safe for concurrent use; those that take a testing.TB must be
// called from the test goroutine.
type opsPM struct {
	*instance
}

// startOpsPM writes yaml to a fresh config file and starts portmux on it. The
// config must enable the admin listener.
func startOpsPM(t testing.TB, yaml string, extra ...string) *opsPM {
	t.Helper()
	path := filepath.Join(t.TempDir(), "portmux.yaml")
	opsWriteFile(t, path, yaml)
	return startOpsPMFile(t, path, extra...)
}

// startOpsPMFile starts portmux on an existing config file (startInstance).
// The config must enable the admin listener.
func startOpsPMFile(t testing.TB, path string, extra ...string) *opsPM {
	t.Helper()
	describe := func() string {
		cfg, _ := os.ReadFile(path)
		return fmt.Sprintf("portmux config file %s (last version):\n%s", path, cfg)
	}
	return &opsPM{startInstance(t, path, describe, extra...)}
}

// opsWriteFile replaces path with content atomically (a temporary file renamed
// over it), so portmux never reads half a file.
func opsWriteFile(t testing.TB, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatalf("writing config: %v", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatalf("renaming config: %v", err)
	}
}

// opsHash is the hash portmux reports for a config file: the first 12 hex digits
// of the SHA-256 of its bytes.
func opsHash(content string) string {
	s := sha256.Sum256([]byte(content))
	return hex.EncodeToString(s[:6])
}

// Log lines of a reload.
const (
	opsMsgReloaded = "config reloaded"
	opsMsgRefused  = "reload refused: keeping the running config"
)

func opsIsReloaded(hash string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg() == opsMsgReloaded && l.Str("hash") == hash }
}

func opsIsRefused(l logLine) bool { return l.Msg() == opsMsgRefused }

// Count returns how many log lines so far match.
func (o *opsPM) Count(match func(logLine) bool) int { return len(o.Find(match)) }

// WaitNth waits up to guard for the n-th line (1-based) that matches.
func (o *opsPM) WaitNth(t testing.TB, match func(logLine) bool, n int, guard time.Duration) logLine {
	t.Helper()
	seen := 0
	return o.WaitLog(t, func(l logLine) bool {
		if match(l) {
			seen++
		}
		return seen == n
	}, guard)
}

// Reload writes yaml to the config file, runs trigger (nil: send SIGHUP) and
// waits for portmux's answer: the "config reloaded" line with the new file's
// hash when valid, else one more "reload refused" line. Every config the tests
// write differs (a counter in a comment), so each hash names one reload.
func (o *opsPM) Reload(t testing.TB, yaml string, valid bool, trigger func()) logLine {
	t.Helper()
	match := opsIsRefused
	if valid {
		match = opsIsReloaded(opsHash(yaml))
	}
	n := o.Count(match) + 1
	opsWriteFile(t, o.cfgPath, yaml)
	if trigger == nil {
		o.Signal(t, syscall.SIGHUP)
	} else {
		trigger()
	}
	return o.WaitNth(t, match, n, 30*time.Second)
}

// Signal sends sig to the portmux process (and only to it).
func (o *opsPM) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := o.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v to pid %d: %v", sig, o.cmd.Process.Pid, err)
	}
}

// opsAdminClient returns a client for admin listeners: a new connection per
// request, a hang guard per request.
func opsAdminClient() *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

// AdminDo sends a request to the admin listener and returns status and body.
func (o *opsPM) AdminDo(method, path string) (int, string, error) {
	req, err := http.NewRequest(method, "http://"+o.admin+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := opsAdminClient().Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// AdminGet is AdminDo for a GET that must succeed at the HTTP level.
func (o *opsPM) AdminGet(t testing.TB, path string) (int, string) {
	t.Helper()
	code, body, err := o.AdminDo(http.MethodGet, path)
	if err != nil {
		t.Fatalf("GET admin %s: %v", path, err)
	}
	return code, body
}

// opsRoute is one entry of GET /routes. encoding/json matches keys without
// regard to case, so "protocol" and "Protocol" both decode.
type opsRoute struct {
	Name  string `json:"name"`
	Match struct {
		Protocol string   `json:"protocol"`
		SNI      []string `json:"sni"`
	} `json:"match"`
	To        string   `json:"to"`
	Upstreams []string `json:"upstreams"`
}

func (r opsRoute) String() string {
	s := r.Name + " " + r.Match.Protocol
	if len(r.Match.SNI) > 0 {
		s += " sni=" + strings.Join(r.Match.SNI, ",")
	}
	return s + " -> " + r.To + strings.Join(r.Upstreams, ",")
}

// Routes returns the routing table the admin listener shows, one string per
// route ("name protocol [sni=..] -> to").
func (o *opsPM) Routes(t testing.TB) []string {
	t.Helper()
	code, body := o.AdminGet(t, "/routes")
	if code != http.StatusOK {
		t.Fatalf("GET /routes: %d %q; want 200", code, body)
	}
	var rs []opsRoute
	if err := json.Unmarshal([]byte(body), &rs); err != nil {
		t.Fatalf("GET /routes: decoding %q: %v", body, err)
	}
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.String())
	}
	return out
}

// opsTicks counts reloads for the long-lived clients, which move a chunk after
// each one. Finish releases every waiter for good.
type opsTicks struct {
	mu   sync.Mutex
	n    int
	done bool
	ch   chan struct{} // closed and replaced at each change
}

func newOpsTicks() *opsTicks { return &opsTicks{ch: make(chan struct{})} }

// Now is the number of ticks so far.
func (k *opsTicks) Now() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n
}

// Advance adds a tick.
func (k *opsTicks) Advance() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.n++
	close(k.ch)
	k.ch = make(chan struct{})
}

// Finish releases all present and future waiters.
func (k *opsTicks) Finish() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.done {
		k.done = true
		close(k.ch)
	}
}

// Wait blocks until tick n or Finish, for at most guard.
func (k *opsTicks) Wait(n int, guard time.Duration) error {
	timer := time.NewTimer(guard)
	defer timer.Stop()
	for {
		k.mu.Lock()
		if k.n >= n || k.done {
			k.mu.Unlock()
			return nil
		}
		ch := k.ch
		k.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			return fmt.Errorf("tick %d not reached after %v (at %d)", n, guard, k.Now())
		}
	}
}

// opsGate holds a transfer in a backend: the backend calls Hold, which reports
// that it got there and waits until the test calls Open (or a guard passes).
type opsGate struct {
	reached  chan struct{}
	release  chan struct{}
	once     sync.Once
	reachedN atomic.Int32
}

// newOpsGate returns a closed gate that is opened when the test ends, so that
// no backend handler outlives it.
func newOpsGate(t testing.TB) *opsGate {
	g := &opsGate{reached: make(chan struct{}, 16), release: make(chan struct{})}
	t.Cleanup(g.Open)
	return g
}

// Open lets every held transfer go on.
func (g *opsGate) Open() { g.once.Do(func() { close(g.release) }) }

// Hold is called by a backend handler.
func (g *opsGate) Hold() error {
	g.reachedN.Add(1)
	select {
	case g.reached <- struct{}{}:
	default:
	}
	select {
	case <-g.release:
		return nil
	case <-time.After(3 * time.Minute):
		return fmt.Errorf("gate not opened within 3m")
	}
}

// WaitReached waits until a backend is held at the gate.
func (g *opsGate) WaitReached(guard time.Duration) error {
	select {
	case <-g.reached:
		return nil
	case <-time.After(guard):
		return fmt.Errorf("no transfer reached the gate within %v", guard)
	}
}

// opsCounter is an io.Writer that counts what it is given (progress of a
// download, readable while it runs).
type opsCounter struct{ n atomic.Int64 }

func (c *opsCounter) Write(b []byte) (int, error) {
	c.n.Add(int64(len(b)))
	return len(b), nil
}

// opsRefused reports whether a dial to addr is refused now. Any other outcome
// (accepted, timeout) is false; the accepted connection is closed.
func opsRefused(addr string) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err == nil {
		c.Close()
		return false, nil
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return true, nil
	}
	return false, err
}

// opsNeedLoopbackNet skips the test unless addresses of 127.0.0.0/8 other than
// 127.0.0.1 can be bound (Linux: the whole block is loopback; macOS: only
// aliases added with ifconfig).
func opsNeedLoopbackNet(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Skipf("needs the loopback network 127.0.0.0/8: %v", err)
	}
	ln.Close()
}
