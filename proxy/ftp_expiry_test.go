package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"github.com/spf13/afero"
)

const msgExpired = "ftp data connection expectation expired"

// waitExpired waits until the gateway logged n expiries: the line is written
// after the prepared backend connection was closed.
func (w *ftpWorld) waitExpired(t *testing.T, n int) {
	t.Helper()
	ftpWaitFor(t, "expiry", func() bool { return w.logs.FilterMessage(msgExpired).Len() >= n })
}

// TestFTPLateDataConnection: a client that opens its passive data
// connection after the expectation expired is not relayed (it is sniffed as
// a new connection: here, a new control session greets it), and the backend
// must see the transfer fail. The prepared backend connection used to be
// closed with a FIN, so the backend took it for an empty transfer: STOR
// stored nothing, NLST and RETR sent into the void, all answered 226.
func TestFTPLateDataConnection(t *testing.T) {
	for _, cmd := range []string{"STOR /late.txt", "NLST /", "RETR /small.txt"} {
		t.Run(cmd, func(t *testing.T) {
			w := newFTPWorld(t, 100*time.Millisecond, nil)
			afero.WriteFile(w.back.fs, "/small.txt", []byte("a small file\n"), 0o644)
			r := w.rawClient(t, ftpClientIP)
			r.login(t)
			ap, err := parse227(r.expect(t, "PASV", 227))
			if err != nil {
				t.Fatal(err)
			}
			w.waitExpired(t, 1)

			d, err := ftpDialFrom(ftpClientIP, ap.String())
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if line, err := bufio.NewReader(d).ReadString('\n'); err != nil || !strings.HasPrefix(line, "220 ") {
				t.Errorf("late data connection read %q, %v; want a new session's greeting", line, err)
			}
			if got := w.claimed.Load(); got != 0 {
				t.Errorf("claimed %d late connections; want 0", got)
			}

			code, msg, err := r.do(cmd)
			if err == nil && (code == 150 || code == 125) {
				code, msg, err = r.tp.ReadResponse(0)
			}
			if err != nil || code < 400 {
				t.Errorf("%s after the expiry: %d %q, %v; want a failure reply (4xx/5xx), not success", cmd, code, msg, err)
			}
			r.expect(t, "NOOP", 200)
		})
	}
}

// TestFTPLateUpload is the report that found the bug, with jlaffaye/ftp in
// place of python's ftplib: an upload whose data connection comes after
// the expiry must fail on the client, not be reported stored while the
// backend keeps an empty file. (ftpserverlib, like vsftpd, creates the file
// before the data arrives; the reply is what tells the client.)
func TestFTPLateUpload(t *testing.T) {
	w := newFTPWorld(t, 100*time.Millisecond, nil)
	dials := 0
	late := func(_, addr string) (net.Conn, error) {
		if dials++; dials > 1 { // the data connection: only after the expiry
			w.waitExpired(t, 1)
		}
		return ftpDialFrom(ftpClientIP, addr)
	}
	c, _ := w.ftpClient(t, ftpClientIP, ftp.DialWithDialFunc(late))
	err := c.Stor("/late.txt", strings.NewReader("47 bytes that used to vanish without an error."))
	if err == nil {
		t.Error("STOR with a data connection after the expiry succeeded; want an error")
	}
	if got := w.claimed.Load(); got != 0 {
		t.Errorf("claimed %d late connections; want 0", got)
	}
}

// scriptedDataBackend is a scripted FTP backend that reports how each data
// connection between it and portmux ended: io.EOF for a FIN, the read error
// otherwise. PASV points at its data listener; PORT makes it connect to the
// address given at once.
func scriptedDataBackend(t *testing.T) (string, <-chan error) {
	t.Helper()
	data, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := data.Addr().(*net.TCPAddr).Port
	ends := make(chan error, 16)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	watch := func(c net.Conn) {
		mu.Lock()
		conns = append(conns, c)
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := c.Read(make([]byte, 1))
			ends <- err
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := data.Accept()
			if err != nil {
				return
			}
			watch(c)
		}
	}()
	t.Cleanup(func() {
		data.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	control := listen(t, func(c *net.TCPConn) {
		c.Write([]byte("220 scripted\r\n"))
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			verb, arg := parseCommand([]byte(line))
			reply := "200 ok\r\n"
			switch verb {
			case "PASV":
				reply = fmt.Sprintf("227 Entering Passive Mode (127,0,0,1,%d,%d)\r\n", port>>8, port&0xff)
			case "PORT":
				ap, err := parsePORT(arg)
				if err != nil {
					reply = "501 bad PORT\r\n"
					break
				}
				d, err := net.Dial("tcp", ap.String())
				switch {
				case errors.Is(err, syscall.ECONNRESET):
					// Accepted and reset before the dial saw its
					// handshake complete: that connection's end.
					ends <- err
				case err != nil:
					reply = "425 cannot connect\r\n"
				default:
					watch(d)
				}
			case "QUIT":
				c.Write([]byte("221 bye\r\n"))
				return
			}
			c.Write([]byte(reply))
		}
	})
	return control, ends
}

// closedPort returns an address on ip where nothing listens now.
func closedPort(t *testing.T, ip string) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return ap
}

// TestFTPDataAborted: every way portmux gives up on a data connection it
// opened to (or accepted from) the backend before a client was joined to it
// ends that connection with a reset, never a FIN, which the backend would
// read as a complete, empty transfer.
func TestFTPDataAborted(t *testing.T) {
	cases := []struct {
		name   string
		expiry time.Duration
		run    func(t *testing.T, w *ftpWorld, r *rawFTP)
	}{
		{"expired", 100 * time.Millisecond, func(t *testing.T, w *ftpWorld, r *rawFTP) {
			r.expect(t, "PASV", 227)
		}},
		{"replaced by PASV", time.Hour, func(t *testing.T, w *ftpWorld, r *rawFTP) {
			r.expect(t, "PASV", 227)
			r.expect(t, "PASV", 227)
		}},
		{"session ended", time.Hour, func(t *testing.T, w *ftpWorld, r *rawFTP) {
			r.expect(t, "PASV", 227)
			r.c.Close()
		}},
		{"table closed", time.Hour, func(t *testing.T, w *ftpWorld, r *rawFTP) {
			r.expect(t, "PASV", 227)
			w.claims.Close()
		}},
		{"active, client unreachable", time.Hour, func(t *testing.T, w *ftpWorld, r *rawFTP) {
			r.expect(t, "PORT "+formatPORT(closedPort(t, ftpClientIP)), 200)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend, ends := scriptedDataBackend(t)
			w := newFTPWorld(t, tc.expiry, func(f *FTP) { f.Addr = backend })
			r := w.rawClient(t, ftpClientIP)
			tc.run(t, w, r)
			select {
			case err := <-ends:
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("backend data connection ended with %v; want a reset (%v)", err, syscall.ECONNRESET)
				}
			case <-time.After(10 * time.Second): // a hang guard
				t.Fatal("backend data connection still open after 10s")
			}
		})
	}
}

// TestFTPPassiveNotStalled: with a long expiry, an expectation whose client
// never connects must not stall the next passive reply for that long. A
// session's new passive command replaces its own expectation at once; a
// second session from the same IP waits for the first one's only briefly
// and gets 425 (its data could otherwise go to the other client), and
// works again once the first data connection came.
func TestFTPPassiveNotStalled(t *testing.T) {
	w := newFTPWorld(t, time.Hour, func(f *FTP) { f.Claims.wait = 50 * time.Millisecond })
	afero.WriteFile(w.back.fs, "/a.txt", []byte("for a\n"), 0o644)
	a := w.rawClient(t, ftpClientIP)
	a.login(t)
	// c shares a's IP (one NAT address). It connects first: while a data
	// connection is expected from an IP, a new connection from it is taken
	// for that (the limit ftp.data_ports lifts).
	c := w.rawClient(t, ftpClientIP)
	c.login(t)
	a.expect(t, "PASV", 227)
	first := w.pendingBackend(t)
	a.expect(t, "PASV", 227) // waiting for itself would answer 425
	checkClosed(t, first)
	if got := w.claims.Pending(); got != 1 {
		t.Fatalf("%d data connections expected after a second PASV; want 1", got)
	}

	b := w.rawClient(t, ftpOtherIP) // another IP is not held up at all
	b.login(t)
	b.expect(t, "PASV", 227)
	b.c.Close()

	c.expect(t, "EPSV", 425) // waits for a's expectation, briefly

	c.expect(t, "NOOP", 200)

	d, err := ftpDialFrom(ftpClientIP, w.front) // a's data connection, late but within the expiry
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	a.expect(t, "RETR /a.txt", 150)
	if got, err := io.ReadAll(d); err != nil || string(got) != "for a\n" {
		t.Errorf("RETR data %q, %v", got, err)
	}
	if code, msg, err := a.tp.ReadResponse(0); err != nil || code != 226 {
		t.Errorf("RETR end: %d %q, %v", code, msg, err)
	}
	c.expect(t, "EPSV", 229) // the IP is free again
}
