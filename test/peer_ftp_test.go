package test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ftpserver "github.com/fclairamb/ftpserverlib"
	"github.com/jlaffaye/ftp"
	"github.com/spf13/afero"
)

const (
	ftpUser     = "ftpuser"
	ftpPassword = "ftppass"
	ftpBanner   = "portmux test ftp"
)

// ftpServer is a real FTP server (fclairamb/ftpserverlib) over an in-memory afero fs.
// Passive data connections listen on a small set of ports found free at start.
type ftpServer struct {
	srv *ftpserver.FtpServer
	ln  *trackingListener
	fs  afero.Fs
	// settings are what GetSettings hands to ftpserverlib.
	settings *ftpserver.Settings
	// live counts control connections between ClientConnected and ClientDisconnected.
	live atomic.Int64
}

// Addr is the control connection address.
func (s *ftpServer) Addr() string { return s.ln.Addr().String() }

// Accepted is the number of control connections accepted so far.
func (s *ftpServer) Accepted() int64 { return s.ln.accepted.Load() }

var _ ftpserver.MainDriver = (*ftpServer)(nil)

func (s *ftpServer) GetSettings() (*ftpserver.Settings, error) { return s.settings, nil }

func (s *ftpServer) ClientConnected(ftpserver.ClientContext) (string, error) {
	s.live.Add(1)
	return ftpBanner, nil
}

func (s *ftpServer) ClientDisconnected(ftpserver.ClientContext) { s.live.Add(-1) }

func (s *ftpServer) AuthUser(_ ftpserver.ClientContext, user, pass string) (ftpserver.ClientDriver, error) {
	if user != ftpUser || pass != ftpPassword {
		return nil, fmt.Errorf("bad credentials for %q", user)
	}
	return s.fs, nil
}

func (s *ftpServer) GetTLSConfig() (*tls.Config, error) {
	return nil, errors.New("no TLS in the test FTP server")
}

// portList is a PasvPortGetter over a fixed list of ports.
type portList struct {
	ports []int
	next  atomic.Uint32
}

func (p *portList) FetchNext() (int, int, bool) {
	port := p.ports[int(p.next.Add(1))%len(p.ports)]
	return port, port, true
}

func (p *portList) NumberAttempts() int { return len(p.ports) }

// freePorts returns n ports that were free a moment ago (on every address, as the
// passive listeners bind 0.0.0.0).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// startFTPServer starts an FTP server on 127.0.0.1:0.
func startFTPServer(t testing.TB) *ftpServer {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s := &ftpServer{ln: &trackingListener{Listener: raw, conns: map[net.Conn]struct{}{}}, fs: afero.NewMemMapFs()}
	s.settings = &ftpserver.Settings{
		Listener:                 s.ln,
		PublicHost:               "127.0.0.1",
		PassiveTransferPortRange: &portList{ports: freePorts(t, 8)},
		DisableActiveMode:        true,
		IdleTimeout:              60,
		ConnectionTimeout:        10,
		Banner:                   ftpBanner,
	}
	s.srv = ftpserver.NewFtpServer(s)
	if err := s.srv.Listen(); err != nil {
		raw.Close()
		t.Fatalf("ftp listen: %v", err)
	}
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve() }()
	t.Cleanup(func() {
		s.srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("ftp serve: %v", err)
		}
		s.ln.closeConns()
		for i := 0; s.live.Load() > 0; i++ {
			if i == 500 {
				t.Errorf("ftp peer: %d clients still connected 10s after stop", s.live.Load())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return s
}

// trackingListener counts accepted connections and can close them all.
type trackingListener struct {
	net.Listener
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	l.mu.Lock()
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	return c, nil
}

func (l *trackingListener) closeConns() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
	}
}

// ftpDial connects and logs in (addr is the server itself or portmux). It returns the
// control connection's local address too. The session ends when the test ends.
func ftpDial(t testing.TB, addr string) (*ftp.ServerConn, string) {
	t.Helper()
	var local string
	dial := func(network, address string) (net.Conn, error) {
		c, err := net.DialTimeout(network, address, 10*time.Second)
		if err != nil {
			return nil, err
		}
		if local == "" { // the first dial is the control connection
			local = c.LocalAddr().String()
		}
		c.SetDeadline(time.Now().Add(2 * time.Minute)) // hang guard
		return c, nil
	}
	c, err := ftp.Dial(addr, ftp.DialWithDialFunc(dial))
	if err != nil {
		t.Fatalf("ftp dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Quit() })
	if err := c.Login(ftpUser, ftpPassword); err != nil {
		t.Fatalf("ftp login: %v", err)
	}
	return c, local
}

// ftpUploadDownload uploads n bytes of payload(seed) to name, checks the listing, and
// downloads the file back, comparing sha256 digests.
func ftpUploadDownload(t testing.TB, c *ftp.ServerConn, name string, seed uint64, n int64) {
	t.Helper()
	want := digestPayload(t, seed, n)
	if err := c.Stor(name, payload(seed, n)); err != nil {
		t.Fatalf("STOR %s: %v", name, err)
	}
	entries, err := c.List(path.Dir(name))
	if err != nil {
		t.Fatalf("LIST %s: %v", path.Dir(name), err)
	}
	var found bool
	for _, e := range entries {
		if e.Name == path.Base(name) {
			found = true
			if e.Size != uint64(n) {
				t.Errorf("LIST size of %s = %d; want %d", name, e.Size, n)
			}
		}
	}
	if !found {
		t.Errorf("LIST %s: %s missing from %d entries", path.Dir(name), path.Base(name), len(entries))
	}
	r, err := c.Retr(name)
	if err != nil {
		t.Fatalf("RETR %s: %v", name, err)
	}
	got, err := digestOf(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("RETR %s: reading: %v", name, err)
	}
	if got != want {
		t.Errorf("RETR %s: got %+v; want %+v", name, got, want)
	}
}
