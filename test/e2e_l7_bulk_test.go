package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"
)

// TestE2EL7LargeBodies streams a 100 MB download and a 20 MB chunked upload
// through the reverse proxy; both ends compare sha256 digests.
func TestE2EL7LargeBodies(t *testing.T) {
	backend := startL7Backend(t, "bulk")
	pm := startOneRoute(t, "bulk", backend)
	hc := newL7Client(t, pm.Addr(), "")
	hc.Client.Timeout = 10 * time.Minute // hang guard for -race on 2 cores

	t.Run("download 100 MB", func(t *testing.T) {
		const n, seed = 100 << 20, 7
		want := digestPayload(t, seed, n)
		resp, err := hc.Get(fmt.Sprintf("http://bulk.test/gen?n=%d&seed=%d", n, seed))
		if err != nil {
			t.Fatal(err)
		}
		got, err := digestOf(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading after %d bytes: %v", got.N, err)
		}
		if resp.StatusCode != http.StatusOK || got != want {
			t.Errorf("got %s %+v; want 200 %+v", resp.Status, got, want)
		}
		rl := pm.WaitLog(t, requestLog("/gen"), 10*time.Second)
		if b, _ := rl.Num("bytes"); int64(b) != n {
			t.Errorf("request line bytes %.0f; want %d\nline: %s", b, int64(n), rl.Raw)
		}
	})

	t.Run("chunked upload 20 MB", func(t *testing.T) {
		const n, seed = 20 << 20, 8
		want := digestPayload(t, seed, n)
		// A reader of unknown length: the client sends Transfer-Encoding: chunked.
		req, err := http.NewRequest(http.MethodPost, "http://bulk.test/sink", struct{ io.Reader }{payload(seed, n)})
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r sinkReply
		err = json.NewDecoder(resp.Body).Decode(&r)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("got %s (decode: %v); want 200", resp.Status, err)
		}
		if (digest{r.Sum, r.N}) != want {
			t.Errorf("backend received %d bytes sha256 %s; want %+v", r.N, r.Sum, want)
		}
		t.Logf("upstream request Transfer-Encoding: %q", r.TransferEncoding)
	})
}
