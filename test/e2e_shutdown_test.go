package test

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestE2EShutdownDrain: on SIGTERM portmux stops accepting, keeps relaying a live
// connection (within shutdown_grace, 5s here), and exits 0 once it is closed.
func TestE2EShutdownDrain(t *testing.T) {
	w := startWorld(t, worldOpts{SSHTo: toEcho})
	c, err := dialTCP(w.PM.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	echo := func(msg string) {
		t.Helper()
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading echo of %q: %v", msg, err)
		}
		if !bytes.Equal(got, []byte(msg)) {
			t.Fatalf("echo %q; want %q", got, msg)
		}
	}
	echo("SSH-2.0-drain\r\nbefore SIGTERM\n")

	w.PM.Terminate(t)
	// Wait until the listener is closed: new dials are refused.
	for i := 0; ; i++ {
		if i == 200 {
			t.Fatal("portmux still accepting 10s after SIGTERM")
		}
		nc, err := dialTCP(w.PM.Addr())
		if err != nil {
			break
		}
		nc.Close()
		time.Sleep(50 * time.Millisecond)
	}
	if w.PM.Exited() {
		t.Fatalf("portmux exited with a live connection inside shutdown_grace\n%s", w.PM.dump())
	}
	echo("after SIGTERM, while draining\n")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		t.Fatalf("after half-close: read %q, %v; want clean EOF", rest, err)
	}
	c.Close()

	w.PM.Stop(t) // exit 0, no race
	l := w.PM.WaitLog(t, connOf(local), time.Second)
	checkFields(t, l, map[string]string{"outcome": "ok", "route": "ssh"})
}
