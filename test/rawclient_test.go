package test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"time"
)

// dialTCP dials addr with a 10s timeout and returns the *net.TCPConn.
func dialTCP(addr string) (*net.TCPConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// roundTrip sends prefix followed by n bytes of payload(seed) to addr, half-closes,
// and reads until EOF while writing. It returns the digests of what was sent and of
// what came back, and the local address of the connection. guard bounds the whole
// exchange (a hang guard, not a performance check).
func roundTrip(addr string, prefix []byte, seed uint64, n int64, guard time.Duration) (sent, got digest, local string, err error) {
	c, err := dialTCP(addr)
	if err != nil {
		return digest{}, digest{}, "", err
	}
	defer c.Close()
	local = c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(guard))

	type res struct {
		d   digest
		err error
	}
	wrote := make(chan res, 1)
	go func() {
		d, err := digestOf(io.TeeReader(io.MultiReader(bytes.NewReader(prefix), payload(seed, n)), writerOnly{c}))
		if err == nil {
			err = c.CloseWrite()
		}
		wrote <- res{d, err}
	}()
	got, rerr := digestOf(c)
	if rerr != nil {
		c.Close() // unblock the writer
	}
	w := <-wrote
	if rerr != nil {
		return w.d, got, local, fmt.Errorf("reading after %d bytes: %w", got.N, rerr)
	}
	if w.err != nil {
		return w.d, got, local, fmt.Errorf("writing: %w", w.err)
	}
	return w.d, got, local, nil
}

// writerOnly hides ReadFrom so TeeReader writes through the plain Write path.
type writerOnly struct{ io.Writer }

// requestReplyAfterEOF sends req to addr (which leads to a reply-after-EOF backend),
// half-closes, and checks the whole reply: the digest line of req, then
// replyAfterEOFSize bytes of payload(replyAfterEOFSeed).
func requestReplyAfterEOF(addr string, req []byte) (local string, err error) {
	c, err := dialTCP(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	local = c.LocalAddr().String()
	c.SetDeadline(time.Now().Add(60 * time.Second))
	if _, err := c.Write(req); err != nil {
		return local, fmt.Errorf("writing request: %w", err)
	}
	if err := c.CloseWrite(); err != nil {
		return local, fmt.Errorf("close write: %w", err)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return local, fmt.Errorf("reading digest line (got %q): %w", line, err)
	}
	rd := digestBytes(req)
	if want := fmt.Sprintf("%s %d\n", rd.Sum, rd.N); line != want {
		return local, fmt.Errorf("digest line %q; want %q", line, want)
	}
	got, err := digestOf(br)
	if err != nil {
		return local, fmt.Errorf("reading reply after %d bytes: %w", got.N, err)
	}
	want, err := digestOf(payload(replyAfterEOFSeed, replyAfterEOFSize))
	if err != nil {
		return local, err
	}
	if got != want {
		return local, fmt.Errorf("reply %+v; want %+v", got, want)
	}
	return local, nil
}

// waitClosed reads from c until the peer closes it (EOF or reset) and returns the bytes
// read. It fails if guard passes first: the peer never closed.
func waitClosed(c net.Conn, guard time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(guard))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		if len(got) < 1<<16 {
			got = append(got, buf[:n]...)
		}
		if err == nil {
			continue
		}
		if isClosedErr(err) {
			return got, nil
		}
		if isTimeout(err) {
			return got, fmt.Errorf("connection still open after %v (read %d bytes)", guard, len(got))
		}
		return got, err
	}
}
