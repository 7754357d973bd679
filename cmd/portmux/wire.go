package main

import (
	"context"
	"errors"

	"go.uber.org/zap"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
	"github.com/portmux/portmux/proxy"
)

// app holds what routes share across the process's life: the splice pipe
// pool and the in-process HTTP servers of builtin targets.
type app struct {
	cfg    *config.Config
	logger *zap.Logger
	pipes  *proxy.Pipes
	demo   *proxy.HTTPServer
}

// maxIdlePipes bounds the pipes kept open for reuse (two descriptors each).
const maxIdlePipes = 64

func newApp(cfg *config.Config, logger *zap.Logger) *app {
	return &app{cfg: cfg, logger: logger, pipes: proxy.NewPipes(maxIdlePipes)}
}

// table compiles cfg's routes into a routing table. cfg has been validated,
// so its values parse.
func (rt *app) table(cfg *config.Config) *mux.Table {
	routes := make([]mux.Route, 0, len(cfg.Routes))
	for _, r := range cfg.Routes {
		routes = append(routes, mux.Route{
			Name:    r.Name,
			Match:   compileMatch(r.Match),
			Handler: rt.handler(cfg, r),
		})
	}
	return mux.NewTable(routes)
}

// compileMatch turns a config match into a mux match.
func compileMatch(m config.Match) mux.Match {
	out := mux.Match{SNI: m.SNI, ALPN: m.ALPN, Host: m.Host}
	switch m.Protocol {
	case config.ProtocolTLS:
		out.Protocols = []mux.Protocol{mux.TLS}
	case config.ProtocolHTTP:
		out.Protocols = []mux.Protocol{mux.HTTP}
	case config.ProtocolSSH:
		out.Protocols = []mux.Protocol{mux.SSH}
	case config.ProtocolFTP, config.ProtocolSilent:
		out.Protocols = []mux.Protocol{mux.Silent}
	case config.ProtocolUnknown:
		out.Protocols = []mux.Protocol{mux.Unknown}
	case config.ProtocolAny:
		// nil: every protocol
	}
	for _, s := range m.Source {
		if p, err := config.ParseSource(s); err == nil {
			out.Source = append(out.Source, p)
		}
	}
	return out
}

// handler builds the handler of route r.
func (rt *app) handler(cfg *config.Config, r config.Route) mux.Handler {
	switch r.To {
	case config.BuiltinDemo:
		return rt.demoHandler()
	case config.BuiltinEcho:
		return mux.HandlerFunc(serveEcho)
	}
	t := &tcpTarget{proxy.TCP{
		Addr:        r.To,
		DialTimeout: cfg.DialTimeout,
		IdleTimeout: cfg.IdleTimeout,
		Pipes:       rt.pipes,
	}}
	if r.DialTimeout != nil {
		t.DialTimeout = *r.DialTimeout
	}
	if r.IdleTimeout != nil {
		t.IdleTimeout = *r.IdleTimeout
	}
	return t
}

// tcpTarget relays routed connections to a TCP backend.
type tcpTarget struct{ proxy.TCP }

func (t *tcpTarget) ServeConn(ctx context.Context, c *mux.Conn) mux.Result {
	st, err := t.Serve(ctx, c.NetConn, c.Prefix)
	return mux.Result{Backend: t.Addr, Up: st.Up, Down: st.Down, Err: err, Outcome: outcomeOf(ctx, err)}
}

// outcomeOf labels a relay error for the connection's log line.
func outcomeOf(ctx context.Context, err error) string {
	var dialErr *proxy.DialError
	switch {
	case err == nil:
		return mux.OutcomeOK
	case errors.As(err, &dialErr):
		return mux.OutcomeDialFailed
	case errors.Is(err, proxy.ErrIdleTimeout):
		return mux.OutcomeIdleTimeout
	case ctx.Err() != nil:
		return mux.OutcomeShutdown
	}
	return mux.OutcomeError
}

// shutdown starts the graceful stop of in-process servers, in parallel with
// the mux's drain.
func (rt *app) shutdown(ctx context.Context) {
	if rt.demo != nil {
		go rt.demo.Shutdown(ctx)
	}
}

// close releases what the app holds once every connection is done.
func (rt *app) close() {
	rt.pipes.Close()
}
