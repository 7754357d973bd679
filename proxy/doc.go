// Package proxy holds what happens to a connection after portmux has decided
// where it goes: the TCP relay (splice, half-close, idle timeout, byte counts)
// and serving an in-process HTTP handler on a handed-over connection.
//
// It knows nothing about sniffing or routing; cmd wires it to package mux.
//
// Typical usage:
//
//	pipes := proxy.NewPipes(64)
//	tcp := &proxy.TCP{Addr: "127.0.0.1:22", DialTimeout: 5 * time.Second, IdleTimeout: time.Hour, Pipes: pipes}
//	stats, err := tcp.Serve(ctx, clientConn, sniffedPrefix)
package proxy
