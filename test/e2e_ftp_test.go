package test

import (
	"testing"
	"time"
)

// TestE2EFTP runs a real FTP client through portmux: the client is silent until the
// server's banner, so portmux routes it after sniff_timeout to its FTP gateway, which
// rewrites the passive replies: the data connections cross portmux's one port too.
func TestE2EFTP(t *testing.T) {
	w := startWorld(t, worldOpts{})
	c, local := ftpDial(t, w.PM.Addr())

	if dir, err := c.CurrentDir(); err != nil || dir != "/" {
		t.Errorf("PWD = %q, %v; want \"/\"", dir, err)
	}
	ftpUploadDownload(t, c, "/upload.bin", 41, 1<<20+9)
	if err := c.MakeDir("/sub"); err != nil {
		t.Fatalf("MKD: %v", err)
	}
	ftpUploadDownload(t, c, "/sub/small.bin", 42, 1000)
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT: %v", err)
	}

	if got := w.FTP.Accepted(); got != 1 {
		t.Errorf("FTP backend accepted %d control connections; want 1", got)
	}
	l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
	checkFields(t, l, map[string]string{"protocol": "silent", "route": "ftp", "outcome": "ok", "backend": w.FTP.Addr()})
}
