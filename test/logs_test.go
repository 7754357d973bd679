package test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// logLine is one line of portmux's stderr. F holds its JSON fields; it is nil when the
// line is not a JSON object (a panic, a race report).
type logLine struct {
	Raw string
	F   map[string]any
}

func parseLogLine(raw string) logLine {
	l := logLine{Raw: raw}
	if strings.HasPrefix(strings.TrimSpace(raw), "{") {
		var f map[string]any
		if json.Unmarshal([]byte(raw), &f) == nil {
			l.F = f
		}
	}
	return l
}

// Str returns field k as a string ("" when absent or not a string).
func (l logLine) Str(k string) string {
	s, _ := l.F[k].(string)
	return s
}

// Num returns field k as a number.
func (l logLine) Num(k string) (float64, bool) {
	n, ok := l.F[k].(float64)
	return n, ok
}

// Has reports whether field k is present.
func (l logLine) Has(k string) bool {
	_, ok := l.F[k]
	return ok
}

func (l logLine) Msg() string   { return l.Str("msg") }
func (l logLine) Level() string { return l.Str("level") }

// logTime is the time stamp of l.
func logTime(t *testing.T, l logLine) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, l.Str("ts"))
	if err != nil {
		t.Fatalf("log line time %q: %v", l.Str("ts"), err)
	}
	return ts
}

// connOf matches the "connection" line of the client whose local address is client.
func connOf(client string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg() == "connection" && l.Str("client") == client }
}

// connWith matches any "connection" line with the given outcome.
func connWith(outcome string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg() == "connection" && l.Str("outcome") == outcome }
}

// checkFields reports every field of l that differs from want. A want value of ""
// means "absent or empty".
func checkFields(t testing.TB, l logLine, want map[string]string) {
	t.Helper()
	for k, w := range want {
		if got := l.Str(k); got != w {
			t.Errorf("connection log field %s = %q; want %q\nline: %s", k, got, w, l.Raw)
		}
	}
}

// checkBytes checks that the numeric field k of l is at least min.
func checkBytes(t testing.TB, l logLine, k string, min int64) {
	t.Helper()
	n, ok := l.Num(k)
	if !ok {
		t.Errorf("connection log field %s missing or not a number\nline: %s", k, l.Raw)
		return
	}
	if n < float64(min) {
		t.Errorf("connection log field %s = %.0f; want >= %d\nline: %s", k, n, min, l.Raw)
	}
}

// String is the raw line, for messages.
func (l logLine) String() string { return l.Raw }
