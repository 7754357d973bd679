package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strings"
	"testing"
)

// TestFTPOddReplies runs the gateway against a scripted backend for what
// ftpserverlib never sends: multi-line greetings and passive replies, a 227
// naming a foreign address, reply text that looks like a 227, a 229 whose
// port is closed, and a 227 without an address.
func TestFTPOddReplies(t *testing.T) {
	data, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	dataPort := data.Addr().(*net.TCPAddr).Port
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	served := make(chan struct{})
	go func() {
		defer close(served)
		c, err := data.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("scripted data"))
		c.Close()
	}()
	pasvs := 0
	backend := listen(t, func(c *net.TCPConn) {
		c.Write([]byte("220-welcome\r\n227 Entering Passive Mode (1,2,3,4,5,6) is only text here\r\n220 ready\r\n"))
		tp := textproto.NewReader(bufio.NewReader(c))
		for {
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			var reply string
			switch line {
			case "PASV":
				pasvs++
				reply = fmt.Sprintf("227-Here it comes\r\n227 Entering Passive Mode =10,9,8,7,%d,%d now\r\n", dataPort>>8, dataPort&0xff)
				if pasvs > 1 {
					reply = "227 Entering Passive Mode, somewhere\r\n"
				}
			case "EPSV":
				reply = fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)\r\n", closedPort)
			case "STAT":
				reply = "211-status\r\n229 (|||1|) is text too\r\n211 end\r\n"
			case "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			default:
				reply = "502 not scripted\r\n"
			}
			c.Write([]byte(reply))
		}
	})
	w := newFTPWorld(t, 0, func(f *FTP) { f.Addr = backend })
	r := w.rawClient(t, ftpClientIP) // reads the multi-line greeting whole

	if msg := r.expect(t, "STAT", 211); !strings.Contains(msg, "229 (|||1|) is text too") {
		t.Errorf("STAT reply %q: inner line rewritten", msg)
	}
	msg := r.expect(t, "PASV", 227)
	ap, err := parse227(msg)
	if err != nil || ap.Addr().String() != ftpFrontIP {
		t.Fatalf("PASV reply %q: %v, %v; want portmux's address", msg, ap, err)
	}
	d, err := ftpDialFrom(ftpClientIP, ap.String())
	if err != nil {
		t.Fatal(err)
	}
	// The backend said 10.9.8.7; portmux dialed the backend's own IP.
	if got, err := io.ReadAll(d); err != nil || string(got) != "scripted data" {
		t.Errorf("data %q, %v; want %q", got, err, "scripted data")
	}
	d.Close()
	<-served
	r.expect(t, "EPSV", 425) // the backend's data port is closed
	r.expect(t, "PASV", 425) // no address in the reply
	r.expect(t, "QUIT", 221)
	if got := w.logs.FilterMessage("ftp backend data port unreachable").Len(); got != 1 {
		t.Errorf("%d unreachable data ports logged; want 1", got)
	}
}
