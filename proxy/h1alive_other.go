//go:build !linux

package proxy

import "net"

// stillOpen cannot look without reading on this system: a closed idle
// connection shows when the request is sent.
func stillOpen(net.Conn) bool { return true }
