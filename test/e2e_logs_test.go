package test

import (
	"testing"
	"time"
)

// TestE2ELogSSHConnection checks the "connection" log line of a finished SSH session:
// protocol, route, backend, outcome, and byte counts at least the payload moved.
func TestE2ELogSSHConnection(t *testing.T) {
	w := startWorld(t, worldOpts{})
	c := sshDial(t, w.PM.Addr(), w.SSH.HostKey)
	local := c.LocalAddr().String()
	const up, down = 1<<20 + 1, 2<<20 + 2
	if err := sshSink(c, 21, up); err != nil {
		t.Fatal(err)
	}
	if err := sshGen(c, down); err != nil {
		t.Fatal(err)
	}
	c.Close()

	l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, l, map[string]string{
		"level":    "info",
		"protocol": "ssh",
		"route":    "ssh",
		"backend":  w.SSH.Addr(),
		"outcome":  "ok",
	})
	for _, k := range []string{"listener", "duration", "ts"} {
		if !l.Has(k) {
			t.Errorf("connection log field %s missing\nline: %s", k, l.Raw)
		}
	}
	if l.Has("error") {
		t.Errorf("connection log has error %q on a clean session\nline: %s", l.Str("error"), l.Raw)
	}
	checkBytes(t, l, "bytes_up", up)
	checkBytes(t, l, "bytes_down", down)
	if n := len(w.PM.Find(connOf(local))); n != 1 {
		t.Errorf("%d connection lines for client %s; want 1", n, local)
	}
}
