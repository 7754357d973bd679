package proxy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"
)

func parkingPipes(t *testing.T) *Pipes {
	t.Helper()
	p := NewPipes(8)
	if err := p.EnableParking(); err != nil {
		t.Skip(err)
	}
	t.Cleanup(p.Close)
	return p
}

// The relay's contract holds with parked directions: exact bytes both ways,
// half-close, and the prefix first.
func TestParkedRelayExactBytes(t *testing.T) {
	pipes := parkingPipes(t)
	backend := listen(t, echo)
	for _, size := range []int{0, 1, 64 << 10, 20 << 20} {
		t.Run(byteSize(size), func(t *testing.T) {
			payload := make([]byte, size)
			rand.NewChaCha8([32]byte{byte(size), 9}).Read(payload)
			prefix := []byte("SSH-2.0-parked\r\n")
			c, res := front(t, &TCP{Addr: backend, IdleTimeout: time.Minute, Pipes: pipes}, prefix, nil)
			go func() {
				// Trickle the first bytes so the directions park and resume.
				for i := 0; i < min(3, len(payload)); i++ {
					c.Write(payload[i : i+1])
					time.Sleep(20 * time.Millisecond)
				}
				if len(payload) > 3 {
					c.Write(payload[3:])
				}
				c.CloseWrite()
			}()
			h := sha256.New()
			n, err := io.Copy(h, c)
			want := sha256.Sum256(append(append([]byte{}, prefix...), payload...))
			if err != nil || int(n) != len(prefix)+size || !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatalf("got %d bytes, %v; want %d with the same checksum", n, err, len(prefix)+size)
			}
			if r := wait(t, res); r.err != nil || r.st.Up != n || r.st.Down != n {
				t.Fatalf("stats %+v, %v", r.st, r.err)
			}
		})
	}
}

func TestParkedRelayHalfCloseAndIdle(t *testing.T) {
	pipes := parkingPipes(t)
	t.Run("reply after the client's EOF", func(t *testing.T) {
		reply := bytes.Repeat([]byte("r"), 1<<20)
		backend := listen(t, func(c *net.TCPConn) {
			io.Copy(io.Discard, c)
			time.Sleep(50 * time.Millisecond) // both directions park first
			c.Write(reply)
		})
		c, res := front(t, &TCP{Addr: backend, Pipes: pipes}, nil, nil)
		c.Write([]byte("request"))
		c.CloseWrite()
		if got, err := io.ReadAll(c); err != nil || !bytes.Equal(got, reply) {
			t.Fatalf("got %d bytes, %v", len(got), err)
		}
		if r := wait(t, res); r.err != nil {
			t.Fatal(r.err)
		}
	})
	t.Run("idle parked relay times out", func(t *testing.T) {
		backend := listen(t, echo)
		c, res := front(t, &TCP{Addr: backend, IdleTimeout: 300 * time.Millisecond, Pipes: pipes}, nil, nil)
		c.Write([]byte("x"))
		io.ReadFull(c, make([]byte, 1))
		if r := wait(t, res); !errors.Is(r.err, ErrIdleTimeout) {
			t.Fatalf("got %v; want ErrIdleTimeout", r.err)
		}
	})
	t.Run("trickle is not idle", func(t *testing.T) { testTrickleIsNotIdle(t, pipes) })
	t.Run("cancel a parked relay", func(t *testing.T) { testContextCancel(t, pipes) })
}

// An idle relay with parking holds no goroutine for its directions. Per
// relay this test itself runs three (its front listener's accept loop, the
// goroutine calling Serve, the test backend's); without parking the relay
// adds a waiting direction of its own, which the same measurement shows.
func TestParkedRelayHoldsNoGoroutine(t *testing.T) {
	perRelay := func(pipes *Pipes) float64 {
		backend := listen(t, echo)
		open := func(n int) {
			for range n {
				c, _ := front(t, &TCP{Addr: backend, Pipes: pipes}, nil, nil)
				c.Write([]byte("ping"))
				if _, err := io.ReadFull(c, make([]byte, 4)); err != nil {
					t.Fatal(err)
				}
			}
		}
		open(5)
		time.Sleep(100 * time.Millisecond)
		before := runtime.NumGoroutine()
		open(20)
		time.Sleep(200 * time.Millisecond) // let resumed directions park again
		return float64(runtime.NumGoroutine()-before) / 20
	}
	if got := perRelay(parkingPipes(t)); got > 3.2 {
		t.Fatalf("parked: %.1f goroutines per idle relay; want 3 (the test's own)", got)
	}
	if got := perRelay(NewPipes(8)); got < 3.8 {
		t.Fatalf("not parked: %.1f goroutines per idle relay; the measurement cannot see a direction's goroutine", got)
	}
}
