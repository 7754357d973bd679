package test

// Each peer, talked to directly (no portmux), so a failing end-to-end test can be
// blamed on portmux and not on the peer. Run them alone with -run Peer.

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPeerSSH(t *testing.T) {
	srv := startSSHServer(t)
	c := sshDial(t, srv.Addr(), srv.HostKey)

	t.Run("cat", func(t *testing.T) {
		var out bytes.Buffer
		in := "hello\nssh peer\n"
		if _, err := sshRun(c, "cat", strings.NewReader(in), &out); err != nil {
			t.Fatal(err)
		}
		if out.String() != in {
			t.Errorf("cat echoed %q; want %q", out.String(), in)
		}
	})
	t.Run("sink", func(t *testing.T) {
		if err := sshSink(c, 1, 1<<20+3); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gen", func(t *testing.T) {
		if err := sshGen(c, 1<<20+5); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("gen 0", func(t *testing.T) {
		if err := sshGen(c, 0); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown command fails", func(t *testing.T) {
		if _, err := sshRun(c, "rm -rf /", nil, io.Discard); err == nil {
			t.Fatal("unknown command succeeded; want a non-zero exit status")
		}
	})
}

func TestPeerTLS(t *testing.T) {
	a := startTLSBackend(t, "a.test")
	b := startTLSBackend(t, "b.test")

	line, _, err := tlsIdentify(a.Addr(), "a.test", a.Cert)
	if err != nil {
		t.Fatalf("a.test: %v", err)
	}
	if line != "a.test" {
		t.Errorf("a.test answered %q; want %q", line, "a.test")
	}
	line, _, err = tlsIdentify(b.Addr(), "b.test", b.Cert, "x-test")
	if err != nil {
		t.Fatalf("b.test: %v", err)
	}
	if line != "b.test x-test" {
		t.Errorf("b.test answered %q; want %q", line, "b.test x-test")
	}
	// The client trusts only the expected certificate: the wrong backend is refused.
	if _, _, err := tlsIdentify(b.Addr(), "a.test", a.Cert); err == nil {
		t.Error("b.test backend accepted as a.test; want a certificate error")
	}

	hello := clientHello(t, "a.test")
	if len(hello) < 40 || hello[5] != 0x01 { // handshake type client_hello
		t.Errorf("clientHello: %d bytes, handshake type %#x; want a ClientHello", len(hello), hello[5])
	}
}

func TestPeerHTTP(t *testing.T) {
	srv := startHTTPBackend(t)
	hc := newHTTPClient(t, srv.Listener.Addr().String())
	if err := getHello(hc, "direct.test"); err != nil {
		t.Fatalf("GET: %v", err)
	}
	if err := postEcho(hc, "direct.test", 2, 256<<10); err != nil {
		t.Fatalf("POST: %v", err)
	}
	if len(hc.Locals()) == 0 {
		t.Error("no connection recorded")
	}
}

func TestPeerEcho(t *testing.T) {
	srv := startEcho(t)
	for _, n := range []int64{0, 1, 64 << 10, 4 << 20} {
		sent, got, _, err := roundTrip(srv.Addr(), []byte("SSH-2.0-test\r\n"), 3, n, time.Minute)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if got != sent {
			t.Errorf("%d bytes: echoed %+v; want %+v", n, got, sent)
		}
	}
}

func TestPeerReplyAfterEOF(t *testing.T) {
	srv := startReplyAfterEOF(t)
	if _, err := requestReplyAfterEOF(srv.Addr(), []byte("request body\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := requestReplyAfterEOF(srv.Addr(), nil); err != nil {
		t.Fatalf("empty request: %v", err)
	}
}

func TestPeerFTP(t *testing.T) {
	srv := startFTPServer(t)
	c, local := ftpDial(t, srv.Addr())
	if local == "" {
		t.Error("control connection local address not recorded")
	}
	ftpUploadDownload(t, c, "/peer.bin", 4, 1<<20)
	if got := srv.Accepted(); got != 1 {
		t.Errorf("accepted %d control connections; want 1", got)
	}
}

func TestPeerClosedPort(t *testing.T) {
	addr := closedPort(t)
	if c, err := dialTCP(addr); err == nil {
		c.Close()
		t.Fatalf("dial %s succeeded; want connection refused", addr)
	}
}
