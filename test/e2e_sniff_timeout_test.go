package test

import (
	"testing"
	"time"
)

// TestE2ESniffTimeout: clients that send a few bytes that could start a protocol and
// then stall are closed at sniff_timeout with outcome sniff_timeout, are never handed
// to the silent (FTP) route, and do not hold up other clients: a good HTTP request
// started after the staller completes while the staller's connection is still open.
// sniff_timeout is 3s here so that ordering holds with a wide margin on a slow machine.
func TestE2ESniffTimeout(t *testing.T) {
	w := startWorld(t, worldOpts{SniffTimeout: "3s"})
	hello := clientHello(t, "a.test")
	cases := []struct {
		name string
		sent []byte
	}{
		{"one byte S", []byte("S")},
		{"one byte G", []byte("G")},
		{"one byte 0x16", []byte{0x16}},
		{"truncated ClientHello", hello[:20]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := dialTCP(w.PM.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			local := c.LocalAddr().String()
			if _, err := c.Write(tc.sent); err != nil {
				t.Fatal(err)
			}
			hc := newHTTPClient(t, w.PM.Addr())
			if err := getHello(hc, "web.test"); err != nil {
				t.Errorf("good client during the stall: %v", err)
			}
			// Probe the staller now. On loopback a close by portmux is already queued
			// as EOF (or reset) here, and the read returns it at once; a read that
			// times out proves the staller is still open after the good request.
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			var one [1]byte
			if n, err := c.Read(one[:]); !isTimeout(err) {
				t.Errorf("staller read %d bytes, err %v, before the concurrent good request finished; "+
					"want still open (the good client was held up, or the staller was cut before sniff_timeout)", n, err)
			}

			got, err := waitClosed(c, 30*time.Second)
			if err != nil {
				t.Fatalf("staller: %v", err)
			}
			if len(got) != 0 {
				t.Errorf("staller read %q; want nothing", got)
			}
			l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
			checkFields(t, l, map[string]string{"outcome": "sniff_timeout", "route": ""})
		})
	}
	t.Cleanup(func() {
		if n := w.FTP.Accepted(); n != 0 {
			t.Errorf("FTP backend accepted %d connections from stallers; want 0", n)
		}
	})
}
