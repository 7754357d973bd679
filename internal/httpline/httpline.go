// Package httpline holds the rules of HTTP/1 syntax that mux's sniffer and
// proxy's direct path must apply alike, since a connection mux routes as
// HTTP must be read the same way by the server it reaches. It is a leaf of
// the module, shared by mux and proxy, which must not import each other.
package httpline

// MaxEmptyLines bounds the empty lines (CRLF or a bare LF) skipped before
// a request line. RFC 9112 §2.2 asks a server to ignore at least one: some
// clients send one after a POST's body. net/http skips up to four bytes of
// them (after a POST only), nginx any number within its buffer. A stream
// of nothing but empty lines is then not HTTP, and the sniff limits end it.
const MaxEmptyLines = 4

// EmptyLine returns the length of the empty line (CRLF or LF) b starts
// with, 0 if none (or a CR not yet followed by anything).
func EmptyLine(b []byte) int {
	switch {
	case len(b) == 0:
		return 0
	case b[0] == '\n':
		return 1
	case b[0] == '\r' && len(b) > 1 && b[1] == '\n':
		return 2
	}
	return 0
}
