package proxy

import (
	"bytes"
	"errors"

	"golang.org/x/net/http/httpguts"
)

// The direct HTTP/1.1 path (h1direct.go) reads request and response heads
// itself instead of through net/http. Its parser is deliberately narrow: it
// accepts the common, well-formed shapes and reports anything else as
// headUnsupported, so that net/http, which knows every corner of the
// protocol and answers malformed requests with the right 4xx, serves it.

// headResult is the outcome of parsing a head.
type headResult uint8

const (
	headNeedMore    headResult = iota // the head is not complete yet
	headOK                            // parsed; the direct path can forward it
	headUnsupported                   // valid or not, net/http must handle it
	headFaulty                        // a request no one should take: refused 400 (requestHead.parseRequest)
	headRefused                       // a request the direct path answers itself (directConn.refusal)
)

// maxRequestFields bounds the field lines of a request head the direct
// path forwards; a request with more goes to net/http. A response head is
// bounded by the upstream buffer only: it has nowhere else to go.
const maxRequestFields = 100

// headerField is one field line of a head, as slices of the head's bytes.
type headerField struct {
	name  []byte
	value []byte // without surrounding whitespace
	line  []byte // the whole line with its CRLF, forwarded as is
	kind  fieldKind
}

// fieldKind sorts the fields the proxy treats specially.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldHost
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldHopByHop // Keep-Alive, Proxy-Connection, Proxy-Authenticate, Proxy-Authorization
	fieldTrailer
	fieldTE
	fieldUpgrade
	fieldExpect
	fieldForwarded // Forwarded: replaced, as ReverseProxy's Rewrite does
	fieldXFF
	fieldXFHost
	fieldXFProto
	fieldXForwarded // any other X-Forwarded-*, and X-Real-IP: from trusted proxies only
)

// specialFields are the field names the proxy treats specially.
var specialFields = []struct {
	name string
	kind fieldKind
}{
	{"host", fieldHost}, {"content-length", fieldContentLength}, {"transfer-encoding", fieldTransferEncoding},
	{"connection", fieldConnection}, {"keep-alive", fieldHopByHop}, {"proxy-connection", fieldHopByHop},
	{"proxy-authenticate", fieldHopByHop}, {"proxy-authorization", fieldHopByHop}, {"trailer", fieldTrailer},
	{"te", fieldTE}, {"upgrade", fieldUpgrade}, {"expect", fieldExpect}, {"forwarded", fieldForwarded},
	{"x-forwarded-for", fieldXFF}, {"x-forwarded-host", fieldXFHost}, {"x-forwarded-proto", fieldXFProto},
	{"x-real-ip", fieldXForwarded},
}

// kindOf classifies a field name (case-insensitive).
func kindOf(name []byte) fieldKind {
	for _, f := range specialFields {
		if len(name) == len(f.name) && bytes.EqualFold(name, []byte(f.name)) {
			return f.kind
		}
	}
	if len(name) > len(xForwardedPrefix) && bytes.EqualFold(name[:len(xForwardedPrefix)], []byte(xForwardedPrefix)) {
		return fieldXForwarded
	}
	return fieldOther
}

// head is what request and response heads share: the start line, the
// field lines, and the field names the Connection header lists (hop-by-hop
// too, so not forwarded).
type head struct {
	start      []byte
	fields     []headerField
	connTokens [][]byte
	size       int // bytes of the head, final empty line included
	maxFields  int // 0: no limit
}

// parseFields splits b into the start line and field lines, up to the
// empty line. It accepts CRLF line ends only; a line that begins with
// whitespace (obsolete line folding, RFC 9112 §5.2) is headFaulty.
func (h *head) parseFields(b []byte) headResult {
	h.fields, h.connTokens = h.fields[:0], h.connTokens[:0]
	eol := bytes.Index(b, []byte("\r\n"))
	if eol < 0 {
		return needMoreOr(b)
	}
	h.start = b[:eol]
	if bytes.IndexByte(h.start, '\n') >= 0 {
		return headUnsupported
	}
	pos := eol + 2
	for {
		rest := b[pos:]
		eol = bytes.Index(rest, []byte("\r\n"))
		if eol < 0 {
			return needMoreOr(rest)
		}
		line := rest[:eol]
		if len(line) == 0 {
			h.size = pos + 2
			return headOK
		}
		if line[0] == ' ' || line[0] == '\t' {
			return headFaulty
		}
		if h.maxFields > 0 && len(h.fields) == h.maxFields {
			return headUnsupported
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || !validToken(line[:colon]) || !validFieldValue(line[colon+1:]) {
			return headUnsupported
		}
		f := headerField{name: line[:colon], value: trimOWS(line[colon+1:]), line: rest[:eol+2]}
		f.kind = kindOf(f.name)
		if f.kind == fieldConnection {
			h.connTokens = appendTokens(h.connTokens, f.value)
		}
		h.fields = append(h.fields, f)
		pos += eol + 2
	}
}

// otherVersion returns the version number of a request line whose
// version is HTTP/d (or d.d, any digits) with a major version other than
// 1: HTTP/2.0 or HTTP/3 said in HTTP/1 syntax, which RFC 9110 §15.6.6
// answers 505. The h2c preface's line (PRI * HTTP/2.0) is not one: it
// starts HTTP/2, for net/http to take up.
func otherVersion(line []byte) ([]byte, bool) {
	line = bytes.TrimSuffix(line, []byte("\r"))
	sp := bytes.LastIndexByte(line, ' ')
	if sp < 0 || bytes.HasPrefix(line, []byte("PRI ")) {
		return nil, false
	}
	v, ok := bytes.CutPrefix(line[sp+1:], []byte("HTTP/"))
	if !ok {
		return nil, false
	}
	major, minor, dot := bytes.Cut(v, []byte("."))
	if !allDigits(major) || dot && !allDigits(minor) || string(major) == "1" {
		return nil, false
	}
	return v, true
}

// allDigits reports whether b is one or more ASCII digits.
func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) > 0
}

// needMoreOr is headNeedMore unless b already holds a bare LF, which the
// direct path leaves to net/http.
func needMoreOr(b []byte) headResult {
	if bytes.IndexByte(b, '\n') >= 0 {
		return headUnsupported
	}
	return headNeedMore
}

// listedInConnection reports whether name is one of the Connection tokens.
func (h *head) listedInConnection(name []byte) bool {
	for _, t := range h.connTokens {
		if bytes.EqualFold(t, name) {
			return true
		}
	}
	return false
}

// hasConnToken reports whether the Connection header lists token.
func (h *head) hasConnToken(token string) bool {
	return h.listedInConnection([]byte(token))
}

// appendTokens appends the comma-separated tokens of v.
func appendTokens(dst [][]byte, v []byte) [][]byte {
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte(","))
		if tok = trimOWS(tok); len(tok) > 0 {
			dst = append(dst, tok)
		}
	}
	return dst
}

// hasToken reports whether the comma-separated list v holds token.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var tok []byte
		tok, v, _ = bytes.Cut(v, []byte(","))
		if bytes.EqualFold(trimOWS(tok), []byte(token)) {
			return true
		}
	}
	return false
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// validToken reports whether b is an HTTP token (RFC 9110 §5.6.2).
func validToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !httpguts.IsTokenRune(rune(c)) {
			return false
		}
	}
	return true
}

// validFieldValue reports whether b holds no control character but HTAB.
func validFieldValue(b []byte) bool {
	for _, c := range b {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// parseContentLength parses a Content-Length value: digits only, bounded.
func parseContentLength(v []byte) (int64, bool) {
	if len(v) == 0 || len(v) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// requestHead is an HTTP/1.1 request head the direct path can forward.
type requestHead struct {
	head
	method, target []byte
	path           []byte // target without its query
	host           []byte // the Host header's value, as sent
	contentLength  int64  // 0 when absent
	close          bool   // the client asked to close after this request
	teTrailers     bool   // the client accepts trailers (TE: trailers)
	why            string // why the request is headFaulty
	// framed: the whole head was read and its framing checked (none of
	// headFaulty's reasons), whatever the verdict.
	framed bool
}

// parseRequest parses the request head at the start of b. Only HTTP/1.1
// requests in origin form with one valid Host, no body or a Content-Length
// one, and no upgrade, Expect or Transfer-Encoding are headOK; the rest is
// headUnsupported, for net/http to serve, except those no one should take,
// which are headFaulty (r.why says why) and refused 400, as nginx refuses
// them, whatever else they hold:
//   - Transfer-Encoding with Content-Length, or in an HTTP/1.0 request (RFC
//     9112 §6.1: the framing is faulty). A proxy in front that framed the
//     body otherwise would take the rest for another request, and net/http
//     would go by Transfer-Encoding alone (HTTP/1.1) or ignore it (1.0), and
//     keep the connection.
//   - A folded field line (RFC 9112 §5.2 allows the refusal): net/http
//     would unfold a Transfer-Encoding that other parsers miss.
//   - A '#' in the target, which RFC 9112 does not allow there: routing
//     would take it as part of the path (/admin#/../x is /x), an upstream
//     as the start of a fragment (/admin).
func (r *requestHead) parseRequest(b []byte) headResult {
	r.maxFields, r.framed = maxRequestFields, false
	switch res := r.parseFields(b); res {
	case headOK:
	case headFaulty:
		r.why = "obsolete line folding"
		return res
	default:
		return res
	}
	r.host, r.contentLength, r.close, r.teTrailers = nil, 0, false, false
	hosts, lengths, encoded, special, badLength := 0, 0, false, false, false
	for _, f := range r.fields {
		switch f.kind {
		case fieldHost:
			hosts++
			r.host = f.value
		case fieldContentLength:
			lengths++
			n, ok := parseContentLength(f.value)
			r.contentLength, badLength = n, badLength || !ok
		case fieldTransferEncoding:
			encoded = true
		case fieldUpgrade, fieldExpect:
			special = true
		case fieldTE:
			r.teTrailers = r.teTrailers || hasToken(f.value, "trailers")
		}
	}
	switch {
	case encoded && lengths > 0:
		r.why = "both Transfer-Encoding and Content-Length"
		return headFaulty
	case encoded && bytes.HasSuffix(r.start, []byte(" HTTP/1.0")):
		r.why = "Transfer-Encoding in an HTTP/1.0 request"
		return headFaulty
	}
	r.framed = true
	var ok bool
	r.method, r.target, ok = splitRequestLine(r.start)
	if !ok {
		return headUnsupported
	}
	if bytes.IndexByte(r.target, '#') >= 0 {
		r.why = "'#' in the request target"
		return headFaulty
	}
	r.path, _, _ = bytes.Cut(r.target, []byte("?"))
	if special || badLength || encoded || hosts != 1 || lengths > 1 || !validHost(r.host) || r.hasConnToken("upgrade") {
		return headUnsupported
	}
	r.close = r.hasConnToken("close")
	return headOK
}

// splitRequestLine splits "METHOD SP /target SP HTTP/1.1".
func splitRequestLine(line []byte) (method, target []byte, ok bool) {
	method, rest, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(rest, []byte(" "))
	if !ok1 || !ok2 || !validToken(method) || string(version) != "HTTP/1.1" ||
		len(target) == 0 || target[0] != '/' || string(method) == "CONNECT" {
		return nil, nil, false
	}
	for _, c := range target {
		if c <= ' ' || c >= 0x7f {
			return nil, nil, false
		}
	}
	return method, target, true
}

// validHost accepts what net/http accepts in a Host header.
func validHost(h []byte) bool {
	return len(h) > 0 && httpguts.ValidHostHeader(string(h))
}

// responseHead is an upstream's response head.
type responseHead struct {
	head
	status        int
	reason        []byte
	contentLength int64 // -1 when absent
	chunked       bool  // Transfer-Encoding: chunked
	untilClose    bool  // the body ends when the upstream closes
	close         bool  // the upstream closes (or may) after this response
}

// errBadResponse reports an upstream response the proxy cannot relay.
var errBadResponse = errors.New("malformed response from upstream")

// parseResponse parses the response head at the start of b; headReq
// says it answers a HEAD request (no body, whatever the head says).
func (r *responseHead) parseResponse(b []byte, headReq bool) (headResult, error) {
	switch res := r.parseFields(b); res {
	case headNeedMore:
		if !statusLinePrefix(b) {
			return headUnsupported, errBadResponse
		}
		return res, nil
	case headUnsupported, headFaulty:
		return headUnsupported, errBadResponse
	}
	s := r.start
	if len(s) < 12 || !statusLinePrefix(s) || len(s) > 12 && s[12] != ' ' {
		return headUnsupported, errBadResponse
	}
	r.status = 0
	for _, c := range s[9:12] { // digits (statusLinePrefix)
		r.status = r.status*10 + int(c-'0')
	}
	if r.status < 100 {
		return headUnsupported, errBadResponse
	}
	r.reason = nil
	if len(s) > 13 {
		r.reason = s[13:]
	}
	r.contentLength, r.chunked, r.untilClose = -1, false, false
	otherTE := false
	for _, f := range r.fields {
		switch f.kind {
		case fieldContentLength:
			n, ok := parseContentLength(f.value)
			if !ok || r.contentLength >= 0 && n != r.contentLength {
				return headUnsupported, errBadResponse
			}
			r.contentLength = n
		case fieldTransferEncoding:
			if bytes.EqualFold(f.value, []byte("chunked")) && !r.chunked {
				r.chunked = true
			} else {
				otherTE = true
			}
		}
	}
	if otherTE {
		// A coding other than plain chunked (gzip, "gzip, chunked"): the
		// client could not decode it once the header is dropped as
		// hop-by-hop. net/http's Transport refuses it too.
		return headUnsupported, errBadResponse
	}
	if r.chunked {
		r.contentLength = -1
	}
	http10 := s[7] == '0'
	r.close = r.hasConnToken("close") || http10 && !r.hasConnToken("keep-alive")
	if headReq || !r.hasBody() {
		r.chunked, r.untilClose = false, false
	} else if !r.chunked && r.contentLength < 0 {
		r.untilClose = true
	}
	r.close = r.close || r.untilClose
	return headOK, nil
}

// statusLinePrefix reports whether b, the start of a response head, can
// still become a status line ("HTTP/1.x NNN"). An upstream that speaks
// another protocol (a route pointed at an SSH or SMTP port, whose banner
// may not even end its line) is refused from its first bytes, with a 502,
// not at response_header_timeout with a 504; nginx refuses it as early.
func statusLinePrefix(b []byte) bool {
	const version = "HTTP/1."
	for i, c := range b[:min(len(b), 12)] {
		switch {
		case i < len(version):
			if c != version[i] {
				return false
			}
		case i == 7:
			if c != '0' && c != '1' {
				return false
			}
		case i == 8:
			if c != ' ' {
				return false
			}
		case c < '0' || c > '9':
			return false
		}
	}
	return true
}

// hasBody reports whether the response can carry a body (ignoring the
// request method: a response to HEAD never does).
func (r *responseHead) hasBody() bool {
	return r.status >= 200 && r.status != 204 && r.status != 304
}
