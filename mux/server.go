package mux

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/soheilhy/cmux"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("mux: server closed")

// Options configure a Server. Zero fields take the documented defaults.
type Options struct {
	// SniffTimeout bounds how long a connection may take to show what it
	// speaks; a client silent for this long is Silent. Default 1s.
	SniffTimeout time.Duration
	// MaxSniffBytes bounds the bytes read while sniffing (including a whole
	// TLS ClientHello or the HTTP headers up to Host). Default 64 KiB.
	MaxSniffBytes int
	// DefaultSNI routes a TLS ClientHello without SNI as if it named this
	// server name (terminating routes then serve its certificate). Empty:
	// such hellos match only routes without an SNI condition.
	DefaultSNI string
	// HandshakeTimeout bounds the TLS handshake of terminated routes.
	// Default 10s.
	HandshakeTimeout time.Duration
	// Claim, if set, sees every accepted connection before sniffing; if it
	// returns true it owns the connection and mux never touches it again.
	// For connections a handler expects, such as FTP data connections,
	// which cannot be sniffed (an upload's first bytes are arbitrary, a
	// download's data connection is silent). It must not block.
	Claim func(net.Conn) bool
	// Limits bound connections per server and per client address
	// (SetLimits changes them).
	Limits Limits
	// ProxyProtocol, if set, reads PROXY protocol (v1 or v2) headers from
	// trusted sources; the client address they carry is then used for
	// routing, limits, logs and X-Forwarded-For (SetProxyProtocol changes
	// it).
	ProxyProtocol *ProxyProtocol
	// Observer is told about each connection (metrics). Default: none.
	Observer Observer
	// Logger receives one line per finished connection. Default: no logs.
	Logger *zap.Logger
}

const (
	defaultSniffTimeout  = time.Second
	defaultMaxSniffBytes = 64 << 10
	defaultHandshake     = 10 * time.Second
)

// ProxyProtocol configures PROXY protocol headers from load balancers.
type ProxyProtocol struct {
	// Trusted are the sources whose headers are believed. A header from
	// any other source is refused as spoofing.
	Trusted []netip.Prefix
	// Optional lets a trusted source omit the header (its own address is
	// then the client's). Otherwise a connection without one is refused.
	Optional bool
}

// Server accepts connections on any number of listeners, sniffs and routes
// them. Its methods are safe for concurrent use.
type Server struct {
	opts     Options
	log      *zap.Logger
	refusals *zap.Logger // sampled: a flood of refusals must not flood the log
	limits   *limiter
	proxies  atomic.Pointer[ProxyProtocol] // nil: no PROXY headers read
	sniffer  *sniffer
	prefixes sync.Pool // *[]byte: connections' sniffed bytes
	table    atomic.Pointer[Table]

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	closing   bool
	serving   sync.WaitGroup // Serve calls, including their accept loops
	conns     sync.WaitGroup // connections past the sniff, being handled
	pending   pendingConns   // connections before it: header read, sniff

	hardCtx  context.Context // cancelled when the drain grace ends
	hardStop context.CancelFunc
}

// NewServer returns a server routing with table.
func NewServer(table *Table, opts Options) *Server {
	if opts.SniffTimeout <= 0 {
		opts.SniffTimeout = defaultSniffTimeout
	}
	if opts.MaxSniffBytes <= 0 {
		opts.MaxSniffBytes = defaultMaxSniffBytes
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = defaultHandshake
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Observer == nil {
		opts.Observer = nopObserver{}
	}
	s := &Server{
		opts: opts,
		log:  opts.Logger,
		refusals: opts.Logger.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
			return zapcore.NewSamplerWithOptions(c, time.Second, 10, 0) // 10 lines per second per message
		})),
		limits:    newLimiter(opts.Limits),
		sniffer:   newSniffer(opts.MaxSniffBytes),
		listeners: make(map[net.Listener]struct{}),
	}
	s.prefixes.New = func() any { b := make([]byte, 0, 2*sniffChunk); return &b }
	s.hardCtx, s.hardStop = context.WithCancel(context.Background())
	s.table.Store(table)
	s.proxies.Store(opts.ProxyProtocol)
	return s
}

// SetTable replaces the routing table. Connections already routed keep their
// route; connections accepted afterwards use the new table.
func (s *Server) SetTable(t *Table) { s.table.Store(t) }

// Table returns the current routing table.
func (s *Server) Table() *Table { return s.table.Load() }

// SetLimits replaces the limits for connections accepted from now on;
// those already admitted still count against them.
func (s *Server) SetLimits(l Limits) { s.limits.set(l) }

// SetProxyProtocol replaces the PROXY protocol settings (nil: no header is
// read) for connections accepted from now on.
func (s *Server) SetProxyProtocol(pp *ProxyProtocol) { s.proxies.Store(pp) }

// Serve accepts connections on ln until ln is closed or Shutdown is called.
// It always closes ln. After Shutdown it returns ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()

	m := cmux.New(newAcceptListener(ln, s))
	m.SetReadTimeout(s.opts.SniffTimeout)
	// Order is priority: each matcher replays what the earlier ones buffered.
	children := []struct {
		l net.Listener
		p Protocol
	}{
		{m.Match(s.sniffer.matchTLS), TLS},
		{m.Match(s.sniffer.matchSSH), SSH},
		{m.Match(s.sniffer.matchHTTP), HTTP},
		{m.Match(matchSilent), Silent},
		{m.Match(cmux.Any()), Unknown},
	}
	var loops sync.WaitGroup
	addr := ln.Addr().String()
	for _, c := range children {
		loops.Add(1)
		go s.acceptLoop(&loops, c.l, c.p, addr)
	}
	err := m.Serve()
	ln.Close() // cmux does not close the root listener (cmux issue #39)
	loops.Wait()
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrServerClosed
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// trustedProxy returns the PROXY protocol settings under which a
// connection from a carries a header, or nil when a is not trusted.
func (s *Server) trustedProxy(a net.Addr) *ProxyProtocol {
	if pp := s.proxies.Load(); pp != nil && containsAddr(pp.Trusted, addrPortOf(a).Addr()) {
		return pp
	}
	return nil
}

// refuse counts and logs a connection that was not admitted, then closes
// it. Counting comes first so that once the client sees its connection
// closed, the refusal is already in the metrics (and in tests' observers).
func (s *Server) refuse(c net.Conn, client netip.AddrPort, reason string) {
	s.opts.Observer.Refused(reason)
	s.refusals.Info("connection refused", zap.String("reason", reason), zap.String("client", client.String()),
		zap.String("listener", c.LocalAddr().String()))
	c.Close()
}

// acceptLoop takes the connections cmux classified as p.
func (s *Server) acceptLoop(wg *sync.WaitGroup, l net.Listener, p Protocol, addr string) {
	defer wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return // cmux.ErrServerClosed or ErrListenerClosed: the root closed
		}
		s.conns.Add(1)
		go s.handle(c, p, addr)
	}
}

// Shutdown stops accepting, then waits for live connections to finish until
// ctx is done; then it closes the rest (their handlers see their context
// cancelled) and waits for them to return. It returns ctx.Err() if the grace
// period ran out.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	// Serve returns once its in-flight sniffs end (at most the sniff
	// timeout); after that no connection is added, and the handled ones
	// are waited for.
	done := make(chan struct{})
	go func() {
		s.serving.Wait()
		s.conns.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.hardStop()
		return nil
	case <-ctx.Done():
		// Connections still being sniffed reached no backend: closed
		// rather than waited for. Handlers see hardCtx end.
		s.pending.closeAll()
		s.hardStop()
		<-done
		return ctx.Err()
	}
}
