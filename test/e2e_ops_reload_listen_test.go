package test

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestE2EOpsReloadListenerBusy: a reload whose new listen address cannot be
// bound is refused as a whole (the running config, its routes and listeners
// stay), and counted as failed; once the address is free the same file loads.
// A reload that changes a setting only a restart applies (sniff_timeout) says
// so in a warning.
func TestE2EOpsReloadListenerBusy(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	admin := closedPort(t)
	config := func(version int, route, sniff string, extra ...string) string {
		listen := append([]string{`"127.0.0.1:0"`}, extra...)
		return fmt.Sprintf(`# version %d
listen: [%s]
admin: {listen: %q}
sniff_timeout: %s
log: {level: info, format: json}
routes:
  - name: %s
    match: {protocol: unknown}
    to: builtin:echo
`, version, strings.Join(listen, ", "), admin, sniff, route)
	}
	pm := startOpsPM(t, config(0, "first", "10s"))

	l := pm.Reload(t, config(1, "second", "10s", `"`+busy.Addr().String()+`"`), false, nil)
	if !strings.Contains(l.Str("error"), busy.Addr().String()) {
		t.Errorf("reload refused with error %q; want it to name the busy address %s", l.Str("error"), busy.Addr())
	}
	if got, want := pm.Routes(t), []string{"first unknown -> builtin:echo"}; !slices.Equal(got, want) {
		t.Errorf("GET /routes after the refused reload: %q; want %q", got, want)
	}
	sent, got, _, err := roundTrip(pm.Addr(), []byte("{still}\n"), 1, 1000, time.Minute)
	if err != nil || got != sent {
		t.Errorf("echo through the kept listener after the refused reload: %+v, %v; want %+v", got, err, sent)
	}
	m := pm.Metrics(t)
	if ok, failed := m.Get("portmux_reloads_total", "result", "ok"), m.Get("portmux_reloads_total", "result", "failed"); ok != 0 || failed != 1 {
		t.Errorf("portmux_reloads_total: ok %g, failed %g; want 0 and 1", ok, failed)
	}

	addr := busy.Addr().String()
	busy.Close()
	// A second listener: more goroutines when idle (see Reshape).
	pm.Reshape(t, func() { pm.Reload(t, config(2, "second", "10s", `"`+addr+`"`), true, nil) })
	if got, want := pm.Routes(t), []string{"second unknown -> builtin:echo"}; !slices.Equal(got, want) {
		t.Errorf("GET /routes after the reload: %q; want %q", got, want)
	}
	sent, got, _, err = roundTrip(addr, []byte("{added}\n"), 2, 1000, time.Minute)
	if err != nil || got != sent {
		t.Errorf("echo through the added listener %s: %+v, %v; want %+v", addr, got, err, sent)
	}

	pm.Reload(t, config(3, "second", "11s", `"`+addr+`"`), true, nil)
	w := pm.WaitLog(t, func(l logLine) bool { return l.Msg() == "setting changed: it applies after a restart" }, time.Second)
	if w.Str("key") != "sniff_timeout" || w.Level() != "warn" {
		t.Errorf("restart-only warning: %s; want level warn, key sniff_timeout", w.Raw)
	}
}

// TestE2EOpsReloadRefusedProblems: a reload refused for several problems
// logs them as a list, and its error field names them all on one line (a
// JSON log line must not carry line breaks in one string).
func TestE2EOpsReloadRefusedProblems(t *testing.T) {
	base := `listen: ["127.0.0.1:0"]
admin: {listen: ` + adminListen + `}
log: {level: info, format: json}
routes:
`
	pm := startOpsPM(t, base+"  - {name: echo, match: {protocol: any}, to: \"builtin:echo\"}\n")
	l := pm.Reload(t, base+"  - {name: a, match: {protocol: ssh}, to: \"nowhere\"}\n"+
		"  - {name: a, match: {protocol: any}, to: \"builtin:echo\"}\n", false, nil)
	problems, _ := l.F["problems"].([]any)
	if len(problems) != 2 || strings.Contains(l.Str("error"), "\n") {
		t.Fatalf("reload refused line %s; want 2 problems, the error on one line", l)
	}
	for _, p := range problems {
		if s, _ := p.(string); !strings.HasPrefix(s, "config: routes[") || !strings.Contains(l.Str("error"), s) {
			t.Errorf("problem %q: want a config path, named in the error field too\nline: %s", p, l)
		}
	}
}
