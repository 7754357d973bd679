package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// attackers misbehave at portmux's port while the good clients run. Each
// kind runs a fixed number of goroutines, each opening one connection after
// another until the attack ends; every connection's life is bounded.
type attackers struct {
	target string
	roots  *x509.CertPool
	kinds  []attackKind
}

// attackKind is one kind of misbehaviour and its counters.
type attackKind struct {
	name    string
	workers int
	pause   time.Duration // between two connections of one worker
	fn      func(a *attackers, ctx context.Context, rng *rand.Rand) (closedByServer bool)
	conns   atomic.Int64
	closed  atomic.Int64 // connections portmux closed (or reset) before the attacker gave up
	dialErr atomic.Int64
}

func newAttackers(target string, roots *x509.CertPool, scale int) *attackers {
	return &attackers{target: target, roots: roots, kinds: []attackKind{
		{name: "slowloris", workers: 5 * scale, fn: (*attackers).slowloris},
		{name: "garbage", workers: scale, pause: 10 * time.Millisecond, fn: (*attackers).garbage},
		{name: "half-open", workers: 5 * scale, fn: (*attackers).halfOpen},
		{name: "reset-mid-transfer", workers: scale, pause: 20 * time.Millisecond, fn: (*attackers).resetMidTransfer},
		{name: "stalled-one-byte", workers: 5 * scale, fn: (*attackers).stalledOneByte},
		{name: "stalled-reader", workers: scale, fn: (*attackers).stalledReader},
	}}
}

// run starts every attacker and returns a function that stops them and
// waits until all their connections are closed.
func (a *attackers) run(seed uint64) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for k := range a.kinds {
		kind := &a.kinds[k]
		for i := range kind.workers {
			wg.Add(1)
			go a.loop(ctx, &wg, kind, rand.New(rand.NewPCG(seed, uint64(k<<16|i))))
		}
	}
	return func() { cancel(); wg.Wait() }
}

// loop is one attacker goroutine.
func (a *attackers) loop(ctx context.Context, wg *sync.WaitGroup, kind *attackKind, rng *rand.Rand) {
	defer wg.Done()
	for ctx.Err() == nil {
		kind.conns.Add(1)
		if kind.fn(a, ctx, rng) {
			kind.closed.Add(1)
		}
		sleepCtx(ctx, kind.pause)
	}
}

// dial connects to portmux; a failure is counted and slowed down.
func (a *attackers) dial(ctx context.Context, kind string) *net.TCPConn {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", a.target)
	if err != nil {
		for i := range a.kinds {
			if a.kinds[i].name == kind {
				a.kinds[i].dialErr.Add(1)
			}
		}
		sleepCtx(ctx, 100*time.Millisecond)
		return nil
	}
	return c.(*net.TCPConn)
}

// holdUntil keeps c open until the server closes it (true), ctx ends or
// max passes, reading and discarding whatever arrives.
func holdUntil(ctx context.Context, c net.Conn, max time.Duration) bool {
	stop := context.AfterFunc(ctx, func() { c.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	c.SetReadDeadline(time.Now().Add(max))
	_, err := io.Copy(io.Discard, c)
	return err == nil || !isTimeout(err) // EOF (nil from Copy) or reset: closed by the server
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// slowloris sends a request line and trickles header bytes, one every
// 200ms, never ending the header block, for up to 30s.
func (a *attackers) slowloris(ctx context.Context, rng *rand.Rand) bool {
	c := a.dial(ctx, "slowloris")
	if c == nil {
		return false
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "GET /slow/%d HTTP/1.1\r\nHost: soak\r\n", rng.Int()); err != nil {
		return true
	}
	header := []byte(fmt.Sprintf("X-Slow-%d: %s\r\n", rng.IntN(1000), strings.Repeat("a", 50)))
	for i := 0; ; i++ {
		if !sleepOrDone(ctx, 200*time.Millisecond) || i >= 150 {
			return false
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write(header[i%len(header) : i%len(header)+1]); err != nil {
			return true
		}
	}
}

// garbage sends random bytes, or an endless request target (past
// sniff_max_bytes), or a TLS record whose ClientHello is nonsense, and
// waits for portmux to close.
func (a *attackers) garbage(ctx context.Context, rng *rand.Rand) bool {
	c := a.dial(ctx, "garbage")
	if c == nil {
		return false
	}
	defer c.Close()
	var b []byte
	switch rng.IntN(3) {
	case 0:
		b = make([]byte, 1+rng.IntN(4096))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
	case 1:
		b = []byte("GET /" + strings.Repeat("a", 70000))
	default:
		b = []byte{0x16, 3, 1, 0x01, 0x00, 1, 0, 0, 0xfc}
		for range 252 {
			b = append(b, byte(rng.Uint32()))
		}
	}
	c.SetWriteDeadline(time.Now().Add(3 * time.Second))
	c.Write(b)
	return holdUntil(ctx, c, 3*time.Second)
}

// halfOpen connects and sends nothing (portmux takes it for a
// server-first client after sniff_timeout), for 2 to 8 seconds.
func (a *attackers) halfOpen(ctx context.Context, rng *rand.Rand) bool {
	c := a.dial(ctx, "half-open")
	if c == nil {
		return false
	}
	defer c.Close()
	return holdUntil(ctx, c, time.Duration(2000+rng.IntN(6000))*time.Millisecond)
}

// stalledOneByte sends the first byte of some protocol and stalls.
func (a *attackers) stalledOneByte(ctx context.Context, rng *rand.Rand) bool {
	c := a.dial(ctx, "stalled-one-byte")
	if c == nil {
		return false
	}
	defer c.Close()
	c.Write([]byte{"SG\x16P"[rng.IntN(4)]})
	return holdUntil(ctx, c, time.Duration(2000+rng.IntN(4000))*time.Millisecond)
}

// stalledReader opens an SSH-echo session and sends one byte every 100ms
// without ever reading the echo, for up to 10s.
func (a *attackers) stalledReader(ctx context.Context, rng *rand.Rand) bool {
	c := a.dial(ctx, "stalled-reader")
	if c == nil {
		return false
	}
	defer c.Close()
	if _, err := c.Write([]byte("SSH-2.0-stalled\r\n")); err != nil {
		return true
	}
	for range 100 {
		if !sleepOrDone(ctx, 100*time.Millisecond) {
			return false
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte{byte(rng.Uint32())}); err != nil {
			return !isTimeout(err)
		}
	}
	return false
}

// resetMidTransfer starts a large transfer (SSH echo, TLS echo or an HTTP
// POST) and aborts it with a reset (SO_LINGER 0) part way through.
func (a *attackers) resetMidTransfer(ctx context.Context, rng *rand.Rand) bool {
	c := a.dial(ctx, "reset-mid-transfer")
	if c == nil {
		return false
	}
	defer c.Close()
	defer c.SetLinger(0)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	var w io.Writer = c
	switch rng.IntN(3) {
	case 0:
		c.Write([]byte("SSH-2.0-reset\r\n"))
	case 1:
		tc := tls.Client(c, &tls.Config{ServerName: tlsName, RootCAs: a.roots})
		if tc.Handshake() != nil {
			return true
		}
		w = tc
	default:
		fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n", 1<<20)
	}
	go io.Copy(io.Discard, c) // keep the echo flowing until the reset
	chunk := make([]byte, 16<<10)
	for n := 16 << 10 * (1 + rng.IntN(30)); n > 0; n -= len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return true
		}
	}
	return false
}

// sleepOrDone sleeps for d; false if ctx ended first.
func sleepOrDone(ctx context.Context, d time.Duration) bool {
	sleepCtx(ctx, d)
	return ctx.Err() == nil
}
