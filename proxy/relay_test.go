package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// listen starts a loopback backend running serve on each connection.
func listen(t *testing.T, serve func(*net.TCPConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// echo writes back everything it reads, then half-closes.
func echo(c *net.TCPConn) {
	io.Copy(c, onlyReader{c})
	c.CloseWrite()
	io.Copy(io.Discard, c)
}

type onlyReader struct{ io.Reader }

// hideTCP hides the *net.TCPConn type so the relay takes its buffered path.
type hideTCP struct{ net.Conn }

func (h hideTCP) CloseWrite() error { return h.Conn.(*net.TCPConn).CloseWrite() }

// NetConn reaches the socket underneath, as *tls.Conn's does.
func (h hideTCP) NetConn() net.Conn { return h.Conn }

// front runs t.Serve on the server side of a fresh loopback connection and
// returns the client side and the relay's result.
func front(t *testing.T, target *TCP, prefix []byte, wrap func(net.Conn) net.Conn) (*net.TCPConn, <-chan result) {
	t.Helper()
	res := make(chan result, 1)
	addr := listen(t, func(c *net.TCPConn) {
		var conn net.Conn = c
		if wrap != nil {
			conn = wrap(c)
		}
		st, err := target.Serve(context.Background(), conn, prefix)
		res <- result{st, err}
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	return c.(*net.TCPConn), res
}

type result struct {
	st  Stats
	err error
}

func wait(t *testing.T, res <-chan result) result {
	t.Helper()
	select {
	case r := <-res:
		return r
	case <-time.After(30 * time.Second):
		t.Fatal("relay did not finish")
		return result{}
	}
}

func TestRelayExactBytes(t *testing.T) {
	backend := listen(t, echo)
	paths := []struct {
		name  string
		wrap  func(net.Conn) net.Conn
		pipes *Pipes
	}{
		{"splice pooled", nil, NewPipes(4)},
		{"splice unpooled", nil, nil},
		{"buffered", func(c net.Conn) net.Conn { return hideTCP{c} }, NewPipes(4)},
	}
	sizes := []int{0, 1, 64 << 10, 50 << 20}
	for _, path := range paths {
		for _, size := range sizes {
			t.Run(path.name+"/"+byteSize(size), func(t *testing.T) {
				payload := make([]byte, size)
				rand.NewChaCha8([32]byte{byte(size)}).Read(payload)
				prefix := []byte("SSH-2.0-prefix\r\n")
				c, res := front(t, &TCP{Addr: backend, IdleTimeout: time.Minute, Pipes: path.pipes}, prefix, path.wrap)
				werr := make(chan error, 1)
				go func() {
					_, err := c.Write(payload)
					c.CloseWrite()
					werr <- err
				}()
				h := sha256.New()
				n, err := io.Copy(h, c)
				if err != nil || <-werr != nil {
					t.Fatalf("copy: %v", err)
				}
				want := sha256.Sum256(append(append([]byte{}, prefix...), payload...))
				if int(n) != len(prefix)+size || !bytes.Equal(h.Sum(nil), want[:]) {
					t.Fatalf("got %d bytes back; want %d, same checksum", n, len(prefix)+size)
				}
				r := wait(t, res)
				if r.err != nil || r.st.Up != n || r.st.Down != n {
					t.Errorf("stats %+v, %v; want %d each way", r.st, r.err, n)
				}
				path.pipes.Close()
			})
		}
	}
}

func byteSize(n int) string {
	switch {
	case n >= 1<<20:
		return strconv.Itoa(n>>20) + "MiB"
	case n >= 1<<10:
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// A client that sends its request and shuts its write side still receives
// the whole reply, which the backend only starts after seeing EOF.
func TestRelayHalfCloseFromClient(t *testing.T) {
	reply := bytes.Repeat([]byte("r"), 4<<20)
	backend := listen(t, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		c.Write(reply)
	})
	c, res := front(t, &TCP{Addr: backend}, nil, nil)
	c.Write([]byte("request"))
	c.CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, reply) {
		t.Fatalf("got %d bytes, %v; want the %d-byte reply", len(got), err, len(reply))
	}
	if r := wait(t, res); r.err != nil || r.st.Up != 7 {
		t.Errorf("got %+v, %v", r.st, r.err)
	}
}

// A backend that finishes sending first (half-close) still receives what
// the client sends afterwards.
func TestRelayHalfCloseFromBackend(t *testing.T) {
	got := make(chan []byte, 1)
	backend := listen(t, func(c *net.TCPConn) {
		c.Write([]byte("banner"))
		c.CloseWrite()
		b, _ := io.ReadAll(c)
		got <- b
	})
	c, res := front(t, &TCP{Addr: backend}, nil, nil)
	banner, err := io.ReadAll(c) // EOF arrives while our write side is open
	if err != nil || string(banner) != "banner" {
		t.Fatalf("got %q, %v", banner, err)
	}
	c.Write([]byte("late data"))
	c.CloseWrite()
	if b := <-got; string(b) != "late data" {
		t.Fatalf("backend got %q", b)
	}
	wait(t, res)
}

func TestRelayIdleTimeout(t *testing.T) {
	backend := listen(t, echo)
	c, res := front(t, &TCP{Addr: backend, IdleTimeout: 200 * time.Millisecond}, nil, nil)
	c.Write([]byte("x"))
	if n, err := io.ReadFull(c, make([]byte, 1)); n != 1 {
		t.Fatal(err)
	}
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil && !errors.Is(err, os.ErrDeadlineExceeded) && !isReset(err) {
		t.Fatalf("idle relay: got %d bytes, %v; want close", n, err)
	}
	if r := wait(t, res); !errors.Is(r.err, ErrIdleTimeout) {
		t.Fatalf("got %v; want ErrIdleTimeout", r.err)
	}
}

// Bytes trickling in one direction keep the connection alive although the
// other direction is silent for longer than the idle timeout.
func TestRelayTrickleIsNotIdle(t *testing.T) { testTrickleIsNotIdle(t, nil) }

// testTrickleIsNotIdle is the trickle test for relays sharing pipes (parked
// or not). Generous margins (a byte every 100ms, idle after 2s) so that a
// loaded machine does not fake idleness; the relay must survive two idle
// periods.
func testTrickleIsNotIdle(t *testing.T, pipes *Pipes) {
	received := make(chan int, 1)
	backend := listen(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		received <- int(n)
	})
	c, res := front(t, &TCP{Addr: backend, IdleTimeout: 2 * time.Second, Pipes: pipes}, nil, nil)
	const writes = 40
	for range writes {
		if _, err := c.Write([]byte("k")); err != nil {
			t.Fatalf("write: %v (the relay ended with: %v)", err, wait(t, res).err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.CloseWrite()
	if n := <-received; n != writes {
		t.Fatalf("backend got %d bytes; want %d", n, writes)
	}
	c.Close()
	if r := wait(t, res); errors.Is(r.err, ErrIdleTimeout) {
		t.Fatal("trickling connection timed out as idle")
	}
}

func TestRelayDialFailure(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	c, res := front(t, &TCP{Addr: dead, DialTimeout: time.Second}, []byte("SSH-2.0-x\r\n"), nil)
	var de *DialError
	if r := wait(t, res); !errors.As(r.err, &de) || de.Addr != dead {
		t.Fatalf("got %v; want a DialError for %s", r.err, dead)
	}
	if n, err := io.Copy(io.Discard, c); n != 0 || err != nil {
		t.Fatalf("client: got %d bytes, %v; want EOF", n, err)
	}
}

func TestRelayContextCancel(t *testing.T) { testContextCancel(t, nil) }

// testContextCancel cancels the context of an idle relay sharing pipes
// (parked or not): Serve must return context.Canceled promptly.
func testContextCancel(t *testing.T, pipes *Pipes) {
	backend := listen(t, echo)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error, 1)
	go func() {
		s, _ := ln.Accept()
		_, err := (&TCP{Addr: backend, Pipes: pipes}).Serve(ctx, s, nil)
		res <- err
	}()
	c, _ := net.Dial("tcp", ln.Addr().String())
	defer c.Close()
	c.Write([]byte("x"))
	io.ReadFull(c, make([]byte, 1))
	time.Sleep(50 * time.Millisecond) // idle: parked, when parking
	cancel()
	select {
	case err := <-res:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v; want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("relay ignored cancellation")
	}
}

// Idle relays hold no splice pipe: after data has moved both ways, each
// more relay costs only its sockets. Measured as the slope between two batch
// sizes so that fixed costs (poller, pool) cancel out.
func TestRelayHoldsNoPipeWhileIdle(t *testing.T) {
	backend := listen(t, echo)
	open := func(n int) {
		for range n {
			c, _ := front(t, &TCP{Addr: backend}, nil, nil)
			c.Write([]byte("ping"))
			if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
				t.Fatal(err)
			}
		}
	}
	open(10)
	at10 := openFDs(t)
	open(20)
	// Per relay here: its front listener, client, accepted front conn,
	// backend dial, backend accept: 5. A held pipe would add two per
	// direction (7 to 9); a fraction over 5 is a relay still returning its
	// pipe the moment we count.
	if perRelay := float64(openFDs(t)-at10) / 20; perRelay >= 6 {
		t.Fatalf("each idle relay holds %.1f descriptors; want 5 (no pipes)", perRelay)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd:", err)
	}
	return len(ents)
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op)
}

// A client that half-closed and a backend that then says nothing: idle, even
// though a peek at the client's socket keeps reporting its EOF.
func TestRelayIdleAfterHalfClose(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	backend := listen(t, func(c *net.TCPConn) {
		io.Copy(io.Discard, c)
		<-release // silent, never closes on its own
	})
	c, res := front(t, &TCP{Addr: backend, IdleTimeout: 300 * time.Millisecond}, nil, nil)
	c.Write([]byte("request"))
	c.CloseWrite()
	if r := wait(t, res); !errors.Is(r.err, ErrIdleTimeout) {
		t.Fatalf("got %v; want ErrIdleTimeout", r.err)
	}
}

// A client that reads the last reply and resets before the backend's EOF is
// relayed (an FTP client after 221) ends the relay with that reset, not
// with an error of passing the EOF on (ENOTCONN).
func TestRelayClientGoneBeforeEOF(t *testing.T) {
	closed := make(chan struct{})
	backend := listen(t, func(c *net.TCPConn) {
		c.Write([]byte("221 bye\r\n"))
		<-closed
		time.Sleep(50 * time.Millisecond) // let the client's FIN/RST land first
	})
	c, res := front(t, &TCP{Addr: backend}, nil, nil)
	io.ReadFull(c, make([]byte, 9))
	c.SetLinger(0) // reset, as a client closing with unread data would
	c.Close()
	close(closed)
	if r := wait(t, res); r.err != nil && !errors.Is(r.err, syscall.ECONNRESET) {
		t.Fatalf("got %v; want nil or the client's reset", r.err)
	}
}

// A relay cut short passes the abort on as a reset, never as a FIN, which
// would tell the other side the stream ended whole: a client's reset
// reaches the backend as one (an FTP server then fails the upload instead
// of storing it cut short), and so does the idle timeout, to both sides.
// Over splice and over the buffered path.
func TestRelayAbortIsReset(t *testing.T) {
	for name, wrap := range map[string]func(net.Conn) net.Conn{"splice": nil, "buffered": func(c net.Conn) net.Conn { return hideTCP{c} }} {
		t.Run(name+"/client reset", func(t *testing.T) {
			got := make(chan error, 1)
			backend := listen(t, func(c *net.TCPConn) {
				_, err := io.Copy(io.Discard, c)
				got <- err
			})
			c, res := front(t, &TCP{Addr: backend}, nil, wrap)
			c.Write([]byte("part of an upload"))
			time.Sleep(50 * time.Millisecond) // relayed before the reset
			c.SetLinger(0)
			c.Close()
			wait(t, res)
			if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("backend read %v; want the client's reset", err)
			}
		})
		t.Run(name+"/idle timeout", func(t *testing.T) {
			got := make(chan error, 1)
			backend := listen(t, func(c *net.TCPConn) {
				_, err := io.Copy(io.Discard, c)
				got <- err
			})
			c, res := front(t, &TCP{Addr: backend, IdleTimeout: 200 * time.Millisecond}, nil, wrap)
			c.Write([]byte("x"))
			if r := wait(t, res); !errors.Is(r.err, ErrIdleTimeout) {
				t.Fatalf("relay ended with %v; want ErrIdleTimeout", r.err)
			}
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("client read %v; want a reset", err)
			}
			if err := <-got; !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("backend read %v; want a reset", err)
			}
		})
	}
}
