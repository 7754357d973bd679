package mux

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// FuzzHTTPRequestLine feeds requestPath and findHost, which read what the
// HTTP sniffer let through, arbitrary bytes. Neither panics; the path is
// empty or a "/"-rooted piece of the request target (its prefix before any
// query or fragment, or the path of an absolute-form target); and findHost,
// which handle calls on a growing prefix and stops at its first answer,
// answers the same for any longer input once it has answered.
// Seeds in testdata/fuzz/FuzzHTTPRequestLine; run as in docs/fuzzing.md.
func FuzzHTTPRequestLine(f *testing.F) {
	f.Add([]byte("GET /api/v1?x=1 HTTP/1.1\r\nHost: App.Example:8080\r\n\r\n"), uint16(20))      // origin form, query, port
	f.Add([]byte("GET http://a.example/p#f HTTP/1.1\r\nhost: [2001:db8::1]:443\r\n"), uint16(9)) // absolute form, IPv6 host
	f.Add([]byte("GET https://a.example HTTP/1.1\r\n\r\n"), uint16(0))                           // absolute form without a path
	f.Add([]byte("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n"), uint16(40))       // authority form
	f.Add([]byte("OPTIONS * HTTP/1.1\r\nUser-Agent: x\r\nHOST:\r\n\r\n"), uint16(30))            // asterisk form, empty Host
	f.Add([]byte("GET /unfinished"), uint16(4))                                                  // no complete target
	f.Add([]byte("GET / HTTP/1.1\r\nHostile: x\r\nHost: b\r\n"), uint16(33))                     // a header that starts like Host
	f.Add([]byte(h2Preface), uint16(5))                                                          // h2c: no request line at all
	f.Add([]byte("\r\n\nGET /lf HTTP/1.0\nX: a\rHost: b\nHost: c\r\n"), uint16(7))               // empty lines first, bare LF, a CR alone
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		checkRequestPath(t, data)

		host, res := findHost(data)
		if res == hostFound {
			if strings.Contains(host, "\n") {
				t.Fatalf("findHost(%q) = %q: spans lines", data, host)
			}
			if host != string(bytes.ToLower([]byte(host))) {
				t.Fatalf("findHost(%q) = %q: not lowercased", data, host)
			}
		} else if host != "" {
			t.Fatalf("findHost(%q) = %q with result %v", data, host, res)
		}
		// readUntil stops at the first prefix findHost decides on: that
		// answer must be the one the whole input gives.
		i := min(int(cut), len(data))
		if h, r := findHost(data[:i]); r != hostNeedMore && (h != host || r != res) {
			t.Fatalf("findHost: prefix %q gives %q, %v; whole %q gives %q, %v", data[:i], h, r, data, host, res)
		}
	})
}

// checkRequestPath checks requestPath(data) against the request target it
// must come from.
func checkRequestPath(t *testing.T, data []byte) {
	t.Helper()
	p := requestPath(data)
	if p == "" {
		return
	}
	if p[0] != '/' || strings.ContainsAny(p, "?# ") {
		t.Fatalf("requestPath(%q) = %q: not a path", data, p)
	}
	_, rest, _ := bytes.Cut(data, []byte(" "))
	target, _, ok := bytes.Cut(rest, []byte(" "))
	if !ok {
		t.Fatalf("requestPath(%q) = %q without a complete target", data, p)
	}
	if target[0] == '/' { // origin form: a prefix ending at '?', '#' or the end
		if !bytes.HasPrefix(target, []byte(p)) || (len(target) > len(p) && !strings.ContainsRune("?#", rune(target[len(p)]))) {
			t.Fatalf("requestPath(%q) = %q: not the path of target %q", data, p, target)
		}
		return
	}
	// Absolute form: the path after the authority, or "/" when there is none.
	_, after, ok := bytes.Cut(target, []byte("://"))
	if !ok || (p != "/" && !bytes.Contains(after, []byte(p))) {
		t.Fatalf("requestPath(%q) = %q: not from target %q", data, p, target)
	}
}

// FuzzProxyHeader feeds the PROXY protocol parsing portmux relies on for
// trusted sources (go-proxyproto's Read, through the same proxyproto.Conn
// the accept path wraps a connection in) and its own isProxyHeader, which
// turns away headers from untrusted sources. It checks that nothing panics;
// that every header the library accepts is one isProxyHeader flags (an
// untrusted source's header cannot slip through as client bytes); that an
// accepted header's addresses are valid for its family and give portmux a
// valid client address; that not one byte after the header is lost or
// added; and that the header formats back to an equal one.
// Seeds in testdata/fuzz/FuzzProxyHeader; run as in docs/fuzzing.md.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 51234 443\r\nGET / HTTP/1.1\r\n\r\n"))   // v1, then a request
	f.Add([]byte("PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\nSSH-2.0-x\r\n"))           // v1 IPv6
	f.Add([]byte("PROXY UNKNOWN\r\n"))                                                       // v1 unknown: the socket's address stands
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 99999 443\r\n"))                         // port out of range
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n"))                                 // bare LF
	f.Add(v2Seed(0x21, 0x11, []byte{192, 0, 2, 7, 198, 51, 100, 1, 0xc8, 0x22, 0x01, 0xbb})) // v2 PROXY TCP4
	f.Add(v2Seed(0x20, 0x00, nil))                                                           // v2 LOCAL (health check)
	f.Add(v2Seed(0x21, 0x12, append(make([]byte, 36), 4, 0, 1, 'x')))                        // v2 UDP6 with a NOOP TLV
	f.Add(v2Seed(0x21, 0x31, make([]byte, 216)))                                             // v2 UNIX stream
	f.Add([]byte(proxyV2Signature + "\x21\x11\xff\xff"))                                     // v2 length beyond the input
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		h, err := proxyproto.Read(br)
		if err != nil {
			if h != nil {
				t.Fatalf("Read(%q): header %+v with error %v", data, h, err)
			}
			if errors.Is(err, proxyproto.ErrNoProxyProtocol) && isProxyHeader(data) {
				t.Fatalf("isProxyHeader(%q) but Read finds no signature", data)
			}
			return
		}
		if !isProxyHeader(data) {
			t.Fatalf("Read(%q) accepts a header isProxyHeader misses: %+v", data, h)
		}
		rest, _ := io.ReadAll(br)
		checkHeaderLength(t, data, h.Version, len(data)-len(rest))
		checkHeaderAddrs(t, data, h)
		b, err := h.Format()
		if err != nil {
			t.Fatalf("Read(%q) = %+v, which does not format: %v", data, h, err)
		}
		h2, err := proxyproto.Read(bufio.NewReader(bytes.NewReader(b)))
		if err != nil || !h2.EqualsTo(h) {
			t.Fatalf("%q -> %+v -> %q -> %+v, %v", data, h, b, h2, err)
		}
		checkAcceptPath(t, data, h, rest)
	})
}

// v2Seed builds a PROXY v2 header with the given version/command and
// family/transport bytes and address block.
func v2Seed(cmd, fam byte, addrs []byte) []byte {
	b := append([]byte(proxyV2Signature), cmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(addrs)))
	return append(b, addrs...)
}

// checkHeaderLength checks that the parser consumed exactly the header: the
// v1 line up to its first CRLF, or v2's 16 bytes and announced length.
func checkHeaderLength(t *testing.T, data []byte, version byte, n int) {
	t.Helper()
	switch version {
	case 1:
		if eol := bytes.IndexByte(data, '\n'); eol+1 != n || !bytes.HasSuffix(data[:n], []byte("\r\n")) {
			t.Fatalf("v1 header of %q took %d bytes", data, n)
		}
	case 2:
		if want := 16 + int(binary.BigEndian.Uint16(data[14:16])); n != want {
			t.Fatalf("v2 header of %q took %d bytes; want %d", data, n, want)
		}
	default:
		t.Fatalf("Read(%q): version %d", data, version)
	}
}

// checkHeaderAddrs checks a PROXY command's addresses: IPs of the header's
// family, and the client address portmux takes from them is valid.
func checkHeaderAddrs(t *testing.T, data []byte, h *proxyproto.Header) {
	t.Helper()
	if h.Command.IsLocal() {
		return
	}
	tp := h.TransportProtocol
	if !tp.IsIPv4() && !tp.IsIPv6() {
		return // UNIX family: not an IP client (see docs/fuzzing.md)
	}
	for _, a := range []net.Addr{h.SourceAddr, h.DestinationAddr} {
		var ip net.IP
		var port int
		switch a := a.(type) {
		case *net.TCPAddr:
			ip, port = a.IP, a.Port
		case *net.UDPAddr:
			ip, port = a.IP, a.Port
		default:
			t.Fatalf("Read(%q): %v address %T %v", data, tp, a, a)
		}
		if port < 0 || port > 65535 || (tp.IsIPv4() && ip.To4() == nil) || (tp.IsIPv6() && len(ip) != net.IPv6len) {
			t.Fatalf("Read(%q): %v address %v", data, tp, a)
		}
	}
	if c := addrPortOf(h.SourceAddr); !c.IsValid() {
		t.Fatalf("Read(%q): source %v gives client %v", data, h.SourceAddr, c)
	}
}

// checkAcceptPath runs data through a proxyproto.Conn set up as
// readProxyHeader sets one up, over an in-memory pipe: it must find the
// same header, give the client address the header names, and then read
// exactly the bytes after the header.
func checkAcceptPath(t *testing.T, data []byte, h *proxyproto.Header, rest []byte) {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go writeAndClose(client, data)
	pc := proxyproto.NewConn(server, proxyproto.WithPolicy(proxyproto.REQUIRE), proxyproto.SetReadHeaderTimeout(time.Second))
	got := pc.ProxyHeader()
	if got == nil || !got.EqualsTo(h) {
		// v1 must arrive in one read; the pipe delivers at most what the
		// reader asks for, which a 4 KiB bufio buffer always covers here.
		if len(data) <= 4096 {
			t.Fatalf("accept path on %q: header %+v; Read gave %+v", data, got, h)
		}
		return
	}
	want := pc.Raw().RemoteAddr()
	if !h.Command.IsLocal() && (h.TransportProtocol.IsIPv4() || h.TransportProtocol.IsIPv6()) {
		want = h.SourceAddr
	}
	if c := addrPortOf(pc.RemoteAddr()); c != addrPortOf(want) {
		t.Fatalf("accept path on %q: client %v; want %v", data, c, addrPortOf(want))
	}
	pc.SetReadDeadline(time.Now().Add(time.Second))
	after, err := io.ReadAll(pc)
	if err != nil || !bytes.Equal(after, rest) {
		t.Fatalf("accept path on %q: read %q, %v after the header; want %q", data, after, err, rest)
	}
}

// writeAndClose is the client side of checkAcceptPath's pipe.
func writeAndClose(c net.Conn, data []byte) {
	c.SetWriteDeadline(time.Now().Add(time.Second))
	c.Write(data)
	c.Close()
}
