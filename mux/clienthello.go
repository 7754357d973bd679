package mux

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// errNeedMore means the ClientHello is not complete yet: read more bytes.
var errNeedMore = errors.New("incomplete ClientHello")

// errBadHello reports a malformed ClientHello.
var errBadHello = errors.New("malformed ClientHello")

// clientHello holds what routing needs from a TLS ClientHello.
type clientHello struct {
	ServerName string   // SNI host_name, lowercased, without a trailing dot; empty if absent
	ALPN       []string // offered application protocols, in client order
	// trailingDot: the host_name ended in a dot, as a fully qualified
	// name may ("localhost." from openssl s_client -servername).
	trailingDot bool
}

const (
	recordHeaderLen    = 5
	maxRecordLen       = 1<<14 + 2048 // TLSCiphertext limit; plaintext is smaller still
	handshakeHeaderLen = 4
	typeClientHello    = 1
	extServerName      = 0
	extALPN            = 16
)

// sniffTLS decides whether b begins a TLS handshake record carrying a
// ClientHello: content type 22, major version 3, minor version at most 4, a
// plausible record length and handshake type 1. Six bytes decide it.
func sniffTLS(b []byte) verdict {
	const need = recordHeaderLen + 1
	for i, c := range b[:min(len(b), need)] {
		ok := true
		switch i {
		case 0:
			ok = c == 0x16
		case 1:
			ok = c == 0x03
		case 2:
			ok = c <= 0x04
		case 3:
			ok = c <= maxRecordLen>>8
		case 5:
			ok = c == typeClientHello
		}
		if !ok {
			return rejected
		}
	}
	if len(b) < need {
		return needMore
	}
	return matched
}

// parseClientHello parses the ClientHello at the start of data, which holds
// the raw bytes of one or more TLS records. The handshake message may span
// several records. It returns errNeedMore while the message is incomplete
// and errBadHello (wrapped) when it cannot be a valid ClientHello.
func parseClientHello(data []byte) (clientHello, error) {
	msg, err := handshakeMessage(data)
	if err != nil {
		return clientHello{}, err
	}
	return parseHelloBody(msg[handshakeHeaderLen:])
}

// handshakeMessage reassembles the first handshake message from records.
// When it fits in the first record (the usual case) it is returned without
// copying.
func handshakeMessage(data []byte) ([]byte, error) {
	var msg []byte
	first := true
	for {
		if len(data) < recordHeaderLen {
			return nil, errNeedMore
		}
		if data[0] != 0x16 || data[1] != 0x03 {
			return nil, badHello("record is not a TLS handshake")
		}
		n := int(data[3])<<8 | int(data[4])
		if n == 0 || n > maxRecordLen {
			return nil, badHello("bad record length")
		}
		if len(data) < recordHeaderLen+n {
			// Wait for the whole record, unless we already know the message
			// cannot fit what the header promises.
			return nil, errNeedMore
		}
		frag := data[recordHeaderLen : recordHeaderLen+n]
		data = data[recordHeaderLen+n:]
		if first {
			msg, first = frag, false
		} else {
			msg = append(msg[:len(msg):len(msg)], frag...)
		}
		if len(msg) < handshakeHeaderLen {
			continue
		}
		if msg[0] != typeClientHello {
			return nil, badHello("first handshake message is not a ClientHello")
		}
		total := handshakeHeaderLen + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if len(msg) >= total {
			return msg[:total], nil
		}
	}
}

// parseHelloBody parses the ClientHello body (RFC 8446 §4.1.2).
func parseHelloBody(b []byte) (clientHello, error) {
	var h clientHello
	r := reader(b)
	if !r.skip(2+32) || !r.skipVec8() || !r.skipVec16() || !r.skipVec8() {
		return h, badHello("truncated fixed fields")
	}
	if r.empty() {
		return h, nil // no extensions (SSL 3.0-style hello)
	}
	exts, ok := r.vec16()
	if !ok || !r.empty() {
		return h, badHello("bad extensions length")
	}
	var seen [2]bool
	for !exts.empty() {
		typ, ok1 := exts.u16()
		body, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return h, badHello("truncated extension")
		}
		var err error
		switch typ {
		case extServerName:
			if seen[0] {
				return h, badHello("duplicate server_name")
			}
			seen[0] = true
			h.ServerName, h.trailingDot, err = parseSNI(body)
		case extALPN:
			if seen[1] {
				return h, badHello("duplicate ALPN")
			}
			seen[1] = true
			h.ALPN, err = parseALPN(body)
		}
		if err != nil {
			return clientHello{}, err
		}
	}
	return h, nil
}

// parseSNI returns the host_name of a server_name extension (RFC 6066 §3),
// and whether it ended in a dot. RFC 6066 forbids the dot, but OpenSSL
// sends a fully qualified name as given, and nginx serves "localhost." as
// "localhost", as portmux's HTTP routing does a Host with one (HostName):
// the name is routed without it, so that a route's access rules cannot be
// passed by adding a dot.
func parseSNI(b reader) (string, bool, error) {
	list, ok := b.vec16()
	if !ok || !b.empty() || list.empty() {
		return "", false, badHello("bad server_name list")
	}
	for !list.empty() {
		typ, ok1 := list.u8()
		name, ok2 := list.vec16()
		if !ok1 || !ok2 {
			return "", false, badHello("truncated server_name")
		}
		if typ != 0 {
			continue
		}
		trimmed, dot := bytes.CutSuffix(name, []byte("."))
		if !validSNI(trimmed) {
			return "", false, badHello(fmt.Sprintf("invalid host_name %q", []byte(name[:min(len(name), 64)])))
		}
		return strings.ToLower(string(trimmed)), dot, nil
	}
	return "", false, nil
}

// validSNI accepts what can be a DNS name: letters, digits, '-', '_', '.',
// no empty name and no trailing dot (parseSNI has removed one).
func validSNI(name []byte) bool {
	if len(name) == 0 || len(name) > 253 || name[len(name)-1] == '.' {
		return false
	}
	for _, c := range name {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// parseALPN returns the protocol names of an ALPN extension (RFC 7301 §3.1).
func parseALPN(b reader) ([]string, error) {
	list, ok := b.vec16()
	if !ok || !b.empty() || list.empty() {
		return nil, badHello("bad ALPN list")
	}
	var protos []string
	for !list.empty() {
		p, ok := list.vec8()
		if !ok || p.empty() {
			return nil, badHello("bad ALPN protocol")
		}
		protos = append(protos, string(p))
	}
	return protos, nil
}

func badHello(why string) error {
	return &helloError{why}
}

type helloError struct{ why string }

func (e *helloError) Error() string { return "malformed ClientHello: " + e.why }
func (e *helloError) Is(target error) bool {
	return target == errBadHello
}

// reader consumes big-endian fields from a byte slice; every method reports
// whether enough bytes were there.
type reader []byte

func (r *reader) empty() bool { return len(*r) == 0 }

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) u8() (int, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := int((*r)[0])
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int((*r)[0])<<8 | int((*r)[1])
	*r = (*r)[2:]
	return v, true
}

func (r *reader) bytes(n int) (reader, bool) {
	if len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) vec8() (reader, bool) {
	n, ok := r.u8()
	if !ok {
		return nil, false
	}
	return r.bytes(n)
}

func (r *reader) vec16() (reader, bool) {
	n, ok := r.u16()
	if !ok {
		return nil, false
	}
	return r.bytes(n)
}

func (r *reader) skipVec8() bool  { _, ok := r.vec8(); return ok }
func (r *reader) skipVec16() bool { _, ok := r.vec16(); return ok }
