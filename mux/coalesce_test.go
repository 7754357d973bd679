package mux

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portmux/portmux/internal/loopback"
)

// writeCounter counts the writes that reach the socket.
type writeCounter struct {
	*net.TCPConn
	writes atomic.Int64
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes.Add(1)
	return w.TCPConn.Write(p)
}

// closeWithinGuard closes s, failing the test with msg if Close is still
// waiting after 30s (a hang guard, not a speed check).
func closeWithinGuard(t *testing.T, s *Stream, msg string) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal(msg)
	}
}

// setCloseFlushTimeout sets closeFlushTimeout for the test.
func setCloseFlushTimeout(t *testing.T, d time.Duration) {
	old := closeFlushTimeout
	closeFlushTimeout = d
	t.Cleanup(func() { closeFlushTimeout = old })
}

// coalescing returns a Stream over c with coalesced writes, never aborted.
func coalescing(c net.Conn) *Stream {
	s := &Stream{Conn: c}
	s.CoalesceWrites(context.Background())
	return s
}

func TestCoalescedWritesKeepOrderAcrossWriters(t *testing.T) {
	server, client := loopback.TCPPair(t, 0)
	s := coalescing(server)
	const writers, chunks = 4, 500
	var wg sync.WaitGroup
	var sent atomic.Int64
	for id := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range chunks {
				// [writer, seq, length] and length bytes of the writer's id
				n := 1 + (seq*37)%3000
				chunk := binary.BigEndian.AppendUint32(nil, uint32(id))
				chunk = binary.BigEndian.AppendUint32(chunk, uint32(seq))
				chunk = binary.BigEndian.AppendUint32(chunk, uint32(n))
				chunk = append(chunk, bytes.Repeat([]byte{byte('a' + id)}, n)...)
				if _, err := s.Write(chunk); err != nil {
					t.Error(err)
					return
				}
				sent.Add(int64(len(chunk)))
			}
		}()
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	stream := <-got
	if int64(len(stream)) != sent.Load() {
		t.Fatalf("received %d bytes; %d were written", len(stream), sent.Load())
	}
	next := make([]int, writers)
	for len(stream) > 0 {
		id, seq, n := binary.BigEndian.Uint32(stream), binary.BigEndian.Uint32(stream[4:]), binary.BigEndian.Uint32(stream[8:])
		body := stream[12 : 12+n]
		if int(seq) != next[id] || !bytes.Equal(body, bytes.Repeat([]byte{byte('a' + id)}, int(n))) {
			t.Fatalf("writer %d: chunk %d arrived torn or out of order (want chunk %d)", id, seq, next[id])
		}
		next[id]++
		stream = stream[12+n:]
	}
	if _, down := s.Counts(); down != sent.Load() {
		t.Errorf("counted %d bytes written; %d were sent", down, sent.Load())
	}
}

func TestCoalescedWritesGatherWhileASendIsUnderWay(t *testing.T) {
	server, client := loopback.TCPPair(t, 64<<10)
	counter := &writeCounter{TCPConn: server}
	s := coalescing(counter)
	big := bytes.Repeat([]byte("B"), 1<<20) // more than the socket buffers hold: its send blocks
	if _, err := s.Write(big); err != nil {
		t.Fatal(err)
	}
	var small []byte
	for i := range 100 {
		chunk := []byte{'s', byte(i)}
		small = append(small, chunk...)
		// Each returns at once although the client reads nothing yet.
		if _, err := s.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(client)
		got <- b
	}()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, append(big, small...)) {
		t.Fatalf("received %d bytes, not the %d written in order", len(b), len(big)+len(small))
	}
	// The large write, then the 100 small ones that queued behind it in one
	// send (or all in one, when they queued before the first send began).
	if n := counter.writes.Load(); n > 2 {
		t.Errorf("101 writes reached the socket as %d sends; want at most 2", n)
	}
}

func TestCoalescedCloseSendsWhatWasWrittenUnderAnExpiredDeadline(t *testing.T) {
	// crypto/tls's Close queues close_notify under a 5s deadline, then
	// sets the deadline to now: the queued bytes must still go out.
	server, client := loopback.TCPPair(t, 0)
	s := coalescing(server)
	s.SetWriteDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(s, "last words")
	s.SetWriteDeadline(time.Now())
	if _, err := io.WriteString(s, "too late"); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write after the deadline: %v; want a deadline error", err)
	}
	s.Close()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(client)
	if err != nil || string(b) != "last words" {
		t.Fatalf("received %q, %v; want %q", b, err, "last words")
	}
}

func TestCoalescedTLSResponseAndCloseNotifyArrive(t *testing.T) {
	cert, pool := selfSigned(t, "app.test")
	server, client := loopback.TCPPair(t, 0)
	s := coalescing(server)
	tc := tls.Server(s, &tls.Config{Certificates: []tls.Certificate{cert}})
	go func() {
		defer tc.Close()
		if err := tc.Handshake(); err != nil {
			t.Error(err)
			return
		}
		for range 50 {
			io.WriteString(tc, "response\n")
		}
	}()
	cc := tls.Client(client, &tls.Config{ServerName: "app.test", RootCAs: pool})
	cc.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(cc) // io.EOF after close_notify is a nil error here
	if err != nil || string(b) != string(bytes.Repeat([]byte("response\n"), 50)) {
		t.Fatalf("received %d bytes, %v", len(b), err)
	}
}

func TestCoalescedWriteWaitsForRoomUntilItsDeadline(t *testing.T) {
	server, _ := loopback.TCPPair(t, 64<<10) // the client never reads
	s := coalescing(server)
	s.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	chunk := make([]byte, 16<<10)
	var err error
	for i := 0; err == nil && i < 1000; i++ { // 16 MiB at most: far more than fits
		_, err = s.Write(chunk)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writes to a client that does not read ended with %v; want a deadline error", err)
	}
	s.Close() // bounded by the deadline the queued bytes were written under
	if _, err := s.Write(chunk); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write after Close: %v; want net.ErrClosed", err)
	}
}

func TestCoalescedCloseGivesUpOnAClientThatDoesNotRead(t *testing.T) {
	setCloseFlushTimeout(t, 100*time.Millisecond)
	server, _ := loopback.TCPPair(t, 64<<10)
	s := coalescing(server)
	s.Write(make([]byte, 1<<20)) // no deadline: only Close's bound ends its send
	closeWithinGuard(t, s, "Close waited on a client that does not read")
}

func TestCoalescedWritesFailAfterTheClientResets(t *testing.T) {
	server, client := loopback.TCPPair(t, 0)
	s := coalescing(server)
	client.SetLinger(0)
	client.Close() // RST
	var err error
	deadline := time.Now().Add(10 * time.Second)
	for err == nil && time.Now().Before(deadline) {
		_, err = s.Write([]byte("into the void"))
		time.Sleep(time.Millisecond)
	}
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("writes to a reset connection: %v; want the send's error", err)
	}
	s.Close()
}

func TestCoalescedStreamKeepsNoBufferWhenIdle(t *testing.T) {
	server, client := loopback.TCPPair(t, 0)
	s := coalescing(server)
	for range 100 {
		s.Write(make([]byte, 1000))
	}
	if _, err := io.ReadFull(client, make([]byte, 100*1000)); err != nil {
		t.Fatal(err)
	}
	c := s.coalesce
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		sending, pending, spare := c.sending, c.pending, c.spare
		c.mu.Unlock()
		if !sending {
			if pending != nil || spare != nil {
				t.Fatalf("an idle stream holds %d+%d bytes of send buffers", cap(pending), cap(spare))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sender did not stop once everything was sent")
		}
	}
	s.Close()
}

func TestCoalescedStreamAbortClosesWithoutWaiting(t *testing.T) {
	setCloseFlushTimeout(t, time.Hour)       // Close after the abort must not wait for it
	server, _ := loopback.TCPPair(t, 64<<10) // the client never reads
	abort, cancel := context.WithCancel(context.Background())
	s := &Stream{Conn: server}
	stop := s.CoalesceWrites(abort)
	defer stop()
	s.Write(make([]byte, 1<<20)) // its send blocks
	cancel()
	closeWithinGuard(t, s, "Close waited for queued bytes after the abort")
	if _, err := s.Write([]byte("x")); err == nil {
		t.Error("write after the abort and Close succeeded")
	}
}
