package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
	"github.com/portmux/portmux/proxy"
	"github.com/portmux/portmux/tlsutil"
)

// app is one running portmux: listeners, the mux server, the current
// generation (config-derived handlers), certificates, admin and metrics.
type app struct {
	path    string // config file; "" means the built-in demo config
	logger  *zap.Logger
	level   zap.AtomicLevel
	metrics *metrics
	pipes   *proxy.Pipes
	srv     *mux.Server
	admin   *admin
	claims  *proxy.DataClaims // FTP data connections expected at the mux port

	dataPortsMu sync.Mutex
	dataPorts   map[string]*proxy.DataPorts // FTP data port ranges, kept across reloads

	gen       atomic.Pointer[generation]
	mu        sync.Mutex // serializes start, reload and shutdown
	listeners map[string]net.Listener
	serving   sync.WaitGroup
	httpSrv   *http.Server // http_listen, if configured
	certCtx   context.Context
	certStop  context.CancelFunc
	// tickets keys TLS session tickets for the whole process, so clients
	// resume their sessions across reloads.
	tickets *tlsutil.SessionTickets
}

func newApp(path string, logger *zap.Logger, level zap.AtomicLevel) *app {
	a := &app{path: path, logger: logger, level: level, metrics: newMetrics(),
		pipes: proxy.NewPipes(maxIdlePipes), listeners: map[string]net.Listener{},
		claims: proxy.NewDataClaims(0, logger.Named("ftp")), dataPorts: map[string]*proxy.DataPorts{},
		tickets: tlsutil.NewSessionTickets()}
	a.certCtx, a.certStop = context.WithCancel(context.Background())
	// Idle relays then hold no goroutine: see proxy.Parker.
	if err := a.pipes.EnableParking(); err != nil {
		logger.Warn("relays cannot park idle connections: each holds its goroutines", zap.Error(err))
	}
	return a
}

// maxIdlePipes bounds the splice pipes kept open for reuse (two
// descriptors each).
const maxIdlePipes = 64

// readConfig loads the config and the hash of its bytes.
func (a *app) readConfig() (*config.Config, string, error) {
	raw := defaultConfig
	if a.path != "" {
		b, err := os.ReadFile(a.path)
		if err != nil {
			return nil, "", fmt.Errorf("config: %w", err)
		}
		raw = b
	}
	cfg, err := loadConfig(a.path)
	if err != nil {
		return nil, "", err
	}
	return cfg, configHash(raw), nil
}

// configHash names a config's content (in logs, metrics and for --watch).
func configHash(raw []byte) string {
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:6])
}

// start opens every listener, then serves. Certificates are managed only
// once the mux listens: their challenges are answered on it.
func (a *app) start(cfg *config.Config, hash string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	clientTLS, err := a.upstreamTLS(cfg)
	if err != nil {
		return err
	}
	opened, err := openListeners(cfg.Listen, nil)
	if err != nil {
		return err
	}
	// The admin port too, before anything serves: a port in use fails the
	// start cleanly instead of after the mux has begun listening.
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			closeAll(opened)
			return fmt.Errorf("admin listen %s: %w", cfg.Admin.Listen, err)
		}
	}
	a.listeners = opened
	certs, err := a.certManager(cfg, nil, nil)
	if err != nil {
		closeAll(opened)
		if adminLn != nil {
			adminLn.Close()
		}
		return err
	}
	g := a.buildGeneration(cfg, hash, certs, clientTLS)
	a.gen.Store(g)
	a.srv = mux.NewServer(g.table, mux.Options{
		SniffTimeout:     cfg.SniffTimeout,
		MaxSniffBytes:    cfg.SniffMaxBytes,
		HandshakeTimeout: cfg.HandshakeTimeout,
		DefaultSNI:       cfg.TLS.DefaultSNI,
		Limits:           limits(cfg.Limits),
		ProxyProtocol:    proxyProtocol(cfg.ProxyProtocol),
		Observer:         a.metrics,
		Claim:            a.claims.Claim,
		Logger:           a.logger,
	})
	for _, addr := range cfg.Listen {
		a.serve(opened[addr])
	}
	if cfg.HTTPListen != "" {
		if err := a.startHTTPListener(cfg.HTTPListen); err != nil {
			return err
		}
	}
	if adminLn != nil {
		a.admin = newAdmin(a.metrics, func() *config.Config { return a.gen.Load().cfg }, a.reload, a.logger)
		go a.admin.serve(adminLn)
		a.logger.Info("admin listening", zap.String("addr", adminLn.Addr().String()))
	}
	a.manageCerts(g, nil)
	a.metrics.setConfig(hash)
	if a.admin != nil {
		a.admin.ready.Store(true)
	}
	return nil
}

// serve runs the mux on ln until ln is closed.
func (a *app) serve(ln net.Listener) {
	a.logger.Info("listening", zap.String("addr", ln.Addr().String()), zap.Int("routes", len(a.gen.Load().cfg.Routes)))
	a.serving.Add(1)
	go func() {
		defer a.serving.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, mux.ErrServerClosed) {
			a.logger.Error("listener failed", zap.String("addr", ln.Addr().String()), zap.Error(err))
		}
	}()
}

// startHTTPListener serves plain HTTP (ACME HTTP-01, redirects, HTTP
// routes) on addr with the current generation's router.
func (a *app) startHTTPListener(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("http_listen %s: %w", addr, err)
	}
	c := a.gen.Load().cfg.HTTP
	a.httpSrv = &http.Server{
		Handler: proxy.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			a.gen.Load().plain.ServeHTTP(w, proxy.OnPlainListener(r))
		})),
		MaxHeaderBytes:    c.MaxHeaderBytes,
		ReadHeaderTimeout: c.ReadHeaderTimeout,
		IdleTimeout:       c.IdleTimeout,
		ErrorLog:          zap.NewStdLog(a.logger.Named("http")),
		// OPTIONS * reaches the router (proxy.AboutServer), which logs it.
		DisableGeneralOptionsHandler: true,
	}
	a.logger.Info("http listening", zap.String("addr", ln.Addr().String()))
	go a.httpSrv.Serve(ln)
	return nil
}

// reload re-reads the config and swaps it in. On any error the running
// config stays untouched and the error is returned (and logged, counted).
func (a *app) reload() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.reloadLocked()
	if err != nil {
		a.metrics.reloads.WithLabelValues("failed").Inc()
		a.logger.Error("reload refused: keeping the running config", errorFields(err)...)
		return err
	}
	return nil
}

func (a *app) reloadLocked() error {
	old := a.gen.Load()
	cfg, hash, err := a.readConfig()
	if err != nil {
		return err
	}
	clientTLS, err := a.upstreamTLS(cfg)
	if err != nil {
		return err
	}
	a.warnRestartOnly(old.cfg, cfg)
	opened, err := openListeners(cfg.Listen, a.listeners)
	if err != nil {
		return err
	}
	certs, err := a.certManager(cfg, old.cfg, old.certs)
	if err != nil {
		closeAll(opened)
		return err
	}
	g := a.buildGeneration(cfg, hash, certs, clientTLS)
	a.srv.SetLimits(limits(cfg.Limits))
	a.srv.SetProxyProtocol(proxyProtocol(cfg.ProxyProtocol))
	a.srv.SetTable(g.table)
	a.gen.Store(g)
	old.stopKeepAlives()
	for addr, ln := range opened {
		a.listeners[addr] = ln
		a.serve(ln)
	}
	for addr, ln := range a.listeners {
		if !slices.Contains(cfg.Listen, addr) {
			ln.Close() // its live connections go on; new ones are refused
			delete(a.listeners, addr)
			a.logger.Info("listener closed", zap.String("addr", addr))
		}
	}
	a.manageCerts(g, old)
	if err := a.level.UnmarshalText([]byte(cfg.Log.Level)); err != nil {
		a.logger.Warn("log level unchanged", zap.Error(err))
	}
	a.metrics.setConfig(hash)
	// Counted before the log line: whoever sees the line sees the count.
	a.metrics.reloads.WithLabelValues("ok").Inc()
	a.logger.Info("config reloaded", zap.String("hash", hash), zap.Int("routes", len(g.cfg.Routes)))
	go a.retire(old, certs)
	return nil
}

// retire releases old's resources (and its certificate manager if the new
// generation has another) once no connection can still reach them. A
// connection that read the old table just before the swap may still be
// sniffing or in its TLS handshake before it is handed to old's HTTP
// servers: those stay up for that long, then stop gracefully (requests in
// flight finish within shutdown_grace, idle keep-alive connections close).
func (a *app) retire(old *generation, current *tlsutil.Manager) {
	time.Sleep(old.cfg.SniffTimeout + old.cfg.HandshakeTimeout + time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), old.cfg.ShutdownGrace)
	defer cancel()
	old.retire(ctx)
	if old.certs != nil && old.certs != current {
		old.certs.Close()
	}
}

// warnRestartOnly logs the settings a reload cannot change.
func (a *app) warnRestartOnly(old, cfg *config.Config) {
	for _, s := range []struct {
		key        string
		before, is any
	}{
		{"sniff_timeout", old.SniffTimeout, cfg.SniffTimeout},
		{"sniff_max_bytes", old.SniffMaxBytes, cfg.SniffMaxBytes},
		{"handshake_timeout", old.HandshakeTimeout, cfg.HandshakeTimeout},
		{"tls.default_sni", old.TLS.DefaultSNI, cfg.TLS.DefaultSNI},
		{"http_listen", old.HTTPListen, cfg.HTTPListen},
		{"admin.listen", old.Admin.Listen, cfg.Admin.Listen},
	} {
		if s.before != s.is {
			a.logger.Warn("setting changed: it applies after a restart", zap.String("key", s.key))
		}
	}
}

// certManager returns the certificate manager cfg needs: nil when no route
// terminates TLS, the current one when the tls section is unchanged, or a
// new one.
func (a *app) certManager(cfg, oldCfg *config.Config, current *tlsutil.Manager) (*tlsutil.Manager, error) {
	if !needsCerts(cfg) {
		return nil, nil
	}
	if current != nil && reflect.DeepEqual(cfg.TLS, oldCfg.TLS) {
		return current, nil
	}
	opts := tlsutil.Options{
		CA:            cfg.TLS.CA,
		Email:         cfg.TLS.Email,
		Agreed:        cfg.TLS.AgreeTerms,
		Storage:       storageDir(cfg.TLS.Storage),
		ChallengePort: a.challengePort(),
		Logger:        a.logger.Named("tls"),
	}
	if cfg.TLS.EAB.KeyID != "" {
		opts.EAB = &tlsutil.EAB{KeyID: cfg.TLS.EAB.KeyID, MACKey: cfg.TLS.EAB.MACKey}
	}
	if cfg.TLS.TrustedRoots != "" {
		pem, err := os.ReadFile(cfg.TLS.TrustedRoots)
		if err != nil {
			return nil, fmt.Errorf("tls.trusted_roots: %w", err)
		}
		opts.TrustedRoots = pem
	}
	if od := cfg.TLS.OnDemand; od.Enabled() {
		opts.OnDemand = &tlsutil.OnDemand{Allow: od.Allow, Ask: od.Ask, RateLimit: od.RateLimit, RateWindow: od.RateWindow}
	}
	m, err := tlsutil.New(opts)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return m, nil
}

func needsCerts(cfg *config.Config) bool {
	return slices.ContainsFunc(cfg.Routes, config.Route.Terminates)
}

// challengePort is the port ACME validations are sent to: the first
// multiplexed listener's.
func (a *app) challengePort() int {
	for _, ln := range a.listeners {
		if ta, ok := ln.Addr().(*net.TCPAddr); ok {
			return ta.Port
		}
	}
	return 443
}

// manageCerts starts managing the names g needs and stops those only old
// needed. Issuance runs in the background (errors are logged and retried).
func (a *app) manageCerts(g, old *generation) {
	names := certNames(g.cfg)
	if g.certs != nil && len(names) > 0 {
		if err := g.certs.Manage(a.certCtx, names); err != nil {
			a.logger.Error("managing certificates", zap.Strings("names", names), zap.Error(err))
		}
	}
	if old != nil && old.certs != nil && old.certs == g.certs {
		var dropped []string
		for _, n := range certNames(old.cfg) {
			if !slices.Contains(names, n) {
				dropped = append(dropped, n)
			}
		}
		if len(dropped) > 0 {
			g.certs.Unmanage(dropped)
		}
	}
}

// shutdown stops accepting, drains live connections for the grace period,
// then closes what is left.
func (a *app) shutdown() {
	a.mu.Lock()
	defer a.mu.Unlock()
	g := a.gen.Load()
	if a.admin != nil {
		a.admin.ready.Store(false)
	}
	a.logger.Info("shutting down: draining live connections", zap.Duration("grace", g.cfg.ShutdownGrace))
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownGrace)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.retire(ctx) }() // closes idle keep-alive connections at once
	go func() {
		defer wg.Done()
		if a.httpSrv != nil {
			a.httpSrv.Shutdown(ctx)
		}
	}()
	if err := a.srv.Shutdown(ctx); err != nil {
		a.logger.Warn("drain grace ended: closed the remaining connections", zap.Error(err))
	}
	wg.Wait()
	a.serving.Wait()
	a.certStop()
	if g.certs != nil {
		g.certs.Close()
	}
	a.claims.Close()
	for _, dp := range a.dataPorts {
		dp.Close()
	}
	a.pipes.Close()
	if a.admin != nil {
		a.admin.shutdown(ctx)
	}
	a.logger.Info("stopped")
}

// limits is the mux's form of the limits section.
func limits(c config.Limits) mux.Limits {
	return mux.Limits{MaxConns: c.MaxConns, MaxConnsPerIP: c.MaxConnsPerIP, RatePerIP: c.RatePerIP,
		RateBurst: c.RateBurst, MaxSniffs: c.MaxSniffs}
}

// proxyProtocol is the mux's PROXY protocol setting; nil when off.
func proxyProtocol(c config.ProxyProtocol) *mux.ProxyProtocol {
	if len(c.Trusted) == 0 {
		return nil
	}
	return &mux.ProxyProtocol{Trusted: parseSources(c.Trusted), Optional: c.Optional}
}

// openListeners opens the addresses not already in have, all or none.
func openListeners(addrs []string, have map[string]net.Listener) (map[string]net.Listener, error) {
	opened := map[string]net.Listener{}
	// No TCP keepalive on accepted connections: idle timeouts find dead
	// peers, and it would cost four setsockopt calls per connection.
	lc := net.ListenConfig{KeepAlive: -1}
	for _, addr := range addrs {
		if have[addr] != nil {
			continue
		}
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			closeAll(opened)
			return nil, fmt.Errorf("listen %s: %w", addr, err)
		}
		opened[addr] = ln
	}
	return opened, nil
}

func closeAll(lns map[string]net.Listener) {
	for _, ln := range lns {
		ln.Close()
	}
}

// dataPortsFor returns the listeners of an FTP data port range, shared by
// every generation: a new generation could not bind the ports the old one
// holds. They close at shutdown.
func (a *app) dataPortsFor(rng string, first, last int) (*proxy.DataPorts, error) {
	a.dataPortsMu.Lock()
	defer a.dataPortsMu.Unlock()
	if dp := a.dataPorts[rng]; dp != nil {
		return dp, nil
	}
	dp, err := proxy.NewDataPorts("", first, last, a.claims)
	if err != nil {
		return nil, err
	}
	a.dataPorts[rng] = dp
	return dp, nil
}

// storageDir is tls.storage, or a per-user data directory.
func storageDir(configured string) string {
	if configured != "" {
		return configured
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return d + "/portmux/certs"
	}
	if home, err := os.UserHomeDir(); err == nil {
		return home + "/.local/share/portmux/certs"
	}
	return os.TempDir() + "/portmux-" + strconv.Itoa(os.Getuid()) + "/certs"
}
