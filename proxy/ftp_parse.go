package proxy

import (
	"bytes"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// The FTP parsers read what a peer wrote and never trust it: every number is
// bounded, and an address they return is always valid. Fuzzed in
// ftp_fuzz_test.go.

var (
	errPassiveReply = errors.New("ftp: no data address in passive reply")
	errDataAddr     = errors.New("ftp: bad data address")
)

// telnetIAC starts a Telnet command, which RFC 959 lets a client put before
// a command (IP and Synch before ABOR).
const telnetIAC = 0xff

// parseCommand splits a control line into its verb, upper-cased, and its
// argument. Leading Telnet commands are skipped, so that "IAC IP PORT ..."
// is still seen as PORT: some servers strip them, and a hidden PORT or AUTH
// must not slip past the gateway.
func parseCommand(line []byte) (verb, arg string) {
	line = bytes.TrimRight(line, "\r\n")
	for len(line) >= 2 && line[0] == telnetIAC {
		n := 2
		if line[1] >= 251 && line[1] <= 254 && len(line) >= 3 { // WILL, WONT, DO, DONT take an option byte
			n = 3
		}
		line = line[n:]
	}
	line = bytes.TrimLeft(line, " ")
	v, a, _ := bytes.Cut(line, []byte(" "))
	return strings.ToUpper(string(v)), strings.TrimSpace(string(a))
}

// parseByteList reads n comma-separated decimal numbers 0..255 (at most three
// digits each) at the start of s: the h1,h2,h3,h4,p1,p2 of PORT and 227.
// It returns the numbers and how many bytes they took.
func parseByteList(s string, n int) ([]byte, int, bool) {
	out := make([]byte, 0, n)
	i := 0
	for len(out) < n {
		if len(out) > 0 {
			if i >= len(s) || s[i] != ',' {
				return nil, 0, false
			}
			i++
		}
		j := i
		for j < len(s) && j-i < 3 && isDecimal(s[j]) {
			j++
		}
		if j == i {
			return nil, 0, false
		}
		v, _ := strconv.Atoi(s[i:j])
		if v > 255 {
			return nil, 0, false
		}
		out = append(out, byte(v))
		i = j
	}
	return out, i, true
}

func isDecimal(c byte) bool { return '0' <= c && c <= '9' }

// byteListAddr turns h1,h2,h3,h4,p1,p2 into an address.
func byteListAddr(b []byte) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), uint16(b[4])<<8|uint16(b[5]))
}

// parsePORT parses the argument of PORT: "h1,h2,h3,h4,p1,p2". Port 0 is
// refused: nothing can listen there.
func parsePORT(arg string) (netip.AddrPort, error) {
	b, n, ok := parseByteList(arg, 6)
	if !ok || n != len(arg) {
		return netip.AddrPort{}, errDataAddr
	}
	ap := byteListAddr(b)
	if ap.Port() == 0 {
		return netip.AddrPort{}, errDataAddr
	}
	return ap, nil
}

// parseEPRT parses the argument of EPRT (RFC 2428): "<d>1<d>ip4<d>port<d>"
// or "<d>2<d>ip6<d>port<d>", where <d> is any printable ASCII character.
// IPv6 zones are refused: they name an interface of the sender.
func parseEPRT(arg string) (netip.AddrPort, error) {
	if len(arg) < 1 || arg[0] < 33 || arg[0] > 126 {
		return netip.AddrPort{}, errDataAddr
	}
	parts := strings.Split(arg, arg[:1])
	if len(parts) != 5 || parts[0] != "" || parts[4] != "" {
		return netip.AddrPort{}, errDataAddr
	}
	ip, err := netip.ParseAddr(parts[2])
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, errDataAddr
	}
	switch {
	case parts[1] == "1" && ip.Is4():
	case parts[1] == "2" && ip.Is6():
	default:
		return netip.AddrPort{}, errDataAddr
	}
	port, ok := parseDecimalPort(parts[3])
	if !ok {
		return netip.AddrPort{}, errDataAddr
	}
	return netip.AddrPortFrom(ip, port), nil
}

// parseDecimalPort parses a decimal TCP port 1..65535 without sign or spaces.
func parseDecimalPort(s string) (uint16, bool) {
	if len(s) == 0 || len(s) > 5 {
		return 0, false
	}
	for i := range len(s) {
		if !isDecimal(s[i]) {
			return 0, false
		}
	}
	v, _ := strconv.Atoi(s)
	if v < 1 || v > 65535 {
		return 0, false
	}
	return uint16(v), true
}

// parse227 finds h1,h2,h3,h4,p1,p2 anywhere in a 227 reply's text. RFC 1123
// §4.1.2.6 tells clients to scan for it rather than expect the parentheses,
// since servers word the reply differently.
func parse227(text string) (netip.AddrPort, error) {
	for i := 0; i < len(text); i++ {
		if !isDecimal(text[i]) || i > 0 && isDecimal(text[i-1]) {
			continue
		}
		if b, n, ok := parseByteList(text[i:], 6); ok && (i+n == len(text) || !isDecimal(text[i+n])) {
			if ap := byteListAddr(b); ap.Port() != 0 {
				return ap, nil
			}
		}
	}
	return netip.AddrPort{}, errPassiveReply
}

// parse229 finds "(<d><d><d>port<d>)" in a 229 reply's text (RFC 2428).
func parse229(text string) (uint16, error) {
	for {
		i := strings.IndexByte(text, '(')
		if i < 0 {
			return 0, errPassiveReply
		}
		text = text[i+1:]
		if len(text) < 5 || text[0] < 33 || text[0] > 126 || text[1] != text[0] || text[2] != text[0] {
			continue
		}
		rest := text[3:]
		end := strings.IndexByte(rest, text[0])
		if end < 0 || end+1 >= len(rest) || rest[end+1] != ')' {
			continue
		}
		if port, ok := parseDecimalPort(rest[:end]); ok {
			return port, nil
		}
	}
}

// passivePort reads the data port of a 227 or 229 reply (the whole reply,
// code included). The address in a 227 is not returned: the gateway never
// dials it (see ftpSession.passive).
func passivePort(code int, reply string) (uint16, error) {
	text := reply[min(3, len(reply)):]
	if code == 229 {
		return parse229(text)
	}
	ap, err := parse227(text)
	return ap.Port(), err
}

// formatPORT writes an IPv4 address as PORT's "h1,h2,h3,h4,p1,p2".
func formatPORT(ap netip.AddrPort) string {
	a := ap.Addr().As4()
	p := ap.Port()
	return strconv.Itoa(int(a[0])) + "," + strconv.Itoa(int(a[1])) + "," + strconv.Itoa(int(a[2])) + "," +
		strconv.Itoa(int(a[3])) + "," + strconv.Itoa(int(p>>8)) + "," + strconv.Itoa(int(p&0xff))
}

// formatEPRT writes an address as EPRT's "|1|ip|port|" or "|2|ip|port|".
func formatEPRT(ap netip.AddrPort) string {
	proto := "2"
	if ap.Addr().Is4() {
		proto = "1"
	}
	return "|" + proto + "|" + ap.Addr().String() + "|" + strconv.Itoa(int(ap.Port())) + "|"
}

// replyStart reports whether line starts a reply: three digits, then '-'
// (a multi-line reply follows, RFC 959 §4.2), a space, or the end of the line.
func replyStart(line []byte) (code int, multi, ok bool) {
	line = bytes.TrimRight(line, "\r\n")
	if len(line) < 3 || !isDecimal(line[0]) || !isDecimal(line[1]) || !isDecimal(line[2]) {
		return 0, false, false
	}
	code = int(line[0]-'0')*100 + int(line[1]-'0')*10 + int(line[2]-'0')
	switch {
	case len(line) == 3 || line[3] == ' ':
		return code, false, true
	case line[3] == '-':
		return code, true, true
	}
	return 0, false, false
}

// replyEnd reports whether line is the last line of a multi-line reply with
// code: the same code followed by a space (or nothing). Lines in between may
// start with anything, other codes included.
func replyEnd(line []byte, code int) bool {
	c, multi, ok := replyStart(line)
	return ok && !multi && c == code
}
