package mux

import (
	"net/netip"
	"sync"
	"time"
)

// Limits bound what clients may take from a Server. Zero fields mean no
// limit. A refused connection is closed at once, counted (Observer.Refused)
// and logged (sampled).
type Limits struct {
	// MaxConns bounds connections open at once (sniffing or relayed).
	MaxConns int
	// MaxConnsPerIP bounds the connections one client address has open.
	MaxConnsPerIP int
	// RatePerIP bounds new connections per second from one client address,
	// with bursts of up to RateBurst (default: RatePerIP, at least 1).
	RatePerIP float64
	RateBurst int
	// MaxSniffs bounds connections still being sniffed: a flood of silent
	// or slow clients each holds one until the sniff timeout.
	MaxSniffs int
}

// Refusal reasons, as reported to Observer.Refused and logged.
const (
	RefusedMaxConns      = "max_conns"
	RefusedMaxConnsPerIP = "max_conns_per_ip"
	RefusedRate          = "rate_per_ip"
	RefusedMaxSniffs     = "max_sniffs"
	RefusedProxyHeader   = "proxy_header" // a trusted source sent a bad header or none
)

// limiter enforces Limits. It is safe for concurrent use.
type limiter struct {
	l Limits

	mu      sync.Mutex
	conns   int
	sniffs  int
	perIP   map[netip.Addr]int
	buckets map[netip.Addr]*bucket
	checked int // admissions since the last sweep of idle buckets
}

// bucket is a token bucket of one client address.
type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(l Limits) *limiter {
	lm := &limiter{perIP: map[netip.Addr]int{}, buckets: map[netip.Addr]*bucket{}}
	lm.set(l)
	return lm
}

// set replaces the limits. Connections already admitted stay counted (each
// client's are counted whatever the limits), so a lowered limit refuses
// new connections until enough have closed; rate buckets keep their tokens,
// up to the new burst.
func (lm *limiter) set(l Limits) {
	if l.RatePerIP > 0 && l.RateBurst <= 0 {
		l.RateBurst = max(1, int(l.RatePerIP))
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.l = l
	if l.RatePerIP <= 0 {
		clear(lm.buckets)
	}
}

// admit counts a new connection from ip, which then holds a connection and
// a sniff slot, or returns why it is refused.
func (lm *limiter) admit(ip netip.Addr, now time.Time) string {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	switch {
	case lm.l.MaxConns > 0 && lm.conns >= lm.l.MaxConns:
		return RefusedMaxConns
	case lm.l.MaxSniffs > 0 && lm.sniffs >= lm.l.MaxSniffs:
		return RefusedMaxSniffs
	case lm.l.MaxConnsPerIP > 0 && lm.perIP[ip] >= lm.l.MaxConnsPerIP:
		return RefusedMaxConnsPerIP
	case lm.l.RatePerIP > 0 && !lm.take(ip, now):
		return RefusedRate
	}
	lm.conns++
	lm.sniffs++
	lm.perIP[ip]++
	return ""
}

// take spends a token of ip's bucket.
func (lm *limiter) take(ip netip.Addr, now time.Time) bool {
	b := lm.buckets[ip]
	if b == nil {
		b = &bucket{tokens: float64(lm.l.RateBurst), last: now}
		lm.buckets[ip] = b
	}
	b.tokens = min(float64(lm.l.RateBurst), b.tokens+now.Sub(b.last).Seconds()*lm.l.RatePerIP)
	b.last = now
	if lm.checked++; lm.checked >= 4096 {
		lm.sweep(now)
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweep forgets buckets that have refilled: they hold no information.
func (lm *limiter) sweep(now time.Time) {
	lm.checked = 0
	full := time.Duration(float64(lm.l.RateBurst) / lm.l.RatePerIP * float64(time.Second))
	for ip, b := range lm.buckets {
		if now.Sub(b.last) > full {
			delete(lm.buckets, ip)
		}
	}
}

// sniffed releases a connection's sniff slot.
func (lm *limiter) sniffed() {
	lm.mu.Lock()
	lm.sniffs--
	lm.mu.Unlock()
}

// closed releases a connection that was admitted.
func (lm *limiter) closed(ip netip.Addr) {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	lm.conns--
	if lm.perIP[ip]--; lm.perIP[ip] <= 0 {
		delete(lm.perIP, ip)
	}
}
