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
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ---- bulk ----

func cmdBulk(args []string) error {
	fs := flag.NewFlagSet("bulk", flag.ExitOnError)
	addr := fs.String("addr", "", "address to connect to (backend or proxy)")
	dir := fs.String("dir", "down", "up (client sends) or down (backend sends)")
	conns := fs.Int("conns", 1, "parallel connections")
	size := fs.Int64("bytes", 1<<30, "bytes moved by each connection")
	timeout := fs.Duration("timeout", 2*time.Minute, "bound of the whole run")
	fs.Parse(args)
	if *addr == "" || *conns < 1 || *size < 1 || (*dir != "up" && *dir != "down") {
		return errors.New("need -addr, -dir up|down, -conns >= 1, -bytes >= 1")
	}
	deadline := time.Now().Add(*timeout)
	errs := make([]error, *conns)
	took := make([]float64, *conns)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if *dir == "down" {
				errs[i] = bulkDown(*addr, *size, deadline)
			} else {
				errs[i] = bulkUp(*addr, *size, deadline)
			}
			took[i] = time.Since(start).Seconds()
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	total := *size * int64(*conns)
	// The first and last connection to finish: unequal shares show up here.
	result("test", "bulk", "dir", *dir, "conns", *conns, "bytes", total,
		"secs", fmt.Sprintf("%.3f", secs), "mbps", fmt.Sprintf("%.1f", float64(total)/secs/1e6),
		"first_done_secs", fmt.Sprintf("%.3f", slices.Min(took)), "last_done_secs", fmt.Sprintf("%.3f", slices.Max(took)))
	return nil
}

// openBulk connects to addr and sends the command line of a bulk transfer
// (dir "up" or "down") of size bytes, bounded by deadline.
func openBulk(addr, dir string, size int64, deadline time.Time) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	if _, err := fmt.Fprintf(c, "%s%s-%d\r\n", cmdPrefix, dir, size); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func bulkDown(addr string, size int64, deadline time.Time) error {
	c, err := openBulk(addr, "down", size, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, bulkBuf)
	var got int64
	for got < size {
		n, err := c.Read(buf[:min(int64(len(buf)), size-got)])
		got += int64(n)
		if err != nil {
			return fmt.Errorf("down: after %d of %d bytes: %w", got, size, err)
		}
	}
	return nil
}

func bulkUp(addr string, size int64, deadline time.Time) error {
	c, err := openBulk(addr, "up", size, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, bulkBuf)
	for i := range buf {
		buf[i] = byte(i)
	}
	for left := size; left > 0; {
		n, err := c.Write(buf[:min(int64(len(buf)), left)])
		left -= int64(n)
		if err != nil {
			return fmt.Errorf("up: %d bytes unsent: %w", left, err)
		}
	}
	reply := make([]byte, 0, 32)
	for !bytes.HasSuffix(reply, []byte("\n")) && len(reply) < cap(reply) {
		n, err := c.Read(reply[len(reply):cap(reply)])
		reply = reply[:len(reply)+n]
		if err != nil {
			return fmt.Errorf("up: reading the count: %w", err)
		}
	}
	got, err := strconv.ParseInt(strings.TrimSpace(string(reply)), 10, 64)
	if err != nil || got != size {
		return fmt.Errorf("up: backend counted %q, want %d", reply, size)
	}
	return nil
}

// ---- connrate ----

func cmdConnRate(args []string) error {
	fs := flag.NewFlagSet("connrate", flag.ExitOnError)
	addr := fs.String("addr", "", "address to connect to")
	concurrency := fs.Int("concurrency", 32, "connections in flight")
	duration := fs.Duration("duration", 10*time.Second, "how long to run")
	prefixFlag := fs.String("prefix", `SSH-2.0-bench\r\n`, "first bytes sent (escapes allowed)")
	payload := fs.Int("payload", 64, "bytes sent after the prefix")
	timeout := fs.Duration("timeout", 5*time.Second, "bound of one connection")
	fs.Parse(args)
	prefix, err := unescape(*prefixFlag)
	if err != nil {
		return err
	}
	if *addr == "" || *concurrency < 1 {
		return errors.New("need -addr and -concurrency >= 1")
	}
	msg := append([]byte(prefix), bytes.Repeat([]byte{'x'}, *payload)...)
	var ok, slow atomic.Int64
	var failed errorTally
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(*duration)
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, len(msg))
			for time.Now().Before(end) {
				t0 := time.Now()
				err := echoOnce(*addr, msg, buf, *timeout)
				if time.Since(t0) > 500*time.Millisecond {
					slow.Add(1) // typically a SYN retransmitted after 1s
				}
				if err != nil {
					failed.add(err)
					time.Sleep(10 * time.Millisecond) // no spinning on a refused port
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	result(failed.appendFirst([]any{"test", "connrate", "conns", ok.Load(), "errors", failed.count(), "slow_over_500ms", slow.Load(),
		"secs", fmt.Sprintf("%.3f", secs), "cps", fmt.Sprintf("%.0f", float64(ok.Load())/secs)})...)
	return nil
}

// echoOnce connects, sends msg in one write, reads its echo and closes.
func echoOnce(addr string, msg, buf []byte, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, buf[:len(msg)]); err != nil {
		return err
	}
	if !bytes.Equal(buf[:len(msg)], msg) {
		return errors.New("echo differs")
	}
	return nil
}

// ---- latency ----

func cmdLatency(args []string) error {
	fs := flag.NewFlagSet("latency", flag.ExitOnError)
	addr := fs.String("addr", "", "address to connect to")
	n := fs.Int("n", 2000, "samples")
	warmup := fs.Int("warmup", 50, "connections made first and not counted")
	prefixFlag := fs.String("prefix", `SSH-2.0-bench\r\n`, "first bytes sent (escapes allowed)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound of one connection")
	maxTime := fs.Duration("max-time", time.Minute, "stop sampling after this long")
	fs.Parse(args)
	prefix, err := unescape(*prefixFlag)
	if err != nil {
		return err
	}
	if *addr == "" || *n < 1 || prefix == "" {
		return errors.New("need -addr, -n >= 1 and a prefix")
	}
	msg := []byte(prefix)
	buf := make([]byte, len(msg))
	samples := make([]time.Duration, 0, *n)
	end := time.Now().Add(*maxTime)
	failed, made := 0, 0
	for i := 0; i < *warmup+*n && time.Now().Before(end); i++ {
		made++
		d, err := firstByte(*addr, msg, buf, *timeout)
		if err != nil {
			if failed++; failed > 100 {
				return fmt.Errorf("too many failures, last: %w", err)
			}
			continue
		}
		if i >= *warmup {
			samples = append(samples, d)
		}
	}
	if len(samples) == 0 {
		return errors.New("no sample")
	}
	slices.Sort(samples)
	var sum time.Duration
	for _, d := range samples {
		sum += d
	}
	us := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e3) }
	kv := []any{"test", "latency", "n", len(samples), "conns", made, "errors", failed}
	kv = append(kv, quantiles("", "_us", samples, 0, us)...)
	result(append(kv, "mean_us", us(sum/time.Duration(len(samples))))...)
	return nil
}

// firstByte times connect + send msg + the first echoed byte; it then reads
// the rest of the echo so the connection closes cleanly.
func firstByte(addr string, msg, buf []byte, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(t0.Add(timeout))
	if _, err := c.Write(msg); err != nil {
		return 0, err
	}
	if _, err := io.ReadFull(c, buf[:1]); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	if _, err := io.ReadFull(c, buf[1:len(msg)]); err != nil {
		return 0, err
	}
	return d, nil
}

// pct is the p-th percentile (nearest rank) of sorted samples.
func pct(sorted []time.Duration, p float64) time.Duration {
	i := int(float64(len(sorted))*p/100+0.999999) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// quantiles are the result pairs p50, p90, p99 and max of sorted samples,
// each less sub and formatted by format, keyed prefix+"p50"+suffix etc.
func quantiles(prefix, suffix string, sorted []time.Duration, sub time.Duration, format func(time.Duration) string) []any {
	var kv []any
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 50}, {"p90", 90}, {"p99", 99}, {"max", 100}} {
		kv = append(kv, prefix+q.name+suffix, format(pct(sorted, q.p)-sub))
	}
	return kv
}

// ---- greeting ----

// cmdGreeting measures server-first detection: each connection sends
// nothing and times connect() to the first byte of the server's greeting,
// which a proxy can only ask for once it has waited -silence for client
// bytes (its sniff timeout). Overshoot is the delay less -silence.
func cmdGreeting(args []string) error {
	fs := flag.NewFlagSet("greeting", flag.ExitOnError)
	addr := fs.String("addr", "", "address to connect to (the greet backend, or a proxy routing silent clients to it)")
	n := fs.Int("n", 300, "samples")
	concurrency := fs.Int("concurrency", 32, "connections in flight, their starts spread over one -silence")
	silence := fs.Duration("silence", time.Second, "how long the proxy waits for client bytes (0 for direct)")
	timeout := fs.Duration("timeout", 0, "bound of one connection (0: -silence + 5s)")
	maxTime := fs.Duration("max-time", 2*time.Minute, "stop sampling after this long")
	fs.Parse(args)
	if *addr == "" || *n < 1 || *concurrency < 1 || *silence < 0 {
		return errors.New("need -addr, -n >= 1, -concurrency >= 1, -silence >= 0")
	}
	if *timeout <= 0 {
		*timeout = *silence + 5*time.Second
	}
	var (
		mu      sync.Mutex
		samples = make([]time.Duration, 0, *n)
		failed  errorTally
		next    atomic.Int64
		wg      sync.WaitGroup
	)
	// Connection k starts no earlier than k*spacing: evenly spread, so the
	// proxy's timers do not fire in bursts, and at least 1 ms apart, so
	// the samples do not queue behind each other (direct: no silence).
	spacing := max(*silence/time.Duration(*concurrency), time.Millisecond)
	start := time.Now()
	end := start.Add(*maxTime)
	for range *concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				k := next.Add(1) - 1
				at := start.Add(time.Duration(k) * spacing)
				if k >= int64(*n) || at.After(end) || time.Now().After(end) {
					return
				}
				time.Sleep(time.Until(at))
				d, err := greetOnce(*addr, *timeout)
				if err != nil {
					failed.add(err)
					continue
				}
				mu.Lock()
				samples = append(samples, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(samples) == 0 {
		return fmt.Errorf("no sample, %d errors, first: %v", failed.count(), failed.first.Load())
	}
	slices.Sort(samples)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.3f", float64(d)/1e6) }
	kv := []any{"test", "greeting", "n", len(samples), "errors", failed.count(), "silence_ms", ms(*silence)}
	kv = append(kv, quantiles("", "_ms", samples, 0, ms)...)
	kv = append(kv, quantiles("over_", "_ms", samples, *silence, ms)...)
	result(failed.appendFirst(kv)...)
	return nil
}

// greetOnce connects, sends nothing, and times connect() to the first byte
// of the greeting; the greeting line must start with "220".
func greetOnce(addr string, timeout time.Duration) (time.Duration, error) {
	t0 := time.Now()
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	c.SetDeadline(t0.Add(timeout))
	buf := make([]byte, 128)
	got, err := c.Read(buf)
	if err != nil {
		return 0, fmt.Errorf("no greeting: %w", err)
	}
	d := time.Since(t0)
	for got < 3 && !bytes.Contains(buf[:got], []byte("\n")) { // a greeting split before its code
		m, err := c.Read(buf[got:])
		got += m
		if err != nil {
			break
		}
	}
	if !bytes.HasPrefix(buf[:got], []byte("220")) {
		return 0, fmt.Errorf("greeting %q does not start with 220", buf[:got])
	}
	return d, nil
}

// ---- idle ----

func cmdIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "address to connect to")
	n := fs.Int("n", 2000, "connections to open and hold")
	parallel := fs.Int("parallel", 16, "connections opened at once")
	prefixFlag := fs.String("prefix", `SSH-2.0-bench\r\n`, "first bytes sent on each (escapes allowed)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound of opening one connection")
	hold := fs.Duration("hold", 10*time.Minute, "release the connections after this long if not killed before")
	fs.Parse(args)
	prefix, err := unescape(*prefixFlag)
	if err != nil {
		return err
	}
	if *addr == "" || *n < 1 || *parallel < 1 || prefix == "" {
		return errors.New("need -addr, -n >= 1, -parallel >= 1 and a prefix")
	}
	msg := []byte(prefix)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)

	var (
		mu     sync.Mutex
		conns  = make([]net.Conn, 0, *n)
		failed errorTally
		next   atomic.Int64
		wg     sync.WaitGroup
	)
	start := time.Now()
	for range *parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, len(msg))
			for next.Add(1) <= int64(*n) {
				c, err := openIdle(*addr, msg, buf, *timeout)
				if err != nil {
					failed.add(err)
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	result(failed.appendFirst([]any{"test", "idle", "opened", len(conns), "errors", failed.count(),
		"secs", fmt.Sprintf("%.3f", time.Since(start).Seconds())})...)
	fmt.Println("READY")
	select {
	case <-stop:
	case <-time.After(*hold):
	}
	for _, c := range conns {
		c.Close()
	}
	fmt.Println("CLOSED")
	return nil
}

// openIdle opens a connection whose prefix was echoed, so it is relayed
// end to end, and leaves it idle.
func openIdle(addr string, msg, buf []byte, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(msg); err == nil {
		_, err = io.ReadFull(c, buf)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// ---- wait ----

func cmdWait(args []string) error {
	fs := flag.NewFlagSet("wait", flag.ExitOnError)
	addr := fs.String("addr", "", "address that should accept connections")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	fs.Parse(args)
	end := time.Now().Add(*timeout)
	for {
		c, err := net.DialTimeout("tcp", *addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s not accepting after %v: %w", *addr, *timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- freeports ----

func cmdFreePorts(args []string) error {
	fs := flag.NewFlagSet("freeports", flag.ExitOnError)
	n := fs.Int("n", 1, "how many")
	fs.Parse(args)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []string
	for range *n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	fmt.Println(strings.Join(ports, " "))
	return nil
}

// errorTally counts the failures of concurrent workers and keeps the first
// one's message for the result line.
type errorTally struct {
	n     atomic.Int64
	first atomic.Value // string
}

func (t *errorTally) add(err error) {
	t.n.Add(1)
	t.first.CompareAndSwap(nil, err.Error())
}

func (t *errorTally) count() int64 { return t.n.Load() }

// appendFirst appends first_error to a result line's fields when there was
// an error.
func (t *errorTally) appendFirst(kv []any) []any {
	if e := t.first.Load(); e != nil {
		kv = append(kv, "first_error", strconv.Quote(e.(string)))
	}
	return kv
}
