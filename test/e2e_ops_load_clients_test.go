package test

// The client load of TestE2EOpsReloadUnderLoad: short connections of every
// protocol from a few workers, and long-lived ones that move a chunk after each
// reload. Every failure is collected (never t.Fatal from these goroutines).

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"
)

// opsLoadWorld is what the load talks to through portmux.
type opsLoadWorld struct {
	Addr    string // portmux's kept listener
	HostKey ssh.PublicKey
	TLSCert *tlsBackend
	WebIDs  []string // the IDs an HTTP request may reach
	Ticks   *opsTicks
}

// opsLoad runs the clients and keeps the score.
type opsLoad struct {
	w      opsLoadWorld
	hc     *http.Client
	ftpSem chan struct{} // bounds concurrent FTP sessions (the backend has 8 passive ports)
	stop   chan struct{}
	wg     sync.WaitGroup

	ops       atomic.Int64 // finished short operations
	echoBytes atomic.Int64 // bytes sent through the echo route (each one echoed back)

	mu      sync.Mutex
	errs    []error
	nerrs   int
	byKind  map[string]int
	spanned map[string][]int // long-lived connections: reloads each one lived through
}

func newOpsLoad(w opsLoadWorld) *opsLoad {
	return &opsLoad{w: w, hc: opsHTTPClient(w.Addr), ftpSem: make(chan struct{}, 4), stop: make(chan struct{}),
		byKind: map[string]int{}, spanned: map[string][]int{}}
}

var opsKinds = []string{"ssh", "http", "tls", "echo", "ftp"}

// opsEchoPrefix starts the echo clients' streams: it is no protocol portmux
// knows ('{' cannot start an HTTP method), so the unknown (fallback) route
// takes it.
var opsEchoPrefix = []byte("{ops-echo}\n")

func (l *opsLoad) fail(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nerrs++
	if len(l.errs) < 20 {
		l.errs = append(l.errs, err)
	}
}

// Start launches workers short-connection workers, rapid workers that send
// one small HTTP request per connection back to back (new connections arrive
// at every moment of a reload), and one long-lived client per protocol, each
// long-lived connection spanning span reloads.
func (l *opsLoad) Start(workers, rapid, span int) {
	deadline := time.Now().Add(10 * time.Minute)
	for w := range workers {
		l.wg.Add(1)
		go l.worker(w, deadline)
	}
	for w := range rapid {
		l.wg.Add(1)
		go l.rapidWorker(w, deadline)
	}
	for i, kind := range opsKinds {
		l.wg.Add(1)
		go l.longRunner(i, kind, span, deadline)
	}
}

// Stop ends the load and waits (bounded) for every client to finish.
func (l *opsLoad) Stop() error {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.w.Ticks.Finish()
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(5 * time.Minute):
		return errors.New("load clients still running 5m after stop")
	}
}

func (l *opsLoad) stopped() bool {
	select {
	case <-l.stop:
		return true
	default:
		return false
	}
}

// worker is one short-connection worker: each iteration opens one connection
// (two for FTP's data) of the next protocol and checks every byte.
func (l *opsLoad) worker(w int, deadline time.Time) {
	defer l.wg.Done()
	for i := 0; i < 5000 && !l.stopped(); i++ {
		if time.Now().After(deadline) {
			l.fail(fmt.Errorf("worker %d: still running at its 10m deadline", w))
			return
		}
		kind := opsKinds[(w+i)%len(opsKinds)]
		seed := uint64(1_000_000 + w*10_000 + i)
		if err := l.short(kind, seed, int64(i%7), fmt.Sprintf("127.0.1.%d", w+1)); err != nil {
			l.fail(fmt.Errorf("worker %d op %d (%s): %w", w, i, kind, err))
		}
		l.mu.Lock()
		l.byKind[kind]++
		l.mu.Unlock()
		l.ops.Add(1)
	}
}

// short is one short operation of kind; FTP connects from the loopback
// address from.
// rapidWorker sends GET /id on a new connection each time.
func (l *opsLoad) rapidWorker(w int, deadline time.Time) {
	defer l.wg.Done()
	for i := 0; i < 100_000 && !l.stopped(); i++ {
		if time.Now().After(deadline) {
			l.fail(fmt.Errorf("rapid worker %d: still running at its 10m deadline", w))
			return
		}
		id, err := opsGetID(l.hc)
		if err == nil && !slices.Contains(l.w.WebIDs, id) {
			err = fmt.Errorf("GET /id reached backend %q; want one of %q", id, l.w.WebIDs)
		}
		if err != nil {
			l.fail(fmt.Errorf("rapid worker %d request %d: %w", w, i, err))
		}
		l.mu.Lock()
		l.byKind["http-rapid"]++
		l.mu.Unlock()
	}
}

func (l *opsLoad) short(kind string, seed uint64, k int64, from string) error {
	const guard = 2 * time.Minute
	switch kind {
	case "ssh":
		c, err := opsSSHClient(l.w.Addr, l.w.HostKey, guard)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := sshSink(c, seed, 48<<10+k*1000); err != nil {
			return err
		}
		return sshGen(c, 32<<10+k)
	case "http":
		id, err := opsGetID(l.hc)
		if err != nil {
			return err
		}
		if !slices.Contains(l.w.WebIDs, id) {
			return fmt.Errorf("GET /id reached backend %q; want one of %q", id, l.w.WebIDs)
		}
		return postEcho(&httpClient{Client: l.hc}, "ops.test", seed, 64<<10+k*4096)
	case "tls":
		line, _, err := tlsIdentify(l.w.Addr, "a.test", l.w.TLSCert.Cert)
		if err != nil {
			return err
		}
		if line != "a.test" {
			return fmt.Errorf("TLS backend answered %q; want %q", line, "a.test")
		}
		return nil
	case "echo":
		sent, got, local, err := roundTrip(l.w.Addr, opsEchoPrefix, seed, 128<<10+k*999, guard)
		if err != nil {
			return fmt.Errorf("%s: %w", local, err)
		}
		if got != sent {
			return fmt.Errorf("%s: echoed %+v; want %+v", local, got, sent)
		}
		l.echoBytes.Add(sent.N)
		return nil
	case "ftp":
		l.ftpSem <- struct{}{}
		defer func() { <-l.ftpSem }()
		c, err := opsFTPClient(l.w.Addr, from, guard)
		if err != nil {
			return err
		}
		defer c.Close()
		return opsFTPRoundTrip(c, fmt.Sprintf("/short-%d.bin", seed), seed, 32<<10+k)
	}
	return fmt.Errorf("unknown kind %q", kind)
}

// longRunner opens long-lived connections of one protocol, one after the
// other, each moving a chunk after each of span reloads.
func (l *opsLoad) longRunner(n int, kind string, span int, deadline time.Time) {
	defer l.wg.Done()
	for j := 0; j < 1000 && !l.stopped(); j++ {
		if time.Now().After(deadline) {
			l.fail(fmt.Errorf("long %s: still running at its 10m deadline", kind))
			return
		}
		from := l.w.Ticks.Now()
		seed := uint64(5_000_000 + n*100_000 + j*100)
		if err := l.long(kind, seed, from, span); err != nil {
			l.fail(fmt.Errorf("long-lived %s connection %d (opened after reload %d): %w", kind, j, from, err))
		}
		l.mu.Lock()
		l.spanned[kind] = append(l.spanned[kind], l.w.Ticks.Now()-from)
		l.mu.Unlock()
	}
}

// long is one long-lived connection: set up, then after each reload from+1 ..
// from+span a checked exchange on the same connection, then a clean close.
func (l *opsLoad) long(kind string, seed uint64, from, span int) error {
	const guard = 5 * time.Minute
	each := func(step func(k int) error) error {
		for k := 1; k <= span; k++ {
			if err := l.w.Ticks.Wait(from+k, guard); err != nil {
				return err
			}
			if err := step(k); err != nil {
				return fmt.Errorf("after reload %d: %w", from+k, err)
			}
		}
		return nil
	}
	switch kind {
	case "ssh":
		c, err := opsSSHClient(l.w.Addr, l.w.HostKey, guard)
		if err != nil {
			return err
		}
		defer c.Close()
		return each(func(k int) error {
			if err := sshSink(c, seed+uint64(k), 32<<10); err != nil {
				return err
			}
			return sshGen(c, 16<<10+int64(k))
		})
	case "http":
		const size = 128 << 10
		path := fmt.Sprintf("/ticked?seed=%d&chunks=%d&size=%d&from=%d", seed, span, size, from)
		return opsDownload(l.hc, path, seed, int64(span)*size, nil)
	case "tls":
		c, err := dialTCP(l.w.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(guard))
		tc := tls.Client(c, tlsClientConfig("a.test", l.w.TLSCert.Cert))
		br := bufio.NewReader(tc)
		if line, err := br.ReadString('\n'); err != nil || line != "a.test \n" {
			return fmt.Errorf("name line %q, %v; want %q", line, err, "a.test \n")
		}
		rw := struct {
			io.Reader
			io.Writer
		}{br, tc}
		if err := each(func(k int) error { return opsEchoChunk(rw, seed+uint64(k), 64<<10) }); err != nil {
			return err
		}
		if err := tc.CloseWrite(); err != nil {
			return err
		}
		if rest, err := io.ReadAll(br); err != nil || len(rest) > 0 {
			return fmt.Errorf("after close-write: %d bytes, %v; want a clean EOF", len(rest), err)
		}
		return nil
	case "echo":
		c, err := dialTCP(l.w.Addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(guard))
		if err := opsEchoExact(c, opsEchoPrefix); err != nil {
			return err
		}
		l.echoBytes.Add(int64(len(opsEchoPrefix)))
		if err := each(func(k int) error {
			if err := opsEchoChunk(c, seed+uint64(k), 96<<10); err != nil {
				return err
			}
			l.echoBytes.Add(96 << 10)
			return nil
		}); err != nil {
			return err
		}
		return opsCloseClean(c)
	case "ftp":
		c, err := opsFTPClient(l.w.Addr, "127.0.2.1", guard)
		if err != nil {
			return err
		}
		defer c.Close()
		return each(func(k int) error {
			return opsFTPRoundTrip(c, fmt.Sprintf("/long-%d.bin", seed), seed+uint64(k), 16<<10+int64(k))
		})
	}
	return fmt.Errorf("unknown kind %q", kind)
}

// opsEchoExact writes b and reads the same bytes back.
func opsEchoExact(c net.Conn, b []byte) error {
	if _, err := c.Write(b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	got := make([]byte, len(b))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("reading echo: %w", err)
	}
	if string(got) != string(b) {
		return fmt.Errorf("echo %q; want %q", got, b)
	}
	return nil
}

// opsCloseClean half-closes c and expects a clean EOF with nothing before it.
func opsCloseClean(c *net.TCPConn) error {
	if err := c.CloseWrite(); err != nil {
		return err
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) > 0 {
		return fmt.Errorf("after close-write: %d bytes, %v; want a clean EOF", len(rest), err)
	}
	return nil
}

// Report summarises the load for the test log, and returns the errors.
func (l *opsLoad) Report() (summary string, errs []error, nerrs int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	summary = fmt.Sprintf("short connections by protocol %v; echo bytes %d; reloads spanned by long-lived connections %v",
		l.byKind, l.echoBytes.Load(), l.spanned)
	return summary, append([]error(nil), l.errs...), l.nerrs
}
