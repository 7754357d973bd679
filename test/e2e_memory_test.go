package test

import (
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
)

// TestE2EMemoryTuning checks how the binary paces Go's collector: with no
// GOGC in its environment it keeps 64 MiB of headroom (GOGC above 100 for
// its small heap, as /metrics reports it); GOGC and GOMEMLIMIT, when set,
// are left as the operator set them; AUTOMEMLIMIT=off is obeyed, and one
// that is no ratio is logged and leaves no limit. The cgroup limit is checked in a
// container by test/docker.sh.
func TestE2EMemoryTuning(t *testing.T) {
	config := func() string {
		return fmt.Sprintf(`listen: ["127.0.0.1:0"]
admin: {listen: %q}
log: {level: info}
routes:
  - name: echo
    match: {protocol: unknown}
    to: %s
`, adminListen, startEcho(t).Addr())
	}
	memoryLine := func(t *testing.T, pm *opsPM) logLine {
		t.Helper()
		lines := pm.Find(func(l logLine) bool { return l.Msg() == "memory" })
		if len(lines) != 1 {
			t.Fatalf("%d \"memory\" log lines at start; want 1", len(lines))
		}
		return lines[0]
	}

	t.Run("headroom by default", func(t *testing.T) {
		// The test's own environment must not decide the outcome.
		unsetEnv(t, "GOGC", "GOMEMLIMIT", "AUTOMEMLIMIT")
		pm := startOpsPM(t, config())
		l := memoryLine(t, pm)
		if got, _ := l.Num("gc_headroom_bytes"); l.Str("gc") != "headroom" || got != 64<<20 {
			t.Errorf("memory line: want gc headroom, gc_headroom_bytes %d\n%s", 64<<20, l)
		}
		// A machine whose cgroup sets a limit reports it in bytes; this
		// one may have none.
		if l.Str("memory_limit") == "" {
			if _, ok := l.Num("memory_limit_bytes"); !ok {
				t.Errorf("memory line names no memory limit\n%s", l)
			}
		}
		// portmux's heap is far under 64 MiB: GOGC goes above 100.
		raised := func(m opsMetrics) bool { return m.Get("go_gc_gogc_percent") > 100 }
		if m := pm.WaitMetrics(t, raised); !raised(m) {
			t.Errorf("go_gc_gogc_percent = %g; want above 100 (headroom)", m.Get("go_gc_gogc_percent"))
		}
	})
	t.Run("GOGC and GOMEMLIMIT from the environment", func(t *testing.T) {
		t.Setenv("GOGC", "150")
		t.Setenv("GOMEMLIMIT", "512MiB")
		pm := startOpsPM(t, config())
		l := memoryLine(t, pm)
		if got := l.Str("gc"); got != "GOGC=150" {
			t.Errorf("memory line gc = %q; want GOGC=150\n%s", got, l)
		}
		if got := l.Str("memory_limit"); got != "GOMEMLIMIT=512MiB" {
			t.Errorf("memory line memory_limit = %q; want GOMEMLIMIT=512MiB\n%s", got, l)
		}
		m := pm.Metrics(t)
		if got := m.Get("go_gc_gogc_percent"); got != 150 {
			t.Errorf("go_gc_gogc_percent = %g; want 150", got)
		}
		if got := m.Get("go_gc_gomemlimit_bytes"); got != 512<<20 {
			t.Errorf("go_gc_gomemlimit_bytes = %g; want %d", got, 512<<20)
		}
	})
	// A bad AUTOMEMLIMIT is logged and costs only the limit; off is obeyed.
	for _, c := range []struct{ value, want, warning string }{
		{"abc", "none", "cannot parse AUTOMEMLIMIT: abc"},
		{"off", "none (AUTOMEMLIMIT=off)", ""},
	} {
		t.Run("AUTOMEMLIMIT="+c.value, func(t *testing.T) {
			unsetEnv(t, "GOGC", "GOMEMLIMIT")
			t.Setenv("AUTOMEMLIMIT", c.value)
			pm := startOpsPM(t, config())
			l := memoryLine(t, pm)
			if got := l.Str("memory_limit"); got != c.want || l.Str("gc") != "headroom" {
				t.Errorf("memory line: want memory_limit %q and gc headroom\n%s", c.want, l)
			}
			warned := pm.Find(func(l logLine) bool {
				return l.Level() == "warn" && l.Msg() == "no soft memory limit set" && strings.Contains(l.Str("error"), c.warning)
			})
			if (len(warned) == 1) != (c.warning != "") {
				t.Errorf("%d \"no soft memory limit set\" warnings; want one only for a bad value", len(warned))
			}
			if got := pm.Metrics(t).Get("go_gc_gomemlimit_bytes"); got != math.MaxInt64 {
				t.Errorf("go_gc_gomemlimit_bytes = %g; want no limit", got)
			}
		})
	}
}

// unsetEnv unsets the variables for t (and portmux processes it starts);
// they are restored when t ends.
func unsetEnv(t *testing.T, vars ...string) {
	for _, v := range vars {
		t.Setenv(v, "") // for the restore
		os.Unsetenv(v)
	}
}
