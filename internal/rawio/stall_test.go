//go:build linux

package rawio

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// writeGuarded runs c.Write(p) and returns its error, failing the test if
// the write has not returned after a minute (it would hang for ever).
func writeGuarded(t *testing.T, w io.Writer, p []byte) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := w.Write(p)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the write is still blocked after a minute")
		return nil
	}
}

// A write to a peer that does not read fails once it has waited the stall
// limit, where it would wait for ever; a write the peer takes succeeds,
// and leaves no deadline behind to fail a later one.
func TestLimitWriteStall(t *testing.T) {
	server, client := rawPair(t)
	// The limit bounds a whole write's wait: long enough for a reader
	// that keeps up to take 1 MiB on a loaded machine, under -race.
	if !LimitWriteStall(server, time.Second) {
		t.Fatal("LimitWriteStall on a raw connection: false")
	}
	msg := []byte("small")
	if err := writeGuarded(t, server, msg); err != nil {
		t.Fatalf("a write with room: %v", err)
	}
	if _, err := io.ReadFull(client, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	// A write that had to wait, for a reader that came.
	go io.CopyN(io.Discard, client, 1<<20)
	if err := writeGuarded(t, server, make([]byte, 1<<20)); err != nil {
		t.Fatalf("a write the peer reads: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // a stall deadline left armed would have passed
	// Through the socket's own Write, which fails at once on a deadline
	// passed (what else uses the socket, a splice relay, would too).
	if _, err := server.(*rawIOConn).TCPConn.Write(msg); err != nil {
		t.Fatalf("a write after the limit's time: %v; want no deadline left from the last", err)
	}
	if _, err := io.ReadFull(client, make([]byte, len(msg))); err != nil {
		t.Fatal(err)
	}
	// Nobody reads now: the socket buffers fill, and the write gives up.
	err := writeGuarded(t, server, make([]byte, 16<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write nobody reads: %v; want a deadline error", err)
	}
}

// A write deadline, while set, governs instead of the stall limit: one in
// a moment ends a wait the limit (an hour) would let go on; cleared, it
// leaves the limit to govern again.
func TestLimitWriteStallYieldsToDeadline(t *testing.T) {
	server, _ := rawPair(t)
	LimitWriteStall(server, time.Hour)
	server.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	if err := writeGuarded(t, server, make([]byte, 16<<20)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("with a deadline set: %v; want the deadline's error", err)
	}
	s := server.(*rawIOConn)
	server.SetDeadline(time.Time{})
	if s.deadlineSet {
		t.Error("deadline cleared by SetDeadline: still noted as set")
	}
	server.SetWriteDeadline(time.Now().Add(time.Second))
	if !s.deadlineSet {
		t.Error("SetWriteDeadline: not noted")
	}
}

// With the limit, a write that finds room allocates nothing either.
func TestLimitWriteStallDoesNotAllocate(t *testing.T) {
	server, client := rawPair(t)
	LimitWriteStall(server, time.Minute)
	checkNoAllocation(t, server, client)
}
