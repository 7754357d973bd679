package proxy

import (
	"hash/maphash"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Balance is an upstream selection policy.
type Balance string

// The balancing policies.
const (
	RoundRobin Balance = "round_robin" // each upstream in turn
	LeastConn  Balance = "least_conn"  // the upstream with the fewest requests in flight
	IPHash     Balance = "ip_hash"     // the same client IP to the same upstream while the set is stable
)

// Upstream is one backend of a Pool.
type Upstream struct {
	// URL is the upstream's base URL (scheme and host; a path is prepended
	// to request paths).
	URL *url.URL

	inFlight  atomic.Int64
	fails     atomic.Int64 // consecutive failures
	downUntil atomic.Int64 // unix nanos; the upstream is skipped before then
	idle      idleConns    // the direct path's kept-alive connections
}

// Healthy reports whether the upstream is not marked down.
func (u *Upstream) Healthy() bool { return time.Now().UnixNano() >= u.downUntil.Load() }

// Pool chooses upstreams and tracks their health. Passive health: after
// MaxFails consecutive failures (connection refused, timeouts) an upstream
// is skipped for Cooldown, then tried again. Safe for concurrent use.
type Pool struct {
	Upstreams []*Upstream
	Balance   Balance
	// MaxFails consecutive failures mark an upstream down. Default 3.
	MaxFails int
	// Cooldown is how long an upstream stays down. Default 10s.
	Cooldown time.Duration

	next atomic.Uint64
	seed maphash.Seed
	once sync.Once
}

// NewPool returns a pool of the given upstream URLs.
func NewPool(urls []*url.URL, balance Balance) *Pool {
	p := &Pool{Balance: balance}
	for _, u := range urls {
		p.Upstreams = append(p.Upstreams, &Upstream{URL: u})
	}
	return p
}

// Pick returns the upstream for a request from client, skipping the ones
// marked down, and avoiding those in exclude (already tried for this
// request). When every candidate is down it picks among them anyway: a
// recovering backend is better than a certain 502.
func (p *Pool) Pick(client netip.Addr, exclude []*Upstream) *Upstream {
	p.once.Do(func() { p.seed = maphash.MakeSeed() })
	var candidates [16]*Upstream
	healthy := candidates[:0]
	var fallback []*Upstream
	for _, u := range p.Upstreams {
		if contains(exclude, u) {
			continue
		}
		if u.Healthy() {
			healthy = append(healthy, u)
		} else {
			fallback = append(fallback, u)
		}
	}
	if len(healthy) == 0 {
		healthy = fallback
	}
	if len(healthy) == 0 {
		return nil
	}
	switch p.Balance {
	case LeastConn:
		best := healthy[0]
		for _, u := range healthy[1:] {
			if u.inFlight.Load() < best.inFlight.Load() {
				best = u
			}
		}
		return best
	case IPHash:
		b := client.Unmap().As16()
		return healthy[maphash.Bytes(p.seed, b[:])%uint64(len(healthy))]
	default:
		return healthy[(p.next.Add(1)-1)%uint64(len(healthy))]
	}
}

func contains(us []*Upstream, u *Upstream) bool {
	for _, x := range us {
		if x == u {
			return true
		}
	}
	return false
}

// failover moves a request off from, which could not be reached: it
// returns the upstream to try next, with the request's in-flight count
// moved to it, or nil once every upstream has been tried. tried, the
// upstreams already tried, gains from.
func (p *Pool) failover(client netip.Addr, tried []*Upstream, from *Upstream) (*Upstream, []*Upstream) {
	tried = append(tried, from)
	next := p.Pick(client, tried)
	if next != nil {
		from.inFlight.Add(-1)
		next.inFlight.Add(1)
	}
	return next, tried
}

// Failed records a failure of u; it reports whether u was just marked down.
func (p *Pool) Failed(u *Upstream) bool {
	max := p.MaxFails
	if max <= 0 {
		max = 3
	}
	if u.fails.Add(1) < int64(max) {
		return false
	}
	cool := p.Cooldown
	if cool <= 0 {
		cool = 10 * time.Second
	}
	u.fails.Store(0)
	u.downUntil.Store(time.Now().Add(cool).UnixNano())
	return true
}

// Succeeded records a success of u, clearing its failure count.
func (p *Pool) Succeeded(u *Upstream) {
	if u.fails.Load() != 0 {
		u.fails.Store(0)
	}
}
