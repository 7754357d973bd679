// Package tlsutil obtains, renews and serves TLS certificates for portmux.
//
// A Manager wraps certmagic: an ACME CA (Let's Encrypt, ZeroSSL, any
// directory URL) or a small internal CA persisted in the same storage.
// The ACME challenges are answered inside portmux's own listener: TLS-ALPN-01
// during the TLS handshakes of the *tls.Config from TLSConfig, and HTTP-01 by
// the handler from HTTPChallengeHandler. Certificate events (obtained,
// renewed, failed) are logged with the keys "event", "name" and "issuer".
//
// Typical usage:
//
//	m, err := tlsutil.New(tlsutil.Options{
//		CA:            "letsencrypt",
//		Email:         "admin@example.com",
//		Agreed:        true,
//		Storage:       "/data/certs",
//		ChallengePort: 443, // the mux port, already listening
//		Logger:        logger,
//	})
//	if err != nil { ... }
//	defer m.Close()
//	_ = m.Manage(ctx, []string{"app.example.com"})
//	tlsConf := m.TLSConfig()                    // terminate TLS with it
//	tickets.Share(tlsConf)                      // one NewSessionTickets per process: sessions outlive reloads
//	plain := m.HTTPChallengeHandler(redirect)   // serve this on :80
//
// certmagic keeps some process-wide state (its job queue, ACME rate
// limiters, active challenges) and writes a few messages with the standard
// library's log package (for example when one of its solver goroutines
// panics). tlsutil does not redirect the standard logger because that is
// global state; a main package that wants those lines in zap calls
// zap.RedirectStdLog once. certmagic's FileStorage also logs stale-lock
// notices through its own default logger, not the Logger given here.
package tlsutil
