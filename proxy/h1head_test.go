package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// reqWant is what parseRequest must find in a head it accepts.
type reqWant struct {
	method, target, path, host string
	contentLength              int64
	close, teTrailers          bool
	connTokens                 []string
	size                       int // bytes of the head; 0: the whole input
}

// manyFields is a GET with n fields besides Host.
func manyFields(n int) string {
	var b strings.Builder
	b.WriteString("GET / HTTP/1.1\r\nHost: a\r\n")
	for i := range n {
		fmt.Fprintf(&b, "X-F%d: %d\r\n", i, i)
	}
	return b.String() + "\r\n"
}

// Heads the direct path can forward are headOK, with their parts found.
func TestParseRequestOK(t *testing.T) {
	body := "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"
	next := "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, tc := range []struct {
		name, in string
		want     reqWant
	}{
		{"minimal", "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "a"}},
		{"query and port", "GET /p/q?x=1&y HTTP/1.1\r\nHost: example.com:8080\r\nUser-Agent: t\r\n\r\n",
			reqWant{method: "GET", target: "/p/q?x=1&y", path: "/p/q", host: "example.com:8080"}},
		{"body not counted in size", body + "hello",
			reqWant{method: "POST", target: "/up", path: "/up", host: "a", contentLength: 5, size: len(body)}},
		{"pipelined request not counted", next + next,
			reqWant{method: "GET", target: "/a", path: "/a", host: "a", size: len(next)}},
		{"case-insensitive names, OWS trimmed", "GET / HTTP/1.1\r\nhOsT: \t a.b \t\r\ncontent-LENGTH:0\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "a.b"}},
		{"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "[::1]:8080"}},
		{"Connection close among tokens", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, ,Close , X-Hop\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "a", close: true, connTokens: []string{"keep-alive", "Close", "X-Hop"}}},
		{"two Connection fields", "GET / HTTP/1.1\r\nConnection: a\r\nHost: a\r\nConnection: b\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "a", connTokens: []string{"a", "b"}}},
		{"TE trailers", "GET / HTTP/1.1\r\nHost: a\r\nTE: deflate, Trailers\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "a", teTrailers: true}},
		{"TE without trailers", "GET / HTTP/1.1\r\nHost: a\r\nTE: deflate\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "a"}},
		{"other method, encoded path", "DELETE /a%20b/?c HTTP/1.1\r\nHost: a\r\n\r\n",
			reqWant{method: "DELETE", target: "/a%20b/?c", path: "/a%20b/"}},
		{"obs-text in a value", "GET / HTTP/1.1\r\nHost: a\r\nX-Name: caf\xc3\xa9\r\n\r\n",
			reqWant{method: "GET", target: "/", path: "/", host: "a"}},
		{"maxRequestFields fields", manyFields(maxRequestFields - 1),
			reqWant{method: "GET", target: "/", path: "/", host: "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r requestHead
			if res := r.parseRequest([]byte(tc.in)); res != headOK {
				t.Fatalf("parseRequest(%q) = %d; want headOK", tc.in, res)
			}
			checkRequest(t, &r, tc.in, tc.want)
		})
	}
}

func checkRequest(t *testing.T, r *requestHead, in string, want reqWant) {
	t.Helper()
	if want.size == 0 {
		want.size = len(in)
	}
	if want.host == "" {
		want.host = "a"
	}
	var tokens []string
	for _, tok := range r.connTokens {
		tokens = append(tokens, string(tok))
	}
	got := reqWant{string(r.method), string(r.target), string(r.path), string(r.host),
		r.contentLength, r.close, r.teTrailers, tokens, r.size}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("parseRequest(%q):\n got %+v\nwant %+v", in, got, want)
	}
}

// A requestHead reused for the next request (as a connection does) keeps
// nothing of the previous one.
func TestParseRequestReuse(t *testing.T) {
	var r requestHead
	first := "POST /x?y HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\nConnection: close, X-Hop\r\nTE: trailers\r\n\r\n"
	if r.parseRequest([]byte(first)) != headOK {
		t.Fatal("first request refused")
	}
	second := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	if r.parseRequest([]byte(second)) != headOK {
		t.Fatal("second request refused")
	}
	checkRequest(t, &r, second, reqWant{method: "GET", target: "/", path: "/", host: "a"})
	if len(r.fields) != 1 {
		t.Errorf("fields: %q; want the Host line only", r.fields)
	}
}

// Every proper prefix of a head is headNeedMore: the head is decided only
// once its empty line has arrived.
func TestParseRequestNeedMore(t *testing.T) {
	for _, full := range []string{
		"GET /p?q HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n",
		// Not forwardable once complete, but still waited for: the
		// request line is judged with the rest of the head.
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	} {
		for k := range len(full) {
			var r requestHead
			if res := r.parseRequest([]byte(full[:k])); res != headNeedMore {
				t.Errorf("parseRequest(%q) = %d; want headNeedMore", full[:k], res)
			}
		}
	}
}

// HTTP/1.1 requests framed both by Transfer-Encoding and Content-Length,
// whatever the order, case, coding or length, are refused outright.
// Requests no one should take, refused 400 whatever else they hold: a
// request with both framings that also asks for an upgrade or 100-continue,
// or is in absolute form, must not reach net/http, which would take it.
func TestParseRequestFaulty(t *testing.T) {
	const both = "both Transfer-Encoding and Content-Length"
	for _, tc := range []struct{ in, why string }{
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", both},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", both},
		{"POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: identity\r\ncontent-length: 1\r\n\r\nx", both},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 5\r\n\r\n", both},
		{"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", both},
		{"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", both},
		{"POST / HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", both},
		{"POST http://a/ HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n", both},
		{"POST / HTTP/1.1\r\nContent-Length: x\r\nTransfer-Encoding: chunked\r\n\r\n", both},
		{"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\nx", both},
		{"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "Transfer-Encoding in an HTTP/1.0 request"},
		{"POST / HTTP/1.0\r\nConnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n", "Transfer-Encoding in an HTTP/1.0 request"},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", "obsolete line folding"},
		{"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n\tc\r\n\r\n", "obsolete line folding"},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 5\r\n\r\n", "obsolete line folding"},
		{"GET / HTTP/1.1\r\n Host: a\r\n\r\n", "obsolete line folding"},
		// Folding is refused before the head is complete.
		{"GET / HTTP/1.1\r\nX-A: b\r\n c\r\n", "obsolete line folding"},
		{"GET /admin/secret#/../../x HTTP/1.1\r\nHost: a\r\n\r\n", "'#' in the request target"},
		{"GET /admin# HTTP/1.1\r\nHost: a\r\n\r\n", "'#' in the request target"},
		{"GET /a?b#c HTTP/1.1\r\nHost: a\r\n\r\n", "'#' in the request target"},
	} {
		var r requestHead
		if res := r.parseRequest([]byte(tc.in)); res != headFaulty || r.why != tc.why {
			t.Errorf("parseRequest(%q) = %d, %q; want headFaulty, %q", tc.in, res, r.why, tc.why)
		}
	}
}

// Requests the direct path leaves to net/http, complete or not.
func TestParseRequestUnsupported(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n"},
		{"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: a\r\n\r\n"},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n"},
		{"absolute form", "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"},
		{"CONNECT origin form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"Transfer-Encoding identity", "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: identity\r\n\r\nx"},
		{"Upgrade", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"},
		{"Upgrade field alone", "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n"},
		{"Connection: upgrade", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, UPGRADE\r\n\r\n"},
		{"Expect", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nExpect: 100-continue\r\n\r\n"},
		{"two Host", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"},
		{"no Host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n"},
		{"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n"},
		{"space in Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n"},
		{"slash in Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"},
		{"quote in Host", "GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n"},
		{"non-ASCII Host", "GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"},
		{"two Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"},
		{"Content-Length not a number", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1a\r\n\r\n"},
		{"Content-Length signed", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx"},
		{"Content-Length negative", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n"},
		{"Content-Length empty", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n"},
		{"Content-Length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 1\r\n\r\nx"},
		{"Content-Length too long", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000000000000\r\n\r\n"},
		{"bare LF everywhere", "GET / HTTP/1.1\nHost: a\n\n"},
		{"bare LF in a field line", "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"},
		{"bare LF at the end", "GET / HTTP/1.1\r\nHost: a\r\n\n"},
		{"bare LF, head incomplete", "GET / HTTP/1.1\n"},
		{"bare LF in start line, incomplete", "GET /\n HTTP/1.1\r\n"},
		{"bare CR in a value", "GET / HTTP/1.1\r\nHost: a\r\nX: b\rc\r\n\r\n"},
		{"space before colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n"},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n"},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n"},
		{"separator in name", "GET / HTTP/1.1\r\nHost: a\r\nX(A): b\r\n\r\n"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n"},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x7fc\r\n\r\n"},
		{"escape in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: \x1b[31m\r\n\r\n"},
		{"too many fields", manyFields(maxRequestFields)},
		{"too many fields, incomplete", manyFields(maxRequestFields)[:len(manyFields(maxRequestFields))-2]},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"trailing space", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n"},
		{"control in target", "GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"empty method", " / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"method not a token", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"empty start line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r requestHead
			if res := r.parseRequest([]byte(tc.in)); res != headUnsupported {
				t.Errorf("parseRequest(%q) = %d; want headUnsupported", tc.in, res)
			}
		})
	}
}

// What the direct path forwards, net/http would have served: every Host
// a real net/http server refuses (400) is left to it. A host byte outside
// the URI host syntax would otherwise reach the router and the upstream.
func TestParseRequestHostAgreesWithNetHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	for c := 0x21; c < 0x7f; c++ {
		host := "a" + string(rune(c)) + "b"
		req := "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		var r requestHead
		if r.parseRequest([]byte(req)) != headOK {
			continue // net/http serves it, whatever it answers
		}
		if status := rawStatus(t, srv.Listener.Addr().String(), req); status != 200 {
			t.Errorf("Host %q: the direct path forwards it, net/http answers %d", host, status)
		}
	}
}

// rawStatus sends req on a new connection and returns the status.
func rawStatus(t *testing.T, addr, req string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// respWant is what parseResponse must find.
type respWant struct {
	status                    int
	reason                    string
	contentLength             int64
	chunked, untilClose, shut bool // shut: close
}

func TestParseResponse(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		headReq  bool
		want     respWant
	}{
		{"content length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false,
			respWant{200, "OK", 5, false, false, false}},
		{"duplicate equal lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n", false,
			respWant{200, "OK", 5, false, false, false}},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", false,
			respWant{200, "OK", -1, true, false, false}},
		{"chunked wins over length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false,
			respWant{200, "OK", -1, true, false, false}},
		{"no length: until close", "HTTP/1.1 200 OK\r\n\r\n", false,
			respWant{200, "OK", -1, false, true, true}},
		{"HTTP/1.0 closes", "HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n", false,
			respWant{200, "OK", 5, false, false, true}},
		{"HTTP/1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 5\r\n\r\n", false,
			respWant{200, "OK", 5, false, false, false}},
		{"Connection: close", "HTTP/1.1 200 OK\r\nConnection: foo, close\r\nContent-Length: 5\r\n\r\n", false,
			respWant{200, "OK", 5, false, false, true}},
		{"HEAD with a length", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", true,
			respWant{200, "OK", 1234, false, false, false}},
		{"HEAD without a length", "HTTP/1.1 200 OK\r\n\r\n", true,
			respWant{200, "OK", -1, false, false, false}},
		{"HEAD chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true,
			respWant{200, "OK", -1, false, false, false}},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", false,
			respWant{204, "No Content", -1, false, false, false}},
		{"304 with a length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", false,
			respWant{304, "Not Modified", 5, false, false, false}},
		{"100", "HTTP/1.1 100 Continue\r\n\r\n", false,
			respWant{100, "Continue", -1, false, false, false}},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false,
			respWant{200, "", 0, false, false, false}},
		{"empty reason", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", false,
			respWant{200, "", 0, false, false, false}},
		{"long reason", "HTTP/1.1 599 Custom Reason here\r\nContent-Length: 0\r\n\r\n", false,
			respWant{599, "Custom Reason here", 0, false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r responseHead
			res, err := r.parseResponse([]byte(tc.in), tc.headReq)
			if res != headOK || err != nil {
				t.Fatalf("parseResponse(%q) = %d, %v", tc.in, res, err)
			}
			got := respWant{r.status, string(r.reason), r.contentLength, r.chunked, r.untilClose, r.close}
			if got != tc.want || r.size != len(tc.in) {
				t.Errorf("parseResponse(%q):\n got %+v size %d\nwant %+v size %d", tc.in, got, r.size, tc.want, len(tc.in))
			}
		})
	}
}

// Incomplete heads wait; heads the proxy cannot relay are errors (the
// client gets a 502).
func TestParseResponseIncompleteAndBad(t *testing.T) {
	full := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
	for k := range len(full) {
		var r responseHead
		if res, err := r.parseResponse([]byte(full[:k]), false); res != headNeedMore || err != nil {
			t.Errorf("parseResponse(%q) = %d, %v; want headNeedMore", full[:k], res, err)
		}
	}
	// Incomplete heads that cannot become a status line: other
	// protocols' banners, refused before their line ends.
	for _, in := range []string{
		"S", "SSH-2.0-OpenSSH_9.2", "220 mail.example.com ESMTP", "HTTP/2", "HTTP/1.2", "HTTP/1.1\t",
		"HTTP/1.1 2x", "HTTP/1.1 20 OK", "\r\n",
	} {
		var r responseHead
		if res, err := r.parseResponse([]byte(in), false); res != headUnsupported || err != errBadResponse {
			t.Errorf("parseResponse(%q) = %d, %v; want errBadResponse at once", in, res, err)
		}
	}
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1 099 Low\r\n\r\n",
		"HTTP/1.2 200 OK\r\n\r\n",
		"HTTP/2.0 200 OK\r\n\r\n",
		"HTTP/1.1  200 OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
		"\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
		"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A : b\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: b\x00\r\n\r\n",
		// Codings other than plain chunked, refused as net/http's Transport does.
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		var r responseHead
		if res, err := r.parseResponse([]byte(in), false); res != headUnsupported || err != errBadResponse {
			t.Errorf("parseResponse(%q) = %d, %v; want errBadResponse", in, res, err)
		}
	}
}

// The head relayed to the client: HTTP/1.1, no hop-by-hop field, the
// framing fields only when the body is relayed with that framing.
func TestAppendResponseHead(t *testing.T) {
	hop := "Connection: X-Secret, keep-alive\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nProxy-Connection: x\r\n" +
		"Proxy-Authenticate: Basic\r\nTe: trailers\r\nUpgrade: h2c\r\n"
	for _, tc := range []struct {
		name, in      string
		headReq, shut bool
		want          string
	}{
		{"chunked keeps its framing", "HTTP/1.1 200 OK\r\n" + hop +
			"Transfer-Encoding: chunked\r\nTrailer: X-Sum\r\nContent-Type: text/plain\r\nContent-Length: 9\r\nx-secret: s2\r\n\r\n",
			false, false,
			"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\nContent-Type: text/plain\r\n\r\n"},
		{"length kept", "HTTP/1.0 404 Gone Fishing\r\n" + hop + "Content-Length: 3\r\nTrailer: X-Sum\r\nSet-Cookie: a=b\r\n\r\n",
			false, false,
			"HTTP/1.1 404 Gone Fishing\r\nContent-Length: 3\r\nSet-Cookie: a=b\r\n\r\n"},
		{"until close: no framing, close", "HTTP/1.1 200 OK\r\nTrailer: X\r\nX-A: b\r\n\r\n",
			false, true,
			"HTTP/1.1 200 OK\r\nX-A: b\r\nConnection: close\r\n\r\n"},
		{"upstream close replaced", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
			false, true,
			"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"HEAD of a chunked response", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n",
			true, false,
			"HTTP/1.1 200 OK\r\nX-A: b\r\n\r\n"},
		{"missing reason filled in", "HTTP/1.1 204\r\nX-A: b\r\n\r\n",
			false, false,
			"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r responseHead
			if res, err := r.parseResponse([]byte(tc.in), tc.headReq); res != headOK {
				t.Fatalf("parseResponse: %d, %v", res, err)
			}
			if got := string(appendResponseHead([]byte("prefix"), &r, tc.shut)); got != "prefix"+tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, "prefix"+tc.want)
			}
		})
	}
}

// testDirectConn is a directConn whose client sent raw (all of it
// buffered), from client, over TLS or not.
func testDirectConn(t *testing.T, raw, client string, overTLS bool) *directConn {
	t.Helper()
	d := &directConn{br: bufio.NewReaderSize(strings.NewReader(raw), clientBufferSize), remote: client}
	d.client = netip.MustParseAddrPort(client)
	d.clientIP = d.client.Addr().String()
	if overTLS {
		d.tls = &tls.ConnectionState{}
	}
	if _, err := d.br.Peek(len(raw)); err != nil {
		t.Fatal(err)
	}
	if res := d.req.parseRequest(d.peekBuffered()); res != headOK {
		t.Fatalf("parseRequest(%q) = %d", raw, res)
	}
	return d
}

// forwarded returns the request appendRequest writes for d to an upstream
// at 10.0.0.1:8080, raw and as net/http reads it.
func forwarded(t *testing.T, p *HTTPProxy, d *directConn) (string, *http.Request, string) {
	t.Helper()
	u := &Upstream{URL: &url.URL{Scheme: "http", Host: "10.0.0.1:8080"}}
	out := string(p.appendRequest([]byte(nil), d, u))
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(out)))
	if err != nil {
		t.Fatalf("upstream cannot read %q: %v", out, err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatalf("upstream cannot read the body of %q: %v", out, err)
	}
	return out, req, string(body)
}

func TestAppendRequest(t *testing.T) {
	spoofed := "GET /p?q=1 HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-for: 7.7.7.7\r\n" +
		"X-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\nForwarded: for=6.6.6.6\r\nX-Case:  MiXeD\tvalue \r\n" +
		"X-Real-IP: 6.6.6.6\r\nx-forwarded-port: 8443\r\nX-Forwarded-Prefix: /evil\r\nX-Forwarded-: odd\r\n\r\n"
	t.Run("untrusted client: X-Forwarded-* replaced", func(t *testing.T) {
		p := &HTTPProxy{PreserveHost: true}
		out, req, _ := forwarded(t, p, testDirectConn(t, spoofed, "192.0.2.1:1234", false))
		want := "GET /p?q=1 HTTP/1.1\r\nHost: app.example.com\r\nX-Case:  MiXeD\tvalue \r\nX-Forwarded-: odd\r\nX-Forwarded-For: 192.0.2.1\r\n" +
			"X-Forwarded-Host: app.example.com\r\nX-Forwarded-Proto: http\r\nX-Real-IP: 192.0.2.1\r\n\r\n"
		if out != want {
			t.Errorf("got\n%q\nwant\n%q", out, want)
		}
		if req.Header.Get("Forwarded") != "" {
			t.Error("Forwarded passed through")
		}
		_, req, _ = forwarded(t, p, testDirectConn(t, spoofed, "[2001:db8::1]:443", true))
		if got := req.Header.Values("X-Forwarded-For"); !slices.Equal(got, []string{"2001:db8::1"}) {
			t.Errorf("X-Forwarded-For %q", got)
		}
		if got := req.Header.Get("X-Forwarded-Proto"); got != "https" {
			t.Errorf("over TLS, X-Forwarded-Proto %q", got)
		}
	})
	t.Run("trusted proxy: chain kept and extended", func(t *testing.T) {
		p := &HTTPProxy{PreserveHost: true, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
		_, req, _ := forwarded(t, p, testDirectConn(t, spoofed, "192.0.2.1:1234", false))
		for h, want := range map[string]string{
			"X-Forwarded-For":    "6.6.6.6, 7.7.7.7, 192.0.2.1",
			"X-Forwarded-Host":   "evil.example",
			"X-Forwarded-Proto":  "https",
			"Forwarded":          "",
			"X-Real-Ip":          "6.6.6.6",
			"X-Forwarded-Port":   "8443",
			"X-Forwarded-Prefix": "/evil",
		} {
			if got := strings.Join(req.Header.Values(h), " | "); got != want {
				t.Errorf("%s: %q; want %q", h, got, want)
			}
		}
		// The same client outside the trusted prefix is not trusted.
		_, req, _ = forwarded(t, p, testDirectConn(t, spoofed, "198.51.100.1:1234", false))
		if got := req.Header.Get("X-Forwarded-For"); got != "198.51.100.1" {
			t.Errorf("untrusted X-Forwarded-For %q", got)
		}
	})
	t.Run("host not preserved", func(t *testing.T) {
		p := &HTTPProxy{}
		_, req, _ := forwarded(t, p, testDirectConn(t, spoofed, "192.0.2.1:1234", false))
		if req.Host != "10.0.0.1:8080" || req.Header.Get("X-Forwarded-Host") != "app.example.com" {
			t.Errorf("Host %q, X-Forwarded-Host %q", req.Host, req.Header.Get("X-Forwarded-Host"))
		}
	})
	t.Run("hop-by-hop dropped, TE trailers kept, body sent", func(t *testing.T) {
		in := "POST /up HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: 5\r\n" +
			"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\nTE: gzip, trailers\r\nTrailer: X-T\r\n" +
			"X-Keep: 1\r\nContent-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\n"
		p := &HTTPProxy{PreserveHost: true}
		out, req, body := forwarded(t, p, testDirectConn(t, in, "192.0.2.1:1234", false))
		for _, h := range []string{"Connection", "X-Hop", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "Trailer"} {
			if v, ok := req.Header[h]; ok {
				t.Errorf("%s: %q forwarded", h, v)
			}
		}
		if got := req.Header.Values("Te"); !slices.Equal(got, []string{"trailers"}) {
			t.Errorf("Te %q; want trailers only", got)
		}
		if req.Header.Get("X-Keep") != "1" || req.ContentLength != 5 || body != "hello" {
			t.Errorf("X-Keep %q, Content-Length %d, body %q", req.Header.Get("X-Keep"), req.ContentLength, body)
		}
		if !strings.HasSuffix(out, "\r\n\r\nhello") {
			t.Errorf("the pipelined bytes after the body were sent: %q", out)
		}
		in = strings.Replace(in, "gzip, trailers", "gzip", 1)
		if _, req, _ = forwarded(t, p, testDirectConn(t, in, "192.0.2.1:1234", false)); req.Header.Get("Te") != "" {
			t.Errorf("Te %q sent though the client did not accept trailers", req.Header.Get("Te"))
		}
	})
}

// A client may list any field in Connection, Content-Length included. The
// body is sent after the head in any case, so its length must go with it:
// without it the upstream reads the body as the next request (request
// smuggling past the proxy, and a response the next user of the pooled
// connection gets).
func TestAppendRequestConnectionListedContentLength(t *testing.T) {
	smuggled := "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	in := fmt.Sprintf("POST / HTTP/1.1\r\nHost: a\r\nConnection: Content-Length\r\nContent-Length: %d\r\n\r\n%s", len(smuggled), smuggled)
	p := &HTTPProxy{PreserveHost: true}
	out, req, body := forwarded(t, p, testDirectConn(t, in, "192.0.2.1:1234", false))
	if req.ContentLength != int64(len(smuggled)) || body != smuggled {
		t.Errorf("the upstream reads a POST with Content-Length %d and body %q, then %q as the next request\n(sent %q)",
			req.ContentLength, body, strings.TrimPrefix(out[strings.Index(out, "\r\n\r\n")+4:], body), out)
	}
}

// within reports whether s lies inside in (an empty s anywhere).
func within(in, s []byte) bool {
	if len(s) == 0 {
		return true
	}
	b := uintptr(unsafe.Pointer(unsafe.SliceData(in)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	return p >= b && p+uintptr(len(s)) <= b+uintptr(len(in))
}

// checkHeadSlices fails unless every slice of h lies inside in.
func checkHeadSlices(t *testing.T, in []byte, h *head, more ...[]byte) {
	t.Helper()
	all := append([][]byte{h.start}, more...)
	for _, f := range h.fields {
		all = append(all, f.name, f.value, f.line)
	}
	all = append(all, h.connTokens...)
	for _, s := range all {
		if !within(in, s) {
			t.Fatalf("slice %q outside the input %q", s, in)
		}
	}
}

// FuzzParseRequest: parseRequest never panics; its slices lie in the
// input; a decision other than headNeedMore is final (more bytes do not
// change it, as readRequest parses as bytes arrive); and what it accepts
// net/http reads the same way: method, target, Host, length, close.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte("GET /p?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n"))
	f.Add([]byte("POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: [::1]:80\r\nTE: trailers\r\nConnection: X-A, keep-alive\r\nX-A: b\r\n\r\nGET /"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.1\nHost: a\n\n"))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\nX: b\r\n c\r\n\r\n"))
	f.Add([]byte("GET /a%20b HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"))
	f.Add([]byte("GET http://a/ HTTP/1.0\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r requestHead
		res := r.parseRequest(b)
		checkHeadSlices(t, b, &r.head)
		for _, k := range []int{len(b) / 3, len(b) / 2, len(b) - 1} {
			if k < 0 {
				continue
			}
			var p requestHead
			if pres := p.parseRequest(b[:k]); pres != headNeedMore && (pres != res || res == headOK && p.size != r.size) {
				t.Fatalf("prefix %q: %d (size %d); whole %q: %d (size %d)", b[:k], pres, p.size, b, res, r.size)
			}
		}
		if res != headOK {
			return
		}
		if r.size > len(b) || r.size < 4 {
			t.Fatalf("size %d of %q", r.size, b)
		}
		checkHeadSlices(t, b, &r.head, r.method, r.target, r.path, r.host)
		var p requestHead
		if p.parseRequest(b[:r.size-1]) != headNeedMore {
			t.Fatalf("%q accepted before its last byte", b[:r.size])
		}
		if !bytes.HasPrefix(r.target, r.path) || len(r.target) == 0 || r.target[0] != '/' || r.contentLength < 0 {
			t.Fatalf("target %q, path %q, length %d", r.target, r.path, r.contentLength)
		}
		if _, err := url.PathUnescape(string(r.path)); err != nil {
			return // route hands it to net/http
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b[:r.size])))
		if err != nil {
			t.Fatalf("accepted %q; net/http: %v", b[:r.size], err)
		}
		if req.Method != string(r.method) || req.RequestURI != string(r.target) || req.Host != string(r.host) ||
			req.ContentLength != r.contentLength || req.Close != r.close {
			t.Fatalf("%q: net/http reads %s %s host %q length %d close %v; parseRequest %s %s host %q length %d close %v",
				b[:r.size], req.Method, req.RequestURI, req.Host, req.ContentLength, req.Close,
				r.method, r.target, r.host, r.contentLength, r.close)
		}
	})
}

// FuzzParseResponse: parseResponse never panics, its slices lie in the
// input, headOK comes without error and within the input, errors only
// with headUnsupported, decisions are final, and a status and framing it
// accepts are those net/http reads.
func FuzzParseResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n5\r\nhello\r\n0\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"), true)
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), false)
	f.Fuzz(func(t *testing.T, b []byte, headReq bool) {
		var r responseHead
		res, err := r.parseResponse(b, headReq)
		checkHeadSlices(t, b, &r.head)
		if (err != nil) != (res == headUnsupported) {
			t.Fatalf("%q: %d with error %v", b, res, err)
		}
		for _, k := range []int{len(b) / 2, len(b) - 1} {
			if k < 0 {
				continue
			}
			var p responseHead
			if pres, _ := p.parseResponse(b[:k], headReq); pres != headNeedMore && (pres != res || res == headOK && p.size != r.size) {
				t.Fatalf("prefix %q: %d; whole %q: %d", b[:k], pres, b, res)
			}
		}
		if res != headOK {
			return
		}
		if r.size > len(b) {
			t.Fatalf("size %d of %q", r.size, b)
		}
		checkHeadSlices(t, b, &r.head, r.reason)
		if r.chunked && (r.untilClose || r.contentLength >= 0) || r.untilClose && !r.close || r.status < 100 || r.status > 999 {
			t.Fatalf("%q: %+v", b, r)
		}
		method := "GET"
		if headReq {
			method = "HEAD"
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b[:r.size])), &http.Request{Method: method})
		if err != nil {
			return // net/http would have answered 502; the direct path is laxer
		}
		resp.Body.Close()
		if resp.StatusCode != r.status || r.chunked && !slices.Equal(resp.TransferEncoding, []string{"chunked"}) ||
			!r.chunked && !r.untilClose && r.hasBody() && !headReq && resp.ContentLength != r.contentLength {
			t.Fatalf("%q: net/http reads %d %q length %d; parseResponse %+v",
				b[:r.size], resp.StatusCode, resp.TransferEncoding, resp.ContentLength, r)
		}
	})
}

// BenchmarkParseRequest is the direct path's parse of a typical request
// head (CRLF line ends), the part of each request its fast case runs.
func BenchmarkParseRequest(b *testing.B) {
	in := []byte("GET /some/longer/path?with=query HTTP/1.1\r\nHost: example.com\r\nUser-Agent: bench/1\r\n" +
		"Accept: */*\r\nAccept-Encoding: gzip\r\nConnection: keep-alive\r\n\r\n")
	var r requestHead
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if r.parseRequest(in) != headOK {
			b.Fatal("not headOK")
		}
	}
}

func TestOtherVersion(t *testing.T) {
	for _, tc := range []struct {
		line, want string
		ok         bool
	}{
		{"GET / HTTP/3", "3", true},
		{"GET / HTTP/2.0\r", "2.0", true},
		{"GET / HTTP/0.9", "0.9", true},
		{"GET /a b HTTP/10.1", "10.1", true},
		{"GET / HTTP/1.1", "", false},
		{"GET / HTTP/1.0", "", false},
		{"GET / HTTP/1", "", false},
		{"PRI * HTTP/2.0", "", false}, // the h2c preface: net/http's
		{"GET / HTTP/2.x", "", false},
		{"GET / HTTP/", "", false},
		{"GET / http/2.0", "", false},
		{"GET /", "", false},
	} {
		if v, ok := otherVersion([]byte(tc.line)); ok != tc.ok || string(v) != tc.want {
			t.Errorf("otherVersion(%q) = %q, %v; want %q, %v", tc.line, v, ok, tc.want, tc.ok)
		}
	}
}
