//go:build linux

package rawio

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portmux/portmux/internal/loopback"
)

// rawPair returns both ends of a loopback TCP connection, read and
// written raw, with 64 KiB socket buffers (so that large writes wait for
// room); the test closes them.
func rawPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	s, c := loopback.TCPPair(t, 64<<10)
	server, client = Wrap(s), Wrap(c)
	if _, ok := server.(*rawIOConn); !ok {
		t.Fatalf("Wrap(%T) = %T; want *rawIOConn", s, server)
	}
	return server, client
}

// Megabytes cross in both directions, through socket buffers far smaller:
// writes wait for room and resume where they stopped, reads take what has
// come, and EOF follows the last byte after a half-close.
func TestRawIOBulkBothWays(t *testing.T) {
	server, client := rawPair(t)
	const size = 8 << 20
	send := func(c net.Conn) (sum [32]byte, err error) {
		data := make([]byte, size)
		rand.Read(data)
		if _, err := c.Write(data); err != nil {
			return sum, err
		}
		return sha256.Sum256(data), c.(interface{ CloseWrite() error }).CloseWrite()
	}
	receive := func(c net.Conn) ([32]byte, int64, error) {
		h := sha256.New()
		n, err := io.CopyBuffer(h, struct{ io.Reader }{c}, make([]byte, 1500)) // Read by Read, no WriteTo
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		return sum, n, err
	}
	type result struct {
		sent, got [32]byte
		n         int64
		err       error
	}
	results := make(chan result, 2)
	for _, dir := range [][2]net.Conn{{server, client}, {client, server}} {
		var sent [32]byte
		var sendErr error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); sent, sendErr = send(dir[0]) }()
		go func() {
			got, n, err := receive(dir[1])
			wg.Wait()
			results <- result{sent, got, n, errors.Join(sendErr, err)}
		}()
	}
	for range 2 {
		r := <-results
		if r.err != nil || r.n != size || r.got != r.sent {
			t.Fatalf("received %d bytes (want %d), checksum match %v, err %v", r.n, size, r.got == r.sent, r.err)
		}
	}
}

// Writes from several goroutines at once stay whole, as net.Conn promises.
func TestRawIOConcurrentWritesStayWhole(t *testing.T) {
	server, client := rawPair(t)
	const writers, writes, size = 8, 200, 3000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := bytes.Repeat([]byte{byte('a' + w)}, size)
			for range writes {
				if _, err := server.Write(msg); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() { wg.Wait(); server.(interface{ CloseWrite() error }).CloseWrite() }()
	all, err := io.ReadAll(client)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*writes*size {
		t.Fatalf("read %d bytes; want %d", len(all), writers*writes*size)
	}
	for i := 0; i < len(all); i += size {
		if msg := all[i : i+size]; bytes.Count(msg, msg[:1]) != size {
			t.Fatalf("message at %d is a mix of writes: %q...", i, msg[:64])
		}
	}
}

// Errors read as net.Conn's do: *net.OpError named read or write, that
// callers test with errors.Is.
func TestRawIOErrors(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		server, _ := rawPair(t)
		server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := server.Read(make([]byte, 10))
		wantOpError(t, err, "read", os.ErrDeadlineExceeded)
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Errorf("%v is no timeout", err)
		}
	})
	t.Run("closed while reading", func(t *testing.T) {
		server, _ := rawPair(t)
		go func() { time.Sleep(50 * time.Millisecond); server.Close() }()
		_, err := server.Read(make([]byte, 10))
		wantOpError(t, err, "read", net.ErrClosed)
	})
	t.Run("write deadline", func(t *testing.T) {
		server, _ := rawPair(t)
		// Long enough for the first attempt to come before it on a
		// loaded machine (at 50ms, under -race beside other packages'
		// tests, it once came after: 0 bytes written).
		server.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := server.Write(make([]byte, 16<<20)) // never read
		wantOpError(t, err, "write", os.ErrDeadlineExceeded)
		if n == 0 || n >= 16<<20 {
			t.Errorf("wrote %d bytes before the deadline; want the socket buffers' worth", n)
		}
	})
	t.Run("reset by peer", func(t *testing.T) {
		server, client := rawPair(t)
		client.(*rawIOConn).SetLinger(0)
		client.Close() // RST
		var err error
		for i := 0; i < 100 && err == nil; i++ { // the first write may still be accepted
			_, err = server.Write([]byte("x"))
			time.Sleep(time.Millisecond)
		}
		wantOpError(t, err, "write", syscall.ECONNRESET, syscall.EPIPE)
		var se *os.SyscallError
		if !errors.As(err, &se) || se.Syscall != "write" {
			t.Errorf("%v holds no *os.SyscallError named write", err)
		}
	})
	t.Run("EOF", func(t *testing.T) {
		server, client := rawPair(t)
		client.Close()
		if n, err := server.Read(make([]byte, 10)); n != 0 || err != io.EOF {
			t.Errorf("Read after the peer closed = %d, %v; want 0, io.EOF", n, err)
		}
	})
}

// wantOpError fails unless err is a *net.OpError named op that is one of
// targets.
func wantOpError(t *testing.T, err error, op string, targets ...error) {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != op {
		t.Errorf("error %v (%T) is no *net.OpError named %q", err, err, op)
	}
	for _, target := range targets {
		if errors.Is(err, target) {
			return
		}
	}
	t.Errorf("error %v is none of %v", err, targets)
}

// A read and a write of a ready socket allocate nothing.
func TestRawIODoesNotAllocate(t *testing.T) {
	server, client := rawPair(t)
	checkNoAllocation(t, server, client)
}

// checkNoAllocation fails t if a write on server and the read of it on
// client allocate.
func checkNoAllocation(t *testing.T, server, client net.Conn) {
	t.Helper()
	msg, buf := []byte("ping"), make([]byte, 16)
	allocs := testing.AllocsPerRun(200, func() {
		if _, err := server.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, buf[:len(msg)]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per write and read; want 0", allocs)
	}
}

// What is not a TCP socket is left as it is.
func TestRawIOLeavesOtherConns(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Errorf("Wrap(net.Pipe end) = %T; want it unchanged", got)
	}
}

// Peek tells nothing-yet (EAGAIN), a waiting byte (left to read) and EOF
// apart without blocking; a conn that is no socket is not ok.
func TestPeek(t *testing.T) {
	server, client := rawPair(t)
	if n, err, ok := Peek(server); !ok || n != 0 || !errors.Is(err, syscall.EAGAIN) {
		t.Errorf("Peek with nothing sent = %d, %v, %v; want EAGAIN", n, err, ok)
	}
	client.Write([]byte("x"))
	deadline := time.Now().Add(10 * time.Second)
	n, err, ok := Peek(server)
	for n == 0 && time.Now().Before(deadline) { // loopback delivers at once, but not within the call
		time.Sleep(time.Millisecond)
		n, err, ok = Peek(server)
	}
	if !ok || n != 1 || err != nil {
		t.Errorf("Peek with a byte sent = %d, %v, %v; want 1, nil", n, err, ok)
	}
	client.Close()
	if b, err := io.ReadAll(server); string(b) != "x" || err != nil {
		t.Errorf("read after Peek = %q, %v; want the peeked byte", b, err)
	}
	if n, err, ok := Peek(server); !ok || n != 0 || err != nil {
		t.Errorf("Peek at EOF = %d, %v, %v; want 0, nil", n, err, ok)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, ok := Peek(a); ok {
		t.Error("Peek of a net.Pipe end is ok; want not a socket")
	}
}

// Quiet is true while nothing has come, false once a byte or the peer's
// FIN waits, and true for what is no socket.
func TestQuiet(t *testing.T) {
	server, client := rawPair(t)
	if !Quiet(server) {
		t.Error("Quiet with nothing sent = false")
	}
	client.Write([]byte("x"))
	deadline := time.Now().Add(10 * time.Second)
	for Quiet(server) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if Quiet(server) {
		t.Error("Quiet with a byte waiting = true")
	}
	io.ReadFull(server, make([]byte, 1))
	client.Close()
	for Quiet(server) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if Quiet(server) {
		t.Error("Quiet at EOF = true")
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if !Quiet(a) {
		t.Error("Quiet of a net.Pipe end = false; want quiet (no socket)")
	}
}
