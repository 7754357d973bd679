package config

import "time"

// HTTP holds the settings of the HTTP reverse proxy that serves HTTP (L7)
// routes and of the plain-HTTP listener.
type HTTP struct {
	// TrustedProxies lists the networks of proxies in front of portmux,
	// in the form of Match.Source (use ParseSource). Forwarded headers
	// (X-Forwarded-For and the like) are believed only from these
	// addresses. Empty means none: the client is the peer.
	TrustedProxies []string `koanf:"trusted_proxies"`

	// MaxHeaderBytes caps the size of request headers. Default
	// [DefaultMaxHeaderBytes]; must be in [4096, 16777216].
	MaxHeaderBytes int `koanf:"max_header_bytes"`

	// ReadHeaderTimeout bounds reading a request's headers. Default
	// [DefaultReadHeaderTimeout]; must be > 0.
	ReadHeaderTimeout time.Duration `koanf:"read_header_timeout"`

	// IdleTimeout closes a keep-alive client connection after this long
	// without a request. Zero disables it. Default
	// [DefaultHTTPIdleTimeout]; must be >= 0.
	IdleTimeout time.Duration `koanf:"idle_timeout"`

	// SendTimeout bounds how long a write to a client may wait for the
	// client to take it (a client that stopped reading); the connection
	// is closed then. Zero disables it. Default [DefaultSendTimeout];
	// must be >= 0.
	SendTimeout time.Duration `koanf:"send_timeout"`

	// ResponseHeaderTimeout bounds waiting for an upstream's response
	// headers. Routes may override it. Default
	// [DefaultResponseHeaderTimeout]; must be > 0.
	ResponseHeaderTimeout time.Duration `koanf:"response_header_timeout"`
}
