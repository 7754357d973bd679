// Package config loads and validates the portmux configuration.
//
// A configuration is built in layers: built-in defaults, then a YAML
// document, then environment variables prefixed with PORTMUX_. The result is
// decoded strictly (unknown keys and mistyped values are errors) into a plain
// [Config] and checked by [Config.Validate]. Every problem found is reported,
// one line each, in an [*Error].
//
// The package is a leaf: it does no networking and no logging.
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
//		// first match wins: wire r.Match to r.To
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

	// SniffTimeout bounds how long a new connection may take to send enough
	// bytes to identify its protocol. A client that sends nothing in that
	// time is "silent" (see ProtocolSilent). Default [DefaultSniffTimeout];
	// must be > 0 and <= 1m.
	SniffTimeout time.Duration `koanf:"sniff_timeout"`

	// SniffMaxBytes caps how many bytes are buffered while identifying a
	// protocol. Default [DefaultSniffMaxBytes]; must be in [1024, 1048576].
	SniffMaxBytes int `koanf:"sniff_max_bytes"`

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

// Route sends connections accepted by Match to the target To.
type Route struct {
	// Name identifies the route in logs. Required and unique across
	// routes; it matches [a-z0-9][a-z0-9_.-]*.
	Name string `koanf:"name"`

	// Match selects the connections this route handles.
	Match Match `koanf:"match"`

	// To is the target: a host:port with a numeric port in 1-65535, or one
	// of the builtin targets BuiltinDemo and BuiltinEcho. Required.
	To string `koanf:"to"`

	// TLS is "" or TLSPassthrough, and may be set only when
	// Match.Protocol is ProtocolTLS. The empty string means passthrough:
	// the encrypted stream is forwarded untouched.
	TLS string `koanf:"tls"`

	// DialTimeout overrides Config.DialTimeout for this route when not
	// nil. Must be > 0.
	DialTimeout *time.Duration `koanf:"dial_timeout"`

	// IdleTimeout overrides Config.IdleTimeout for this route when not
	// nil. Zero disables it. Must be >= 0.
	IdleTimeout *time.Duration `koanf:"idle_timeout"`
}

// Match selects connections. All non-empty fields must match. Within a list,
// any element may match.
type Match struct {
	// Protocol is the sniffed protocol: one of the Protocol constants.
	// Required.
	Protocol string `koanf:"protocol"`

	// SNI lists TLS server names: exact DNS names or "*.example.com",
	// where "*" stands for exactly one leading label. Only with
	// ProtocolTLS. Lowercased by Load and Parse.
	SNI []string `koanf:"sni"`

	// ALPN lists TLS application protocols offered by the client, such as
	// "h2". Only with ProtocolTLS. Entries are non-empty.
	ALPN []string `koanf:"alpn"`

	// Host lists HTTP Host header values without a port: exact names or
	// "*.example.com". Only with ProtocolHTTP. Lowercased by Load and
	// Parse.
	Host []string `koanf:"host"`

	// Source lists client networks: CIDRs such as "10.0.0.0/8" or bare IPs
	// such as "192.0.2.7". Use ParseSource to turn entries into prefixes.
	Source []string `koanf:"source"`
}

// Protocol values for Match.Protocol.
const (
	// ProtocolTLS matches a TLS ClientHello.
	ProtocolTLS = "tls"
	// ProtocolHTTP matches an HTTP/1.x request line or the HTTP/2
	// prior-knowledge (h2c) connection preface.
	ProtocolHTTP = "http"
	// ProtocolSSH matches an SSH version banner.
	ProtocolSSH = "ssh"
	// ProtocolFTP matches a client that sent nothing within SniffTimeout,
	// like ProtocolSilent, and marks the target as an FTP server.
	ProtocolFTP = "ftp"
	// ProtocolSilent matches a client that sent nothing within
	// SniffTimeout (server-first protocols).
	ProtocolSilent = "silent"
	// ProtocolUnknown matches bytes that matched no other protocol: the
	// fallback.
	ProtocolUnknown = "unknown"
	// ProtocolAny matches every connection.
	ProtocolAny = "any"
)

// Builtin targets for Route.To, served in-process instead of dialed. What
// they serve is defined by cmd/portmux, not by this package.
const (
	// BuiltinDemo is a builtin web page, for HTTP routes, that shows how
	// portmux classified the request.
	BuiltinDemo = "builtin:demo"
	// BuiltinEcho is a builtin target that echoes bytes back.
	BuiltinEcho = "builtin:echo"
)

// TLSPassthrough is the Route.TLS mode that forwards TLS untouched.
const TLSPassthrough = "passthrough"

// Defaults applied by Load and Parse to keys that are absent or null.
const (
	// DefaultListen is the listen address used when listen is absent.
	DefaultListen = ":8443"
	// DefaultSniffTimeout is the default of sniff_timeout.
	DefaultSniffTimeout = time.Second
	// DefaultSniffMaxBytes is the default of sniff_max_bytes.
	DefaultSniffMaxBytes = 65536
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
)

// Limits checked by Validate.
const (
	// MaxSniffTimeout is the largest allowed sniff_timeout.
	MaxSniffTimeout = time.Minute
	// MinSniffMaxBytes is the smallest allowed sniff_max_bytes.
	MinSniffMaxBytes = 1024
	// MaxSniffMaxBytes is the largest allowed sniff_max_bytes.
	MaxSniffMaxBytes = 1 << 20
)

// defaults returns the default layer as a nested map with YAML key names.
// It is the only place defaults are spelled out as configuration.
func defaults() map[string]any {
	return map[string]any{
		"listen":          []any{DefaultListen},
		"sniff_timeout":   DefaultSniffTimeout,
		"sniff_max_bytes": DefaultSniffMaxBytes,
		"dial_timeout":    DefaultDialTimeout,
		"idle_timeout":    DefaultIdleTimeout,
		"shutdown_grace":  DefaultShutdownGrace,
		"log": map[string]any{
			"level":  DefaultLogLevel,
			"format": DefaultLogFormat,
		},
	}
}
