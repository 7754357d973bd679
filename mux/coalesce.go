package mux

import (
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Coalesced writes, for HTTP/2 (over terminated TLS, or h2c).
//
// Go's HTTP/2 server flushes whenever its write queue runs dry, and a
// handler waits for a response's HEADERS frame to be written before it
// hands over the DATA: each response leaves in two system calls (and two
// TLS records), each a wake-up for the client. With coalescing, a Stream
// write only copies the bytes into a send buffer, and a sender goroutine
// writes them to the socket; whatever is written while a send is under way
// goes out with the next one, much as an event loop (HAProxy's) gathers a
// connection's frames before it sends. The first bytes go out at once: a
// lone response waits for nothing.

// maxPendingWrite bounds the bytes accepted but not yet sent; writes
// beyond it wait, so a client that does not read holds back its writers
// as a full socket buffer would.
const maxPendingWrite = 64 << 10

// closeFlushTimeout bounds how long Close waits for accepted bytes to go
// out when no earlier write deadline does, as crypto/tls bounds its
// close_notify alert. A variable for tests.
var closeFlushTimeout = 5 * time.Second

// coalescer sends a Stream's writes from a goroutine of its own, which
// runs only while there is something to send.
type coalescer struct {
	conn net.Conn      // the connection beneath: the socket, or TLS for h2c inside TLS
	sent *atomic.Int64 // bytes written to conn (the Stream's count)

	mu       sync.Mutex
	room     sync.Cond // the sender took a batch or stopped, a deadline changed, or writes shut
	pending  []byte    // accepted, not yet handed to the socket
	spare    []byte    // the last batch's buffer, reused for the next while sending
	sending  bool      // the sender goroutine runs
	deadline time.Time // the write deadline the user set
	sendBy   time.Time // the deadline in force when the newest pending byte was accepted
	applied  time.Time // the socket's write deadline
	shut     bool      // Close or CloseWrite began: no more writes
	err      error     // the first failed send; the stream is broken after it
}

func newCoalescer(conn net.Conn, sent *atomic.Int64) *coalescer {
	c := &coalescer{conn: conn, sent: sent}
	c.room.L = &c.mu
	return c
}

// write accepts p for sending. It waits while the send buffer is full,
// until the write deadline; an earlier failed send fails it.
func (c *coalescer) write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.err == nil && !c.shut && len(c.pending) > 0 && len(c.pending)+len(p) > maxPendingWrite {
		if err := c.waitForRoom(); err != nil {
			return 0, err
		}
	}
	switch {
	case c.shut:
		return 0, net.ErrClosed
	case c.err != nil:
		return 0, c.err
	case !c.deadline.IsZero() && !time.Now().Before(c.deadline):
		return 0, os.ErrDeadlineExceeded
	}
	if c.pending == nil && len(p) <= maxPendingWrite {
		c.pending = (*sendBuffers.Get().(*[]byte))[:0]
	}
	c.pending = append(c.pending, p...)
	c.sendBy = c.deadline
	if !c.sending {
		c.sending = true
		go c.send()
	}
	return len(p), nil
}

// waitForRoom waits, with c.mu held, for the sender to make progress or
// the write deadline to pass.
func (c *coalescer) waitForRoom() error {
	if c.deadline.IsZero() {
		c.room.Wait()
		return nil
	}
	wait := time.Until(c.deadline)
	if wait <= 0 {
		return os.ErrDeadlineExceeded
	}
	timer := time.AfterFunc(wait, func() {
		c.mu.Lock()
		c.room.Broadcast()
		c.mu.Unlock()
	})
	c.room.Wait()
	timer.Stop()
	return nil
}

// send writes the pending bytes, batch after batch, until none are left or
// a write fails. Each batch must be sent by the deadline that was in force
// when its newest byte was accepted: crypto/tls queues its close_notify
// alert and then sets a deadline of now to fail later writes, and that must
// not fail the alert.
func (c *coalescer) send() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) > 0 && c.err == nil {
		batch := c.pending
		c.pending = c.spare[:0]
		c.room.Broadcast() // room for the next batch
		if !c.sendBy.Equal(c.applied) {
			c.conn.SetWriteDeadline(c.sendBy)
			c.applied = c.sendBy
		}
		c.mu.Unlock()
		n, err := c.conn.Write(batch)
		c.sent.Add(int64(n))
		c.mu.Lock()
		if err != nil {
			c.err = err // ends the loop; writers waiting for room fail below
		}
		c.spare = batch[:0]
	}
	c.sending = false
	// An idle connection keeps no buffer (what is left after a failure is
	// unsendable).
	releaseSendBuffer(c.pending)
	releaseSendBuffer(c.spare)
	c.pending, c.spare = nil, nil
	c.room.Broadcast()
}

// sendBuffers holds the send buffers of connections that are not sending.
var sendBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 4<<10)
	return &b
}}

// releaseSendBuffer returns b to sendBuffers, unless it grew for a one-off
// large write.
func releaseSendBuffer(b []byte) {
	if b != nil && cap(b) <= 2*maxPendingWrite {
		b = b[:0]
		sendBuffers.Put(&b)
	}
}

// setWriteDeadline sets the deadline of later writes and of writes waiting
// for room. Bytes already accepted keep theirs.
func (c *coalescer) setWriteDeadline(t time.Time) {
	c.mu.Lock()
	c.deadline = t
	c.room.Broadcast()
	c.mu.Unlock()
}

// drain refuses further writes and waits until the accepted bytes are sent
// or have failed, for at most closeFlushTimeout: a client that stopped
// reading cannot hold Close up for longer.
func (c *coalescer) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.shut = true
	c.room.Broadcast() // writers waiting for room fail now
	if !c.sending {
		return
	}
	limit := time.Now().Add(closeFlushTimeout)
	if c.sendBy.IsZero() || c.sendBy.After(limit) {
		c.sendBy = limit
	}
	if c.applied.IsZero() || c.applied.After(limit) {
		c.conn.SetWriteDeadline(limit) // also bounds the send under way
		c.applied = limit
	}
	for c.sending {
		c.room.Wait()
	}
}
