package test

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"
)

// TestE2EDialFailed: a route whose backend is down. The client sees the connection
// closed promptly (5s is a hang guard) and portmux logs exactly one warn line with
// outcome dial_failed, and no other warning or error about that connection.
func TestE2EDialFailed(t *testing.T) {
	w := startWorld(t, worldOpts{})
	c, err := dialTCP(w.PM.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	tc := tls.Client(c, &tls.Config{ServerName: "dead.test", InsecureSkipVerify: true})
	err = tc.Handshake()
	if err == nil {
		t.Fatal("handshake with a dead backend succeeded")
	}
	if isTimeout(err) {
		t.Fatalf("client still waiting after 5s: %v; want the connection closed", err)
	}
	if !isClosedErr(err) {
		t.Logf("handshake error %v (not EOF/reset)", err)
	}

	l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, l, map[string]string{
		"level": "warn", "outcome": "dial_failed", "route": "tls-dead", "sni": "dead.test", "backend": w.Dead,
	})
	w.PM.Stop(t) // flush: every line is written once the process has exited
	if n := len(w.PM.Find(connWith("dial_failed"))); n != 1 {
		t.Errorf("%d lines with outcome dial_failed; want 1", n)
	}
	for _, l := range w.PM.Logs() {
		lv := l.Level()
		if lv != "warn" && lv != "error" && lv != "dpanic" && lv != "panic" && lv != "fatal" {
			continue
		}
		if l.Msg() == "connection" && l.Str("client") == local {
			continue // the one expected line
		}
		if strings.Contains(l.Raw, local) || strings.Contains(l.Raw, w.Dead) {
			t.Errorf("extra %s line about the failed dial (log an error once): %s", lv, l.Raw)
		}
	}
}
