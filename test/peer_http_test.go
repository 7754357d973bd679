package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// httpHello is the body of GET /hello on the HTTP backend.
const httpHello = "hello from the http backend"

// startHTTPBackend starts an HTTP/1.1 backend:
//
//	GET  /hello  -> 200 httpHello, header X-Backend: http
//	POST /echo   -> 200 the request body, header X-Body-Sha256: its sha256
func startHTTPBackend(t testing.TB) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "http")
		w.Header().Set("X-Host", r.Host)
		io.WriteString(w, httpHello)
	})
	mux.HandleFunc("POST /echo", echoHandler("http"))
	s := httptest.NewServer(mux)
	t.Cleanup(s.Close)
	trackHTTPPeer(t, s)
	return s
}

// echoHandler answers with the request body, X-Backend: id and
// X-Body-Sha256: the body's sha256 (what the backend saw).
func echoHandler(id string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("X-Backend", id)
		w.Header().Set("X-Body-Sha256", digestBytes(body).Sum)
		w.Write(body)
	}
}

// httpClient is an HTTP client that dials addr whatever the URL says and records the
// local address of every connection it opens.
type httpClient struct {
	*http.Client
	tr *http.Transport

	mu     sync.Mutex
	locals []string
}

func newHTTPClient(t testing.TB, addr string) *httpClient {
	hc := &httpClient{}
	d := &net.Dialer{Timeout: 10 * time.Second}
	hc.tr = &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err != nil {
				return nil, err
			}
			hc.mu.Lock()
			hc.locals = append(hc.locals, c.LocalAddr().String())
			hc.mu.Unlock()
			return c, nil
		},
		ForceAttemptHTTP2: false,
	}
	hc.Client = &http.Client{Transport: hc.tr, Timeout: 30 * time.Second}
	t.Cleanup(hc.tr.CloseIdleConnections)
	return hc
}

// Locals returns the local addresses of the connections opened so far.
func (hc *httpClient) Locals() []string {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return append([]string(nil), hc.locals...)
}

// getHello does GET http://host/hello and checks the answer.
func getHello(hc *httpClient, host string) error {
	resp, err := hc.Get("http://" + host + "/hello")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != http.StatusOK || string(body) != httpHello || resp.Header.Get("X-Backend") != "http" {
		return fmt.Errorf("got %s %q (X-Backend %q); want 200 %q (X-Backend \"http\")",
			resp.Status, body, resp.Header.Get("X-Backend"), httpHello)
	}
	return nil
}

// postEcho POSTs n bytes of payload(seed) to /echo and checks the echoed body.
func postEcho(hc *httpClient, host string, seed uint64, n int64) error {
	want, err := digestOf(payload(seed, n))
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodPost, "http://"+host+"/echo", payload(seed, n))
	if err != nil {
		return err
	}
	req.ContentLength = n
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, err := digestOf(resp.Body)
	if err != nil {
		return fmt.Errorf("reading body: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s; want 200", resp.Status)
	}
	if got != want || resp.Header.Get("X-Body-Sha256") != want.Sum {
		return fmt.Errorf("echo body %+v (backend saw sha256 %s); want %+v", got, resp.Header.Get("X-Body-Sha256"), want)
	}
	return nil
}
