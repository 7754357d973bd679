package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"runtime/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/portmux/portmux/config"
)

// admin is the admin listener: metrics, health, readiness, the routes in
// use and a reload trigger. It binds to loopback by default: it is for the
// operator and the orchestrator, never for the internet.
type admin struct {
	srv    *http.Server
	ready  atomic.Bool // serving and not draining
	logger *zap.Logger
}

// routeView is one route as /routes shows it.
type routeView struct {
	Name      string       `json:"name"`
	Match     config.Match `json:"match"`
	TLS       string       `json:"tls,omitempty"`
	To        string       `json:"to,omitempty"`
	Upstreams []string     `json:"upstreams,omitempty"`
	Routes    []routeView  `json:"routes,omitempty"`
}

func viewRoutes(rs []config.Route) []routeView {
	out := make([]routeView, 0, len(rs))
	for _, r := range rs {
		out = append(out, routeView{Name: r.Name, Match: r.Match, TLS: r.TLS, To: r.To, Upstreams: r.Upstreams, Routes: viewRoutes(r.Routes)})
	}
	return out
}

// newAdmin builds the admin server; current returns the config in use and
// reload reloads it.
func newAdmin(m *metrics, current func() *config.Config, reload func() error, logger *zap.Logger) *admin {
	a := &admin{logger: logger}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(logger)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !a.ready.Load() {
			http.Error(w, "not ready: starting or draining", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(viewRoutes(current().Routes))
	})
	mux.HandleFunc("POST /reload", func(w http.ResponseWriter, r *http.Request) {
		if err := reload(); err != nil {
			http.Error(w, err.Error(), http.StatusUnprocessableEntity)
			return
		}
		w.Write([]byte("reloaded\n"))
	})
	// Go's profiles, as net/http/pprof serves them. The goroutine profile is
	// also how the end-to-end tests count portmux's goroutines: the admin
	// server's own are labelled (serve) so that they can be told apart.
	mux.HandleFunc("GET /debug/pprof/", httppprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", httppprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", httppprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", httppprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", httppprof.Trace)
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: zap.NewStdLog(logger)}
	return a
}

// adminLabel is the profiler label on every goroutine of the admin server:
// its accept loop, each of its connections and what a request starts (the
// Prometheus registry's gather workers), as goroutines inherit the labels of
// the one that starts them. A goroutine profile without them is portmux's
// traffic-serving part alone.
var adminLabel = pprof.Labels("portmux", "admin")

// serve runs the admin server on ln until shutdown.
func (a *admin) serve(ln net.Listener) {
	pprof.Do(context.Background(), adminLabel, func(context.Context) {
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.logger.Error("admin listener failed", zap.Error(err))
		}
	})
}

func (a *admin) shutdown(ctx context.Context) {
	a.srv.Shutdown(ctx)
}
