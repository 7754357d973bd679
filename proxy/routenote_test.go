package proxy

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestRouteNote: a RouteNote in Serve's context learns the route of the
// connection's first proxied request, on the direct path and through
// net/http, and stays empty when no request reached a proxy.
func TestRouteNote(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	t.Cleanup(backend.Close)
	u, _ := url.Parse(backend.URL)
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	proxies := map[string]*HTTPProxy{}
	for _, name := range []string{"a", "b"} {
		p := NewHTTPProxy(name, NewPool([]*url.URL{u}, RoundRobin), tr, zap.NewNop())
		t.Cleanup(p.CloseIdleConnections)
		proxies[name] = p
	}
	byHost := func(host string) *HTTPProxy { return proxies[host[:1]] } // "a.test", "b.test"; nil otherwise
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := byHost(r.Host); p != nil {
			NoteRoute(r, p.Route) // as portmux's router does
			p.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	bothFronts(t, func(t *testing.T, direct bool) {
		var router DirectRouter
		if direct {
			router = func(q *DirectRequest) *HTTPProxy { return byHost(q.Host) }
		}
		s := NewHTTPServer(handler, nil, router)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.Shutdown(ctx)
		})
		for _, tc := range []struct {
			name  string
			hosts []string
			want  string
		}{
			{"first request's route", []string{"b.test", "a.test", "b.test"}, "b"},
			{"after a request no route took", []string{"none.test", "a.test"}, "a"},
			{"no proxied request", []string{"none.test"}, ""},
		} {
			t.Run(tc.name, func(t *testing.T) {
				note := &RouteNote{}
				served := make(chan error, 1)
				addr := listen(t, func(c *net.TCPConn) {
					served <- s.Serve(WithRouteNote(context.Background(), note), c, nil)
				})
				c, br := dialRaw(t, addr)
				for _, host := range tc.hosts {
					io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+host+"\r\n\r\n")
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("Host %s: %v", host, err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				c.Close()
				if err := waitErr(t, served); err != nil {
					t.Fatalf("Serve: %v", err)
				}
				if got := note.Route(); got != tc.want {
					t.Errorf("noted route %q; want %q", got, tc.want)
				}
			})
		}
	})
}
