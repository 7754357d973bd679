package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// DataPorts is a range of ports on which FTP passive data connections are
// taken instead of the multiplexed port, for firewalls that can open a
// range. A data connection is then matched by its source IP and the port
// it arrives at, so many users behind one NAT address do not wait for each
// other: each expectation gets its own port (see DataClaims.expect).
//
// Listeners are opened on first use and stay open until Close. A connection
// arriving on one of them that nobody expects is closed at once and logged.
//
// Its methods are safe for concurrent use.
type DataPorts struct {
	host        string
	first, last int
	claims      *DataClaims

	mu     sync.Mutex
	lns    map[int]net.Listener
	next   int
	closed bool
	wg     sync.WaitGroup
}

// NewDataPorts returns the port range first..last on host ("" for all
// addresses). Expectations are filed in claims, whose expiry and logger
// apply; it may be the table given to mux (keys differ by port).
func NewDataPorts(host string, first, last int, claims *DataClaims) (*DataPorts, error) {
	if first < 1 || last > 65535 || first > last {
		return nil, fmt.Errorf("ftp data ports %d-%d: want 1 <= first <= last <= 65535", first, last)
	}
	if claims == nil {
		return nil, errors.New("ftp data ports: nil claims")
	}
	return &DataPorts{host: host, first: first, last: last, claims: claims, lns: make(map[int]net.Listener), next: first}, nil
}

// expect files e under a port of the range on which nothing is expected
// from ip yet, listening on it if needed, and returns that port.
func (p *DataPorts) expect(ctx context.Context, ip netip.Addr, e *expectation) (int, error) {
	var lastErr error = errClaimBusy
	for range p.last - p.first + 1 {
		port, err := p.listenNext(ip)
		if err != nil {
			if errors.Is(err, errClaimsClosed) {
				return 0, err
			}
			lastErr = err
			continue
		}
		e.key = claimKey{ip: ip, port: port}
		switch err := p.claims.expect(ctx, e, false); {
		case err == nil:
			return port, nil
		case !errors.Is(err, errClaimBusy):
			return 0, err
		}
	}
	return 0, lastErr
}

// listenNext returns the next port of the range, round robin, skipping the
// ones where ip is already expected, and makes sure it is listening.
func (p *DataPorts) listenNext(ip netip.Addr) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, errClaimsClosed
	}
	port := p.next
	p.next++
	if p.next > p.last {
		p.next = p.first
	}
	if p.claims.has(claimKey{ip: ip, port: port}) {
		return 0, errClaimBusy
	}
	if p.lns[port] != nil {
		return port, nil
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(p.host, strconv.Itoa(port)))
	if err != nil {
		return 0, fmt.Errorf("listening for ftp data: %w", err)
	}
	p.lns[port] = ln
	p.wg.Add(1)
	go p.serve(ln, port)
	return port, nil
}

// serve accepts data connections on one port of the range.
func (p *DataPorts) serve(ln net.Listener, port int) {
	defer p.wg.Done()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() || isTemporaryAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return // closed
		}
		backoff = 0
		e := p.claims.take(claimKey{ip: netAddrIP(c.RemoteAddr()), port: port})
		if e == nil {
			p.claims.log.Warn("ftp data connection refused: not expected", zap.Stringer("client", c.RemoteAddr()), zap.Int("port", port))
			c.Close()
			continue
		}
		p.claims.log.Info("ftp data connection claimed", zap.Stringer("client", c.RemoteAddr()),
			zap.Int("port", port), zap.Stringer("backend", e.backend.RemoteAddr()))
		go e.sess.relayData(c, e.backend)
	}
}

// isTemporaryAccept reports the accept errors worth retrying (EMFILE, ...).
// net.Error's Temporary is deprecated but still what net sets for them.
func isTemporaryAccept(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}

// Close closes the listeners and waits for their accept loops. Pending
// expectations stay in the claims table (DataClaims.Close drops them);
// data connections already relayed are not affected.
func (p *DataPorts) Close() error {
	p.mu.Lock()
	p.closed = true
	for port, ln := range p.lns {
		ln.Close()
		delete(p.lns, port)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}
