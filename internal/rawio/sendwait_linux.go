package rawio

import (
	"net"

	"golang.org/x/sys/unix"
)

// sendState is where a SendAwaitingReply stands.
type sendState uint8

const (
	sendStarting sendState = iota
	sendBusy               // c had something to read: nothing written
	sendWaiting            // written; waiting for the reply
)

// SendAwaitingReply writes all of p to c and waits until c has something
// to read (the reply, the peer's FIN or an error) or c's read deadline
// passes, without first making the read that would find nothing yet: a
// Read after it finds the reply. The caller reads c alone meanwhile.
//
// When c already has something to read as it begins (bytes, the peer's
// FIN or an error: a kept-alive connection the peer closed or wrote on
// while idle, or a server that speaks first), it writes nothing and
// reports sent false. A c other than Wrap's is looked at with Quiet and
// written with its Write, without the wait.
//
// Why: a read through Go's poller starts by forgetting that the socket
// became readable (RawConn.Read resets that readiness, then tries a read
// and waits only when it finds nothing), so a read made at once after
// sending a request finds nothing, and costs a system call, on nearly
// every exchange: one in seven of portmux's calls per proxied request
// (perf). Here the look and the write are made inside the read, after
// that reset: the socket is seen empty after it, so whatever comes later,
// the reply above all, wakes the wait. Bytes that came before the reset,
// their readiness forgotten, would wake nothing: the look finds them. A
// wake with nothing to read (an earlier readiness delivered late) costs
// the Read after it what it cost before.
func SendAwaitingReply(c net.Conn, p []byte) (sent bool, err error) {
	rc, ok := c.(*rawIOConn)
	if !ok {
		if !Quiet(c) {
			return false, nil
		}
		_, err := c.Write(p)
		return true, err
	}
	return rc.sendAwaitingReply(p)
}

func (c *rawIOConn) sendAwaitingReply(p []byte) (bool, error) {
	op := &c.wr
	op.mu.Lock()
	op.buf, op.n, op.errno, c.send = p, 0, 0, sendStarting
	err := c.rc.Read(c.sendThenWait)
	n, errno, state := op.n, op.errno, c.send
	op.buf = nil
	op.mu.Unlock()
	switch {
	case state == sendBusy:
		return false, nil
	case errno != 0:
		return true, c.opError("write", errno)
	case err != nil && state == sendWaiting:
		return true, c.opError("read", err) // the deadline, or closed
	case err != nil:
		return false, c.opError("write", err) // closed before a look
	case n < len(p):
		// The socket's buffer filled: the rest waits for room as any
		// Write does, and the reply is read as any other.
		_, err = c.Write(p[n:])
		return true, err
	}
	return true, nil
}

// sendAwaiting is SendAwaitingReply's attempt, called by RawConn.Read: the
// first call looks, then writes (ending the read at once when the socket
// is not empty, when its buffer fills or when the write fails); the next
// one, on a wake, ends the wait.
func (c *rawIOConn) sendAwaiting(fd uintptr) bool {
	if c.send == sendWaiting {
		return true
	}
	if _, errno := peekFD(fd); errno != unix.EAGAIN {
		c.send = sendBusy
		return true
	}
	if !c.wr.write(fd) || c.wr.errno != 0 {
		return true
	}
	c.send = sendWaiting
	return false
}
