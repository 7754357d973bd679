package test

import (
	"bytes"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func opsMetricsConfig(version int, admin, echo, web, dead string) string {
	return fmt.Sprintf(`# metrics test, version %d
listen: ["127.0.0.1:0"]
sniff_timeout: 10s   # no silent clients here: only a guard
admin: {listen: %q}
log: {level: info, format: json}
routes:
  - name: ssh-echo
    match: {protocol: ssh}
    to: %s
  - name: web
    match: {protocol: http}
    to: %s
  - name: dead
    match: {protocol: unknown}
    to: %s
`, version, admin, echo, web, dead)
}

// TestE2EOpsMetrics sends known traffic (3 SSH-prefixed echo connections of known
// sizes, 1 connection to a dead backend, 2 HTTP requests on 2 connections) and
// checks that the counters moved by exactly that: connections by protocol,
// route and outcome, bytes up and down, dial errors, HTTP requests by code, sniff
// and duration histograms, no connection left active. Then the config hash
// changes with a reload, and the health endpoints and `portmux health` answer.
func TestE2EOpsMetrics(t *testing.T) {
	echo, web, dead, admin := startEcho(t), startOpsWeb(t, "metrics", nil, nil), closedPort(t), closedPort(t)
	cfg0 := opsMetricsConfig(0, admin, echo.Addr(), web.URL, dead)
	pm := startOpsPM(t, cfg0)
	before := pm.Metrics(t)

	prefix := []byte("SSH-2.0-metrics\r\n")
	var echoed int64
	for i, n := range []int64{1000, 20_000, 300_000} {
		sent, got, _, err := roundTrip(pm.Addr(), prefix, uint64(30+i), n, time.Minute)
		if err != nil || got != sent {
			t.Fatalf("echo %d bytes: got %+v, %v; want %+v", n, got, err, sent)
		}
		echoed += sent.N
	}
	c, err := dialTCP(pm.Addr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("{to the dead backend}\n"))
	if _, err := waitClosed(c, 30*time.Second); err != nil {
		t.Fatalf("connection to the dead backend: %v; want it closed", err)
	}
	c.Close()
	hc := opsHTTPClient(pm.Addr())
	for range 2 {
		if id, err := opsGetID(hc); err != nil || id != "metrics" {
			t.Fatalf("GET /id: %q, %v; want %q", id, err, "metrics")
		}
	}

	type want struct {
		name string
		kv   []string
		add  float64
	}
	exact := []want{
		{"portmux_connections_total", []string{"protocol", "ssh", "route", "ssh-echo", "outcome", "ok"}, 3},
		{"portmux_connections_total", []string{"protocol", "unknown", "route", "dead", "outcome", "dial_failed"}, 1},
		{"portmux_connections_total", []string{"protocol", "http", "route", "web", "outcome", "ok"}, 2},
		{"portmux_bytes_total", []string{"route", "ssh-echo", "direction", "up"}, float64(echoed)},
		{"portmux_bytes_total", []string{"route", "ssh-echo", "direction", "down"}, float64(echoed)},
		{"portmux_backend_dial_errors_total", []string{"route", "dead"}, 1},
		{"portmux_http_requests_total", []string{"route", "web", "code", "200"}, 2},
		{"portmux_sniff_duration_seconds_count", []string{"protocol", "ssh"}, 3},
		{"portmux_sniff_duration_seconds_count", []string{"protocol", "unknown"}, 1},
		{"portmux_sniff_duration_seconds_count", []string{"protocol", "http"}, 2},
		{"portmux_connection_duration_seconds_count", []string{"protocol", "ssh"}, 3},
		{"portmux_connection_duration_seconds_count", []string{"protocol", "unknown"}, 1},
		{"portmux_connection_duration_seconds_count", []string{"protocol", "http"}, 2},
	}
	reached := func(m opsMetrics) bool {
		for _, w := range exact {
			if m.Get(w.name, w.kv...)-before.Get(w.name, w.kv...) < w.add {
				return false
			}
		}
		return true
	}
	m := pm.WaitMetrics(t, reached)
	for _, w := range exact {
		if got := m.Get(w.name, w.kv...) - before.Get(w.name, w.kv...); got != w.add {
			t.Errorf("%s: increased by %g; want %g\n%s", opsKey(w.name, w.kv...), got, w.add, m.Series(w.name))
		}
	}
	// Nothing else was counted: the connection counters hold exactly the three
	// series above.
	if got := strings.Count(m.Series("portmux_connections_total"), "\n") + 1; got != 3 {
		t.Errorf("portmux_connections_total has %d series; want 3:\n%s", got, m.Series("portmux_connections_total"))
	}
	if up, down := m.Get("portmux_bytes_total", "route", "web", "direction", "up"), m.Get("portmux_bytes_total", "route", "web", "direction", "down"); up < 2*float64(len("GET /id HTTP/1.1\r\n")) || down < 2*float64(len("metrics")) {
		t.Errorf("portmux_bytes_total of route web: up %g, down %g; want at least the 2 requests and 2 bodies\n%s", up, down, m.Series("portmux_bytes_total"))
	}
	for _, p := range []string{"ssh", "http", "unknown"} {
		if got := m.Get("portmux_connections_active", "protocol", p); got != 0 {
			t.Errorf("portmux_connections_active{protocol=%q} = %g after every connection closed; want 0", p, got)
		}
	}

	t.Run("config hash", func(t *testing.T) {
		h0 := opsHash(cfg0)
		if got, want := m.Series("portmux_config_info"), opsKey("portmux_config_info", "hash", h0)+" 1"; got != want {
			t.Errorf("portmux_config_info before the reload:\n%s\nwant %s", got, want)
		}
		cfg1 := opsMetricsConfig(1, admin, echo.Addr(), web.URL, dead)
		pm.Reload(t, cfg1, true, nil)
		m := pm.Metrics(t)
		if got, want := m.Series("portmux_config_info"), opsKey("portmux_config_info", "hash", opsHash(cfg1))+" 1"; got != want {
			t.Errorf("portmux_config_info after the reload:\n%s\nwant %s (and no series for %s)", got, want, h0)
		}
		if got := m.Get("portmux_reloads_total", "result", "ok"); got != 1 {
			t.Errorf("portmux_reloads_total{result=\"ok\"} = %g; want 1", got)
		}
		if !m.Has("portmux_reloads_total", "result", "failed") || m.Get("portmux_reloads_total", "result", "failed") != 0 {
			t.Errorf("portmux_reloads_total{result=\"failed\"}: want present at 0\n%s", m.Series("portmux_reloads_total"))
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz"} {
			if code, body := pm.AdminGet(t, path); code != http.StatusOK {
				t.Errorf("GET %s: %d %q; want 200", path, code, body)
			}
		}
		for _, tc := range []struct {
			name string
			args []string
			ok   bool
		}{
			{"addr", []string{"health", "-addr", pm.admin}, true},
			{"config file", []string{"health", "-c", pm.cfgPath}, true},
			{"nothing listening", []string{"health", "-addr", closedPort(t)}, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, stdout, stderr := opsRunCLI(t, tc.args...)
				if tc.ok && (code != 0 || strings.TrimSpace(stdout) != "ok") {
					t.Errorf("portmux %s: exit %d, stdout %q, stderr %q; want exit 0 and \"ok\"", strings.Join(tc.args, " "), code, stdout, stderr)
				}
				if !tc.ok && (code == 0 || stderr == "") {
					t.Errorf("portmux %s: exit %d, stderr %q; want a non-zero exit and a message", strings.Join(tc.args, " "), code, stderr)
				}
			})
		}
	})
}

// opsRunCLI runs the portmux binary with args (a hang guard of 1m) and returns
// its exit code and output.
func opsRunCLI(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("portmux binary not available: %v", buildErr)
	}
	cmd := exec.Command(portmuxBin, args...)
	cmd.Env = cleanEnv()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting portmux %v: %v", args, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("portmux %v still running after 1m", args)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}
