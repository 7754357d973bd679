package test

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// TestE2EHalfClose: the client sends a request and half-closes (CloseWrite); the
// backend answers only after it sees EOF, with a 4 MiB reply. portmux must pass the FIN
// on and keep the other direction open until the whole reply is through.
func TestE2EHalfClose(t *testing.T) {
	cases := []struct {
		name  string
		opts  worldOpts
		req   func(t *testing.T) []byte
		route string
	}{
		{
			name:  "ssh-prefixed stream on the ssh route",
			opts:  worldOpts{SSHTo: toReplyEOF},
			req:   func(t *testing.T) []byte { return prefixed(t, []byte("SSH-2.0-x\r\n"), 61, 100<<10) },
			route: "ssh",
		},
		{
			name:  "garbage on the fallback route",
			opts:  worldOpts{FallbackTo: toReplyEOF},
			req:   func(t *testing.T) []byte { return garbage(t, 62, 100<<10) },
			route: "fallback",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := startWorld(t, tc.opts)
			req := tc.req(t)
			local, err := requestReplyAfterEOF(w.PM.Addr(), req)
			if err != nil {
				t.Fatal(err)
			}
			l := w.PM.WaitLog(t, connOf(local), 10*time.Second)
			checkFields(t, l, map[string]string{"outcome": "ok", "route": tc.route, "backend": w.ReplyEOF.Addr()})
			checkBytes(t, l, "bytes_up", int64(len(req)))
			checkBytes(t, l, "bytes_down", replyAfterEOFSize)
		})
	}
}

// prefixed returns prefix followed by n bytes of payload(seed).
func prefixed(t testing.TB, prefix []byte, seed uint64, n int64) []byte {
	t.Helper()
	b, err := io.ReadAll(io.MultiReader(bytes.NewReader(prefix), payload(seed, n)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
