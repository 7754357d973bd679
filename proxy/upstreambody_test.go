package proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// closedAfterEOF fails any read after it returned io.EOF, as a server's
// request body does once the server has closed it.
type closedAfterEOF struct {
	r   io.Reader
	eof bool
}

func (c *closedAfterEOF) Read(p []byte) (int, error) {
	if c.eof {
		return 0, errors.New("http: invalid Read on closed Body")
	}
	n, err := c.r.Read(p)
	if err == io.EOF {
		c.eof = true
	}
	return n, err
}

// The transport's extra read after the declared length must not reach the
// inbound body (golang/go#40747): once EOF, always EOF.
func TestUpstreamBodyStaysAtEOF(t *testing.T) {
	st := &reqState{}
	b := &upstreamBody{r: &closedAfterEOF{r: strings.NewReader("payload")}, st: st}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "payload" {
		t.Fatalf("got %q, %v", got, err)
	}
	for range 3 {
		if n, err := b.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("read after EOF: %d, %v; want 0, EOF", n, err)
		}
	}
	if st.clientErr != nil {
		t.Fatalf("clean body noted as a client error: %v", st.clientErr)
	}
}

// A client that resets in the middle of its upload is its own failure: 499
// at info, and the upstream is not blamed.
func TestClientResetMidUpload(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(up.Close)
	w := newProxyWorld(t, RoundRobin, up)
	c, err := net.Dial("tcp", strings.TrimPrefix(w.front.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"+strings.Repeat("x", 1000))
	time.Sleep(100 * time.Millisecond)
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for w.logs.FilterMessage("request").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	e := w.logs.FilterMessage("request").All()
	if len(e) != 1 || e[0].ContextMap()["status"] != int64(499) || e[0].Level != zapcore.InfoLevel {
		t.Fatalf("access log %v; want one info line with status 499", e)
	}
	if !w.proxy.Pool.Upstreams[0].Healthy() || w.proxy.Pool.Upstreams[0].fails.Load() != 0 {
		t.Fatal("the upstream was blamed for the client's reset")
	}
}
