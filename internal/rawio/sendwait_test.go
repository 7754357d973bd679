//go:build linux

package rawio

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// replyAfter reads len(want) bytes from c, then writes reply after delay;
// it reports what it read, or its error, on the returned channel.
func replyAfter(c net.Conn, want int, delay time.Duration, reply string) <-chan error {
	done := make(chan error, 1)
	go func() {
		got := make([]byte, want)
		if _, err := io.ReadFull(c, got); err != nil {
			done <- err
			return
		}
		time.Sleep(delay)
		_, err := c.Write([]byte(reply))
		done <- err
	}()
	return done
}

// SendAwaitingReply returns once the reply has come, not when the request
// is written: the byte is there to read at once. A plain Write would
// return 20ms before the reply.
func TestSendAwaitingReplyWaitsForTheReply(t *testing.T) {
	server, client := rawPair(t)
	for i := range 20 {
		done := replyAfter(server, 4, 20*time.Millisecond, "pong")
		if err := SendAwaitingReply(client, []byte("ping")); err != nil {
			t.Fatal(err)
		}
		if n, err, _ := Peek(client); n != 1 || err != nil {
			t.Fatalf("exchange %d: Peek right after SendAwaitingReply = %d, %v; want the reply waiting", i, n, err)
		}
		buf := make([]byte, 4)
		if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
			t.Fatalf("exchange %d: read %q, %v; want pong", i, buf, err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// The wait ends with the read deadline (named read: the bytes went) or
// with Close, as a Read would.
func TestSendAwaitingReplyErrors(t *testing.T) {
	t.Run("read deadline", func(t *testing.T) {
		server, client := rawPair(t)
		client.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		err := SendAwaitingReply(client, []byte("ping"))
		wantOpError(t, err, "read", os.ErrDeadlineExceeded)
		buf := make([]byte, 4)
		server.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "ping" {
			t.Errorf("the peer read %q, %v; want the bytes sent before the wait", buf, err)
		}
	})
	t.Run("closed while waiting", func(t *testing.T) {
		_, client := rawPair(t)
		go func() { time.Sleep(50 * time.Millisecond); client.Close() }()
		err := SendAwaitingReply(client, []byte("ping"))
		wantOpError(t, err, "read", net.ErrClosed)
	})
	t.Run("closed before", func(t *testing.T) {
		_, client := rawPair(t)
		client.Close()
		err := SendAwaitingReply(client, []byte("ping"))
		wantOpError(t, err, "write", net.ErrClosed)
	})
}

// A peer that closed before the bytes were sent (a kept-alive connection
// the upstream dropped while idle: its FIN came while nobody waited) ends
// the wait: the bytes meet a reset, which wakes it, and the read after it
// tells the close. Nothing hangs on readiness that came before the send.
func TestSendAwaitingReplyPeerGone(t *testing.T) {
	server, client := rawPair(t)
	server.Close()
	deadline := time.Now().Add(10 * time.Second)
	for { // the FIN reaches the client's socket
		if n, err, _ := Peek(client); n == 0 && err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the peer's FIN did not arrive")
		}
		time.Sleep(time.Millisecond)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang fails, not stalls, the test
	if err := SendAwaitingReply(client, []byte("ping")); err != nil {
		wantOpError(t, err, "write", syscall.EPIPE, syscall.ECONNRESET)
		return
	}
	_, err := client.Read(make([]byte, 4))
	if err != io.EOF && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("Read after SendAwaitingReply to a closed peer: %v; want EOF or a reset", err)
	}
}

// Bytes beyond the socket buffers are written whole (the rest as Write
// writes it, waiting for room), and the reply is read after them.
func TestSendAwaitingReplyLarge(t *testing.T) {
	server, client := rawPair(t)
	data := make([]byte, 8<<20)
	rand.Read(data)
	got := make(chan []byte, 1)
	go func() {
		b := make([]byte, len(data))
		io.ReadFull(server, b)
		server.Write([]byte("done"))
		got <- b
	}()
	if err := SendAwaitingReply(client, data); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "done" {
		t.Fatalf("reply %q, %v; want done", buf, err)
	}
	if !bytes.Equal(<-got, data) {
		t.Error("the peer read other bytes than were sent")
	}
}

// A conn that is not raw is written as it is, and a send and its reply
// allocate nothing on a raw one.
func TestSendAwaitingReplyOtherConnsAndAllocations(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go SendAwaitingReply(a, []byte("x"))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(b, buf); err != nil || buf[0] != 'x' {
		t.Errorf("net.Pipe: read %q, %v; want x", buf, err)
	}

	server, client := rawPair(t)
	go func() { // echoes until the test closes the pair
		echo := make([]byte, 4)
		for {
			if _, err := io.ReadFull(server, echo); err != nil {
				return
			}
			if _, err := server.Write(echo); err != nil {
				return
			}
		}
	}()
	msg, reply := []byte("ping"), make([]byte, 4)
	allocs := testing.AllocsPerRun(200, func() {
		if err := SendAwaitingReply(client, msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, reply); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per send and reply; want 0", allocs)
	}
}
