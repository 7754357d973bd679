// Package mux owns portmux's listeners: it sniffs the first bytes of every
// new connection (with cmux), tells TLS, HTTP/1.x and h2c, SSH, silent
// (server-first, such as FTP) and unrecognized clients apart, picks the first
// matching route of an immutable routing table, and hands the connection with
// the bytes it already read to that route's Handler. It also drains live
// connections on shutdown.
//
// It knows nothing about what handlers do; cmd wires handlers from package
// proxy.
//
// Typical usage:
//
//	table := mux.NewTable([]mux.Route{
//		{Name: "ssh", Match: mux.Match{Protocols: []mux.Protocol{mux.SSH}}, Handler: sshHandler},
//	})
//	srv := mux.NewServer(table, mux.Options{SniffTimeout: time.Second, Logger: logger})
//	go srv.Serve(ln)
//	...
//	srv.Shutdown(ctx)
package mux
