//go:build !linux

package rawio

import "net"

// Wrap returns c: raw socket reads and writes are made on Linux only (see
// rawio_linux.go for why).
func Wrap(c net.Conn) net.Conn { return c }

// SendAwaitingReply writes p to c, unless it is empty. It does not wait
// for the reply, as it does on Linux (rawio_linux.go): the next read
// waits as any read does.
func SendAwaitingReply(c net.Conn, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	_, err := c.Write(p)
	return err
}
