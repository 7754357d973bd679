package proxy

import (
	"strings"
	"testing"
)

// fed is the outcome of feeding a body: the bytes taken, the error, and
// whether the framing says the body is complete.
type fed struct {
	n    int
	err  error
	done bool
}

// feedPieces feeds b cut at the given offsets (increasing), stopping at
// an error or once a piece is not taken whole (the body ended in it).
func feedPieces(t *testing.T, f bodyFraming, b []byte, cuts []int) fed {
	t.Helper()
	n, start := 0, 0
	for _, end := range append(cuts, len(b)) {
		piece := b[start:end]
		start = end
		use, err := f.feed(piece)
		if use < 0 || use > len(piece) {
			t.Fatalf("feed(%q) took %d bytes", piece, use)
		}
		n += use
		if err != nil {
			return fed{n, err, f.done()}
		}
		if use < len(piece) {
			if !f.done() {
				t.Fatalf("feed(%q) took %d bytes of it, the body not done", piece, use)
			}
			break
		}
	}
	return fed{n, nil, f.done()}
}

// everyByte is the cuts between all bytes of b.
func everyByte(b string) []int {
	cuts := make([]int, 0, len(b))
	for i := 1; i < len(b); i++ {
		cuts = append(cuts, i)
	}
	return cuts
}

// A Content-Length body takes its bytes, then no more.
func TestBodyFramingContentLength(t *testing.T) {
	f := bodyFraming{remaining: 10}
	if n, err := f.feed([]byte("hello")); n != 5 || err != nil || f.done() {
		t.Fatalf("first 5 bytes: took %d, %v, done %v", n, err, f.done())
	}
	if n, err := f.feed([]byte("worldHTTP/1.1")); n != 5 || err != nil || !f.done() {
		t.Fatalf("rest: took %d, %v, done %v; want 5, done", n, err, f.done())
	}
	if n, _ := f.feed([]byte("more")); n != 0 {
		t.Fatalf("took %d bytes after the end", n)
	}
	if got := feedPieces(t, bodyFraming{remaining: 3}, []byte("abcdef"), everyByte("abcdef")); got != (fed{3, nil, true}) {
		t.Fatalf("byte by byte: %+v", got)
	}
}

// A body until close takes everything and never ends by itself.
func TestBodyFramingUntilClose(t *testing.T) {
	f := bodyFraming{untilClose: true}
	if n, err := f.feed([]byte("0\r\n\r\nanything")); n != 13 || err != nil || f.done() {
		t.Fatalf("took %d, %v, done %v", n, err, f.done())
	}
}

// newBodyFraming follows the response: no body for HEAD, 1xx, 204, 304.
func TestNewBodyFraming(t *testing.T) {
	for _, tc := range []struct {
		head    string
		headReq bool
		want    bodyFraming
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", false, bodyFraming{remaining: 7}},
		{"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", true, bodyFraming{}},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false, bodyFraming{chunked: true}},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true, bodyFraming{}},
		{"HTTP/1.1 200 OK\r\n\r\n", false, bodyFraming{untilClose: true}},
		{"HTTP/1.1 204 No Content\r\n\r\n", false, bodyFraming{}},
		{"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", false, bodyFraming{}},
		{"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", false, bodyFraming{}},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false, bodyFraming{}},
	} {
		var r responseHead
		if res, err := r.parseResponse([]byte(tc.head), tc.headReq); res != headOK {
			t.Fatalf("parseResponse(%q): %d, %v", tc.head, res, err)
		}
		f := newBodyFraming(&r, tc.headReq)
		if f != tc.want {
			t.Errorf("%q (HEAD %v): %+v; want %+v", tc.head, tc.headReq, f, tc.want)
		}
		if wantDone := !f.chunked && !f.untilClose && f.remaining == 0; f.done() != wantDone {
			t.Errorf("%q: done %v before any byte", tc.head, f.done())
		}
	}
}

// Chunked bodies end after the last chunk and its trailers, fed at once
// or byte by byte; what follows is not taken.
func TestBodyFramingChunked(t *testing.T) {
	for _, tc := range []struct{ name, body, rest string }{
		{"simple", "5\r\nhello\r\n0\r\n\r\n", ""},
		{"extensions and trailers",
			"5;ext=\"v;x\"\r\nhello\r\n6 ; a=b\r\n world\r\nA\r\n0123456789\r\n000;last\r\nX-Sum: abc\r\nX-Other: d\r\n\r\n", ""},
		{"upper-case hex, leading zeros", "00Ab\r\n" + strings.Repeat("x", 0xab) + "\r\n0\r\n\r\n", ""},
		{"CRLF inside the data", "4\r\n\r\n\r\n\r\n0\r\n\r\n", ""},
		{"followed by the next response", "1\r\nx\r\n0\r\nT: v\r\n\r\n", "HTTP/1.1 200 OK\r\n\r\n"},
		{"15 hex digits", "00000000000000a\r\n0123456789\r\n0\r\n\r\n", "0\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.body + tc.rest
			want := fed{len(tc.body), nil, true}
			if got := feedPieces(t, bodyFraming{chunked: true}, []byte(in), nil); got != want {
				t.Errorf("at once: %+v; want %+v", got, want)
			}
			if got := feedPieces(t, bodyFraming{chunked: true}, []byte(in), everyByte(in)); got != want {
				t.Errorf("byte by byte: %+v; want %+v", got, want)
			}
			// Short of its last byte, the body is not done.
			if got := feedPieces(t, bodyFraming{chunked: true}, []byte(tc.body[:len(tc.body)-1]), nil); got.done || got.err != nil {
				t.Errorf("without its last byte: %+v", got)
			}
		})
	}
}

// Malformed chunked framing is errBadChunk, at the offending byte.
func TestBodyFramingBadChunks(t *testing.T) {
	for _, tc := range []struct{ name, good, bad string }{
		{"bad hex", "", "g\r\n"},
		{"0x prefix", "0", "x5\r\n"},
		{"sign", "", "-5\r\n"},
		{"no size", "", "\r\n"},
		{"extension without size", "", ";a\r\n"},
		{"16 hex digits", "000000000000000", "1\r\n"},
		{"bare LF after the size", "5", "\nhello\r\n"},
		{"CR then not LF", "5\r", "hello"},
		{"control in an extension", "5;a", "\x01\r\n"},
		{"missing CRLF after data", "5\r\nhello", "X\r\n0\r\n\r\n"},
		{"CR then not LF after data", "5\r\nhello\r", "X0\r\n\r\n"},
		{"bad end", "0\r\n\r", "X"},
		{"trailer CR then not LF", "0\r\nX: y\r", "Z\r\n\r\n"},
		{"too long a chunk size on the second chunk", "1\r\nx\r\n000000000000000", "0\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := tc.good + tc.bad
			for _, cuts := range [][]int{nil, everyByte(in)} {
				got := feedPieces(t, bodyFraming{chunked: true}, []byte(in), cuts)
				if got.err != errBadChunk || got.n != len(tc.good) || got.done {
					t.Errorf("%q (cuts %v): %+v; want errBadChunk after %d bytes", in, cuts != nil, got, len(tc.good))
				}
			}
		})
	}
}

// FuzzChunkFraming: the chunked framing never panics, takes no more than
// it is given, ends only at a complete body, and gives the same result
// whatever the pieces the bytes arrive in.
func FuzzChunkFraming(f *testing.F) {
	f.Add([]byte("5;ext=1\r\nhello\r\n0\r\nX-Sum: abc\r\n\r\nHTTP/1.1"), []byte{3, 7, 1})
	f.Add([]byte("1\r\nx\r\n1\r\ny\r\n0\r\n\r\n"), []byte{1, 1, 1, 1, 1, 1})
	f.Add([]byte("fffffffffffffff\r\nabc"), []byte{16})
	f.Add([]byte("5\r\nhelloX"), []byte{})
	f.Add([]byte("0\r\n\r"), []byte{2})
	f.Fuzz(func(t *testing.T, body, split []byte) {
		whole := feedPieces(t, bodyFraming{chunked: true}, body, nil)
		if whole.n > len(body) || whole.err != nil && whole.err != errBadChunk || whole.err != nil && whole.done {
			t.Fatalf("%q: %+v", body, whole)
		}
		if whole.n < len(body) && whole.err == nil && !whole.done {
			t.Fatalf("%q: took %d bytes without being done", body, whole.n)
		}
		var cuts []int
		at := 0
		for _, s := range split {
			if at += int(s) + 1; at >= len(body) {
				break
			}
			cuts = append(cuts, at)
		}
		if pieces := feedPieces(t, bodyFraming{chunked: true}, body, cuts); pieces != whole {
			t.Fatalf("%q: at once %+v, cut at %v %+v", body, whole, cuts, pieces)
		}
		if whole.done {
			// The body ends where the framing says: its last byte is its
			// final LF, and one byte less is not done.
			if body[whole.n-1] != '\n' {
				t.Fatalf("%q: done at %d", body, whole.n)
			}
			if short := feedPieces(t, bodyFraming{chunked: true}, body[:whole.n-1], nil); short.done || short.err != nil {
				t.Fatalf("%q: done or failing one byte early: %+v", body[:whole.n-1], short)
			}
		}
	})
}
