package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// DataClaims is the table of FTP data connections portmux expects. When an
// FTP control connection gets a passive reply, the gateway dials the
// backend's data port at once and files that prepared connection here under
// the client's IP; the client's data connection, arriving at portmux's
// multiplexed port, is then recognised by its source IP alone (its first
// bytes cannot be sniffed: an upload starts with arbitrary data, a download
// starts silent).
//
// An expectation is used once. It expires after as long as FTP servers wait
// for a passive data connection (DefaultClaimExpiry), or when its session
// ends or asks for another data connection; its prepared backend connection
// is then aborted with a TCP reset, so the backend reports the transfer as
// failed (425/426) rather than as a complete empty one (226). Only one
// expectation per client IP and port is pending at a time: a passive reply
// of a second control connection from the same IP waits for the first to
// be claimed (see expect), so two sessions behind one NAT address never get
// each other's data.
//
// One DataClaims is shared by all FTP routes of a process and handed to mux
// as Options.Claim. Its methods are safe for concurrent use. A nil
// *DataClaims claims nothing.
type DataClaims struct {
	expiry time.Duration
	wait   time.Duration // how long a passive reply waits for another session's expectation
	log    *zap.Logger

	mu      sync.Mutex
	pending map[claimKey]*expectation
	freed   chan struct{} // closed (and replaced) when an expectation leaves the table
	closed  bool
}

// claimKey is what identifies an expected data connection: the client's IP
// and the port it will arrive at (0: the multiplexed port, whose number
// Claim does not know; else a DataPorts port).
type claimKey struct {
	ip   netip.Addr
	port int
}

// expectation is one expected data connection and the backend data
// connection prepared for it.
type expectation struct {
	key     claimKey
	backend net.Conn
	sess    *ftpSession
	timer   *time.Timer
}

// DefaultClaimExpiry is how long a data connection is expected when
// NewDataClaims is given no expiry. It is as long as FTP servers wait for a
// passive data connection (vsftpd's accept_timeout is 60s, proftpd and
// pure-ftpd wait about as long): a client that connects later than a
// direct server would accept must still be relayed, not sniffed as a new
// connection. Most clients connect within milliseconds of the passive
// reply, and an expectation leaves the table as soon as it is claimed, so
// the window in which a stranger from the same IP could be taken for the
// data connection is that long only for a client that is late or never
// connects (and a new passive command of its own session replaces it).
const DefaultClaimExpiry = 60 * time.Second

// maxClaimWait bounds how long a passive reply waits for another session's
// expectation from the same IP (on the multiplexed port, where only the IP
// tells them apart). It is the wait of the normal case, a client about to
// connect, with room to spare; shorter than the reply timeouts of common
// clients (FileZilla 20s, WinSCP 15s), so that a neighbour that never
// connects costs this session a 425 it can retry rather than a dropped
// control connection after the whole expiry.
const maxClaimWait = 10 * time.Second

var (
	errClaimsClosed = errors.New("ftp: data claims closed")
	errClaimBusy    = errors.New("ftp: a data connection from this client is already expected")
)

// NewDataClaims returns an empty table. Expectations expire after expiry
// (DefaultClaimExpiry if zero or negative). A nil logger logs nothing.
func NewDataClaims(expiry time.Duration, logger *zap.Logger) *DataClaims {
	if expiry <= 0 {
		expiry = DefaultClaimExpiry
	}
	if logger == nil {
		logger = zap.NewNop()
	}
	return &DataClaims{expiry: expiry, wait: min(expiry, maxClaimWait), log: logger,
		pending: make(map[claimKey]*expectation), freed: make(chan struct{})}
}

// Claim is mux.Options.Claim for the multiplexed port. If a data connection
// is expected from conn's remote IP, Claim takes the expectation, relays
// conn to the backend data connection prepared for it (with splice, in its
// own goroutine) and returns true: conn then belongs to the FTP session.
// Otherwise it returns false and conn is sniffed as usual. It never blocks.
func (d *DataClaims) Claim(conn net.Conn) bool {
	if d == nil {
		return false
	}
	ip := netAddrIP(conn.RemoteAddr())
	e := d.take(claimKey{ip: ip})
	if e == nil {
		return false // the usual case: any other connection, sniffed as usual
	}
	d.log.Info("ftp data connection claimed", zap.Stringer("client", conn.RemoteAddr()), zap.Stringer("backend", e.backend.RemoteAddr()))
	go e.sess.relayData(conn, e.backend)
	return true
}

// Pending returns the number of data connections expected now.
func (d *DataClaims) Pending() int {
	if d == nil {
		return 0
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// Close drops every pending expectation and aborts its prepared backend
// connection. Data connections already claimed are not affected; later
// passive replies are refused (425).
func (d *DataClaims) Close() {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.closed = true
	var dropped []*expectation
	for _, e := range d.pending {
		d.removeLocked(e)
		dropped = append(dropped, e)
	}
	d.mu.Unlock()
	for _, e := range dropped {
		abortConn(e.backend)
	}
}

// expect files e under its key. If another session already expects a data
// connection from the same IP on the same port, it waits until that one
// leaves the table, for at most d.wait, or returns errClaimBusy at once if
// !wait. Waiting is what keeps the data of two sessions from one NAT
// address apart: the second passive reply goes out only after the first
// data connection was claimed. The caller has dropped its own session's
// expectations first, so a session never waits for itself.
func (d *DataClaims) expect(ctx context.Context, e *expectation, wait bool) error {
	var deadline <-chan time.Time
	for {
		d.mu.Lock()
		if d.closed {
			d.mu.Unlock()
			return errClaimsClosed
		}
		if old := d.pending[e.key]; old == nil {
			d.pending[e.key] = e
			e.timer = time.AfterFunc(d.expiry, func() { d.expire(e) })
			d.mu.Unlock()
			return nil
		}
		freed := d.freed
		d.mu.Unlock()
		if !wait {
			return errClaimBusy
		}
		if deadline == nil {
			if c := d.log.Check(zapcore.DebugLevel, "ftp passive reply waits for another session's data connection"); c != nil {
				c.Write(zap.Stringer("client", e.key.ip))
			}
			t := time.NewTimer(d.wait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-freed:
		case <-deadline:
			return errClaimBusy
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// has reports whether a data connection is expected under key.
func (d *DataClaims) has(key claimKey) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending[key] != nil
}

// take removes and returns the expectation under key, or nil. The data
// relay is counted in its session under the table's lock, so a session that
// drops its expectations (drop takes the lock) and then waits for its
// relays cannot miss one that was just claimed.
func (d *DataClaims) take(key claimKey) *expectation {
	if !key.ip.IsValid() {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e := d.pending[key]
	if e == nil {
		return nil
	}
	d.removeLocked(e)
	e.sess.data.Add(1)
	return e
}

// drop removes the expectations of sess and aborts their backend
// connections: the session ended, or a new PASV/PORT replaced them (the
// backend has given up on the old data port by then, and must not take the
// prepared connection for a transfer that completed).
func (d *DataClaims) drop(sess *ftpSession) {
	if d == nil {
		return
	}
	d.mu.Lock()
	var dropped []*expectation
	for _, e := range d.pending {
		if e.sess == sess {
			d.removeLocked(e)
			dropped = append(dropped, e)
		}
	}
	d.mu.Unlock()
	for _, e := range dropped {
		abortConn(e.backend)
	}
}

// expire drops e if it is still pending when its time is up. The line is
// logged through the session's logger, which names the control
// connection's client and backend; announced is the address the client was
// told to open its data connection to, data the backend's data port.
func (d *DataClaims) expire(e *expectation) {
	d.mu.Lock()
	if d.pending[e.key] != e {
		d.mu.Unlock()
		return
	}
	d.removeLocked(e)
	d.mu.Unlock()
	abortConn(e.backend)
	e.sess.log.Info("ftp data connection expectation expired", zap.Stringer("announced", e.sess.announced(e.key)),
		zap.Stringer("data", e.backend.RemoteAddr()), zap.Duration("expiry", d.expiry))
}

func (d *DataClaims) removeLocked(e *expectation) {
	delete(d.pending, e.key)
	e.timer.Stop()
	close(d.freed)
	d.freed = make(chan struct{})
}

// netAddrIP returns the IP of a connection's address, IPv4-mapped IPv6
// addresses unmapped (a dual-stack listener reports v4 clients that way).
func netAddrIP(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
