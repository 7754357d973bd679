package test

// Backends and clients of the e2e_ops_* tests. Clients return errors instead of
// failing the test: they run in worker goroutines.

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/jlaffaye/ftp"
	"golang.org/x/crypto/ssh"
)

// opsWeb is an HTTP backend that says who it is:
//
//	GET  /id                               -> 200 ID, header X-Backend: ID
//	POST /echo                             -> 200 the body, header X-Body-Sha256
//	GET  /blob?seed=S&n=N                  -> N bytes of payload(S)
//	GET  /held?seed=S&n=N&hold=H           -> the same, held at the gate after H bytes
//	GET  /ticked?seed=S&chunks=K&size=Z&from=F -> K*Z bytes of payload(S), the k-th
//	                                          chunk of Z once tick F+k is reached
type opsWeb struct {
	*httptest.Server
	ID string
}

// startOpsWeb starts an opsWeb; gate and ticks may be nil if unused.
func startOpsWeb(t testing.TB, id string, gate *opsGate, ticks *opsTicks) *opsWeb {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /id", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", id)
		io.WriteString(w, id)
	})
	mux.HandleFunc("POST /echo", echoHandler(id))
	mux.HandleFunc("GET /blob", func(w http.ResponseWriter, r *http.Request) {
		seed, n := opsQuery(r, "seed"), opsQuery(r, "n")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.Copy(w, payload(uint64(seed), n))
	})
	mux.HandleFunc("GET /held", func(w http.ResponseWriter, r *http.Request) {
		seed, n, hold := opsQuery(r, "seed"), opsQuery(r, "n"), opsQuery(r, "hold")
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		src := payload(uint64(seed), n)
		if _, err := io.CopyN(w, src, hold); err != nil {
			return
		}
		w.(http.Flusher).Flush()
		if gate.Hold() != nil {
			return
		}
		io.Copy(w, src)
	})
	mux.HandleFunc("GET /ticked", func(w http.ResponseWriter, r *http.Request) {
		seed, chunks, size, from := opsQuery(r, "seed"), opsQuery(r, "chunks"), opsQuery(r, "size"), opsQuery(r, "from")
		w.Header().Set("Content-Length", strconv.FormatInt(chunks*size, 10))
		src := payload(uint64(seed), chunks*size)
		for k := int64(1); k <= chunks; k++ {
			if ticks.Wait(int(from+k), 3*time.Minute) != nil {
				return
			}
			if _, err := io.CopyN(w, src, size); err != nil {
				return
			}
			w.(http.Flusher).Flush()
		}
	})
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	trackHTTPPeer(t, s)
	// Registered after Close, so they run before it: no handler is left
	// waiting when the server waits for its handlers.
	if gate != nil {
		t.Cleanup(gate.Open)
	}
	if ticks != nil {
		t.Cleanup(ticks.Finish)
	}
	return &opsWeb{Server: s, ID: id}
}

// Addr is the backend's host:port.
func (w *opsWeb) Addr() string { return w.Listener.Addr().String() }

func opsQuery(r *http.Request, k string) int64 {
	n, _ := strconv.ParseInt(r.URL.Query().Get(k), 10, 64)
	return n
}

// startOpsSource starts a TCP backend that reads one request line, then sends n
// bytes of payload(seed), held at the gate after hold bytes, and half-closes.
func startOpsSource(t testing.TB, seed uint64, n, hold int64, gate *opsGate) *tcpServer {
	t.Helper()
	s := startTCPServer(t, func(c net.Conn) {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		if _, err := bufio.NewReader(io.LimitReader(c, 1024)).ReadString('\n'); err != nil {
			return
		}
		src := payload(seed, n)
		if _, err := io.CopyN(c, src, hold); err != nil {
			return
		}
		if gate.Hold() != nil {
			return
		}
		if _, err := io.Copy(c, src); err != nil {
			return
		}
		closeWrite(c)
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		io.Copy(io.Discard, c) // until the client closes: a clean FIN, not a reset
	})
	t.Cleanup(gate.Open) // runs before the server's Close
	return s
}

// opsHTTPClient returns a client that dials addr whatever the URL says, one
// connection per request (no keep-alive), with a hang guard per request.
func opsHTTPClient(addr string) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{
		Timeout: 3 * time.Minute,
		Transport: &http.Transport{
			DialContext:       func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) },
			DisableKeepAlives: true,
		},
	}
}

// opsGetID does GET /id and returns the backend's ID.
func opsGetID(hc *http.Client) (string, error) {
	resp, err := hc.Get("http://ops.test/id")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET /id: reading body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Backend") != string(b) {
		return "", fmt.Errorf("GET /id: %s %q (X-Backend %q); want 200 and the backend's id", resp.Status, b, resp.Header.Get("X-Backend"))
	}
	return string(b), nil
}

// opsDownload GETs path and checks that the body is n bytes of payload(seed);
// progress, if not nil, counts the bytes as they arrive.
func opsDownload(hc *http.Client, path string, seed uint64, n int64, progress io.Writer) error {
	return opsDownloadURL(hc, "http://ops.test"+path, seed, n, progress)
}

// opsDownloadURL is opsDownload for a full URL.
func opsDownloadURL(hc *http.Client, url string, seed uint64, n int64, progress io.Writer) error {
	resp, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	path := resp.Request.URL.RequestURI()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s; want 200", path, resp.Status)
	}
	var body io.Reader = resp.Body
	if progress != nil {
		body = io.TeeReader(body, progress)
	}
	got, err := digestOf(body)
	if err != nil {
		return fmt.Errorf("GET %s: reading after %d bytes: %w", path, got.N, err)
	}
	if want, _ := digestOf(payload(seed, n)); got != want {
		return fmt.Errorf("GET %s: body %+v; want %+v", path, got, want)
	}
	return nil
}

// opsSSHClient connects an SSH client through addr, checking the host key. Its
// connection has a hang guard.
func opsSSHClient(addr string, hostKey ssh.PublicKey, guard time.Duration) (*ssh.Client, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(guard))
	sc, chans, reqs, err := ssh.NewClientConn(c, addr, &ssh.ClientConfig{
		User:            sshUser,
		Auth:            []ssh.AuthMethod{ssh.Password(sshPassword)},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("ssh handshake: %w", err)
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// opsFTP is an FTP client session whose Close ends it cleanly.
type opsFTP struct {
	*ftp.ServerConn
	ctrl net.Conn // the control connection
}

// opsFTPClient logs in to an FTP server through addr, connecting from the
// loopback address from; every connection it opens (control and data) has a
// hang guard. After a passive reply portmux's FTP gateway takes the next
// connection from the client's IP for the data connection it expects (README,
// "FTP through the one port": clients behind one NAT address can collide), so
// concurrent clients of the ops tests each connect from an address of their own.
func opsFTPClient(addr, from string, guard time.Duration) (*opsFTP, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	f := &opsFTP{}
	dial := func(network, address string) (net.Conn, error) {
		c, err := d.Dial(network, address)
		if err != nil {
			return nil, err
		}
		c.SetDeadline(time.Now().Add(guard))
		if f.ctrl == nil { // the first dial is the control connection
			f.ctrl = c
		}
		return c, nil
	}
	c, err := ftp.Dial(addr, ftp.DialWithDialFunc(dial))
	if err != nil {
		return nil, fmt.Errorf("ftp dial: %w", err)
	}
	f.ServerConn = c
	if err := c.Login(ftpUser, ftpPassword); err != nil {
		f.Close()
		return nil, fmt.Errorf("ftp login: %w", err)
	}
	return f, nil
}

// Close sends QUIT and reads the server's reply and close before closing.
// (ServerConn.Quit closes at once, and the unread reply makes the kernel
// answer it with a reset, which portmux rightly logs as outcome reset.)
func (f *opsFTP) Close() error {
	if _, err := io.WriteString(f.ctrl, "QUIT\r\n"); err != nil {
		f.ctrl.Close()
		return err
	}
	_, err := io.Copy(io.Discard, f.ctrl) // "221 ..." then EOF
	f.ctrl.Close()
	return err
}

// opsFTPRoundTrip stores n bytes of payload(seed) as name and reads them back.
func opsFTPRoundTrip(c *opsFTP, name string, seed uint64, n int64) error {
	if err := c.Stor(name, payload(seed, n)); err != nil {
		return fmt.Errorf("STOR %s: %w", name, err)
	}
	r, err := c.Retr(name)
	if err != nil {
		return fmt.Errorf("RETR %s: %w", name, err)
	}
	got, err := digestOf(r)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("RETR %s: after %d bytes: %w", name, got.N, err)
	}
	if want, _ := digestOf(payload(seed, n)); got != want {
		return fmt.Errorf("RETR %s: got %+v; want %+v", name, got, want)
	}
	return nil
}

// opsEchoChunk writes n bytes of payload(seed) to c and reads them back.
func opsEchoChunk(c io.ReadWriter, seed uint64, n int64) error {
	errc := make(chan error, 1)
	go func() {
		_, err := io.Copy(writerOnly{c}, payload(seed, n))
		errc <- err
	}()
	got, rerr := digestOf(io.LimitReader(c, n))
	werr := <-errc
	if werr != nil {
		return fmt.Errorf("writing chunk: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("reading echo: %w", rerr)
	}
	if want, _ := digestOf(payload(seed, n)); got != want {
		return fmt.Errorf("echo %+v; want %+v", got, want)
	}
	return nil
}
