//go:build !linux

package rawio

import "net"

// Wrap returns c: raw socket reads and writes are made on Linux only (see
// rawio_linux.go for why).
func Wrap(c net.Conn) net.Conn { return c }
