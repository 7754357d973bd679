package test

import (
	"bytes"
	"strings"
	"testing"
)

// TestE2ESSH runs a real SSH client through portmux against a real SSH server and moves
// more than 10 MB each way. The host key check proves the session reached our server.
func TestE2ESSH(t *testing.T) {
	w := startWorld(t, worldOpts{})
	c := sshDial(t, w.PM.Addr(), w.SSH.HostKey)
	const big = 10<<20 + 12345

	t.Run("cat", func(t *testing.T) {
		in := strings.Repeat("through portmux\n", 1000)
		var out bytes.Buffer
		if _, err := sshRun(c, "cat", strings.NewReader(in), &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != in {
			t.Errorf("cat echoed %d bytes (%q...); want %d bytes", out.Len(), trunc(out.String()), len(in))
		}
	})
	t.Run("sink 10MB up", func(t *testing.T) {
		if err := sshSink(c, 11, big); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gen 10MB down", func(t *testing.T) {
		if err := sshGen(c, big); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("second client", func(t *testing.T) {
		c2 := sshDial(t, w.PM.Addr(), w.SSH.HostKey)
		if err := sshGen(c2, 1000); err != nil {
			t.Fatal(err)
		}
	})
}

// trunc shortens s for a failure message.
func trunc(s string) string {
	if len(s) > 64 {
		return s[:64]
	}
	return s
}
