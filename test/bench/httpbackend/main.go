// Command httpbackend is the origin server of the HTTP benchmark
// (test/bench/http.sh): it answers every request with the same small body,
// keeps connections alive, and logs nothing, so that what the benchmark
// measures is the proxy in front of it. Standard library only.
//
// Typical usage:
//
//	httpbackend -listen 127.0.0.1:8080 -tls-listen 127.0.0.1:8443 -cert c.pem -key k.pem
//
// -listen serves HTTP/1.1 (and h2c is not offered); -tls-listen, when set,
// serves HTTPS with ALPN h2 and http/1.1, the "direct" reference of the
// HTTPS and h2 measurements. GET /_stats answers "conns N": how many
// connections the server has accepted, so that the benchmark can tell how
// often a proxy opened a new upstream connection. It stops on SIGTERM or
// SIGINT.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "plain HTTP address")
	tlsListen := flag.String("tls-listen", "", "HTTPS (h2 and http/1.1) address; empty: none")
	certFile := flag.String("cert", "", "PEM certificate for -tls-listen")
	keyFile := flag.String("key", "", "PEM key for -tls-listen")
	size := flag.Int("size", 64, "response body bytes")
	flag.Parse()
	if *size < 0 || *size > 1<<20 {
		log.Fatalf("httpbackend: -size must be 0 to 1048576, got %d", *size)
	}

	body := make([]byte, *size)
	for i := range body {
		body[i] = 'a' + byte(i%26)
	}
	if len(body) > 0 {
		body[len(body)-1] = '\n'
	}
	length := []string{strconv.Itoa(len(body))}
	ctype := []string{"text/plain"}
	var conns atomic.Int64
	counted := func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_stats" {
			fmt.Fprintf(w, "conns %d\n", conns.Load())
			return
		}
		// Headers set as slices: no canonicalisation or allocation per request.
		hdr := w.Header()
		hdr["Content-Length"] = length
		hdr["Content-Type"] = ctype
		w.Write(body)
	})

	var servers []*http.Server
	errc := make(chan error, 2)
	plain := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, ConnState: counted,
		ErrorLog: log.New(os.Stderr, "httpbackend: ", 0)}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("httpbackend: %v", err)
	}
	servers = append(servers, plain)
	go serve(plain, ln, errc)

	if *tlsListen != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			log.Fatalf("httpbackend: loading -cert/-key: %v", err)
		}
		secure := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, ConnState: counted,
			ErrorLog: log.New(os.Stderr, "httpbackend: ", 0),
			// NextProtos h2 first: net/http then serves HTTP/2 on this server.
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}}
		tln, err := net.Listen("tcp", *tlsListen)
		if err != nil {
			log.Fatalf("httpbackend: %v", err)
		}
		servers = append(servers, secure)
		go serveTLS(secure, tln, errc)
	}
	fmt.Fprintf(os.Stderr, "httpbackend: serving %d-byte bodies on %s", len(body), ln.Addr())
	if *tlsListen != "" {
		fmt.Fprintf(os.Stderr, " and %s (TLS)", *tlsListen)
	}
	fmt.Fprintln(os.Stderr)

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	select {
	case <-ctx.Done():
	case err := <-errc:
		log.Fatalf("httpbackend: %v", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
}

// serve runs srv on ln and reports an unexpected end on errc.
func serve(srv *http.Server, ln net.Listener, errc chan<- error) {
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		errc <- err
	}
}

// serveTLS is serve over TLS, with the certificate in srv.TLSConfig.
func serveTLS(srv *http.Server, ln net.Listener, errc chan<- error) {
	if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
		errc <- err
	}
}
