package mux

import (
	"errors"
	"net"
	"time"

	"go.uber.org/zap"
)

// acceptedConn remembers when a connection was accepted: the sniff deadline
// and the connection's duration count from then.
type acceptedConn struct {
	net.Conn
	at time.Time
}

// acceptListener wraps the root listener so that temporary accept errors
// (EMFILE, ENFILE, ECONNABORTED, ...) back off instead of spinning: cmux
// retries them at once, which turns descriptor exhaustion into a busy loop.
type acceptListener struct {
	net.Listener
	logger *zap.Logger
	claim  func(net.Conn) bool
}

const (
	minAcceptBackoff = 5 * time.Millisecond
	maxAcceptBackoff = time.Second
)

func (l *acceptListener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			if l.claim != nil && l.claim(c) {
				backoff = 0
				continue
			}
			return &acceptedConn{Conn: c, at: time.Now()}, nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() && !isTemporary(err) {
			return nil, err
		}
		backoff = min(max(2*backoff, minAcceptBackoff), maxAcceptBackoff)
		l.logger.Warn("accept failed; backing off", zap.Error(err), zap.Duration("backoff", backoff))
		time.Sleep(backoff)
	}
}

// isTemporary reports the errors Accept may recover from. net.Error's
// Temporary is deprecated but still what the net package sets for these.
func isTemporary(err error) bool {
	t, ok := err.(interface{ Temporary() bool })
	return ok && t.Temporary()
}
