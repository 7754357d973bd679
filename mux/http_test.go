package mux

import (
	"strings"
	"testing"

	"github.com/portmux/portmux/internal/httpline"
)

func TestHTTPSniffer(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want verdict
	}{
		{"get", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", matched},
		{"patch", "PATCH /items/1 HTTP/1.1\r\n", matched},
		{"propfind", "PROPFIND /dav HTTP/1.1\r\n", matched},
		{"custom token", "X-PURGE-ALL * HTTP/1.0\r\n", matched},
		{"connect authority form", "CONNECT example.com:443 HTTP/1.1\r\n", matched},
		{"absolute form", "GET http://example.com/ HTTP/1.1\r\n", matched},
		{"h2c preface", h2Preface, matched},
		{"decided at version digit", "GET / HTTP/1.1", matched},
		{"partial method", "GE", needMore},
		{"partial target", "GET /very/long", needMore},
		{"partial h2c preface", "PRI * HTTP/2.0\r\n\r\nS", needMore},
		{"http/2 line that is not the preface", "PRI * HTTP/2.0\r\n\r\nXX", rejected},
		{"bare LF line ends", "GET /head HTTP/1.0\n\n", matched},
		// RFC 9112 §2.2: empty lines before the request line are skipped,
		// up to httpline.MaxEmptyLines; a CR alone ends nothing.
		{"leading CRLF", "\r\nGET / HTTP/1.1\r\n", matched},
		{"leading LF", "\nPOST / HTTP/1.1\r\n", matched},
		{"most empty lines", strings.Repeat("\r\n", httpline.MaxEmptyLines-1) + "\nGET / HTTP/1.1", matched},
		{"too many empty lines", strings.Repeat("\r\n", httpline.MaxEmptyLines+1) + "GET / HTTP/1.1", rejected},
		{"partial leading CRLF", "\r", needMore},
		{"leading CR alone", "\rGET / HTTP/1.1\r\n", rejected},
		{"empty lines only", "\r\n\r\n", needMore},
		// A method of RFC 9110 and a space, then an origin-form target or
		// "HTTP/": HTTP however malformed the rest, so that the HTTP
		// server answers it; the verdict comes at the malformed byte.
		{"http/2.0 request line", "GET / HTTP/2.0\r\n", matched},
		{"http/3 request line", "GET / HTTP/3\r\n", matched},
		{"space in target", "GET /a b HTTP/1.1\r\n", matched},
		{"lowercase version", "GET / http/1.1\r\n", matched},
		{"control char in target", "GET /\x01 HTTP/1.1\r\n", matched},
		{"no version", "GET /\r\n", matched},
		{"authority form, http/2.0", "CONNECT a.test:443 HTTP/2.0\r\n", matched},
		{"undecided long target", "DELETE /" + strings.Repeat("a", 5000), needMore},
		// Not clearly HTTP: other methods, or no origin-form target before
		// the line goes wrong (Redis's inline commands start like GET).
		{"redis inline command", "GET key\r\n", rejected},
		{"other method, http/2.0", "PROPFIND / HTTP/2.0\r\n", rejected},
		{"lowercase method, http/2.0", "get / HTTP/2.0\r\n", rejected},
		{"no target", "GET  HTTP/1.1\r\n", rejected},
		{"method too long", strings.Repeat("A", maxMethodLen+1) + " / HTTP/1.1\r\n", rejected},
		{"ssh banner", "SSH-2.0-OpenSSH_9.2\r\n", rejected},
		{"binary", "\x16\x03\x01\x02\x00\x01", rejected},
		{"smtp-like line", "EHLO example.com\r\n", rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var whole httpSniffer
			if got := whole.feed([]byte(tt.in)); got != tt.want {
				t.Errorf("whole: got %v; want %v", got, tt.want)
			}
			var bytewise httpSniffer
			got := needMore
			for i := 0; i < len(tt.in) && got == needMore; i++ {
				got = bytewise.feed([]byte{tt.in[i]})
			}
			if got != tt.want {
				t.Errorf("byte by byte: got %v; want %v", got, tt.want)
			}
		})
	}
}

func TestFindHost(t *testing.T) {
	tests := []struct {
		name string
		in   string
		host string
		res  hostResult
	}{
		{"simple", "GET / HTTP/1.1\r\nHost: Example.COM\r\n\r\n", "example.com", hostFound},
		{"port stripped", "GET / HTTP/1.1\r\nhost:a.test:8080\r\n", "a.test", hostFound},
		{"ipv6 literal", "GET / HTTP/1.1\r\nHOST: [2001:db8::1]:443\r\n", "2001:db8::1", hostFound},
		{"after other headers", "GET / HTTP/1.1\r\nUser-Agent: x\r\nHost: b.test\r\n", "b.test", hostFound},
		{"found before the block ends", "GET / HTTP/1.1\r\nHost: c.test\r\nAccept: *", "c.test", hostFound},
		{"absent", "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n", "", hostAbsent},
		{"incomplete line", "GET / HTTP/1.1\r\nHost: d.te", "", hostNeedMore},
		{"not a host header", "GET / HTTP/1.1\r\nHostile: x\r\n\r\n", "", hostAbsent},
		// Bare LF line ends (RFC 9112 §2.2), as net/http and nginx take them.
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", "a", hostFound},
		{"bare LF, absent", "GET / HTTP/1.0\nAccept: */*\n\n", "", hostAbsent},
		{"mixed line ends", "GET / HTTP/1.1\r\nX: y\nHost: b.test\r\n", "b.test", hostFound},
		{"bare LF, incomplete", "GET / HTTP/1.1\nHost: a", "", hostNeedMore},
		{"empty lines before the request line", "\r\n\nGET / HTTP/1.1\r\nHost: c.test\r\n", "c.test", hostFound},
		// A CR alone ends no line: net/http refuses such a request.
		{"bare CR is no line end", "GET / HTTP/1.1\r\nX: y\rHost: evil.test\r\n\r\n", "", hostAbsent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host, res := findHost([]byte(tt.in))
			if host != tt.host || res != tt.res {
				t.Errorf("got %q, %v; want %q, %v", host, res, tt.host, tt.res)
			}
		})
	}
}

// TestNormalizeHostAllocations guards the per-request routing of HTTP/2
// requests: a lower-case host costs no allocation, an upper-case one its
// lowered copy.
func TestNormalizeHostAllocations(t *testing.T) {
	for _, tt := range []struct {
		in, want string
		allocs   float64
	}{
		{"app.example.test:8443", "app.example.test", 0},
		{"[2001:db8::1]:443", "2001:db8::1", 0},
		{"App.Example.TEST", "app.example.test", 1},
		// A fully qualified name is the same host (nginx serves it so).
		{"app.example.test.", "app.example.test", 0},
		{"App.Example.TEST.:80", "app.example.test", 1},
	} {
		var got string
		if n := testing.AllocsPerRun(100, func() { got = HostName(tt.in) }); n != tt.allocs || got != tt.want {
			t.Errorf("HostName(%q) = %q with %v allocations; want %q with %v", tt.in, got, n, tt.want, tt.allocs)
		}
	}
}

func TestSniffSSH(t *testing.T) {
	tests := []struct {
		in   string
		want verdict
	}{
		{"SSH-2.0-OpenSSH_9.2p1\r\n", matched},
		{"SSH-", matched},
		{"SS", needMore},
		{"", needMore},
		{"SSL", rejected},
		{"GET / HTTP/1.1", rejected},
	}
	for _, tt := range tests {
		if got := sniffSSH([]byte(tt.in)); got != tt.want {
			t.Errorf("sniffSSH(%q): got %v; want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzSniffers checks that the sniffers never panic, that feeding the HTTP
// sniffer in two pieces gives the same verdict as feeding it whole, and that
// at most one client-first protocol claims any input.
func FuzzSniffers(f *testing.F) {
	// Seeds: one of each protocol, a prefix of the h2c preface, garbage,
	// an empty line before a request line, a clearly-HTTP line with a
	// version other than 1.x, and Redis's inline GET, which is not HTTP.
	for _, s := range []string{"GET / HTTP/1.1\r\n", h2Preface, "PRI * HTTP/2.0", "SSH-2.0-x\r\n", "\x16\x03\x01\x00\x05\x01", "\x00\xff\xfe",
		"\r\n\nGET / HTTP/1.0\n", "GET /a HTTP/3\r\n", "GET key\r\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		var whole, split httpSniffer
		a := whole.feed(data)
		i := min(int(cut), len(data))
		b := split.feed(data[:i])
		if b == needMore {
			b = split.feed(data[i:])
		}
		if a != b {
			t.Fatalf("whole %v, split at %d %v", a, i, b)
		}
		claims := 0
		for _, v := range []verdict{sniffTLS(data), sniffSSH(data), a} {
			if v == matched {
				claims++
			}
		}
		if claims > 1 {
			t.Fatalf("%d protocols claim %q", claims, data)
		}
		findHost(data)
	})
}

func TestRequestPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"GET /api/v1?x=1 HTTP/1.1\r\n", "/api/v1"},
		{"GET / HTTP/1.1", "/"},
		{"GET http://example.com/p/q HTTP/1.1", "/p/q"},
		{"GET http://example.com HTTP/1.1", "/"},
		{"CONNECT example.com:443 HTTP/1.1", ""},
		{"OPTIONS * HTTP/1.1", ""},
		{"GET /unfinished", ""},
		{"\r\nGET /after/crlf HTTP/1.1\r\n", "/after/crlf"},
		{"\nGET /after/lf HTTP/1.0\n", "/after/lf"},
		{"GET /bare/lf HTTP/1.0\nHost: a\n\n", "/bare/lf"},
		{"GET /a b HTTP/1.1\r\n", "/a"},
		// The target is the first line's: an HTTP/0.9-style line has none.
		{"GET /nine\r\nHost: a b\r\n", ""},
	}
	for _, tt := range tests {
		if got := requestPath([]byte(tt.in)); got != tt.want {
			t.Errorf("requestPath(%q): got %q; want %q", tt.in, got, tt.want)
		}
	}
}

// An origin-form target may itself contain "://" (found by fuzzing).
func TestRequestPathOriginFormWithScheme(t *testing.T) {
	if got := requestPath([]byte("GET /://x HTTP/1.1")); got != "/://x" {
		t.Errorf("got %q; want %q", got, "/://x")
	}
}

// A request line the sniff cannot read to its end is HTTP when it is
// clearly one (its server answers 414); other long lines are not.
func TestMatchHTTPAtLimit(t *testing.T) {
	const limit = 4096
	s := newSniffer(limit)
	long := strings.Repeat("a", 2*limit)
	for _, tt := range []struct {
		name, in string
		want     bool
	}{
		{"known method, origin form", "GET /" + long, true},
		{"after empty lines", "\r\nHEAD /" + long, true},
		{"other method", "PROPFIND /" + long, false},
		{"not origin form", "GET " + long, false},
		{"letters", long, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := strings.NewReader(tt.in)
			if got := s.matchHTTP(r); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
			if read := len(tt.in) - r.Len(); read > limit {
				t.Errorf("read %d bytes; the limit is %d", read, limit)
			}
		})
	}
}

func TestMalformedHTTP(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"\r\nGET / HTTP/1.0\n\n", false},
		{h2Preface, false},
		{"GET / HTTP/3\r\n", true},
		{"GET /a b HTTP/1.1\r\n", true},
		{"GET /" + strings.Repeat("a", 100), true}, // cut off by the sniff cap
	} {
		if got := malformedHTTP([]byte(tt.in)); got != tt.want {
			t.Errorf("malformedHTTP(%q) = %v; want %v", tt.in, got, tt.want)
		}
	}
}
