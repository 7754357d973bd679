//go:build !linux

package mux

import "net"

// RawIO returns c: raw socket reads and writes are made on Linux only (see
// rawio_linux.go for why).
func RawIO(c net.Conn) net.Conn { return c }
