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
		if sent, err := SendAwaitingReply(client, []byte("ping")); !sent || err != nil {
			t.Fatalf("exchange %d: SendAwaitingReply = %v, %v; want sent", i, sent, err)
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
		_, err := SendAwaitingReply(client, []byte("ping"))
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
		_, err := SendAwaitingReply(client, []byte("ping"))
		wantOpError(t, err, "read", net.ErrClosed)
	})
	t.Run("closed before", func(t *testing.T) {
		_, client := rawPair(t)
		client.Close()
		_, err := SendAwaitingReply(client, []byte("ping"))
		wantOpError(t, err, "write", net.ErrClosed)
	})
}

// arrived waits until Peek on c sees something (a byte or EOF), at most
// 10s.
func arrived(t *testing.T, c net.Conn) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, err, _ := Peek(c); !errors.Is(err, syscall.EAGAIN) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nothing arrived")
		}
	}
}

// A connection with something to read before the send (bytes, as from a
// server that speaks first, or the FIN of a kept-alive connection the
// peer dropped while idle) is left unwritten and reported not sent, at
// once: the readiness those brought may already be spent, and a wait for
// more would last until the deadline.
func TestSendAwaitingReplyNotQuiet(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer func(net.Conn)
	}{
		{"bytes", func(c net.Conn) { c.Write([]byte("503 busy")) }},
		{"FIN", func(c net.Conn) { c.(interface{ CloseWrite() error }).CloseWrite() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := rawPair(t)
			tc.peer(server)
			arrived(t, client)
			// Spend the readiness the arrival brought, as a wait that
			// began and ended before would have.
			client.SetReadDeadline(time.Now().Add(time.Millisecond))
			client.(*rawIOConn).rc.Read(func(uintptr) bool { return false })
			client.SetReadDeadline(time.Now().Add(5 * time.Second))
			sent, err := SendAwaitingReply(client, []byte("ping"))
			if sent || err != nil {
				t.Fatalf("SendAwaitingReply = %v, %v; want not sent, no error", sent, err)
			}
			server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if n, err := server.Read(make([]byte, 4)); !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Errorf("the peer read %d bytes, %v; want nothing sent", n, err)
			}
		})
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
	if sent, err := SendAwaitingReply(client, data); !sent || err != nil {
		t.Fatalf("SendAwaitingReply = %v, %v; want sent", sent, err)
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
		if _, err := SendAwaitingReply(client, msg); err != nil {
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
