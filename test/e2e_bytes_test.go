package test

import (
	"fmt"
	"testing"
	"time"
)

// TestE2EExactBytes relays payloads of several sizes through portmux to the echo
// backend (an ssh-prefixed stream on the ssh route) and compares sha256 and length of
// what was sent and what came back. The client half-closes after sending; the echo
// backend half-closes after echoing.
func TestE2EExactBytes(t *testing.T) {
	w := startWorld(t, worldOpts{SSHTo: toEcho})
	prefix := []byte("SSH-2.0-test\r\n")
	for i, n := range []int64{0, 1, 64 << 10, 50 << 20} {
		t.Run(fmt.Sprintf("%d bytes", n), func(t *testing.T) {
			if n > 1<<20 && testing.Short() {
				t.Skip("large payload skipped in -short mode")
			}
			sent, got, local, err := roundTrip(w.PM.Addr(), prefix, uint64(70+i), n, 3*time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if sent.N != int64(len(prefix))+n {
				t.Fatalf("sent %d bytes; want %d", sent.N, int64(len(prefix))+n)
			}
			if got != sent {
				t.Errorf("echoed %+v; want %+v", got, sent)
			}
			l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
			checkFields(t, l, map[string]string{"outcome": "ok", "protocol": "ssh", "route": "ssh", "backend": w.Echo.Addr()})
			checkBytes(t, l, "bytes_up", sent.N)
			checkBytes(t, l, "bytes_down", sent.N)
		})
	}
}
