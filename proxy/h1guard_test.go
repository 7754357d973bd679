package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// A request with both framings, or a folded line, or a '#' in its target,
// is refused 400 by the direct path whatever else it holds: an Expect, an
// Upgrade or an absolute-form target would otherwise hand it to net/http,
// which takes it (by Transfer-Encoding) and keeps the connection, serving
// the bytes after the chunked body as another request.
func TestDirectRefusesFaultyRequests(t *testing.T) {
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"
	var served atomic.Int64
	w := newDirectWorld(t, counting(&served), echoBackend(t).URL)
	for _, tc := range []struct{ name, head, why string }{
		{"both framings with Expect", "POST /a HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
			"both Transfer-Encoding and Content-Length"},
		{"both framings with Upgrade", "POST /a HTTP/1.1\r\nHost: a\r\nUpgrade: foo\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
			"both Transfer-Encoding and Content-Length"},
		{"both framings, absolute form", "POST http://a/a HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n",
			"both Transfer-Encoding and Content-Length"},
		{"chunked HTTP/1.0", "POST /a HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
			"Transfer-Encoding in an HTTP/1.0 request"},
		{"folded Transfer-Encoding", "POST /a HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 6\r\n\r\n",
			"obsolete line folding"},
		{"fragment in the target", "GET /admin/secret#/../../x HTTP/1.1\r\nHost: a\r\n\r\n", "'#' in the request target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := dialRaw(t, w.addr)
			send(t, c, tc.head+"0\r\n\r\n"+smuggled)
			resp, body := readResp(t, br, "POST")
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.why) {
				t.Errorf("got %s %q; want 400 saying %q", resp.Status, body, tc.why)
			}
			if _, err := br.ReadByte(); err != io.EOF {
				t.Errorf("after the 400: %v; want the connection closed", err)
			}
		})
	}
	if served.Load() != 0 {
		t.Errorf("net/http served %d requests; want none", served.Load())
	}
}

// On a connection net/http serves (the direct path handed it over), a
// chunked request the direct path did not read closes the connection
// after its response: net/http drops a Content-Length beside it unseen,
// and what a proxy in front took for the body's rest must not be served
// as another request. The chunked request the connection was handed over
// with was checked by the direct path: its connection stays open.
func TestHandedConnectionClosesAfterChunkedRequest(t *testing.T) {
	var served atomic.Int64
	w := newDirectWorld(t, counting(&served), echoBackend(t).URL)
	c, br := dialRaw(t, w.addr)
	send(t, c, "POST /checked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
	if resp, body := readResp(t, br, "POST"); body != "POST /checked abc" || resp.Close {
		t.Fatalf("handed-over chunked request: %q, close %v; want its body echoed, the connection kept", body, resp.Close)
	}
	send(t, c, "POST /unchecked HTTP/1.1\r\nHost: a\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"+
		"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, body := readResp(t, br, "POST")
	if body != "POST /unchecked " || !resp.Close {
		t.Fatalf("chunked request net/http read: %q, close %v; want it answered, Connection: close", body, resp.Close)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after it: %v; want the connection closed", err)
	}
	if served.Load() != 2 {
		t.Errorf("net/http served %d requests; want 2, /smuggled not among them", served.Load())
	}
}

// A client that sends its whole upload before it reads gets the 413 an
// upstream answered without reading the body: the proxy drains the upload
// once the response is out, where net/http would close with the bytes
// unread, and the reset would destroy the response (a client sees
// "connection reset" in place of its 413). With and without Expect:
// 100-continue.
func TestUnreadUploadDrainedAfterEarlyAnswer(t *testing.T) {
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // it will not read the rest either
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	t.Cleanup(refusing.Close)
	w := newDirectWorld(t, func(p *HTTPProxy) http.Handler { return p }, refusing.URL)
	upload := bytes.Repeat([]byte("u"), 16<<20) // far more than socket buffers hold
	for _, expect := range []bool{true, false} {
		t.Run(fmt.Sprintf("expect %v", expect), func(t *testing.T) {
			c, br := dialRaw(t, w.addr)
			head := fmt.Sprintf("PUT /big HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n", len(upload))
			var resp *http.Response
			if expect {
				send(t, c, head+"Expect: 100-continue\r\n\r\n")
				// The 413 may beat the 100 Continue: then no body.
				var err error
				if resp, err = http.ReadResponse(br, &http.Request{Method: "PUT"}); err != nil {
					t.Fatalf("before the body: %v; want 100 Continue or the 413", err)
				}
			} else {
				send(t, c, head+"\r\n")
			}
			if resp == nil || resp.StatusCode == http.StatusContinue {
				if _, err := c.Write(upload); err != nil {
					t.Fatalf("upload: %v; want it read to its end", err)
				}
				resp, _ = readResp(t, br, "PUT")
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Errorf("got %s; want the upstream's 413", resp.Status)
			}
		})
	}
}

// What linger drains: nothing of a body read to its end, nor of one a
// client expecting 100-continue was never asked for (it got the final
// answer in place of 100 Continue, and sends no body); otherwise it
// flushes the response first.
func TestLingerDrainsOnlyWhatComes(t *testing.T) {
	for _, tc := range []struct {
		name                   string
		read, eof, expected100 bool
		drains                 bool
	}{
		{"read to its end", true, true, false, false},
		{"never asked for", false, false, true, false},
		{"asked for, left", true, false, true, true},
		{"sent unasked, never read", false, false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &lingeringBody{body: io.NopCloser(strings.NewReader("rest"))}
			b.read.Store(tc.read)
			b.eof.Store(tc.eof)
			rec := httptest.NewRecorder()
			b.linger(rec, tc.expected100)
			if rec.Flushed != tc.drains {
				t.Errorf("flushed the response to drain: %v; want %v", rec.Flushed, tc.drains)
			}
		})
	}
}
