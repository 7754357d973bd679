package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
)

// Requests net/http refuses before any handler runs end Serve with a
// RefusedError naming the status the client got; answers a handler writes
// itself, errors included, do not. Each case is a real client connection,
// through the direct path (which hands these requests over) and without.
func TestHTTPServerRefusedRequests(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/handler-400" {
			http.Error(w, "the handler's own 400", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "ok")
	})
	const good = "GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"
	for _, tc := range []struct {
		name     string
		requests string
		status   int // of the last response
		refused  bool
	}{
		{"malformed header line", "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, true},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", 400, true},
		{"headers over the limit", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 8<<10) + "\r\n\r\n", 431, true},
		{"unknown transfer coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501, true},
		{"unknown expectation", "GET / HTTP/1.1\r\nHost: x\r\nExpect: magic\r\n\r\n", 417, true},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, true},
		{"after a good request", good + "GET / HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, true},
		{"the handler's own 400", "GET /handler-400 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 400, false},
		{"good requests", good + "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 200, false},
	} {
		for _, direct := range []bool{false, true} {
			name := tc.name
			if direct {
				name += ", direct path"
			}
			t.Run(name, func(t *testing.T) {
				srv := &http.Server{MaxHeaderBytes: 4 << 10}
				var router DirectRouter
				if direct {
					router = func(*DirectRequest) *HTTPProxy { return nil } // every request to the server
				}
				s := NewHTTPServer(handler, srv, router)
				t.Cleanup(func() { s.Shutdown(context.Background()) })
				addr, served := handOver(t, s, context.Background())
				c, br := dialRaw(t, addr)
				send(t, c, tc.requests)
				if last := lastStatus(t, br); last != tc.status {
					t.Errorf("last response %d; want %d", last, tc.status)
				}
				err := waitErr(t, served)
				var refused *RefusedError
				if got := errors.As(err, &refused); got != tc.refused {
					t.Fatalf("Serve: %v; want a RefusedError: %v", err, tc.refused)
				}
				if tc.refused && refused.Status != tc.status {
					t.Errorf("refused with %d (%v); want %d", refused.Status, err, tc.status)
				}
				if !tc.refused && err != nil {
					t.Errorf("Serve: %v; want nil", err)
				}
			})
		}
	}
}

// The direct path refuses a request framed both by Transfer-Encoding and
// Content-Length (RFC 9112 §6.1) with 400 and closes the connection: the
// request after it is not served, whichever framing would have found it.
// (net/http would go by Transfer-Encoding and serve both.)
func TestDirectPathRefusesTwoFramings(t *testing.T) {
	var served atomic.Int64
	s := NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		io.Copy(io.Discard, r.Body)
	}), nil, func(*DirectRequest) *HTTPProxy { return nil })
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	addr, done := handOver(t, s, context.Background())
	c, br := dialRaw(t, addr)
	send(t, c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"2\r\nhi\r\n0\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	if got := lastStatus(t, br); got != http.StatusBadRequest {
		t.Errorf("last response %d; want only the 400", got)
	}
	var refused *RefusedError
	if err := waitErr(t, done); !errors.As(err, &refused) || refused.Status != http.StatusBadRequest {
		t.Errorf("Serve: %v; want a RefusedError with 400", err)
	}
	if n := served.Load(); n != 0 {
		t.Errorf("the handler served %d requests; want none", n)
	}
}

// lastStatus reads responses until the connection ends and returns the
// last one's status.
func lastStatus(t *testing.T, br *bufio.Reader) int {
	t.Helper()
	last := 0
	for {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if last == 0 {
				t.Fatalf("no response: %v", err)
			}
			return last
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		last = resp.StatusCode
	}
}

// A client that stops halfway through a request head ends Serve with
// ErrHeaderTimeout at the header timeout, on the direct path and in the
// http.Server (a keep-alive connection the direct path handed over after a
// request it does not take), as a slowloris client sends its head: after
// the response to the request before. One that goes silent between
// requests ends at the idle timeout with no error: that is how keep-alive
// ends.
func TestHTTPServerHeaderTimeout(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(upstream.Close)
	u, _ := url.Parse(upstream.URL)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	p := NewHTTPProxy("web", NewPool([]*url.URL{u}, RoundRobin), tr, zap.NewNop())
	t.Cleanup(p.CloseIdleConnections)
	const (
		handedOver = "POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
		good       = "GET / HTTP/1.1\r\nHost: x\r\n\r\n"
		stalled    = "GET /stalled HTTP/1.1\r\nHost: x\r\nX-Slow: "
	)
	for _, tc := range []struct {
		name        string
		first, then string // then is sent after the first's responses
		responses   int
		want        error
	}{
		{"stalled first request", stalled, "", 0, ErrHeaderTimeout},
		{"stalled after a direct request", good, stalled, 1, ErrHeaderTimeout},
		{"stalled in the server", handedOver, stalled, 1, ErrHeaderTimeout},
		{"silent after a direct request", good, "", 1, nil},
		{"silent in the server", handedOver, "", 1, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := NewHTTPServer(p, &http.Server{ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond},
				func(*DirectRequest) *HTTPProxy { return p })
			t.Cleanup(func() { s.Shutdown(context.Background()) })
			addr, served := handOver(t, s, context.Background())
			c, br := dialRaw(t, addr)
			send(t, c, tc.first)
			for i := 0; i < tc.responses; i++ {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("response %d: %v", i+1, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			send(t, c, tc.then)
			if err := waitErr(t, served); !errors.Is(err, tc.want) && err != tc.want {
				t.Fatalf("Serve: %v; want %v", err, tc.want)
			}
		})
	}
}
