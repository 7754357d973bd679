package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/jlaffaye/ftp"
)

const bigFile = 20 << 20

// checkDataPeers fails unless every passive data connection the backend
// accepted came from portmux (127.0.0.1), none from the client itself.
func (w *ftpWorld) checkDataPeers(t *testing.T) {
	t.Helper()
	peers := w.back.peers()
	for _, p := range peers {
		if p != netip.MustParseAddr("127.0.0.1") {
			t.Errorf("backend data connection from %s; want all from portmux's 127.0.0.1", p)
		}
	}
}

// TestFTPTransfers moves 20 MB each way in each data mode. The data must
// cross portmux: the backend announces an unreachable address, checks that
// data comes from its control peer (portmux), and the test checks who
// connected to whom.
func TestFTPTransfers(t *testing.T) {
	for _, mode := range []string{"EPSV", "PASV"} {
		t.Run(mode, func(t *testing.T) {
			w := newFTPWorld(t, 0, nil)
			// TrustPasvIP: use the address in our 227 rather than
			// jlaffaye's default of the control connection's.
			c, dialog := w.ftpClient(t, ftpClientIP, ftp.DialWithDisabledEPSV(mode == "PASV"), ftp.DialWithTrustPasvIP(true))
			if err := ftpRoundTrip(c, w.back, "/big.bin", 1, bigFile); err != nil {
				t.Fatal(err)
			}
			port, _ := strconv.Atoi(w.front[strings.LastIndexByte(w.front, ':')+1:])
			want := fmt.Sprintf("229 Entering Extended Passive Mode (|||%d|)", port)
			if mode == "PASV" {
				want = fmt.Sprintf("227 Entering Passive Mode (127,0,0,6,%d,%d)", port>>8, port&0xff)
			}
			if d := dialog.String(); !strings.Contains(d, want) || strings.Contains(d, "192,0,2,1") {
				t.Errorf("control dialogue lacks %q or shows the backend's address:\n%s", want, d)
			}
			if got := w.claimed.Load(); got != 3 { // STOR, LIST (MLSD), RETR
				t.Errorf("front claimed %d data connections; want 3", got)
			}
			if got := len(w.back.peers()); got != 3 {
				t.Errorf("backend accepted %d data connections; want 3", got)
			}
			w.checkDataPeers(t)
		})
	}
	for _, verb := range []string{"PORT", "EPRT"} {
		t.Run(verb, func(t *testing.T) {
			w := newFTPWorld(t, 0, nil)
			r := w.rawClient(t, ftpClientIP)
			r.login(t)
			want, _ := ftpSum(ftpPayload(2, bigFile))
			_, peer, err := r.active(verb, "STOR /big.bin", ftpClientIP, ftpPayload(2, bigFile))
			if err != nil {
				t.Fatal(err)
			}
			// The backend would dial from 127.0.0.1; portmux dials from
			// the address the client reached it at.
			if peer != netip.MustParseAddr(ftpFrontIP) {
				t.Errorf("STOR data connection from %s; want portmux's %s", peer, ftpFrontIP)
			}
			if got := w.back.fileDigest(t, "/big.bin"); got != want {
				t.Errorf("backend stored digest %s; want %s", got, want)
			}
			got, peer, err := r.active(verb, "RETR /big.bin", ftpClientIP, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != want || peer != netip.MustParseAddr(ftpFrontIP) {
				t.Errorf("RETR: digest %s from %s; want %s from %s", got, peer, want, ftpFrontIP)
			}
			r.expect(t, "QUIT", 221)
		})
	}
}

// TestFTPConcurrentClients runs clients side by side: from two IPs, and
// from one IP (two sessions behind one NAT address), where the second
// passive reply must wait for the first data connection so the two never
// swap data.
func TestFTPConcurrentClients(t *testing.T) {
	cases := []struct {
		name   string
		from   [2]string
		size   int64
		rounds int
	}{
		{"two IPs", [2]string{ftpClientIP, ftpOtherIP}, bigFile, 1},
		{"one IP", [2]string{ftpClientIP, ftpClientIP}, 1 << 20, 4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newFTPWorld(t, 0, nil)
			var clients [2]*ftp.ServerConn
			for i, from := range tc.from {
				clients[i], _ = w.ftpClient(t, from, ftp.DialWithDisabledEPSV(i == 1))
			}
			errs := make(chan error, 2)
			var wg sync.WaitGroup
			for i, c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for round := range tc.rounds {
						name := fmt.Sprintf("/c%d-%d.bin", i, round)
						if err := ftpRoundTrip(c, w.back, name, uint64(10*i+round), tc.size+int64(i)); err != nil {
							errs <- fmt.Errorf("client %d: %w", i, err)
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if got, want := w.claimed.Load(), int64(2*3*tc.rounds); got != want {
				t.Errorf("front claimed %d data connections; want %d", got, want)
			}
			w.checkDataPeers(t)
		})
	}
}

// TestFTPDataPorts takes passive data connections on a port range.
func TestFTPDataPorts(t *testing.T) {
	first := freePortRange(t, ftpFrontIP, 3)
	var dp *DataPorts
	w := newFTPWorld(t, 0, func(f *FTP) {
		var err error
		dp, err = NewDataPorts(ftpFrontIP, first, first+2, f.Claims)
		if err != nil {
			t.Fatal(err)
		}
		f.DataPorts = dp
	})
	for _, pasv := range []bool{false, true} {
		c, dialog := w.ftpClient(t, ftpClientIP, ftp.DialWithDisabledEPSV(pasv), ftp.DialWithTrustPasvIP(true))
		if err := ftpRoundTrip(c, w.back, fmt.Sprintf("/dp-%v.bin", pasv), 3, 1<<20); err != nil {
			t.Fatal(err)
		}
		if d := dialog.String(); !strings.Contains(d, fmt.Sprintf("|||%d|", first)) && !strings.Contains(d, fmt.Sprintf(",%d,%d)", first>>8, first&0xff)) {
			t.Errorf("no reply names port %d of the range:\n%s", first, d)
		}
	}
	if got := w.claimed.Load(); got != 0 {
		t.Errorf("front claimed %d connections; want 0 (they use the range)", got)
	}
	w.checkDataPeers(t)

	// A stranger on the range is closed at once.
	c, err := ftpDialFrom(ftpStrangerIP, net.JoinHostPort(ftpFrontIP, strconv.Itoa(first)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Errorf("stranger on the data range read %d bytes; want the connection closed", n)
	}
	if w.logs.FilterMessage("ftp data connection refused: not expected").Len() == 0 {
		t.Error("refused stranger not logged")
	}
}

// freePortRange finds n consecutive ports free on host a moment ago.
func freePortRange(t *testing.T, host string, n int) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", host+":0")
		if err != nil {
			t.Fatal(err)
		}
		first := ln.Addr().(*net.TCPAddr).Port
		lns := []net.Listener{ln}
		for p := first + 1; p < first+n; p++ {
			if l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p))); err == nil {
				lns = append(lns, l)
			}
		}
		for _, l := range lns {
			l.Close()
		}
		if len(lns) == n {
			return first
		}
	}
	t.Fatal("no free port range")
	return 0
}
