package mux

import (
	"bytes"
	"strings"

	"github.com/portmux/portmux/internal/httpline"
)

// h2Preface is the HTTP/2 connection preface a client sends first when it
// speaks h2c with prior knowledge (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethodLen bounds the method token; the longest registered method,
// UPDATEREDIRECTREF, has 17 characters.
const maxMethodLen = 24

// knownMethodLen is the length of the longest method knownMethod names.
const knownMethodLen = len("OPTIONS")

// httpSniffer recognises an HTTP/1.x request line ("METHOD SP target SP
// HTTP/1.d"), after at most httpline.MaxEmptyLines empty lines, or the h2c
// preface. It is fed the connection's bytes in pieces and keeps its
// position, so a long request target is scanned once. Any method token is
// accepted (PATCH, PROPFIND, ...).
//
// A request line that starts with a method of RFC 9110 and a space, then
// an origin-form target ("/...") or, whatever the target, the version's
// "HTTP/", is HTTP even if the rest is malformed (a space in the target,
// version HTTP/2.0 or HTTP/3) or longer than the sniff reads: the HTTP
// server then answers it (400, 505, 414) instead of a silent close. Lines
// that merely start with a method (Redis's inline "GET key") are not.
type httpSniffer struct {
	state     uint8
	pos       int                  // bytes of the current token seen
	seen      int                  // total bytes fed
	lines     int                  // empty lines skipped
	method    [knownMethodLen]byte // the method's first bytes
	known     bool                 // the method is one of RFC 9110's
	clear     bool                 // HTTP, whatever follows (see above)
	malformed bool                 // matched only as clear: the line went wrong
	h1Fail    bool
	h2Fail    bool
}

const (
	inMethod uint8 = iota
	inEmptyLine
	inTarget
	inVersion
)

const httpVersionPrefix = "HTTP/1."

// feed takes the next bytes of the connection and returns the verdict so far.
// The HTTP/1 request line and the h2c preface are followed side by side
// ("PRI * HTTP/2.0" starts like a request line) until one matches or both fail.
func (s *httpSniffer) feed(b []byte) verdict {
	for _, c := range b {
		if !s.h2Fail {
			if c != h2Preface[s.seen] {
				s.h2Fail = true
			} else if s.seen == len(h2Preface)-1 {
				return matched
			}
		}
		s.seen++
		if !s.h1Fail {
			switch s.step(c) {
			case matched:
				return matched
			case rejected:
				if s.clear { // malformed, but clearly HTTP
					s.malformed = true
					return matched
				}
				s.h1Fail = true
			}
		}
		if s.h1Fail && s.h2Fail {
			return rejected
		}
	}
	return needMore
}

// malformedHTTP reports whether b, the bytes of a connection taken as
// HTTP, is so only as a clear start of a request line that then went
// wrong or went on past what was read: not a well-formed request line
// nor the h2c preface.
func malformedHTTP(b []byte) bool {
	var s httpSniffer
	v := s.feed(b)
	return s.malformed || v == needMore && s.clear
}

// atLimit is the verdict when the sniff read all it may without one:
// a request line still going on is HTTP when it is clearly one (its
// server answers 414), and not otherwise.
func (s *httpSniffer) atLimit() verdict {
	if s.clear {
		return matched
	}
	return rejected
}

// step advances the HTTP/1 request-line state machine by one byte.
func (s *httpSniffer) step(c byte) verdict {
	switch s.state {
	case inMethod:
		switch {
		case c == ' ' && s.pos > 0:
			s.known = s.pos <= knownMethodLen && knownMethod(s.method[:s.pos])
			s.state, s.pos = inTarget, 0
		case isTokenChar(c) && s.pos < maxMethodLen:
			if s.pos < knownMethodLen {
				s.method[s.pos] = c
			}
			s.pos++
		case s.pos == 0 && (c == '\r' || c == '\n') && s.lines < httpline.MaxEmptyLines:
			s.lines++
			if c == '\r' {
				s.state = inEmptyLine
			}
		default:
			return rejected
		}
	case inEmptyLine: // after a CR at the start of a line
		if c != '\n' {
			return rejected
		}
		s.state = inMethod
	case inTarget:
		switch {
		case c > ' ' && c < 0x7f:
			if s.pos == 0 && c == '/' && s.known {
				s.clear = true
			}
			s.pos++
		case c == ' ' && s.pos > 0:
			s.state, s.pos = inVersion, 0
		default:
			return rejected
		}
	case inVersion:
		if s.pos == len(httpVersionPrefix) {
			if c >= '0' && c <= '9' {
				return matched
			}
			return rejected
		}
		if c != httpVersionPrefix[s.pos] {
			return rejected
		}
		s.pos++
		if s.pos == len("HTTP/") && s.known {
			s.clear = true
		}
	}
	return needMore
}

// knownMethod reports whether m is one of the methods of RFC 9110 §9.
func knownMethod(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "CONNECT":
		return true
	}
	return false
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110 §5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// IsH2CPreface reports whether b starts with the h2c prior-knowledge
// preface: the connection speaks HTTP/2 in the clear.
func IsH2CPreface(b []byte) bool {
	return bytes.HasPrefix(b, []byte(h2Preface))
}

// hostResult is the outcome of looking for the Host header.
type hostResult uint8

const (
	hostNeedMore hostResult = iota
	hostFound               // Host header found (possibly empty)
	hostAbsent              // the header block ended without one
)

// findHost looks for the Host header in b, the start of an HTTP/1 request.
// It returns as soon as the Host line is complete, without waiting for the
// rest of the header block. The host is lowercased and its port removed.
// Lines end with LF, a CR before it dropped, as net/http and nginx read
// them (RFC 9112 §2.2); a CR elsewhere stays in its line.
func findHost(b []byte) (string, hostResult) {
	_, rest, ok := requestLine(b)
	if !ok {
		return "", hostNeedMore
	}
	for {
		eol := bytes.IndexByte(rest, '\n')
		if eol < 0 {
			return "", hostNeedMore
		}
		line := dropCR(rest[:eol])
		if len(line) == 0 {
			return "", hostAbsent
		}
		if len(line) > 5 && line[4] == ':' && bytes.EqualFold(line[:4], []byte("host")) {
			return HostName(string(bytes.TrimSpace(line[5:]))), hostFound
		}
		rest = rest[eol+1:]
	}
}

// skipEmptyLines returns b after the empty lines (CRLF or LF) it starts
// with, at most httpline.MaxEmptyLines of them.
func skipEmptyLines(b []byte) []byte {
	for range httpline.MaxEmptyLines {
		n := httpline.EmptyLine(b)
		if n == 0 {
			break
		}
		b = b[n:]
	}
	return b
}

// requestLine returns the request line at the start of b, after the empty
// lines skipEmptyLines skips, without its line end, and the bytes after
// it; ok is false while the line is not complete.
func requestLine(b []byte) (line, rest []byte, ok bool) {
	b = skipEmptyLines(b)
	eol := bytes.IndexByte(b, '\n')
	if eol < 0 {
		return nil, nil, false
	}
	return dropCR(b[:eol]), b[eol+1:], true
}

// dropCR returns line without the CR that ends it, if any.
func dropCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

// HostName is the host name a Host header value (or :authority) names, as
// routes compare it: lowercased, without port, IPv6 literals' brackets, or
// the trailing dot of a fully qualified name:
// upstreams such as nginx serve "admin.example." as "admin.example", so a
// route for the latter must take it too, or its access rules could be
// passed by adding a dot. A host already in lower case is returned as a
// substring of h: every HTTP/2 request is routed through here, and most
// hosts are sent in lower case (allocations measured per request).
func HostName(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return strings.ToLower(h[1:i])
		}
		return ""
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// requestPath returns the path of the request line at the start of b (the
// sniffer has seen it whole), without query; empty for the authority form
// (CONNECT) or when b holds no complete target.
func requestPath(b []byte) string {
	b = skipEmptyLines(b)
	if eol := bytes.IndexByte(b, '\n'); eol >= 0 {
		b = b[:eol]
	}
	sp := bytes.IndexByte(b, ' ')
	if sp < 0 {
		return ""
	}
	target := b[sp+1:]
	end := bytes.IndexByte(target, ' ')
	if end < 0 {
		return ""
	}
	target = target[:end]
	// Origin form starts with "/" (and may contain "://" itself); anything
	// else with a scheme is the absolute form.
	if i := bytes.Index(target, []byte("://")); i > 0 && target[0] != '/' { // absolute form
		target = target[i+3:]
		slash := bytes.IndexByte(target, '/')
		if slash < 0 {
			return "/"
		}
		target = target[slash:]
	}
	if len(target) == 0 || target[0] != '/' {
		return ""
	}
	if q := bytes.IndexAny(target, "?#"); q >= 0 {
		target = target[:q]
	}
	return string(target)
}

// proxyV2Signature starts a PROXY protocol v2 header; v1 starts "PROXY ".
const proxyV2Signature = "\r\n\r\n\x00\r\nQUIT\n"

// isProxyHeader reports whether b starts with a PROXY protocol header.
func isProxyHeader(b []byte) bool {
	return bytes.HasPrefix(b, []byte("PROXY ")) || bytes.HasPrefix(b, []byte(proxyV2Signature))
}
