package tlsutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// askTimeout bounds the ask request: a client handshake waits for it.
const askTimeout = 5 * time.Second

// Errors the on-demand decision returns; certmagic wraps them into the
// failed handshake's error.
var (
	errNotAllowed  = errors.New("on-demand: name not allowed")
	errRateLimited = errors.New("on-demand: rate limit of new certificates reached")
	errPending     = errors.New("managed name: certificate not obtained yet")
)

// decide is the on-demand DecisionFunc; certmagic asks it before loading
// or obtaining a certificate at a handshake, and before renewing one.
//
// Names given to Manage are obtained in the background by the static
// config: they are allowed only once stored (so handshakes may load and
// renew them) and never start a second issuance inside a handshake, which
// would also hold the client while a CA that is down is retried. Other
// names must match the policy, and those without a stored certificate
// (i.e. that would be issued now) count against the rate limit.
func (m *Manager) decide(ctx context.Context, name string) error {
	name = strings.ToLower(name)
	stored := m.storage.Exists(ctx, certmagic.StorageKeys.SiteCert(m.issuerKey, name))
	if m.isManaged(name) {
		if stored {
			return nil
		}
		return errPending
	}
	if err := m.policy.allowed(ctx, name); err != nil {
		return err
	}
	if m.policy.limiter != nil && !stored && !m.policy.limiter.allow(name, time.Now()) {
		return errRateLimited
	}
	return nil
}

// isManaged reports whether name (lowercase) was given to Manage.
func (m *Manager) isManaged(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.managed[name]
}

// onDemandPolicy decides which names on-demand TLS may obtain certificates
// for. It is safe for concurrent use.
type onDemandPolicy struct {
	exact     map[string]bool
	wildcards map[string]bool // "example.com" for "*.example.com"
	ask       *url.URL        // nil: no ask
	client    *http.Client
	limiter   *windowLimiter // nil: no limit
}

func newOnDemandPolicy(od *OnDemand) *onDemandPolicy {
	p := &onDemandPolicy{exact: map[string]bool{}, wildcards: map[string]bool{}}
	for _, pat := range od.Allow {
		pat = strings.ToLower(pat)
		if parent, ok := strings.CutPrefix(pat, "*."); ok {
			p.wildcards[parent] = true
		} else {
			p.exact[pat] = true
		}
	}
	if od.Ask != "" {
		p.ask, _ = url.Parse(od.Ask) // validated by Options.validate
		tr := http.DefaultTransport.(*http.Transport).Clone()
		p.client = &http.Client{Transport: tr, Timeout: askTimeout}
	}
	if od.RateLimit > 0 {
		p.limiter = &windowLimiter{limit: od.RateLimit, window: od.RateWindow, admitted: map[string]time.Time{}}
	}
	return p
}

// matches reports whether name (lowercase) matches an Allow pattern.
func (p *onDemandPolicy) matches(name string) bool {
	if p.exact[name] {
		return true
	}
	_, parent, ok := strings.Cut(name, ".")
	return ok && p.wildcards[parent]
}

// allowed reports whether the policy allows name: Allow first, then Ask.
func (p *onDemandPolicy) allowed(ctx context.Context, name string) error {
	if p.matches(name) {
		return nil
	}
	if p.ask == nil {
		return errNotAllowed
	}
	return p.askFor(ctx, name)
}

// askFor asks the Ask endpoint about name; only a 200 allows it.
func (p *onDemandPolicy) askFor(ctx context.Context, name string) error {
	u := *p.ask
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("on-demand ask: %w", err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("on-demand ask: %w", err)
	}
	// Drain a little so the connection can be reused; never read much.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: ask answered %d", errNotAllowed, resp.StatusCode)
	}
	return nil
}

// close releases the ask client's idle connections.
func (p *onDemandPolicy) close() {
	if p.client != nil {
		p.client.CloseIdleConnections()
	}
}

// windowLimiter admits at most limit distinct names per sliding window.
// A name already admitted in the window is admitted again without counting,
// so concurrent first handshakes for one name count once. It is safe for
// concurrent use.
type windowLimiter struct {
	limit  int
	window time.Duration

	mu       sync.Mutex
	admitted map[string]time.Time
}

// allow reports whether name may get a new certificate at now.
func (l *windowLimiter) allow(name string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for n, t := range l.admitted {
		if now.Sub(t) >= l.window {
			delete(l.admitted, n)
		}
	}
	if _, ok := l.admitted[name]; ok {
		return true
	}
	if len(l.admitted) >= l.limit {
		return false
	}
	l.admitted[name] = now
	return true
}
