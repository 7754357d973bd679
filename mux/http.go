package mux

import (
	"bytes"
	"strings"
)

// h2Preface is the HTTP/2 connection preface a client sends first when it
// speaks h2c with prior knowledge (RFC 9113 §3.4).
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// maxMethodLen bounds the method token; the longest registered method,
// UPDATEREDIRECTREF, has 17 characters.
const maxMethodLen = 24

// httpSniffer recognises an HTTP/1.x request line ("METHOD SP target SP
// HTTP/1.d") or the h2c preface. It is fed the connection's bytes in pieces
// and keeps its position, so a long request target is scanned once. Any
// method token is accepted (PATCH, PROPFIND, ...).
type httpSniffer struct {
	state  uint8
	pos    int // bytes of the current token seen
	seen   int // total bytes fed
	h1Fail bool
	h2Fail bool
}

const (
	inMethod uint8 = iota
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
				s.h1Fail = true
			}
		}
		if s.h1Fail && s.h2Fail {
			return rejected
		}
	}
	return needMore
}

// step advances the HTTP/1 request-line state machine by one byte.
func (s *httpSniffer) step(c byte) verdict {
	switch s.state {
	case inMethod:
		switch {
		case c == ' ' && s.pos > 0:
			s.state, s.pos = inTarget, 0
		case isTokenChar(c) && s.pos < maxMethodLen:
			s.pos++
		default:
			return rejected
		}
	case inTarget:
		switch {
		case c == ' ' && s.pos > 0:
			s.state, s.pos = inVersion, 0
		case c > ' ' && c < 0x7f:
			s.pos++
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
	}
	return needMore
}

// isTokenChar reports whether c may appear in an HTTP token (RFC 9110 §5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return c != 0 && bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), c) >= 0
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
func findHost(b []byte) (string, hostResult) {
	eol := bytes.Index(b, []byte("\r\n"))
	if eol < 0 {
		return "", hostNeedMore
	}
	rest := b[eol+2:]
	for {
		eol = bytes.Index(rest, []byte("\r\n"))
		if eol < 0 {
			return "", hostNeedMore
		}
		line := rest[:eol]
		if len(line) == 0 {
			return "", hostAbsent
		}
		if len(line) > 5 && line[4] == ':' && bytes.EqualFold(line[:4], []byte("host")) {
			return HostName(string(bytes.TrimSpace(line[5:]))), hostFound
		}
		rest = rest[eol+2:]
	}
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
