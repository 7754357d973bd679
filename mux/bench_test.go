package mux

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Micro-benchmarks of the sniff path. Run with:
//
//	go test -run '^$' -bench . -benchmem ./mux/
//
// The per-connection benchmarks report allocations per connection through
// a real Server on loopback, which is what the sniff path costs.

func BenchmarkSniffSSH(b *testing.B) {
	in := []byte("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
	b.ReportAllocs()
	for b.Loop() {
		if sniffSSH(in) != matched {
			b.Fatal("no match")
		}
	}
}

func BenchmarkSniffHTTP(b *testing.B) {
	in := []byte("GET /some/longer/path?with=query HTTP/1.1\r\nHost: example.com\r\n\r\n")
	b.ReportAllocs()
	for b.Loop() {
		var s httpSniffer
		if s.feed(in) != matched {
			b.Fatal("no match")
		}
	}
}

func BenchmarkSniffTLS(b *testing.B) {
	in := recordHello(b, "app.example.com", []string{"h2", "http/1.1"})
	b.ReportAllocs()
	for b.Loop() {
		if sniffTLS(in) != matched {
			b.Fatal("no match")
		}
	}
}

func BenchmarkParseClientHello(b *testing.B) {
	in := recordHello(b, "app.example.com", []string{"h2", "http/1.1"})
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := parseClientHello(in); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTable() *Table {
	office := netip.MustParsePrefix("10.1.0.0/16")
	return NewTable([]Route{
		{Name: "git", Match: Match{Protocols: []Protocol{TLS}, SNI: []string{"git.example.com"}}},
		{Name: "wild", Match: Match{Protocols: []Protocol{TLS}, SNI: []string{"*.example.com"}}},
		{Name: "ssh-office", Match: Match{Protocols: []Protocol{SSH}, Source: []netip.Prefix{office}}},
		{Name: "ssh", Match: Match{Protocols: []Protocol{SSH}}},
		{Name: "api", Match: Match{Protocols: []Protocol{HTTP}, Host: []string{"api.example.com"}}},
		{Name: "web", Match: Match{Protocols: []Protocol{HTTP}}},
	})
}

func BenchmarkLookup(b *testing.B) {
	t := benchTable()
	client := netip.MustParseAddrPort("192.0.2.1:5000")
	cases := []struct {
		name string
		info Info
	}{
		{"ssh", Info{Protocol: SSH, Client: client}},
		{"http host", Info{Protocol: HTTP, Host: "www.example.com", hostKnown: true, Client: client}},
		{"tls wildcard sni", Info{Protocol: TLS, SNI: "app.example.com", Client: client}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if t.Lookup(&c.info) == nil {
					b.Fatal("no route")
				}
			}
		})
	}
}

// BenchmarkConnection measures one whole connection through a Server:
// accept, sniff, route, a handler that closes at once, the log skipped
// (nop logger). Allocations are per connection, including the runtime's
// own for the sockets and goroutines.
func BenchmarkConnection(b *testing.B) {
	done := HandlerFunc(func(ctx context.Context, c *Conn) Result {
		c.NetConn.Close()
		return Result{}
	})
	routes := []Route{
		{Name: "ssh", Match: Match{Protocols: []Protocol{SSH}}, Handler: done},
		{Name: "web", Match: Match{Protocols: []Protocol{HTTP}}, Handler: done},
		{Name: "tls", Match: Match{Protocols: []Protocol{TLS}}, Handler: done},
	}
	srv := NewServer(NewTable(routes), Options{SniffTimeout: time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	for _, c := range []struct {
		name string
		data []byte
	}{
		{"ssh", []byte("SSH-2.0-bench\r\n")},
		{"http", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")},
		{"tls", recordHello(b, "app.example.com", []string{"h2"})},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				conn, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				conn.Write(c.data)
				io.Copy(io.Discard, conn) // until the handler closes
				conn.Close()
			}
		})
	}
}
