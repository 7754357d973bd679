package mux

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// recordHello returns the first flight a real crypto/tls client sends: one
// or more TLS records holding its ClientHello.
func recordHello(t testing.TB, serverName string, alpn []string) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: serverName, NextProtos: alpn, InsecureSkipVerify: serverName == ""})
		c.Handshake() // fails once the pipe closes
		client.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	var out []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		out = append(out, buf[:n]...)
		if _, perr := parseClientHello(out); !errors.Is(perr, errNeedMore) || err != nil {
			return out
		}
	}
}

// splitRecords re-frames the handshake message of a single-record hello into
// records of at most size bytes, as a client or middlebox may do.
func splitRecords(hello []byte, size int) []byte {
	msg := hello[recordHeaderLen:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 0x16, 0x03, 0x01, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestParseClientHello(t *testing.T) {
	tests := []struct {
		name       string
		serverName string
		alpn       []string
	}{
		{"sni and alpn", "App.Example.COM", []string{"h2", "http/1.1"}},
		{"sni only", "ssh.example.com", nil},
		{"no sni", "", []string{"acme-tls/1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := recordHello(t, tt.serverName, tt.alpn)
			for _, framing := range []struct {
				name string
				data []byte
			}{{"one record", raw}, {"records of 100 bytes", splitRecords(raw, 100)}, {"records of 1 byte", splitRecords(raw, 1)}} {
				h, err := parseClientHello(framing.data)
				if err != nil {
					t.Fatalf("%s: %v", framing.name, err)
				}
				if want := lower(tt.serverName); h.ServerName != want {
					t.Errorf("%s: got SNI %q; want %q", framing.name, h.ServerName, want)
				}
				if !slices.Equal(h.ALPN, tt.alpn) {
					t.Errorf("%s: got ALPN %q; want %q", framing.name, h.ALPN, tt.alpn)
				}
			}
		})
	}
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// Every strict prefix of a valid hello asks for more bytes: never an error,
// never a wrong answer.
func TestParseClientHelloTruncated(t *testing.T) {
	for _, raw := range [][]byte{recordHello(t, "a.example", []string{"h2"}), splitRecords(recordHello(t, "b.example", nil), 64)} {
		for n := range len(raw) {
			if _, err := parseClientHello(raw[:n]); !errors.Is(err, errNeedMore) {
				t.Fatalf("prefix of %d/%d bytes: got %v; want errNeedMore", n, len(raw), err)
			}
		}
	}
}

func TestParseClientHelloMalformed(t *testing.T) {
	good := recordHello(t, "a.example", []string{"h2"})
	mutate := func(f func(b []byte) []byte) []byte { return f(slices.Clone(good)) }
	tests := []struct {
		name string
		data []byte
	}{
		{"not handshake", mutate(func(b []byte) []byte { b[0] = 0x17; return b })},
		{"zero record length", []byte{0x16, 3, 1, 0, 0}},
		{"server hello", mutate(func(b []byte) []byte { b[5] = 2; return b })},
		{"handshake shorter than fields", []byte{0x16, 3, 1, 0, 8, 1, 0, 0, 4, 3, 3, 0, 0}},
		{"extensions length overruns the message", func() []byte {
			b := helloWithSNI(t, "ok.example")
			b[51]++ // low byte of the extensions length (see helloWithSNI's layout)
			return b
		}()},
		{"bad sni chars", helloWithSNI(t, "bad name!")},
		{"sni two trailing dots", helloWithSNI(t, "example.com..")},
		{"sni only a dot", helloWithSNI(t, ".")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := parseClientHello(tt.data); !errors.Is(err, errBadHello) {
				t.Errorf("got %v; want errBadHello", err)
			}
		})
	}
}

// A server name with one trailing dot, as openssl s_client -servername
// sends a fully qualified name, is the name without it (as HostName reads
// a Host header), and the dot is noted.
func TestParseClientHelloTrailingDot(t *testing.T) {
	for _, tt := range []struct {
		sent, want string
		dot        bool
	}{
		{"LocalHost.", "localhost", true},
		{"app.example.com.", "app.example.com", true},
		{"app.example.com", "app.example.com", false},
	} {
		h, err := parseClientHello(helloWithSNI(t, tt.sent))
		if err != nil || h.ServerName != tt.want || h.trailingDot != tt.dot {
			t.Errorf("SNI %q: got %q, dot %v, %v; want %q, dot %v", tt.sent, h.ServerName, h.trailingDot, err, tt.want, tt.dot)
		}
	}
}

// helloWithSNI builds a minimal ClientHello by hand carrying name verbatim,
// which crypto/tls would refuse to send.
func helloWithSNI(t testing.TB, name string) []byte {
	t.Helper()
	sni := append([]byte{0, byte(len(name) + 3), 0, 0, byte(len(name))}, name...)
	ext := append([]byte{0, 0, 0, byte(len(sni))}, sni...)
	body := append([]byte{3, 3}, make([]byte, 32)...)
	body = append(body, 0, 0, 2, 0x13, 0x01, 1, 0)
	body = append(body, 0, byte(len(ext)))
	body = append(body, ext...)
	msg := append([]byte{1, 0, 0, byte(len(body))}, body...)
	return append([]byte{0x16, 3, 1, 0, byte(len(msg))}, msg...)
}

func TestSniffTLS(t *testing.T) {
	hello := recordHello(t, "x.example", nil)
	tests := []struct {
		name string
		in   []byte
		want verdict
	}{
		{"empty", nil, needMore},
		{"record header start", hello[:3], needMore},
		{"six bytes", hello[:6], matched},
		{"whole hello", hello, matched},
		{"http", []byte("GET / HTTP/1.1"), rejected},
		{"tls alert", []byte{0x15, 3, 3, 0, 2, 2}, rejected},
		{"application data", []byte{0x17, 3, 3, 0, 2, 2}, rejected},
		{"bad version", []byte{0x16, 2, 0, 0, 2, 1}, rejected},
		{"not client hello", []byte{0x16, 3, 1, 0, 2, 2}, rejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sniffTLS(tt.in); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
}

func FuzzParseClientHello(f *testing.F) {
	// Seeds: real hellos (with and without SNI/ALPN), one re-framed into
	// small records, and a hand-built one with an odd server name.
	f.Add(recordHello(f, "a.example", []string{"h2", "http/1.1"}))
	f.Add(recordHello(f, "", nil))
	f.Add(splitRecords(recordHello(f, "b.example", nil), 16))
	f.Add([]byte{0x16, 3, 1, 0, 0})
	f.Add(helloWithSNI(f, "a.example.")) // a fully qualified name, as openssl sends it
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parseClientHello(data)
		if err != nil {
			if !errors.Is(err, errNeedMore) && !errors.Is(err, errBadHello) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		// A complete hello's answer does not change with trailing bytes.
		h2, err := parseClientHello(append(slices.Clone(data), 0x16, 3))
		if err != nil || h2.ServerName != h.ServerName || !slices.Equal(h2.ALPN, h.ALPN) {
			t.Fatalf("trailing bytes changed the result: %v %+v %+v", err, h, h2)
		}
		if h.ServerName != "" && !validSNI([]byte(h.ServerName)) {
			t.Fatalf("accepted invalid server name %q", h.ServerName)
		}
	})
}
