package mux

// Protocol is what the sniffer recognised in a connection's first bytes.
type Protocol uint8

// The protocols portmux tells apart.
const (
	// Unknown is a client whose bytes matched no protocol, one that sent too
	// few bytes to decide before the sniff timeout, or one that closed
	// without sending anything.
	Unknown Protocol = iota
	// TLS is a TLS ClientHello.
	TLS
	// HTTP is an HTTP/1.x request line or the HTTP/2 prior-knowledge preface.
	HTTP
	// SSH is an SSH identification string.
	SSH
	// Silent is a client that sent nothing within the sniff timeout:
	// server-first protocols such as FTP, SMTP, POP3 or IMAP.
	Silent
)

var protocolNames = [...]string{Unknown: "unknown", TLS: "tls", HTTP: "http", SSH: "ssh", Silent: "silent"}

// String returns the protocol's lowercase name as used in logs.
func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return "invalid"
}

// verdict is a sniffer's answer after seeing some bytes.
type verdict uint8

const (
	needMore verdict = iota // undecided: feed more bytes
	matched                 // the bytes are this protocol
	rejected                // the bytes are not this protocol
)
