package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"go.uber.org/zap"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
	"github.com/portmux/portmux/proxy"
	"github.com/portmux/portmux/tlsutil"
)

// generation is everything one config builds: the routing table and the
// handlers, HTTP servers and health checkers behind it. A reload builds a
// new generation and swaps the table; the old generation keeps serving the
// connections that started on it and is retired afterwards.
type generation struct {
	cfg    *config.Config
	hash   string
	table  *mux.Table
	certs  *tlsutil.Manager // nil when no route terminates TLS
	plain  http.Handler     // the plain-HTTP router (also http_listen's handler)
	ctx    context.Context  // ends health checks when retired
	cancel context.CancelFunc

	clientTLS  map[string]*tls.Config // upstream_tls by route name
	servers    []*proxy.HTTPServer
	transports []*http.Transport
	proxies    []*proxy.HTTPProxy
	app        *app
}

// buildGeneration compiles cfg. certs is the certificate manager to use
// (nil if no route terminates TLS), clientTLS the routes' upstream TLS
// configs (from app.upstreamTLS).
func (a *app) buildGeneration(cfg *config.Config, hash string, certs *tlsutil.Manager, clientTLS map[string]*tls.Config) *generation {
	g := &generation{cfg: cfg, hash: hash, certs: certs, clientTLS: clientTLS, app: a}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	var tlsConf *tls.Config
	if certs != nil {
		tlsConf = certs.TLSConfig()
		a.tickets.Share(tlsConf)
		if cfg.TLS.DefaultSNI != "" {
			tlsConf = withDefaultSNI(tlsConf, cfg.TLS.DefaultSNI)
		}
	}
	var routes []mux.Route
	l7 := map[string]http.Handler{}
	var plainServer *proxy.HTTPServer
	plainHandoff := mux.HandlerFunc(func(ctx context.Context, c *mux.Conn) mux.Result {
		return serveL7(ctx, plainServer, c)
	})
	for _, r := range cfg.Routes {
		if r.Terminates() && r.RedirectHTTP {
			// First, so that these names' plain requests are redirected
			// whatever HTTP route follows.
			name := r.Name + ":redirect"
			routes = append(routes, mux.Route{Name: name, Handler: plainHandoff, PerRequest: true,
				Match: mux.Match{Protocols: []mux.Protocol{mux.HTTP}, Host: r.Match.SNI}})
			l7[name] = http.HandlerFunc(proxy.RedirectHTTPS)
		}
	}
	for _, r := range cfg.Routes {
		route := compileRoute(r)
		switch {
		case r.Terminates():
			route.Terminate = tlsutil.OfferingALPN(tlsConf, r.OfferedALPN())
			route.Inner = g.innerTable(r)
		case r.IsHTTP():
			route.Handler, route.PerRequest = plainHandoff, true
			l7[r.Name] = g.httpHandler(r)
		default:
			route.Handler = g.tcpHandler(r)
		}
		routes = append(routes, route)
	}
	if len(l7) > 0 || certs != nil {
		// A last, implicit route takes the HTTP connections no route took,
		// so that the router answers their requests: 404 (or the next
		// request's route on the same connection), and ACME HTTP-01
		// challenges even when no HTTP route is configured.
		routes = append(routes, implicitHTTPRoute(plainHandoff))
	}
	g.table = mux.NewTable(routes)
	hr := &httpRouter{table: g.table, handlers: l7, logger: a.logger, certs: certs}
	var router http.Handler = hr
	if certs != nil {
		router = certs.HTTPChallengeHandler(router)
	}
	g.plain = router
	plainServer = g.httpServer(router, hr.direct)
	return g
}

// innerTable routes the decrypted stream of terminating route r: its
// nested routes, then its own target (HTTP only for an http:// target; any
// protocol for a TCP one).
func (g *generation) innerTable(r config.Route) *mux.Table {
	var routes []mux.Route
	l7 := map[string]http.Handler{}
	var server *proxy.HTTPServer
	handoff := mux.HandlerFunc(func(ctx context.Context, c *mux.Conn) mux.Result {
		return serveL7(ctx, server, c)
	})
	add := func(r config.Route, m mux.Match) {
		route := compileRoute(r)
		route.Match = m
		if r.IsHTTP() {
			route.Handler, route.PerRequest = handoff, true
			l7[r.Name] = g.httpHandler(r)
		} else {
			route.Handler = g.tcpHandler(r)
		}
		routes = append(routes, route)
	}
	for _, n := range r.Routes {
		add(n, compileMatch(n.Match))
	}
	if r.To != "" || len(r.Upstreams) > 0 {
		m := mux.Match{}
		if r.IsHTTP() {
			m.Protocols = []mux.Protocol{mux.HTTP}
		}
		add(r, m)
	}
	if len(l7) > 0 {
		routes = append(routes, implicitHTTPRoute(handoff)) // 404 and 421 answers
	}
	t := mux.NewTable(routes)
	hr := &httpRouter{table: t, handlers: l7, logger: g.app.logger}
	server = g.httpServer(hr, hr.direct)
	return t
}

// implicitHTTPRoute takes the HTTP connections no route took, for the
// in-process router to answer.
func implicitHTTPRoute(h mux.Handler) mux.Route {
	return mux.Route{Name: proxy.ImplicitRoute, Match: mux.Match{Protocols: []mux.Protocol{mux.HTTP}}, Handler: h, PerRequest: true}
}

// httpServer starts an in-process HTTP server (HTTP/1.1, h2 over TLS by
// ALPN, h2c prior knowledge) for one routing table, with the direct path
// routed by direct.
func (g *generation) httpServer(h http.Handler, direct proxy.DirectRouter) *proxy.HTTPServer {
	c := g.cfg.HTTP
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	protocols.SetUnencryptedHTTP2(true)
	s := proxy.NewHTTPServer(h, &http.Server{
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		Protocols:         &protocols,
		ErrorLog:          zap.NewStdLog(g.app.logger.Named("http")),
		// OPTIONS * reaches the router (proxy.AboutServer), which logs it.
		DisableGeneralOptionsHandler: true,
	}, direct)
	s.SendTimeout = c.SendTimeout
	g.servers = append(g.servers, s)
	return s
}

// serveL7 hands a routed connection to an in-process HTTP server. With
// nothing sniffed (ALPN decided), the *tls.Conn goes as is, so the server
// sees r.TLS and speaks h2; otherwise a Stream replays the sniffed bytes.
func serveL7(ctx context.Context, s *proxy.HTTPServer, c *mux.Conn) mux.Result {
	var state *tls.ConnectionState
	if tc, ok := c.NetConn.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		state = &cs
	}
	// The connection line names the route of the first request, which the
	// route the mux chose may only guess (HTTP/2: no Host before it).
	routes := &proxy.RouteNote{}
	conn := c.NetConn
	var st *mux.Stream
	if len(c.Prefix) > 0 {
		st = c.Stream()
		conn = st
		if mux.IsH2CPreface(c.Prefix) { // HTTP/2 in the clear, as over TLS
			defer st.CoalesceWrites(ctx)()
		}
	}
	err := s.Serve(proxy.WithRouteNote(ctx, routes), conn, state)
	res := mux.Result{Backend: "http", Err: err, Outcome: outcomeOf(ctx, err), Route: routes.Route()}
	if st != nil {
		res.Up, res.Down = st.Counts()
	}
	return res
}

// httpRouter routes each request of an in-process HTTP server with its
// table (mux owns all matching) to the route's HTTP handler.
type httpRouter struct {
	table    *mux.Table
	handlers map[string]http.Handler
	logger   *zap.Logger
	certs    *tlsutil.Manager // answers ACME HTTP-01 challenges in front; nil if none
}

// direct routes a request of the direct path: to its route's proxy when
// that route has one and admits the client; nil leaves the request to
// ServeHTTP (and the challenge handler in front of it).
func (h *httpRouter) direct(q *proxy.DirectRequest) *proxy.HTTPProxy {
	// Any method: a POST to the challenge path simply takes net/http.
	if h.certs != nil && h.certs.IsHTTPChallenge(&http.Request{Method: http.MethodGet, URL: &url.URL{Path: q.Path}}) {
		return nil
	}
	route := h.table.LookupHTTP(q.Host, q.Path, q.Client, q.TLS)
	if route == nil || !route.Admits(q.Client.Addr().Unmap()) {
		return nil
	}
	p, _ := h.handlers[route.Name].(*proxy.HTTPProxy)
	return p
}

func (h *httpRouter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if proxy.FaultyTarget(w, r, h.logger) || proxy.AboutServer(w, r, h.logger) {
		proxy.NoteRoute(r, proxy.ImplicitRoute)
		return
	}
	if route := h.table.LookupRequest(r); route != nil {
		if hh := h.handlers[route.Name]; hh != nil {
			proxy.NoteRoute(r, route.Name)
			// An address that does not parse is refused by any list
			// (Admits fails closed).
			ap, _ := netip.ParseAddrPort(r.RemoteAddr)
			if !route.Admits(ap.Addr().Unmap()) {
				proxy.Forbidden(w, r, route.Name, h.logger)
				return
			}
			hh.ServeHTTP(w, r)
			return
		}
	}
	proxy.NoteRoute(r, proxy.ImplicitRoute)
	proxy.NoRoute(w, r, mux.HostName(r.Host), h.logger)
}

// httpHandler builds the HTTP handler of an L7 route.
func (g *generation) httpHandler(r config.Route) http.Handler {
	if r.To == config.BuiltinDemo {
		return http.HandlerFunc(g.app.serveDemo)
	}
	targets := r.Upstreams
	if len(targets) == 0 {
		targets = []string{r.To}
	}
	urls := make([]*url.URL, 0, len(targets))
	for _, t := range targets {
		u, _ := url.Parse(t) // validated
		urls = append(urls, u)
	}
	balance := proxy.Balance(r.Balance)
	if balance == "" {
		balance = proxy.RoundRobin
	}
	pool := proxy.NewPool(urls, balance)
	ph := r.PassiveHealth()
	pool.MaxFails, pool.Cooldown = ph.MaxFails, ph.Cooldown
	headerTimeout := g.cfg.HTTP.ResponseHeaderTimeout
	if r.ResponseHeaderTimeout != nil {
		headerTimeout = *r.ResponseHeaderTimeout
	}
	tr := &http.Transport{
		DialContext: (&net.Dialer{Timeout: g.dialTimeout(r), KeepAlive: 30 * time.Second}).DialContext,
		// Enough idle upstream connections for h2 clients' concurrency
		// (connections x streams): fewer made the pool churn (measured).
		MaxIdleConns:           4096,
		MaxIdleConnsPerHost:    1024,
		IdleConnTimeout:        90 * time.Second,
		ResponseHeaderTimeout:  headerTimeout,
		MaxResponseHeaderBytes: proxy.MaxResponseHeadBytes,
		TLSHandshakeTimeout:    10 * time.Second,
		// Content coding is between client and upstream: by default the
		// Transport asks for gzip when the client did not and decodes it.
		DisableCompression: true,
		// nil (system roots) without upstream_tls. Setting it alone does
		// not turn on HTTP/2 to upstreams: the custom dialer keeps the
		// Transport on HTTP/1.1 unless upstream_http2 sets Protocols.
		TLSClientConfig: g.clientTLS[r.Name],
	}
	if r.UpstreamHTTP2 {
		// HTTP/2 only: h2c with prior knowledge to http:// upstreams, as
		// gRPC servers take it; h2 by ALPN to https:// ones.
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP2(true)
		tr.Protocols.SetUnencryptedHTTP2(true)
		// One connection carries many requests: ping it when it has been
		// silent, so a vanished upstream is noticed before requests pile
		// up on it.
		tr.HTTP2 = &http.HTTP2Config{SendPingTimeout: 30 * time.Second, PingTimeout: 10 * time.Second}
	}
	g.transports = append(g.transports, tr)
	p := proxy.NewHTTPProxy(r.Name, pool, tr, g.app.logger)
	p.UpstreamHTTP2 = r.UpstreamHTTP2
	if r.StripPrefix {
		prefixes := r.Match.Path
		p.StripPrefix = func(path string) (string, string, bool) { return mux.StripPathPrefix(prefixes, path) }
	}
	p.PreserveHost = r.PreservesHost()
	p.MaxBodyBytes = r.MaxBodyBytes
	p.TrustedProxies = parseSources(g.cfg.HTTP.TrustedProxies)
	p.OnRequest = g.app.metrics.request
	p.DialTimeout, p.ResponseHeaderTimeout = g.dialTimeout(r), headerTimeout
	g.proxies = append(g.proxies, p)
	if hc := r.HealthCheck; hc != nil {
		go pool.RunHealthChecks(g.ctx, proxy.HealthCheck{Path: hc.Path, Interval: hc.Interval, Timeout: hc.Timeout, Status: hc.Status,
			GRPC: hc.GRPC, GRPCService: hc.GRPCService},
			&http.Client{Transport: tr}, func(u *proxy.Upstream, healthy bool, err error) {
				g.app.logger.Warn("upstream health changed", zap.String("route", r.Name), zap.String("upstream", u.URL.Host),
					zap.Bool("healthy", healthy), zap.Error(err))
			})
	}
	return p
}

func (g *generation) dialTimeout(r config.Route) time.Duration {
	if r.DialTimeout != nil {
		return *r.DialTimeout
	}
	return g.cfg.DialTimeout
}

// tcpHandler builds the handler of an L4 route: a TCP relay, the FTP
// gateway or builtin:echo.
func (g *generation) tcpHandler(r config.Route) mux.Handler {
	if r.To == config.BuiltinEcho {
		return mux.HandlerFunc(serveEcho)
	}
	if r.Match.Protocol == config.ProtocolFTP {
		return g.ftpHandler(r)
	}
	t := &tcpTarget{proxy.TCP{Addr: r.To, DialTimeout: g.dialTimeout(r), IdleTimeout: g.cfg.IdleTimeout, Pipes: g.app.pipes,
		SendProxy: proxyHeader(r.SendProxy)}}
	if r.IdleTimeout != nil {
		t.IdleTimeout = *r.IdleTimeout
	}
	return t
}

// stopKeepAlives ends HTTP/1 keep-alive on g's servers once a newer
// generation routes: their idle client connections close now, so those
// clients' next requests take the new routes instead of g's until retire.
func (g *generation) stopKeepAlives() {
	for _, s := range g.servers {
		s.StopKeepAlives()
	}
}

// retire releases the generation once no new connection uses it: its HTTP
// servers stop gracefully (idle keep-alive connections close, requests in
// flight finish until ctx ends), health checks stop, idle upstream
// connections close.
func (g *generation) retire(ctx context.Context) {
	g.cancel()
	done := make(chan struct{})
	for _, s := range g.servers {
		go func() {
			s.Shutdown(ctx)
			done <- struct{}{}
		}()
	}
	for range g.servers {
		<-done
	}
	for _, t := range g.transports {
		t.CloseIdleConnections()
	}
	for _, p := range g.proxies {
		p.CloseIdleConnections()
	}
}

// certNames lists the names the config's terminating routes need
// certificates for.
func certNames(cfg *config.Config) []string {
	var names []string
	for _, r := range cfg.Routes {
		if r.Terminates() {
			names = append(names, r.Match.SNI...)
		}
	}
	if cfg.TLS.DefaultSNI != "" {
		names = append(names, cfg.TLS.DefaultSNI)
	}
	return names
}

// withDefaultSNI serves name's certificate to ClientHellos without SNI.
func withDefaultSNI(c *tls.Config, name string) *tls.Config {
	c = c.Clone()
	get := c.GetCertificate
	c.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName == "" {
			h := *hello
			h.ServerName = name
			return get(&h)
		}
		return get(hello)
	}
	return c
}

// ftpHandler builds the FTP gateway of an ftp route.
func (g *generation) ftpHandler(r config.Route) mux.Handler {
	f := &proxy.FTP{Addr: r.To, DialTimeout: g.dialTimeout(r), IdleTimeout: g.cfg.IdleTimeout,
		Claims: g.app.claims, Pipes: g.app.pipes, Logger: g.app.logger.Named("ftp").With(zap.String("route", r.Name)),
		SendProxy: proxyHeader(r.SendProxy)}
	if r.IdleTimeout != nil {
		f.IdleTimeout = *r.IdleTimeout
	}
	if c := r.FTP; c != nil {
		if c.PublicAddress != "" {
			f.PublicAddr, _ = netip.ParseAddr(c.PublicAddress) // validated
		}
		f.PublicPort = c.PublicPort
		if first, last, ok := c.PortRange(); ok {
			dp, err := g.app.dataPortsFor(c.DataPorts, first, last)
			if err != nil {
				// The gateway then answers PASV on the multiplexed port.
				g.app.logger.Error("ftp data ports unavailable", zap.String("route", r.Name), zap.Error(err))
			}
			f.DataPorts = dp
		}
	}
	return mux.HandlerFunc(func(ctx context.Context, c *mux.Conn) mux.Result {
		// Through a Stream: it carries the client's address (a PROXY
		// header's), which data connections are matched against. The
		// control connection is small: no need to splice it.
		s := c.Stream()
		st, err := f.Serve(ctx, s, nil)
		return mux.Result{Backend: f.Addr, Up: st.Up, Down: st.Down, Err: err, Outcome: outcomeOf(ctx, err)}
	})
}
