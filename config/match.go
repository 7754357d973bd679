package config

// Match selects connections. All non-empty fields must match. Within a list,
// any element may match.
type Match struct {
	// Protocol is the sniffed protocol: one of the Protocol constants.
	// Required.
	Protocol string `koanf:"protocol" json:"protocol,omitempty"`

	// SNI lists TLS server names: exact DNS names or "*.example.com",
	// where "*" stands for exactly one leading label. Only with
	// ProtocolTLS. Lowercased by Load and Parse. On a route that
	// terminates TLS, these are also the names its certificates are for,
	// and IP addresses are allowed.
	SNI []string `koanf:"sni" json:"sni,omitempty"`

	// ALPN lists TLS application protocols offered by the client, such as
	// "h2". Only with ProtocolTLS. Entries are non-empty.
	ALPN []string `koanf:"alpn" json:"alpn,omitempty"`

	// Host lists HTTP Host header values without a port: exact names or
	// "*.example.com". Only with ProtocolHTTP. Lowercased by Load and
	// Parse.
	Host []string `koanf:"host" json:"host,omitempty"`

	// Path lists URL path prefixes, each starting with "/". Only with
	// ProtocolHTTP.
	Path []string `koanf:"path" json:"path,omitempty"`

	// Source lists client networks: CIDRs such as "10.0.0.0/8" or bare IPs
	// such as "192.0.2.7". Use ParseSource to turn entries into prefixes.
	Source []string `koanf:"source" json:"source,omitempty"`
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
	// BuiltinDemo is a builtin web page that shows how portmux classified
	// the request. It is an HTTP target (see Route.IsHTTP), allowed with
	// every protocol.
	BuiltinDemo = "builtin:demo"
	// BuiltinEcho is a builtin TCP target that echoes bytes back.
	BuiltinEcho = "builtin:echo"
)
