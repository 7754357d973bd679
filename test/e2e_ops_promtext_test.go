package test

// Scraping portmux's /metrics: a small parser of the Prometheus text format
// (samples only), enough to compare counters by their labels.

import (
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// opsMetrics is one scrape of /metrics: sample value by series key, the metric
// name followed by its labels sorted by name: name{a="x",b="y"}.
type opsMetrics map[string]float64

// Metrics scrapes /metrics.
func (o *opsPM) Metrics(t testing.TB) opsMetrics {
	t.Helper()
	code, body := o.AdminGet(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d; want 200\n%s", code, body)
	}
	m, err := parseOpsMetrics(body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return m
}

// WaitMetrics scrapes until done is true of a scrape (bounded: a hang guard,
// not a timing check) and returns the last scrape either way.
func (o *opsPM) WaitMetrics(t testing.TB, done func(opsMetrics) bool) opsMetrics {
	t.Helper()
	var m opsMetrics
	for i := 0; i < 200; i++ {
		if m = o.Metrics(t); done(m) {
			return m
		}
		time.Sleep(50 * time.Millisecond)
	}
	return m
}

// parseOpsMetrics parses the Prometheus text format (samples only).
func parseOpsMetrics(text string) (opsMetrics, error) {
	m := opsMetrics{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, labels, rest := line, []string(nil), ""
		if i := strings.IndexByte(line, '{'); i >= 0 {
			name = line[:i]
			var err error
			labels, rest, err = parseOpsLabels(line[i+1:])
			if err != nil {
				return nil, fmt.Errorf("%q: %w", line, err)
			}
		} else if i := strings.IndexByte(line, ' '); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("%q: no value", line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		sort.Strings(labels)
		m[name+"{"+strings.Join(labels, ",")+"}"] = v
	}
	return m, nil
}

// parseOpsLabels reads `a="x",b="y"}` and returns the pairs as written
// (`a="x"`) and what follows the closing brace.
func parseOpsLabels(s string) (pairs []string, rest string, err error) {
	for {
		s = strings.TrimLeft(s, ", ")
		if strings.HasPrefix(s, "}") {
			return pairs, s[1:], nil
		}
		eq := strings.Index(s, `="`)
		if eq < 0 {
			return nil, "", fmt.Errorf("bad labels at %q", s)
		}
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, "", fmt.Errorf("unterminated label value in %q", s)
		}
		pairs = append(pairs, s[:eq]+"="+strconv.Quote(val.String()))
		s = s[i+1:]
	}
}

// opsKey builds the series key of name with label pairs k1, v1, k2, v2...
func opsKey(name string, kv ...string) string {
	var labels []string
	for i := 0; i+1 < len(kv); i += 2 {
		labels = append(labels, kv[i]+"="+strconv.Quote(kv[i+1]))
	}
	sort.Strings(labels)
	return name + "{" + strings.Join(labels, ",") + "}"
}

// Get returns a sample (0 when the series is absent).
func (m opsMetrics) Get(name string, kv ...string) float64 { return m[opsKey(name, kv...)] }

// Has reports whether the series exists.
func (m opsMetrics) Has(name string, kv ...string) bool {
	_, ok := m[opsKey(name, kv...)]
	return ok
}

// Series lists the series of a metric with their values, for messages.
func (m opsMetrics) Series(name string) string {
	var out []string
	for k, v := range m {
		if strings.HasPrefix(k, name+"{") {
			out = append(out, fmt.Sprintf("%s %g", k, v))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func TestOpsPromTextParser(t *testing.T) {
	const text = `# HELP portmux_reloads_total Config reloads by result (ok, failed).
# TYPE portmux_reloads_total counter
portmux_reloads_total{result="failed"} 0
portmux_reloads_total{result="ok"} 41
portmux_bytes_total{route="echo",direction="up"} 1.5e+07
go_goroutines 12
odd{b="x,y}",a="q\"z"} 3
`
	m, err := parseOpsMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		kv   []string
		want float64
	}{
		{"portmux_reloads_total", []string{"result", "ok"}, 41},
		{"portmux_reloads_total", []string{"result", "failed"}, 0},
		{"portmux_bytes_total", []string{"direction", "up", "route", "echo"}, 15e6},
		{"go_goroutines", nil, 12},
		{"odd", []string{"a", `q"z`, "b", "x,y}"}, 3},
	} {
		if !m.Has(tc.name, tc.kv...) {
			t.Errorf("%s missing; have %v", opsKey(tc.name, tc.kv...), m)
			continue
		}
		if got := m.Get(tc.name, tc.kv...); got != tc.want {
			t.Errorf("%s = %g; want %g", opsKey(tc.name, tc.kv...), got, tc.want)
		}
	}
	if m.Has("portmux_reloads_total", "result", "other") {
		t.Error("an absent series is reported present")
	}
}
