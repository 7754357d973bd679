//go:build !linux

package rawio

import (
	"net"
	"time"
)

// Wrap returns c: raw socket reads and writes are made on Linux only (see
// rawio_linux.go for why).
func Wrap(c net.Conn) net.Conn { return c }

// Quiet reports true: this system cannot look at c without reading. A
// closed connection shows when it is next read or written.
func Quiet(net.Conn) bool { return true }

// SendAwaitingReply writes p to c and reports sent. It cannot look at c
// without reading on this system, nor wait for the reply, as it does on
// Linux (sendwait_linux.go): the next read waits as any read does.
func SendAwaitingReply(c net.Conn, p []byte) (sent bool, err error) {
	_, err = c.Write(p)
	return true, err
}

// LimitWriteStall reports false: writes are not raw on this system, and
// their stalls are not limited (see rawio_linux.go).
func LimitWriteStall(net.Conn, time.Duration) bool { return false }
