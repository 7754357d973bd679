package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// cmdPrefix starts the first line of a bulk connection; it is an SSH
// identification line, so proxies route it like the echo connections.
const cmdPrefix = "SSH-2.0-bench-"

// maxCmdLine is how far the backend looks for the command line; a
// connection without one is echoed.
const maxCmdLine = 256

// bulkBuf is the read and write size of bulk transfers, both ends.
const bulkBuf = 256 << 10

type server struct {
	idle    time.Duration // an echo connection silent this long is closed
	bulkMax time.Duration // bound of one bulk transfer
	pattern []byte        // what bulk downloads send
}

// greeting is what the -greet-listen server sends first, like an FTP server.
const greeting = "220 l4load greeting\r\n"

func cmdServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:0", "address to listen on (loopback)")
	greetListen := fs.String("greet-listen", "", "also a server-first listener here: it sends a 220 greeting at once, then reads until EOF (\"\": none)")
	idle := fs.Duration("idle", 15*time.Minute, "close an echo or greet connection silent this long")
	bulkMax := fs.Duration("bulk-timeout", 5*time.Minute, "bound of one bulk transfer")
	maxTime := fs.Duration("max-time", 2*time.Hour, "exit after this long in any case")
	fs.Parse(args)

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	lns := []net.Listener{ln}
	fmt.Printf("LISTEN %s\n", ln.Addr())
	s := &server{idle: *idle, bulkMax: *bulkMax, pattern: make([]byte, bulkBuf)}
	for i := range s.pattern {
		s.pattern[i] = byte(i)
	}
	if *greetListen != "" {
		gln, err := net.Listen("tcp", *greetListen)
		if err != nil {
			ln.Close()
			return err
		}
		lns = append(lns, gln)
		fmt.Printf("GREET_LISTEN %s\n", gln.Addr())
		go acceptLoop(gln, s.greet)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-stop:
		case <-time.After(*maxTime):
		}
		for _, l := range lns {
			l.Close()
		}
	}()
	acceptLoop(ln, s.serveConn)
	return nil
}

// acceptLoop serves each connection of ln with handle, in its own
// goroutine, until ln is closed.
func acceptLoop(ln net.Listener, handle func(*net.TCPConn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: back off rather than spin.
			fmt.Fprintf(os.Stderr, "accept: %v\n", err)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		go handle(c.(*net.TCPConn))
	}
}

// greet serves a -greet-listen connection as a server-first (FTP) server
// would start: the greeting at once, then whatever the client sends is
// read and dropped until EOF or s.idle of silence.
func (s *server) greet(c *net.TCPConn) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(s.idle))
	if _, err := io.WriteString(c, greeting); err != nil {
		return
	}
	buf := make([]byte, 512)
	for {
		c.SetReadDeadline(time.Now().Add(s.idle))
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func (s *server) serveConn(c *net.TCPConn) {
	defer c.Close()
	buf := make([]byte, 4096)
	n := 0
	for {
		c.SetReadDeadline(time.Now().Add(s.idle))
		m, err := c.Read(buf[n:])
		n += m
		if line := bytes.IndexByte(buf[:n], '\n'); line >= 0 {
			s.dispatch(c, buf, n, line+1)
			return
		}
		if !mayBeCommand(buf[:n]) || n >= maxCmdLine {
			s.echo(c, buf, n)
			return
		}
		if err != nil {
			return
		}
	}
}

// mayBeCommand reports whether b can still grow into a command line.
func mayBeCommand(b []byte) bool {
	if len(b) <= len(cmdPrefix) {
		return bytes.HasPrefix([]byte(cmdPrefix), b)
	}
	return bytes.HasPrefix(b, []byte(cmdPrefix))
}

// dispatch serves a connection whose first line is buf[:lineLen]; buf[:n]
// holds what was read so far.
func (s *server) dispatch(c *net.TCPConn, buf []byte, n, lineLen int) {
	line := string(bytes.TrimRight(buf[:lineLen], "\r\n"))
	arg, isCmd := bytes.CutPrefix([]byte(line), []byte(cmdPrefix))
	switch {
	case isCmd && bytes.HasPrefix(arg, []byte("up-")):
		size, err := strconv.ParseInt(string(arg[len("up-"):]), 10, 64)
		if err != nil || size < 0 {
			s.echo(c, buf, n)
			return
		}
		s.upload(c, int64(n-lineLen), size)
	case isCmd && bytes.HasPrefix(arg, []byte("down-")):
		size, err := strconv.ParseInt(string(arg[len("down-"):]), 10, 64)
		if err != nil || size < 0 {
			s.echo(c, buf, n)
			return
		}
		s.download(c, size)
	default:
		s.echo(c, buf, n)
	}
}

// echo sends back buf[:n], then everything the client sends, until EOF.
func (s *server) echo(c *net.TCPConn, buf []byte, n int) {
	for {
		if n > 0 {
			c.SetWriteDeadline(time.Now().Add(s.idle))
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		c.SetReadDeadline(time.Now().Add(s.idle))
		var err error
		n, err = c.Read(buf)
		if err != nil && n == 0 {
			return
		}
	}
}

// download sends size bytes, then closes once the client has (it reads
// exactly size bytes and sends nothing more: only its FIN is left to read).
func (s *server) download(c *net.TCPConn, size int64) {
	c.SetDeadline(time.Now().Add(s.bulkMax))
	for size > 0 {
		w, err := c.Write(s.pattern[:min(int64(len(s.pattern)), size)])
		size -= int64(w)
		if err != nil {
			return
		}
	}
	c.CloseWrite()
	var b [512]byte
	for i := 0; i < 1000; i++ { // the client's FIN, normally at once
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}

// upload reads size bytes after the command line (already of them came
// with it), then replies how many it read. It does not wait for an EOF:
// some proxies (sslh) cannot pass on a half-close.
func (s *server) upload(c *net.TCPConn, already, size int64) {
	c.SetDeadline(time.Now().Add(s.bulkMax))
	buf := make([]byte, bulkBuf)
	total := already
	for total < size {
		n, err := c.Read(buf[:min(int64(len(buf)), size-total)])
		total += int64(n)
		if err != nil {
			break
		}
	}
	fmt.Fprintf(c, "%d\n", total)
	c.CloseWrite()
	var b [512]byte
	for i := 0; i < 1000; i++ { // the client's FIN
		if _, err := c.Read(b[:]); err != nil {
			return
		}
	}
}
