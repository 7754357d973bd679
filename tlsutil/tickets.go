package tlsutil

import "crypto/tls"

// SessionTickets issues and accepts TLS session tickets with keys that
// live as long as the process, not as long as one *tls.Config. crypto/tls
// keys tickets per Config, so a server that builds a new Config on each
// config reload would refuse every ticket issued before it: each returning
// client pays a full handshake, all of them at once after a SIGHUP.
//
// The keys are those of a Config kept for the purpose, which crypto/tls
// rotates as it does its own (a new key each day, each accepted for a
// week). They are not shared between processes: a client that moves to
// another replica makes a full handshake there.
type SessionTickets struct {
	keys *tls.Config
}

// NewSessionTickets returns a ticket keeper; its first key is made when
// the first ticket is issued.
func NewSessionTickets() *SessionTickets {
	return &SessionTickets{keys: &tls.Config{}}
}

// Share makes c issue and accept tickets with t's keys. c must not have
// WrapSession or UnwrapSession hooks of its own, which Share replaces.
func (t *SessionTickets) Share(c *tls.Config) {
	c.WrapSession = t.keys.EncryptTicket
	c.UnwrapSession = t.keys.DecryptTicket
}
