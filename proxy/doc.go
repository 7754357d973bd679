// Package proxy holds what happens to a connection after portmux has decided
// where it goes: the TCP relay (splice, half-close, idle timeout, byte counts)
// and serving HTTP on a handed-over connection: the reverse proxy of L7
// routes, with a direct HTTP/1.1 path (h1*.go) for plain requests in front
// of net/http's server, which takes everything else. Requests without a body
// that net/http serves (HTTP/2) reach the upstream over the direct path's
// connections too (h1roundtrip.go), not net/http's Transport.
//
// It knows nothing about sniffing or routing; cmd wires it to package mux.
//
// Typical usage:
//
//	pipes := proxy.NewPipes(64)
//	tcp := &proxy.TCP{Addr: "127.0.0.1:22", DialTimeout: 5 * time.Second, IdleTimeout: time.Hour, Pipes: pipes}
//	stats, err := tcp.Serve(ctx, clientConn, sniffedPrefix)
package proxy
