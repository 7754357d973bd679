package tlsutil

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

// Errors returned by Manager methods.
var (
	// ErrNotInternal is returned by RootPEM when the CA is not "internal".
	ErrNotInternal = errors.New("tlsutil: the CA is not internal")
	// ErrClosed is returned by Manage and ManageSync after Close.
	ErrClosed = errors.New("tlsutil: manager closed")
)

// Manager obtains, renews and serves certificates. Create it with New and
// stop it with Close. Its methods are safe for concurrent use.
type Manager struct {
	log          *zap.Logger
	storage      certmagic.Storage
	closeStorage func() // releases Redis locks and connections
	cache        *certmagic.Cache
	static       *certmagic.Config     // obtains the names given to Manage up front
	dynamic      *certmagic.Config     // on-demand; nil without Options.OnDemand
	acme         *certmagic.ACMEIssuer // nil for the internal CA
	internal     *internalCA           // nil for ACME
	issuerKey    string
	policy       *onDemandPolicy // nil without on-demand

	// ctx ends background work (obtain retries) when Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once

	mu      sync.Mutex
	managed map[string]bool // names given to Manage, lowercase
}

// New validates opts and builds the certmagic cache, configs and issuer.
// It touches only the local storage directory, never the network (a Redis
// storage is dialed at its first use), so a CA or Redis that is down
// cannot delay startup.
func New(opts Options) (*Manager, error) {
	dir, err := opts.validate()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	storage, closeStorage, err := openStorage(opts.Storage, log)
	if err != nil {
		return nil, err
	}
	m := &Manager{
		log:          log,
		storage:      storage,
		closeStorage: closeStorage,
		managed:      map[string]bool{},
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	cmLog := log.Named("certmagic")
	m.cache = certmagic.NewCache(certmagic.CacheOptions{GetConfigForCert: m.configForCert, Logger: cmLog})

	base := certmagic.Config{
		Storage:        m.storage,
		KeySource:      certmagic.StandardKeyGenerator{KeyType: certmagic.P256},
		OnEvent:        m.onEvent,
		ShouldEmitFunc: shouldEmit,
		Logger:         cmLog,
	}
	m.static = certmagic.New(m.cache, base)

	var issuer certmagic.Issuer
	if dir == "" {
		m.internal = &internalCA{storage: m.storage}
		issuer = m.internal
	} else {
		tmpl := certmagic.ACMEIssuer{
			CA:                      dir,
			Email:                   opts.Email,
			Agreed:                  opts.Agreed,
			DisableHTTPChallenge:    opts.DisableHTTPChallenge,
			DisableTLSALPNChallenge: opts.DisableTLSALPNChallenge,
			AltHTTPPort:             opts.ChallengePort,
			AltTLSALPNPort:          opts.ChallengePort,
			// Distributed solvers (certmagic's default, kept explicit):
			// the challenge tokens go to storage too, so with a shared
			// storage the replica the CA reaches answers HTTP-01
			// (HTTPChallengeHandler) and TLS-ALPN-01 (TLSConfig) even if
			// another one placed the order.
			DisableDistributedSolvers: false,
			Logger:                    cmLog.Named("acme"),
		}
		if opts.EAB != nil {
			tmpl.ExternalAccount = &acme.EAB{KeyID: opts.EAB.KeyID, MACKey: opts.EAB.MACKey}
		}
		if opts.TrustedRoots != nil {
			tmpl.TrustedRoots, _ = rootPool(opts.TrustedRoots) // checked by validate
		}
		// The issuer belongs to the static config (its storage and challenge
		// memory); the dynamic config shares storage and cache, so it can
		// use the same issuer.
		m.acme = certmagic.NewACMEIssuer(m.static, tmpl)
		issuer = m.acme
	}
	m.issuerKey = issuer.IssuerKey()
	m.static.Issuers = []certmagic.Issuer{issuer}

	if opts.OnDemand != nil {
		m.policy = newOnDemandPolicy(opts.OnDemand)
		dyn := base
		dyn.Issuers = []certmagic.Issuer{issuer}
		dyn.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: m.decide}
		m.dynamic = certmagic.New(m.cache, dyn)
	}
	return m, nil
}

// configForCert is the cache's GetConfigForCert: certificates of managed
// names are renewed by the static config in the background; others were
// loaded on demand and are renewed at handshakes by the dynamic config.
func (m *Manager) configForCert(cert certmagic.Certificate) (*certmagic.Config, error) {
	if m.dynamic == nil {
		return m.static, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range cert.Names {
		if m.managed[strings.ToLower(n)] {
			return m.static, nil
		}
	}
	return m.dynamic, nil
}

// track records names as managed and returns them normalized.
func (m *Manager) track(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		if n == "" {
			return nil, errors.New("empty name")
		}
		out = append(out, n)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range out {
		m.managed[n] = true
	}
	return out, nil
}

// background returns a context that ends with ctx, with Close or with
// the returned cancel.
func (m *Manager) background(ctx context.Context) (context.Context, context.CancelFunc, error) {
	if m.ctx.Err() != nil {
		return nil, nil, ErrClosed
	}
	c, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(m.ctx, cancel)
	context.AfterFunc(c, func() { stop() }) // drop the registration on m.ctx
	return c, cancel, nil
}

// Manage starts obtaining (and later renewing) certificates for names in
// the background and returns. Failures are logged (event cert_failed) and
// retried by certmagic with backoff until ctx is canceled or Close is
// called, so ctx should live as long as the names are wanted.
func (m *Manager) Manage(ctx context.Context, names []string) error {
	names, err := m.track(names)
	if err != nil {
		return err
	}
	// Not canceled on return: the background work runs under it. Each call
	// keeps a small registration on ctx until ctx ends or Close.
	bg, _, err := m.background(ctx)
	if err != nil {
		return err
	}
	return m.static.ManageAsync(bg, names)
}

// ManageSync obtains certificates for names that have none in storage and
// returns once all are ready, or with the first error (no retries). ctx
// bounds the call. Renewals then happen in the background.
func (m *Manager) ManageSync(ctx context.Context, names []string) error {
	names, err := m.track(names)
	if err != nil {
		return err
	}
	c, cancel, err := m.background(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	err = m.static.ManageSync(c, names)
	if err != nil {
		// Nothing retries a failed ManageSync: stop treating the names that
		// got no certificate as managed, so on-demand may still serve them.
		var missing []string
		for _, n := range names {
			if !m.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(m.issuerKey, n)) {
				missing = append(missing, n)
			}
		}
		m.mu.Lock()
		for _, n := range missing {
			delete(m.managed, n)
		}
		m.mu.Unlock()
	}
	return err
}

// Unmanage stops managing names: their certificates leave the in-memory
// cache (no longer served unless on-demand allows them) and are no longer
// renewed. Stored files stay, so managing them again is cheap.
func (m *Manager) Unmanage(names []string) {
	subjects := make([]certmagic.SubjectIssuer, 0, len(names))
	m.mu.Lock()
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		delete(m.managed, n)
		subjects = append(subjects, certmagic.SubjectIssuer{Subject: n, IssuerKey: m.issuerKey})
	}
	m.mu.Unlock()
	m.cache.RemoveManaged(subjects)
}

// TLSConfig returns a new server *tls.Config that gets certificates from the
// manager (obtaining them on demand if configured), with TLS 1.2 as the
// minimum and ALPN h2, http/1.1 and acme-tls/1. acme-tls/1 must stay: it is
// how TLS-ALPN-01 validation is answered inside the handshake; route a
// connection whose NegotiatedProtocol is acme-tls/1 to nothing (close it).
// The caller may modify the returned value; it is safe for concurrent use.
func (m *Manager) TLSConfig() *tls.Config {
	cfg := m.static
	if m.dynamic != nil {
		cfg = m.dynamic
	}
	// Cipher suites and curves stay at crypto/tls defaults: they are the
	// modern set (AEAD only, X25519MLKEM768 first) and improve with Go.
	return &tls.Config{
		GetCertificate: cfg.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1", acmez.ACMETLS1Protocol},
		MinVersion:     tls.VersionTLS12,
	}
}

// OfferingALPN returns a copy of c, a config from TLSConfig, whose
// handshakes offer protos, in order of preference, and acme-tls/1.
func OfferingALPN(c *tls.Config, protos []string) *tls.Config {
	c = c.Clone()
	c.NextProtos = append(slices.Clip(protos), acmez.ACMETLS1Protocol)
	return c
}

// HTTPChallengeHandler wraps h: ACME HTTP-01 requests for challenges this
// manager (or another one sharing its storage) started are answered; all
// other requests go to h.
func (m *Manager) HTTPChallengeHandler(h http.Handler) http.Handler {
	if m.acme == nil {
		return h
	}
	return m.acme.HTTPChallengeHandler(h)
}

// IsHTTPChallenge reports whether r looks like an ACME HTTP-01 request
// this manager would try to answer, so a redirect-to-HTTPS handler can
// leave it to HTTPChallengeHandler.
func (m *Manager) IsHTTPChallenge(r *http.Request) bool {
	return m.acme != nil && !m.acme.DisableHTTPChallenge && certmagic.LooksLikeHTTPChallenge(r)
}

// RootPEM returns the internal CA's root certificate as PEM, creating the
// root if this is its first use. It returns ErrNotInternal for ACME CAs.
func (m *Manager) RootPEM(ctx context.Context) ([]byte, error) {
	if m.internal == nil {
		return nil, ErrNotInternal
	}
	root, err := m.internal.load(ctx)
	if err != nil {
		return nil, err
	}
	return append([]byte(nil), root.pem...), nil
}

// Close stops background work: obtain retries, and certmagic's cache
// maintenance (renewals), waiting for the latter to end. A Redis storage
// releases the locks it still holds, so other replicas take over at once,
// and is closed. Certificates already cached can still be served. Close
// is idempotent.
func (m *Manager) Close() {
	m.once.Do(func() {
		m.cancel()
		m.cache.Stop()
		if m.policy != nil {
			m.policy.close()
		}
		m.closeStorage()
	})
}
