package test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"
)

// TestE2EManyShortExchanges opens many short connections, a few at a time, each doing
// two small request/reply round trips through portmux to the echo backend and a
// half-close. The reply of the first round trip comes back while portmux is still
// setting up its relay, so this catches lost wakeups and races at relay start. Each
// connection has a 10s hang guard; no timing is asserted. Log lines are not checked:
// zap's production sampling drops repeats beyond 100 per second.
func TestE2EManyShortExchanges(t *testing.T) {
	w := startWorld(t, worldOpts{SSHTo: toEcho})
	const (
		workers = 8
		total   = 400
	)
	jobs := make(chan int, total)
	for i := range total {
		jobs <- i
	}
	close(jobs)
	errc := make(chan error, total)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if err := shortExchange(w.PM.Addr(), i); err != nil {
					errc <- fmt.Errorf("connection %d: %w", i, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		if len(errs) > 10 {
			errs = append(errs[:10], fmt.Errorf("... and %d more", len(errs)-10))
		}
		t.Fatalf("%d of %d exchanges failed:\n%v", len(errs), total, errors.Join(errs...))
	}
}

// shortExchange is one connection: "SSH-2.0-many\r\n" + a line, read the echo, a
// second line, read its echo, half-close, read EOF.
func shortExchange(addr string, i int) error {
	c, err := dialTCP(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	local := c.LocalAddr().String()
	for round, msg := range []string{
		fmt.Sprintf("SSH-2.0-many\r\nfirst %d\n", i),
		fmt.Sprintf("second %d %s\n", i, bytes.Repeat([]byte("x"), i)),
	} {
		if _, err := io.WriteString(c, msg); err != nil {
			return fmt.Errorf("%s round %d: write: %w", local, round, err)
		}
		got := make([]byte, len(msg))
		if n, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("%s round %d: read %d of %d echoed bytes: %w", local, round, n, len(msg), err)
		}
		if string(got) != msg {
			return fmt.Errorf("%s round %d: echo %q; want %q", local, round, got, msg)
		}
	}
	if err := c.CloseWrite(); err != nil {
		return err
	}
	if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
		return fmt.Errorf("%s after half-close: read %q, %v; want clean EOF", local, rest, err)
	}
	return nil
}
