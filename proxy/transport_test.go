package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestRequestRefusedBeforeSending: a request the HTTP/2 transport refuses
// to send (its header list is over the limit the upstream advertised) gets
// a 502 and is logged, but does not count against the upstream's health:
// else any client could mark a healthy upstream down.
func TestRequestRefusedBeforeSending(t *testing.T) {
	var served atomic.Int32
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		if r.URL.Path == "/abort" {
			panic(http.ErrAbortHandler) // resets the stream: the upstream's failure
		}
		io.WriteString(w, "hello over "+r.Proto)
	}))
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	up.Config.MaxHeaderBytes = 4 << 10 // advertised as its header list limit
	up.Start()
	t.Cleanup(up.Close)

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	u, _ := url.Parse(up.URL)
	pool := NewPool([]*url.URL{u}, RoundRobin)
	pool.MaxFails = 2
	core, logs := observer.New(zapcore.InfoLevel)
	p := NewHTTPProxy("grpc", pool, tr, zap.New(core))
	p.UpstreamHTTP2 = true
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)

	requestPath := func(path, header string) (int, string) {
		req, _ := http.NewRequest("GET", front.URL+path, nil)
		req.Header.Set("X-Large", header)
		resp, err := front.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	request := func(header string) (int, string) {
		return requestPath("/", header)
	}
	if status, body := requestPath("/", "small"); status != http.StatusOK || body != "hello over HTTP/2.0" {
		t.Fatalf("first request: %d %q", status, body)
	}
	for i := range 2 * pool.MaxFails {
		status, body := request(strings.Repeat("x", 64<<10))
		if status != http.StatusBadGateway || !strings.Contains(body, "cannot take this request") {
			t.Fatalf("oversized request %d: %d %q; want 502 saying the upstream cannot take it", i, status, body)
		}
	}
	if !pool.Upstreams[0].Healthy() {
		t.Fatal("upstream marked down by requests it never received")
	}
	if status, body := request("small"); status != http.StatusOK {
		t.Fatalf("after refused requests: %d %q; want 200", status, body)
	}
	if n := served.Load(); n != 2 {
		t.Errorf("upstream served %d requests; want 2 (the refused ones never reach it)", n)
	}
	waitLogs(t, logs, 2+2*pool.MaxFails)
	refused := logs.FilterMessage("request").FilterField(zap.Int("status", http.StatusBadGateway)).All()
	if len(refused) != 2*pool.MaxFails {
		t.Fatalf("%d 502 access log lines; want %d", len(refused), 2*pool.MaxFails)
	}
	if err := refused[0].ContextMap()["error"]; !strings.Contains(err.(string), "refused before it was sent") {
		t.Errorf("logged error %q; want it to say the request was refused before it was sent", err)
	}

	// The upstream's own failures still count: MaxFails reset streams
	// mark it down.
	for range pool.MaxFails {
		if status, body := requestPath("/abort", "small"); status != http.StatusBadGateway {
			t.Fatalf("reset stream: %d %q; want 502", status, body)
		}
	}
	if pool.Upstreams[0].Healthy() {
		t.Errorf("upstream healthy after %d reset streams; want it marked down", pool.MaxFails)
	}
}
