// Package config loads and validates the portmux configuration.
//
// A configuration is built in layers: built-in defaults, then a YAML
// document, then environment variables prefixed with PORTMUX_. The result is
// decoded strictly (unknown keys and mistyped values are errors) into a plain
// [Config] and checked by [Config.Validate]. Every problem found is reported,
// one line each, in an [*Error].
//
// The package is a leaf: it does no networking and no logging. Validate reads
// the files the config names (tls.trusted_roots and each route's
// upstream_tls files), because their content is configuration.
//
// Typical usage:
//
//	cfg, err := config.Load(path)
//	if err != nil {
//		var cerr *config.Error
//		if errors.As(err, &cerr) {
//			for _, p := range cerr.Problems {
//				fmt.Fprintln(os.Stderr, p)
//			}
//		}
//		return err
//	}
//	for _, r := range cfg.Routes {
//		// first match wins: wire r.Match to r.To, r.Upstreams or,
//		// when r.Terminates(), to r.Routes on the decrypted stream
//	}
package config

import "time"

// Config is a complete portmux configuration. Load and Parse return a Config
// with defaults applied, names lowercased and every constraint checked. A
// Config is a plain value: it is safe for concurrent reads and is never
// modified by this package after Load or Parse return.
type Config struct {
	// Listen holds the addresses to accept connections on, as host:port.
	// The host may be empty (all interfaces), an IP, a bracketed IPv6
	// address or a name. Default [DefaultListen].
	Listen []string `koanf:"listen"`

	// HTTPListen is an optional plain-HTTP listener, such as ":80", for
	// ACME HTTP-01 answers, redirect_http and HTTP routes. The empty
	// string (the default) disables it. Same form as a Listen entry; it
	// must differ from every Listen entry.
	HTTPListen string `koanf:"http_listen"`

	// SniffTimeout bounds how long a new connection may take to send enough
	// bytes to identify its protocol. A client that sends nothing in that
	// time is "silent" (see ProtocolSilent). Default [DefaultSniffTimeout];
	// must be > 0 and <= 1m.
	SniffTimeout time.Duration `koanf:"sniff_timeout"`

	// SniffMaxBytes caps how many bytes are buffered while identifying a
	// protocol. Default [DefaultSniffMaxBytes]; must be in [1024, 1048576].
	SniffMaxBytes int `koanf:"sniff_max_bytes"`

	// HandshakeTimeout bounds the TLS handshake of routes that terminate
	// TLS. Default [DefaultHandshakeTimeout]; must be > 0.
	HandshakeTimeout time.Duration `koanf:"handshake_timeout"`

	// DialTimeout bounds connecting to a backend. Routes may override it.
	// Default [DefaultDialTimeout]; must be > 0.
	DialTimeout time.Duration `koanf:"dial_timeout"`

	// IdleTimeout closes a proxied connection after this long without
	// traffic in either direction. Zero disables it. Routes may override
	// it. Default [DefaultIdleTimeout]; must be >= 0.
	IdleTimeout time.Duration `koanf:"idle_timeout"`

	// ShutdownGrace is how long open connections may drain on shutdown
	// before they are closed. Default [DefaultShutdownGrace]; must be >= 0.
	ShutdownGrace time.Duration `koanf:"shutdown_grace"`

	// Log configures logging.
	Log Log `koanf:"log"`

	// Admin configures the admin listener.
	Admin Admin `koanf:"admin"`

	// TLS configures the certificates of routes that terminate TLS.
	TLS TLS `koanf:"tls"`

	// HTTP holds the defaults of the HTTP reverse proxy (L7 routes).
	HTTP HTTP `koanf:"http"`

	// Limits bound connections per process and per client address.
	Limits Limits `koanf:"limits"`

	// ProxyProtocol accepts PROXY protocol headers from load balancers.
	ProxyProtocol ProxyProtocol `koanf:"proxy_protocol"`

	// Routes are tried in order; the first route whose Match accepts a
	// connection gets it. At least one route is required.
	Routes []Route `koanf:"routes"`
}

// Log configures logging.
type Log struct {
	// Level is one of "debug", "info", "warn" or "error". Default "info".
	Level string `koanf:"level"`

	// Format is "json" or "console". Default "json".
	Format string `koanf:"format"`
}

// Admin configures the admin listener.
type Admin struct {
	// Listen is the host:port of the admin listener, default
	// [DefaultAdminListen]. The empty string disables it. It must differ
	// from every Listen entry and from HTTPListen.
	Listen string `koanf:"listen"`
}

// Defaults applied by Load and Parse to keys that are absent or null.
const (
	// DefaultListen is the listen address used when listen is absent.
	DefaultListen = ":8443"
	// DefaultSniffTimeout is the default of sniff_timeout.
	DefaultSniffTimeout = time.Second
	// DefaultSniffMaxBytes is the default of sniff_max_bytes.
	DefaultSniffMaxBytes = 65536
	// DefaultHandshakeTimeout is the default of handshake_timeout.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultDialTimeout is the default of dial_timeout.
	DefaultDialTimeout = 5 * time.Second
	// DefaultIdleTimeout is the default of idle_timeout.
	DefaultIdleTimeout = time.Hour
	// DefaultShutdownGrace is the default of shutdown_grace.
	DefaultShutdownGrace = 30 * time.Second
	// DefaultLogLevel is the default of log.level.
	DefaultLogLevel = "info"
	// DefaultLogFormat is the default of log.format.
	DefaultLogFormat = "json"
	// DefaultAdminListen is the default of admin.listen: loopback only.
	DefaultAdminListen = "127.0.0.1:9090"
	// DefaultCA is the default of tls.ca.
	DefaultCA = CAInternal
	// DefaultMaxHeaderBytes is the default of http.max_header_bytes: 64 KiB,
	// ample for large cookies and tokens, while an edge bounds what each
	// slow client can make it hold (nginx allows 32 KiB, Envoy 60 KiB;
	// Go's own default of 1 MiB is a server's, not an edge's).
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultReadHeaderTimeout is the default of http.read_header_timeout.
	DefaultReadHeaderTimeout = 10 * time.Second
	// DefaultHTTPIdleTimeout is the default of http.idle_timeout.
	DefaultHTTPIdleTimeout = time.Minute
	// DefaultSendTimeout is the default of http.send_timeout, nginx's
	// send_timeout.
	DefaultSendTimeout = time.Minute
	// DefaultResponseHeaderTimeout is the default of
	// http.response_header_timeout.
	DefaultResponseHeaderTimeout = time.Minute
)

// Limits checked by Validate.
const (
	// MaxSniffTimeout is the largest allowed sniff_timeout.
	MaxSniffTimeout = time.Minute
	// MinSniffMaxBytes is the smallest allowed sniff_max_bytes.
	MinSniffMaxBytes = 1024
	// MaxSniffMaxBytes is the largest allowed sniff_max_bytes.
	MaxSniffMaxBytes = 1 << 20
	// MinMaxHeaderBytes is the smallest allowed http.max_header_bytes.
	MinMaxHeaderBytes = 4096
	// MaxMaxHeaderBytes is the largest allowed http.max_header_bytes.
	MaxMaxHeaderBytes = 16 << 20
)

// defaults returns the default layer as a nested map with YAML key names.
// It is the only place defaults of always-present keys are spelled out as
// configuration; the defaults of optional sections, which apply only when
// the section is written, are in sectionDefaults.
func defaults() map[string]any {
	return map[string]any{
		"listen":            []any{DefaultListen},
		"http_listen":       "",
		"sniff_timeout":     DefaultSniffTimeout,
		"sniff_max_bytes":   DefaultSniffMaxBytes,
		"handshake_timeout": DefaultHandshakeTimeout,
		"dial_timeout":      DefaultDialTimeout,
		"idle_timeout":      DefaultIdleTimeout,
		"shutdown_grace":    DefaultShutdownGrace,
		"log": map[string]any{
			"level":  DefaultLogLevel,
			"format": DefaultLogFormat,
		},
		"admin": map[string]any{
			"listen": DefaultAdminListen,
		},
		"tls": map[string]any{
			"ca":          DefaultCA,
			"agree_terms": false,
		},
		"limits": map[string]any{
			"max_sniffs": DefaultMaxSniffs,
		},
		"http": map[string]any{
			"max_header_bytes":        DefaultMaxHeaderBytes,
			"read_header_timeout":     DefaultReadHeaderTimeout,
			"idle_timeout":            DefaultHTTPIdleTimeout,
			"send_timeout":            DefaultSendTimeout,
			"response_header_timeout": DefaultResponseHeaderTimeout,
		},
	}
}
