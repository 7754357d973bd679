package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jlaffaye/ftp"
)

// exchangeTimeout bounds one good exchange (or FTP session) end to end.
const exchangeTimeout = 30 * time.Second

// goodClients are well-behaved clients of every protocol. Each exchange
// sends a random payload and checks, by SHA-256, that exactly those bytes
// came back; each result goes to the recorder under the phase it started in.
type goodClients struct {
	target  string // portmux's listen address
	roots   *x509.CertPool
	rec     *recorder
	pool    []byte // random bytes payloads are cut from
	maxSize int
	workers int // TCP/TLS/HTTP workers
	ftpers  int // FTP workers, one source IP each
}

// run starts the workers and returns a function that stops them and waits
// for their current exchanges to finish (exchanges are never cut short).
func (g *goodClients) run(seed uint64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range g.workers {
		wg.Add(1)
		go g.worker(ctx, &wg, seed, i)
	}
	for i := range g.ftpers {
		wg.Add(1)
		go g.ftpWorker(ctx, &wg, seed, i)
	}
	return func() { cancel(); wg.Wait() }
}

// worker is one good TCP/TLS/HTTP client looping over exchanges.
func (g *goodClients) worker(ctx context.Context, wg *sync.WaitGroup, seed uint64, id int) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	tr := &http.Transport{MaxIdleConnsPerHost: 2, DisableCompression: true, IdleConnTimeout: 20 * time.Second,
		ResponseHeaderTimeout: exchangeTimeout}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: exchangeTimeout}
	for seq := 0; ctx.Err() == nil; seq++ {
		payload := g.payload(rng, fmt.Sprintf("SSH-2.0-soak_%d_%d\r\n", id, seq))
		phase := g.rec.phase()
		start := time.Now()
		var p string
		var err error
		switch rng.IntN(3) {
		case 0:
			p, err = "ssh", g.sshExchange(payload, rng)
		case 1:
			p, err = "tls", g.tlsExchange(payload, rng)
		default:
			p, err = "http", g.httpExchange(client, payload, rng.IntN(2) == 0)
		}
		g.rec.add(phase, p, time.Since(start), len(payload), err)
		sleepCtx(ctx, time.Duration(rng.IntN(30))*time.Millisecond)
	}
}

// payload returns head followed by a random-length piece of the pool
// (log-uniform up to maxSize, so small and large exchanges both occur).
func (g *goodClients) payload(rng *rand.Rand, head string) []byte {
	n := int(math.Exp(rng.Float64() * math.Log(float64(g.maxSize))))
	off := rng.IntN(len(g.pool) - n)
	return append([]byte(head), g.pool[off:off+n]...)
}

func (g *goodClients) dial() (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", g.target, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// sshExchange sends an SSH banner and payload to the echo behind the ssh
// route, half-closing or not at random, and checks the echo.
func (g *goodClients) sshExchange(payload []byte, rng *rand.Rand) error {
	c, err := g.dial()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	return echoExchange(c, c.CloseWrite, payload, rng.IntN(2) == 0, rng)
}

// tlsExchange does the same through TLS passthrough to the TLS echo.
func (g *goodClients) tlsExchange(payload []byte, rng *rand.Rand) error {
	c, err := g.dial()
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	tc := tls.Client(c, &tls.Config{ServerName: tlsName, RootCAs: g.roots, MinVersion: tls.VersionTLS12})
	tc.SetDeadline(time.Now().Add(exchangeTimeout))
	if err := tc.Handshake(); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	return echoExchange(tc, tc.CloseWrite, payload, rng.IntN(2) == 0, rng)
}

// echoExchange writes payload in random chunks (then half-closes if half)
// while reading the echo: until EOF when half-closed, else exactly
// len(payload) bytes. The echo must hash to the payload's SHA-256.
func echoExchange(c net.Conn, closeWrite func() error, payload []byte, half bool, rng *rand.Rand) error {
	c.SetDeadline(time.Now().Add(exchangeTimeout))
	chunks := make([]int, 0, 8)
	for rest := len(payload); rest > 0; {
		n := min(rest, 1+rng.IntN(64<<10))
		chunks = append(chunks, n)
		rest -= n
	}
	werr := make(chan error, 1)
	go func() {
		off := 0
		for _, n := range chunks {
			if _, err := c.Write(payload[off : off+n]); err != nil {
				werr <- fmt.Errorf("write: %w", err)
				return
			}
			off += n
		}
		if half {
			if err := closeWrite(); err != nil {
				werr <- fmt.Errorf("close write: %w", err)
				return
			}
		}
		werr <- nil
	}()
	var got []byte
	var rerr error
	if half {
		got, rerr = io.ReadAll(c)
	} else {
		got = make([]byte, len(payload))
		var n int
		n, rerr = io.ReadFull(c, got)
		got = got[:n]
	}
	if rerr != nil {
		c.Close() // unblocks the writer
	}
	if err := <-werr; err != nil {
		return err
	}
	if rerr != nil {
		return fmt.Errorf("read after %d of %d bytes: %w", len(got), len(payload), rerr)
	}
	if sha256.Sum256(got) != sha256.Sum256(payload) {
		return fmt.Errorf("checksum mismatch: %d bytes back for %d sent", len(got), len(payload))
	}
	return nil
}

// httpExchange POSTs payload through the L7 route; the origin echoes it
// with its SHA-256, which must match both ways. fresh asks for a new
// connection (Connection: close) instead of a kept-alive one.
func (g *goodClients) httpExchange(client *http.Client, payload []byte, fresh bool) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+g.target+"/echo", bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Close = fresh
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	sum := sha256.Sum256(payload)
	if resp.Header.Get("X-Soak-Sha256") != hex.EncodeToString(sum[:]) || sha256.Sum256(body) != sum {
		return fmt.Errorf("checksum mismatch: %d bytes back for %d sent", len(body), len(payload))
	}
	return nil
}

// ftpWorker runs FTP sessions from its own loopback source IP (127.0.1.x):
// portmux claims a passive data connection by its source IP, so clients of
// other protocols from 127.0.0.1 never collide with it.
func (g *goodClients) ftpWorker(ctx context.Context, wg *sync.WaitGroup, seed uint64, id int) {
	defer wg.Done()
	rng := rand.New(rand.NewPCG(seed, uint64(1000+id)))
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+id))}
	for seq := 0; ctx.Err() == nil; seq++ {
		files := [][]byte{g.payload(rng, fmt.Sprintf("ftp_%d_%d_a\n", id, seq)), g.payload(rng, fmt.Sprintf("ftp_%d_%d_b\n", id, seq))}
		phase := g.rec.phase()
		start := time.Now()
		err := g.ftpSession(src, fmt.Sprintf("w%d-%d", id, seq), files)
		g.rec.add(phase, "ftp", time.Since(start), len(files[0])+len(files[1]), err)
		sleepCtx(ctx, time.Duration(rng.IntN(100))*time.Millisecond)
	}
}

// ftpSession logs in, stores each file (passive, through portmux's one
// port), retrieves it, checks its SHA-256 and deletes it.
func (g *goodClients) ftpSession(src *net.TCPAddr, name string, files [][]byte) error {
	deadline := time.Now().Add(exchangeTimeout)
	d := net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
	dial := func(network, addr string) (net.Conn, error) {
		c, err := d.Dial(network, addr)
		if err == nil {
			c.SetDeadline(deadline)
		}
		return c, err
	}
	c, err := ftp.Dial(g.target, ftp.DialWithDialFunc(dial))
	if err != nil {
		return fmt.Errorf("ftp dial: %w", err)
	}
	defer c.Quit()
	if err := c.Login(ftpUser, ftpPass); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	for i, f := range files {
		path := fmt.Sprintf("/%s-%d.bin", name, i)
		if err := c.Stor(path, bytes.NewReader(f)); err != nil {
			return fmt.Errorf("STOR %s: %w", path, err)
		}
		r, err := c.Retr(path)
		if err != nil {
			return fmt.Errorf("RETR %s: %w", path, err)
		}
		got, err := io.ReadAll(r)
		if cerr := r.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("RETR %s: %w", path, err)
		}
		if sha256.Sum256(got) != sha256.Sum256(f) {
			return fmt.Errorf("RETR %s: checksum mismatch: %d bytes back for %d sent", path, len(got), len(f))
		}
		if err := c.Delete(path); err != nil {
			return fmt.Errorf("DELE %s: %w", path, err)
		}
	}
	return nil
}

// sleepCtx sleeps for d or until ctx is done.
func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
