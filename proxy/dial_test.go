package proxy

import (
	"io"
	"net"
	"testing"

	"github.com/pires/go-proxyproto"
)

// A backend behind send_proxy learns the real client from the header (read
// by the go-proxyproto library), then gets the client's bytes unchanged.
func TestSendProxyHeader(t *testing.T) {
	for _, version := range []ProxyHeader{ProxyHeaderV1, ProxyHeaderV2} {
		t.Run(string(rune('0'+version)), func(t *testing.T) {
			type seen struct {
				source string
				ver    byte
				data   string
			}
			got := make(chan seen, 1)
			backend := listen(t, func(c *net.TCPConn) {
				pc := proxyproto.NewConn(c)
				h := pc.ProxyHeader()
				data, _ := io.ReadAll(pc)
				s := seen{data: string(data)}
				if h != nil {
					s.source, s.ver = h.SourceAddr.String(), h.Version
				}
				got <- s
			})
			c, res := front(t, &TCP{Addr: backend, SendProxy: version}, []byte("SSH-2.0-x\r\n"), nil)
			c.Write([]byte("rest"))
			c.CloseWrite()
			io.Copy(io.Discard, c)
			s := <-got
			if s.source != c.LocalAddr().String() || s.ver != byte(version) || s.data != "SSH-2.0-x\r\nrest" {
				t.Fatalf("backend saw %+v; want source %s, v%d, the client's bytes", s, c.LocalAddr(), version)
			}
			wait(t, res)
		})
	}
}
