package proxy

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// proxyWorld is an HTTPProxy in front of real upstream servers, served at
// url by a real HTTP server on loopback (front), or by the direct path
// (front nil; net/http serves what it hands over).
type proxyWorld struct {
	proxy *HTTPProxy
	front *httptest.Server
	url   string
	logs  *observer.ObservedLogs
}

func newProxyWorld(t *testing.T, balance Balance, upstreams ...*httptest.Server) *proxyWorld {
	t.Helper()
	return newProxyWorldOn(t, false, balance, upstreams...)
}

// newProxyWorldOn is newProxyWorld served by the direct path when direct.
func newProxyWorldOn(t *testing.T, direct bool, balance Balance, upstreams ...*httptest.Server) *proxyWorld {
	t.Helper()
	var urls []string
	for _, u := range upstreams {
		urls = append(urls, u.URL)
	}
	return newProxyWorldAt(t, direct, balance, urls...)
}

// newProxyWorldAt is newProxyWorldOn for upstreams given by URL.
func newProxyWorldAt(t *testing.T, direct bool, balance Balance, upstreams ...string) *proxyWorld {
	t.Helper()
	var urls []*url.URL
	for _, u := range upstreams {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, pu)
	}
	core, logs := observer.New(zapcore.DebugLevel)
	tr := &http.Transport{ResponseHeaderTimeout: 2 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	p := NewHTTPProxy("web", NewPool(urls, balance), tr, zap.New(core))
	p.ResponseHeaderTimeout = tr.ResponseHeaderTimeout
	t.Cleanup(p.CloseIdleConnections)
	if direct {
		addr, _ := newDirectFront(t, p, p)
		return &proxyWorld{proxy: p, url: "http://" + addr, logs: logs}
	}
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	return &proxyWorld{proxy: p, front: front, url: front.URL, logs: logs}
}

func get(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// headersBackend answers with the request headers it received.
func headersBackend(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s\nxff=%s\nproto=%s\nxfhost=%s\nfoo=%s\nconn=%s\nrealip=%s\nxfport=%s\nxfssl=%s\n", r.Host,
			r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"),
			r.Header.Get("Foo"), r.Header.Get("Connection"), strings.Join(r.Header.Values("X-Real-Ip"), ","),
			r.Header.Get("X-Forwarded-Port"), r.Header.Get("X-Forwarded-Ssl"))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestHTTPProxyHeaders(t *testing.T) { bothFronts(t, testHTTPProxyHeaders) }

func testHTTPProxyHeaders(t *testing.T, direct bool) {
	w := newProxyWorldOn(t, direct, RoundRobin, headersBackend(t))
	req, _ := http.NewRequest("GET", w.url+"/x", nil)
	req.Host = "app.example.com"
	req.Header.Set("X-Forwarded-For", "6.6.6.6") // spoofed by an untrusted client
	req.Header.Set("X-Forwarded-Proto", "https")
	req.Header.Set("Connection", "Foo")
	req.Header.Set("Foo", "hop-by-hop")
	req.Header.Set("X-Real-IP", "6.6.6.6")
	req.Header.Set("X-Forwarded-Port", "8443")
	req.Header.Set("x-forwarded-ssl", "on")
	_, body := get(t, http.DefaultClient, req)
	for _, want := range []string{"host=app.example.com\n", "xff=127.0.0.1\n", "proto=http\n", "xfhost=app.example.com\n", "foo=\n", "conn=\n",
		"realip=127.0.0.1\n", "xfport=\n", "xfssl=\n"} {
		if !strings.Contains(body, want) {
			t.Errorf("upstream saw:\n%s\nwant line %q", body, want)
		}
	}

	t.Run("trusted proxy keeps the chain", func(t *testing.T) {
		w.proxy.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
		defer func() { w.proxy.TrustedProxies = nil }()
		_, body := get(t, http.DefaultClient, req)
		for _, want := range []string{"xff=6.6.6.6, 127.0.0.1\n", "proto=https\n", "realip=6.6.6.6\n", "xfport=8443\n", "xfssl=on\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("upstream saw:\n%s\nwant line %q", body, want)
			}
		}
	})
	t.Run("host not preserved", func(t *testing.T) {
		w.proxy.PreserveHost = false
		defer func() { w.proxy.PreserveHost = true }()
		_, body := get(t, http.DefaultClient, req)
		if strings.HasPrefix(body, "host=app.example.com\n") || !strings.Contains(body, "xfhost=app.example.com\n") {
			t.Errorf("upstream saw:\n%s\nwant its own host and X-Forwarded-Host kept", body)
		}
	})
	waitLogs(t, w.logs, 3)
	e := w.logs.FilterMessage("request").All()
	if len(e) == 0 || e[0].ContextMap()["status"] != int64(200) || e[0].ContextMap()["upstream"] == nil {
		t.Errorf("access log: %v", e)
	}
}

func TestHTTPProxyLargeBodies(t *testing.T) { bothFronts(t, testHTTPProxyLargeBodies) }

func testHTTPProxyLargeBodies(t *testing.T, direct bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == "POST" {
			h := sha256.New()
			n, _ := io.Copy(h, r.Body)
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
			return
		}
		rng := rand.NewChaCha8([32]byte{1})
		io.CopyN(w, rng, 32<<20)
	}))
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, direct, RoundRobin, up)

	resp, err := http.Get(w.url + "/big")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	want := sha256.New()
	io.CopyN(want, rand.NewChaCha8([32]byte{1}), 32<<20)
	if err != nil || n != 32<<20 || hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(want.Sum(nil)) {
		t.Fatalf("download: %d bytes, %v, checksum mismatch=%v", n, err, hex.EncodeToString(h.Sum(nil)) != hex.EncodeToString(want.Sum(nil)))
	}

	// Chunked upload: an io.Pipe body has no length.
	pr, pw := io.Pipe()
	sent := sha256.New()
	go func() {
		rng := rand.NewChaCha8([32]byte{2})
		_, err := io.CopyN(io.MultiWriter(pw, sent), rng, 20<<20)
		pw.CloseWithError(err)
	}()
	req, _ := http.NewRequest("POST", w.url+"/up", pr)
	_, body := get(t, http.DefaultClient, req)
	if wantBody := fmt.Sprintf("%d %x", 20<<20, sent.Sum(nil)); body != wantBody {
		t.Fatalf("upload: upstream got %q; want %q", body, wantBody)
	}
}

// The first server-sent event reaches the client while the stream is still
// open.
func TestHTTPProxySSEFlush(t *testing.T) { bothFronts(t, testHTTPProxySSEFlush) }

func testHTTPProxySSEFlush(t *testing.T, direct bool) {
	release := make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "data: last\n\n")
	}))
	t.Cleanup(up.Close)
	defer close(release)
	w := newProxyWorldOn(t, direct, RoundRobin, up)
	resp, err := http.Get(w.url + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("got %q, %v before the stream ended", line, err)
	}
}

func TestHTTPProxyWebSocket(t *testing.T) { bothFronts(t, testHTTPProxyWebSocket) }

func testHTTPProxyWebSocket(t *testing.T, direct bool) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			c.WriteMessage(mt, append([]byte("echo:"), msg...))
		}
	}))
	t.Cleanup(up.Close)
	w := newProxyWorldOn(t, direct, RoundRobin, up)
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(w.url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 3 {
		msg := fmt.Sprintf("hello %d", i)
		c.WriteMessage(websocket.TextMessage, []byte(msg))
		_, got, err := c.ReadMessage()
		if err != nil || string(got) != "echo:"+msg {
			t.Fatalf("got %q, %v", got, err)
		}
	}
}

// A client's h2c upgrade is not passed on (h2c smuggling: an upstream that
// switched would take every later request on the connection past the
// routes). The request is proxied as a plain one; an upstream that answers
// 101 all the same is a bad gateway, and nothing is switched.
func TestHTTPProxyDropsH2CUpgrade(t *testing.T) {
	for _, switches := range []bool{false, true} {
		t.Run(fmt.Sprintf("upstream switches unasked %v", switches), func(t *testing.T) {
			seen := make(chan http.Header, 1)
			up := rawUpstream(t, answering(func(r *http.Request) string {
				seen <- r.Header
				if switches || r.Header.Get("Upgrade") != "" {
					return "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
				}
				return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nplain"
			}))
			w := newDirectWorld(t, func(p *HTTPProxy) http.Handler { return p }, up)
			c, br := dialRaw(t, w.addr)
			send(t, c, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n")
			resp, body := readResp(t, br, "GET")
			h := <-seen
			if got := h.Values("Upgrade"); len(got) > 0 || h.Get("Http2-Settings") != "" || h.Get("Connection") != "" {
				t.Errorf("the upstream got Upgrade %q, HTTP2-Settings %q, Connection %q; want none",
					got, h.Get("Http2-Settings"), h.Get("Connection"))
			}
			switch {
			case switches && resp.StatusCode != http.StatusBadGateway:
				t.Errorf("client got %s %q; want 502", resp.Status, body)
			case !switches && (resp.StatusCode != 200 || body != "plain"):
				t.Errorf("client got %s %q; want 200 \"plain\"", resp.Status, body)
			}
		})
	}
}

// named answers with its own name and counts requests.
func named(t *testing.T, name string, hits *atomic.Int64) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, name)
	}))
	t.Cleanup(s.Close)
	return s
}

func TestHTTPProxyBalancing(t *testing.T) { bothFronts(t, testHTTPProxyBalancing) }

func testHTTPProxyBalancing(t *testing.T, direct bool) {
	var a, b, c atomic.Int64
	t.Run("round robin spreads evenly", func(t *testing.T) {
		w := newProxyWorldOn(t, direct, RoundRobin, named(t, "a", &a), named(t, "b", &b), named(t, "c", &c))
		for range 30 {
			get(t, http.DefaultClient, mustReq(w.url))
		}
		if a.Load() != 10 || b.Load() != 10 || c.Load() != 10 {
			t.Fatalf("got %d/%d/%d; want 10 each", a.Load(), b.Load(), c.Load())
		}
	})
	t.Run("ip hash is sticky", func(t *testing.T) {
		w := newProxyWorldOn(t, direct, IPHash, named(t, "a", new(atomic.Int64)), named(t, "b", new(atomic.Int64)))
		_, first := get(t, http.DefaultClient, mustReq(w.url))
		for range 10 {
			if _, got := get(t, http.DefaultClient, mustReq(w.url)); got != first {
				t.Fatalf("same client went to %q then %q", first, got)
			}
		}
	})
	t.Run("least connections avoids the busy upstream", func(t *testing.T) {
		release := make(chan struct{})
		var slowHits atomic.Int64
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			slowHits.Add(1)
			w.(http.Flusher).Flush()
			<-release
		}))
		t.Cleanup(slow.Close)
		var fastHits atomic.Int64
		w := newProxyWorldOn(t, direct, LeastConn, slow, named(t, "fast", &fastHits))
		resp, err := http.Get(w.url) // occupies the slow upstream (first pick)
		if err != nil {
			t.Fatal(err)
		}
		for range 5 {
			get(t, http.DefaultClient, mustReq(w.url))
		}
		close(release)
		resp.Body.Close()
		if slowHits.Load() != 1 || fastHits.Load() != 5 {
			t.Fatalf("slow got %d, fast %d; want 1 and 5", slowHits.Load(), fastHits.Load())
		}
	})
}

func mustReq(u string) *http.Request {
	r, _ := http.NewRequest("GET", u, nil)
	return r
}

// When an upstream dies mid-test, requests keep succeeding on the others:
// a refused connection is retried elsewhere, and the dead one is marked down.
func TestHTTPProxyFailover(t *testing.T) { bothFronts(t, testHTTPProxyFailover) }

func testHTTPProxyFailover(t *testing.T, direct bool) {
	var a, b atomic.Int64
	dying := named(t, "a", &a)
	w := newProxyWorldOn(t, direct, RoundRobin, dying, named(t, "b", &b))
	client := &http.Client{}
	for i := range 40 {
		if i == 10 {
			dying.Close()
		}
		req, _ := http.NewRequest("POST", w.url, strings.NewReader("payload"))
		if resp, body := get(t, client, req); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if a.Load() != 5 || b.Load() != 35 {
		t.Errorf("a served %d, b %d; want 5 and 35", a.Load(), b.Load())
	}
	if w.proxy.Pool.Upstreams[0].Healthy() {
		t.Error("dead upstream still marked healthy")
	}
}

func TestHTTPProxyErrors(t *testing.T) { bothFronts(t, testHTTPProxyErrors) }

func testHTTPProxyErrors(t *testing.T, direct bool) {
	t.Run("502 when no upstream is reachable", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		dead.Close()
		w := newProxyWorldOn(t, direct, RoundRobin, dead)
		resp, body := get(t, http.DefaultClient, mustReq(w.url))
		if resp.StatusCode != 502 || !strings.Contains(body, "502") {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		waitLogs(t, w.logs, 1)
		if e := w.logs.FilterMessage("request").All(); len(e) != 1 || e[0].Level != zapcore.WarnLevel {
			t.Fatalf("want one warn access line, got %v", e)
		}
	})
	t.Run("504 when the upstream does not answer in time", func(t *testing.T) {
		release := make(chan struct{})
		slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
		t.Cleanup(slow.Close)
		defer close(release)
		w := newProxyWorldOn(t, direct, RoundRobin, slow)
		if resp, body := get(t, http.DefaultClient, mustReq(w.url)); resp.StatusCode != 504 {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
	})
	t.Run("413 over the body limit", func(t *testing.T) {
		w := newProxyWorldOn(t, direct, RoundRobin, headersBackend(t))
		w.proxy.MaxBodyBytes = 10
		req, _ := http.NewRequest("POST", w.url, strings.NewReader(strings.Repeat("x", 100)))
		if resp, body := get(t, http.DefaultClient, req); resp.StatusCode != 413 {
			t.Fatalf("got %d %q", resp.StatusCode, body)
		}
		// Chunked: no declared length, the limit acts while the body streams.
		req, _ = http.NewRequest("POST", w.url, struct{ io.Reader }{strings.NewReader(strings.Repeat("x", 100))})
		if resp, body := get(t, http.DefaultClient, req); resp.StatusCode != 413 {
			t.Fatalf("chunked: got %d %q", resp.StatusCode, body)
		}
	})
}

func TestActiveHealthChecks(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(503)
		}
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	pool := NewPool([]*url.URL{u}, RoundRobin)
	changes := make(chan bool, 4)
	ctx, cancel := contextWithCancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pool.RunHealthChecks(ctx, HealthCheck{Path: "/healthz", Interval: 20 * time.Millisecond}, http.DefaultClient,
			func(_ *Upstream, ok bool, _ error) { changes <- ok })
	}()
	defer func() { cancel(); wg.Wait() }()
	healthy.Store(false)
	if ok := <-changes; ok || pool.Upstreams[0].Healthy() {
		t.Fatal("failing upstream not marked down")
	}
	healthy.Store(true)
	if ok := <-changes; !ok || !pool.Upstreams[0].Healthy() {
		t.Fatal("recovered upstream not marked up")
	}
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
