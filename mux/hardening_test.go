package mux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// limitedWorld is a world whose server has opts (limits, PROXY protocol)
// and an observer recording refusals.
func limitedWorld(t *testing.T, opts Options, routes ...Route) (*world, *recordingObserver) {
	t.Helper()
	obs := &recordingObserver{}
	opts.Observer = obs
	return newWorldWith(t, opts, routes...), obs
}

// dialFrom connects from a given loopback source address.
func (w *world) dialFrom(src string) *net.TCPConn {
	w.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", w.addr)
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn)
}

// refusedAtOnce reports whether the server closed c without a word.
func refusedAtOnce(c net.Conn) bool {
	n, err := c.Read(make([]byte, 1))
	return n == 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET))
}

func (o *recordingObserver) refusals() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]string(nil), o.refused...)
}

// greetSSH sends an SSH banner on c and expects the test route's answer:
// the connection was admitted.
func greetSSH(t *testing.T, c *net.TCPConn) {
	t.Helper()
	c.Write([]byte("SSH-2.0-x\r\n"))
	if line, err := readLine(c); err != nil || line != "hello:ssh" {
		t.Fatalf("admitted client got %q, %v", line, err)
	}
}

func TestLimits(t *testing.T) {
	t.Run("max conns", func(t *testing.T) {
		w, obs := limitedWorld(t, Options{Limits: Limits{MaxConns: 2}}, allRoutes()...)
		greetSSH(t, w.dial())
		greetSSH(t, w.dial())
		if c := w.dial(); !refusedAtOnce(c) {
			t.Fatal("third connection admitted over max_conns 2")
		}
		if r := obs.refusals(); len(r) != 1 || r[0] != RefusedMaxConns {
			t.Fatalf("refusals %v", r)
		}
	})
	t.Run("max conns per ip", func(t *testing.T) {
		w, _ := limitedWorld(t, Options{Limits: Limits{MaxConnsPerIP: 1}}, allRoutes()...)
		greetSSH(t, w.dialFrom("127.0.0.1"))
		if c := w.dialFrom("127.0.0.1"); !refusedAtOnce(c) {
			t.Fatal("second connection from one IP admitted")
		}
		greetSSH(t, w.dialFrom("127.0.0.2")) // another client is not affected
	})
	t.Run("rate per ip", func(t *testing.T) {
		w, obs := limitedWorld(t, Options{Limits: Limits{RatePerIP: 0.5, RateBurst: 2}}, allRoutes()...)
		greetSSH(t, w.dial())
		greetSSH(t, w.dial())
		if c := w.dial(); !refusedAtOnce(c) {
			t.Fatal("third connection in a burst of 2 admitted")
		}
		if r := obs.refusals(); len(r) != 1 || r[0] != RefusedRate {
			t.Fatalf("refusals %v", r)
		}
	})
	t.Run("max sniffs", func(t *testing.T) {
		w, _ := limitedWorld(t, Options{Limits: Limits{MaxSniffs: 1}}, allRoutes()...)
		staller := w.dial()
		staller.Write([]byte("G")) // holds the only sniff slot until the sniff timeout
		time.Sleep(50 * time.Millisecond)
		if c := w.dial(); !refusedAtOnce(c) {
			t.Fatal("second sniff admitted over max_sniffs 1")
		}
		refusedAtOnce(staller) // closed at the sniff timeout: the slot is free again
		greetSSH(t, w.dial())
	})
}

// TestLimitsChangeLive: SetLimits applies to the next connection, and the
// connections open before it count against the new limits, even those
// admitted while no limit counted them.
func TestLimitsChangeLive(t *testing.T) {
	w, obs := limitedWorld(t, Options{}, allRoutes()...)
	greetSSH(t, w.dialFrom("127.0.0.1")) // admitted with no limits, held open
	w.srv.SetLimits(Limits{MaxConnsPerIP: 1})
	if c := w.dialFrom("127.0.0.1"); !refusedAtOnce(c) {
		t.Fatal("second connection admitted: the one open before SetLimits did not count")
	}
	greetSSH(t, w.dialFrom("127.0.0.2"))
	w.srv.SetLimits(Limits{MaxConnsPerIP: 2})
	greetSSH(t, w.dialFrom("127.0.0.1"))
	if r := obs.refusals(); len(r) != 1 || r[0] != RefusedMaxConnsPerIP {
		t.Fatalf("refusals %v; want one %s", r, RefusedMaxConnsPerIP)
	}
}

// TestProxyProtocolChangeLive: SetProxyProtocol decides for the next
// connection whether its source's PROXY header is believed.
func TestProxyProtocolChangeLive(t *testing.T) {
	w, _ := limitedWorld(t, Options{}, allRoutes()...)
	refusesSpoofedHeader(t, w, "127.0.0.1")
	w.srv.SetProxyProtocol(&ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	c := w.dialFrom("127.0.0.1")
	writeProxyHeader(t, c, 2, "198.51.100.7:4242")
	greetSSH(t, c)
	c.CloseWrite()
	if s := w.next(); s.info.Client.String() != "198.51.100.7:4242" {
		t.Errorf("client %s; want the header's 198.51.100.7:4242", s.info.Client)
	}
}

func readLine(c net.Conn) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 256 {
		if _, err := c.Read(one); err != nil {
			return string(b), err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return string(b), errors.New("line too long")
}

// writeProxyHeader sends a PROXY header for client with the real library.
func writeProxyHeader(t *testing.T, c net.Conn, version byte, client string) {
	t.Helper()
	src, _ := net.ResolveTCPAddr("tcp", client)
	h := proxyproto.HeaderProxyFromAddrs(version, src, c.RemoteAddr())
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
}

// refusesSpoofedHeader sends a PROXY header from src, a source w's server
// does not trust, and expects the connection refused as a spoofing attempt.
func refusesSpoofedHeader(t *testing.T, w *world, src string) {
	t.Helper()
	c := w.dialFrom(src)
	writeProxyHeader(t, c, 2, "198.51.100.7:4242")
	c.Write([]byte("SSH-2.0-spoofer\r\n"))
	if !refusedAtOnce(c) {
		t.Fatalf("header from %s, not trusted, was believed", src)
	}
	w.connLog(outcome(OutcomeUntrustedProxyHeader))
}

func TestProxyProtocol(t *testing.T) {
	trusted := &ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}
	for _, version := range []byte{1, 2} {
		t.Run("v"+string(rune('0'+version))+" from a trusted balancer", func(t *testing.T) {
			w, _ := limitedWorld(t, Options{ProxyProtocol: trusted}, allRoutes()...)
			c := w.dialFrom("127.0.0.1")
			writeProxyHeader(t, c, version, "198.51.100.7:4242")
			payload := "SSH-2.0-behind-a-balancer\r\nand more bytes"
			c.Write([]byte(payload))
			c.CloseWrite()
			io.Copy(io.Discard, c)
			s := w.next()
			if s.info.Client.String() != "198.51.100.7:4242" {
				t.Errorf("client %s; want the PROXY header's 198.51.100.7:4242", s.info.Client)
			}
			if string(s.stream) != payload {
				t.Errorf("handler got %q; want %q (header removed, nothing else)", s.stream, payload)
			}
		})
	}
	t.Run("header from an untrusted source is refused", func(t *testing.T) {
		w, _ := limitedWorld(t, Options{ProxyProtocol: trusted}, allRoutes()...)
		refusesSpoofedHeader(t, w, "127.0.0.2")
	})
	t.Run("trusted source without a header", func(t *testing.T) {
		w, obs := limitedWorld(t, Options{ProxyProtocol: trusted}, allRoutes()...)
		c := w.dialFrom("127.0.0.1")
		c.Write([]byte("SSH-2.0-no-header\r\n"))
		if !refusedAtOnce(c) {
			t.Fatal("required header missing, connection admitted")
		}
		if r := obs.refusals(); len(r) != 1 || r[0] != RefusedProxyHeader {
			t.Fatalf("refusals %v", r)
		}
		optional := &ProxyProtocol{Trusted: trusted.Trusted, Optional: true}
		w2, _ := limitedWorld(t, Options{ProxyProtocol: optional}, allRoutes()...)
		c2 := w2.dialFrom("127.0.0.1")
		c2.Write([]byte("SSH-2.0-no-header\r\n"))
		if line, err := readLine(c2); line != "hello:ssh" {
			t.Fatalf("optional header: got %q, %v", line, err)
		}
	})
	// A header that is there but broken is refused, header optional or
	// not. A v1 header split across writes is one: the spec has senders
	// send it at once and lets receivers drop partial ones, which
	// go-proxyproto does.
	for _, optional := range []bool{false, true} {
		for name, parts := range map[string][]string{
			"malformed":    {"PROXY TCP4 not-an-address 10.0.0.1 1 2\r\nSSH-2.0-x\r\n"},
			"split in two": {"PROXY TCP4 198.51.100.7 ", "127.0.0.1 4242 22\r\nSSH-2.0-x\r\n"},
		} {
			t.Run(fmt.Sprintf("%s header, optional %v", name, optional), func(t *testing.T) {
				pp := &ProxyProtocol{Trusted: trusted.Trusted, Optional: optional}
				w, obs := limitedWorld(t, Options{ProxyProtocol: pp}, allRoutes()...)
				c := w.dialFrom("127.0.0.1")
				for i, part := range parts {
					if i > 0 {
						time.Sleep(50 * time.Millisecond) // a separate segment
					}
					c.Write([]byte(part))
				}
				if !refusedAtOnce(c) {
					t.Fatal("broken header admitted")
				}
				if r := obs.refusals(); len(r) != 1 || r[0] != RefusedProxyHeader {
					t.Fatalf("refusals %v; want [%s]", r, RefusedProxyHeader)
				}
			})
		}
	}
}

func TestRouteAllowDeny(t *testing.T) {
	routes := allRoutes()
	routes[1].Allow = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/30")} // ssh: office only
	routes[1].Deny = []netip.Prefix{netip.MustParsePrefix("127.0.0.3/32")}
	routes = append(routes, Route{Name: "catch-all", Match: Match{}})
	w, _ := limitedWorld(t, Options{}, routes...)
	for _, tt := range []struct {
		src  string
		want bool
	}{{"127.0.0.1", true}, {"127.0.0.3", false}, {"127.0.0.9", false}} {
		c := w.dialFrom(tt.src)
		c.Write([]byte("SSH-2.0-x\r\n"))
		line, _ := readLine(c)
		if got := line == "hello:ssh"; got != tt.want {
			t.Errorf("from %s: got %q; want admitted=%v (and never the catch-all)", tt.src, line, tt.want)
		}
		if !tt.want {
			w.connLog(func(f map[string]any) bool {
				return f["client"] == c.LocalAddr().String() && f["outcome"] == OutcomeDenied
			})
		}
	}
}

// A PerRequest route leaves its allow and deny to each request (its
// handler routes them again): the connection is handed over, not closed,
// even though the route refuses the client.
func TestRouteAllowDenyPerRequest(t *testing.T) {
	routes := allRoutes()
	routes[2].Deny = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")} // api
	routes[2].PerRequest = true
	w, _ := limitedWorld(t, Options{}, routes...)
	c := w.dialFrom("127.0.0.1")
	c.Write([]byte("GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n"))
	if line, err := readLine(c); line != "hello:api" {
		t.Errorf("got %q, %v; want the api route's handler", line, err)
	}
}

// countingListener counts Accept calls.
type countingListener struct {
	net.Listener
	calls atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	l.calls.Add(1)
	return l.Listener.Accept()
}

// When descriptors run out, the accept loop backs off instead of spinning,
// and recovers once descriptors are free again.
func TestAcceptBacksOffOnEMFILE(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skip(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	client, err := net.Dial("tcp", ln.Addr().String()) // waits in the backlog
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	counting := &countingListener{Listener: ln}
	routes := allRoutes()
	for i := range routes {
		routes[i].Handler = HandlerFunc(func(ctx context.Context, c *Conn) Result {
			c.NetConn.Write([]byte("hello:" + routes[i].Name + "\n"))
			c.NetConn.Close()
			return Result{}
		})
	}
	srv := NewServer(NewTable(routes), Options{SniffTimeout: testSniffTimeout})
	defer srv.Shutdown(context.Background())

	// Exhaust descriptors, then serve: every accept fails with EMFILE.
	lowered := lim
	lowered.Cur = uint64(openFDs(t) + 8)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lowered); err != nil {
		t.Skip(err)
	}
	var fillers []*os.File
	for {
		f, err := os.Open("/dev/null")
		if err != nil {
			break
		}
		fillers = append(fillers, f)
	}
	go srv.Serve(counting)
	time.Sleep(500 * time.Millisecond)
	calls := counting.calls.Load()
	for _, f := range fillers {
		f.Close()
	}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	// Backing off from 5ms doubling: a dozen attempts in 500ms, where a
	// busy loop makes tens of thousands.
	if calls > 50 {
		t.Fatalf("%d accept attempts in 500ms of EMFILE: busy loop", calls)
	}
	client.SetDeadline(time.Now().Add(10 * time.Second))
	client.Write([]byte("SSH-2.0-x\r\n"))
	if line, err := readLine(client); line != "hello:ssh" {
		t.Fatalf("after recovery: %q, %v; want the waiting client served", line, err)
	}
	if counting.calls.Load() <= calls {
		t.Fatal("no accept after descriptors were freed")
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip(err)
	}
	return len(ents)
}

// A handler that panics costs only its own connection: the server logs it
// and goes on serving.
func TestHandlerPanicIsContained(t *testing.T) {
	routes := allRoutes()
	w := newWorld(t, routes...)
	panicking := append([]Route{{Name: "boom", Match: Match{Protocols: []Protocol{SSH}}, Handler: HandlerFunc(func(context.Context, *Conn) Result {
		panic("handler bug")
	})}}, w.srv.Table().Routes()...)
	w.srv.SetTable(NewTable(panicking))
	c := w.dial()
	c.Write([]byte("SSH-2.0-x\r\n"))
	if !refusedAtOnce(c) {
		t.Fatal("connection of the panicking handler not closed")
	}
	w.srv.SetTable(NewTable(routes))
	if reply := w.send([]byte("SSH-2.0-x\r\n")); reply != replyOf("ssh") {
		t.Fatalf("server after a panic: got %q", reply)
	}
	for deadline := time.Now().Add(5 * time.Second); len(w.logs.FilterMessage("panic serving connection").All()) != 1; {
		if time.Now().After(deadline) {
			t.Fatal("panic not logged")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// asyncEcho finishes its connections from a goroutine of its own, after
// ServeConnAsync has returned.
type asyncEcho struct{ release chan struct{} }

func (a asyncEcho) ServeConn(ctx context.Context, c *Conn) Result {
	panic("the server must use ServeConnAsync")
}

func (a asyncEcho) ServeConnAsync(ctx context.Context, c *Conn, done func(Result)) {
	go func() {
		<-a.release
		c.NetConn.Write([]byte("async says hi\n"))
		c.NetConn.Close()
		done(Result{Outcome: OutcomeOK, Up: int64(len(c.Prefix))})
	}()
}

// An AsyncHandler's connection ends when it says so: its log line and
// observer call come then, and Shutdown waits for it though no goroutine of
// the server does.
func TestAsyncHandler(t *testing.T) {
	release := make(chan struct{})
	obs := &recordingObserver{}
	w := newWorldWith(t, Options{Observer: obs})
	// After the world: it would install its own recording handler.
	w.srv.SetTable(NewTable([]Route{{Name: "async", Match: Match{Protocols: []Protocol{SSH}}, Handler: asyncEcho{release}}}))
	c := w.dial()
	c.Write([]byte("SSH-2.0-x\r\n"))
	time.Sleep(50 * time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- w.srv.Shutdown(context.Background()) }()
	select {
	case <-shut:
		t.Fatal("Shutdown returned while an async connection was live")
	case <-time.After(200 * time.Millisecond):
	}
	if n := len(w.logs.FilterMessage("connection").All()); n != 0 {
		t.Fatalf("%d log lines before the connection ended", n)
	}
	close(release)
	if line, err := readLine(c); line != "async says hi" {
		t.Fatalf("got %q, %v", line, err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	f := w.connLog(outcome(OutcomeOK))
	if f["route"] != "async" {
		t.Fatalf("log %v", f)
	}
	if obs.finishedCount() != 1 {
		t.Fatalf("observer saw %d ends", obs.finishedCount())
	}
}

func (o *recordingObserver) finishedCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.finished)
}

// A PROXY v2 header for a unix-socket client names no IP: the balancer's own
// address stands in, so limits and deny lists still apply.
func TestProxyProtocolUnixClient(t *testing.T) {
	routes := allRoutes()
	routes[1].Deny = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}
	w, _ := limitedWorld(t, Options{ProxyProtocol: &ProxyProtocol{Trusted: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}}}, routes...)
	c := w.dialFrom("127.0.0.1")
	h := &proxyproto.Header{Version: 2, Command: proxyproto.PROXY, TransportProtocol: proxyproto.UnixStream,
		SourceAddr: &net.UnixAddr{Name: "/run/lb.sock", Net: "unix"}, DestinationAddr: &net.UnixAddr{Name: "/run/pm.sock", Net: "unix"}}
	if _, err := h.WriteTo(c); err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("SSH-2.0-from-a-unix-socket\r\n"))
	if !refusedAtOnce(c) {
		t.Fatal("a client with no IP passed a route that denies every address")
	}
	f := w.connLog(func(f map[string]any) bool { return f["outcome"] == OutcomeDenied })
	if f["client"] != c.LocalAddr().String() {
		t.Errorf("client %v; want the balancer's address %s", f["client"], c.LocalAddr())
	}
}
