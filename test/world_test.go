package test

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// world is every backend at once behind one portmux port: the fixture of the
// end-to-end tests (compare proxymux's mkWorld).
type world struct {
	SSH      *sshServer
	HTTP     *httptest.Server
	TLSA     *tlsBackend // SNI a.test
	TLSB     *tlsBackend // SNI b.test
	FTP      *ftpServer
	Echo     *tcpServer
	ReplyEOF *tcpServer
	Dead     string // a closed port, the backend of SNI dead.test

	PM *instance
}

// worldOpts vary the routing table; the zero value is the default world.
type worldOpts struct {
	// SniffTimeout is the sniff_timeout setting; "" means 1s.
	SniffTimeout string
	// SSHTo picks the backend of the ssh route; nil means the SSH server.
	SSHTo func(*world) string
	// FallbackTo, if set, adds a last route {protocol: unknown} to that backend.
	FallbackTo func(*world) string
}

// startWorld starts all backends and then portmux in front of them. Cleanup stops
// portmux first (it was started last), then the backends.
func startWorld(t testing.TB, o worldOpts) *world {
	t.Helper()
	w := &world{
		SSH:      startSSHServer(t),
		HTTP:     startHTTPBackend(t),
		TLSA:     startTLSBackend(t, "a.test"),
		TLSB:     startTLSBackend(t, "b.test"),
		FTP:      startFTPServer(t),
		Echo:     startEcho(t),
		ReplyEOF: startReplyAfterEOF(t),
		Dead:     closedPort(t),
	}
	w.PM = startPortmux(t, w.config(o))
	return w
}

// config renders the portmux YAML for o.
func (w *world) config(o worldOpts) string {
	sniff := o.SniffTimeout
	if sniff == "" {
		sniff = "1s"
	}
	sshTo := w.SSH.Addr()
	if o.SSHTo != nil {
		sshTo = o.SSHTo(w)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `listen: ["127.0.0.1:0"]
sniff_timeout: %s
sniff_max_bytes: 65536
dial_timeout: 5s
idle_timeout: 1h
shutdown_grace: 5s
admin: {listen: %s}
log: {level: debug, format: json}
routes:
  - name: ssh
    match: {protocol: ssh}
    to: %s
  - name: web
    match: {protocol: http}
    to: %s
  - name: tls-a
    match: {protocol: tls, sni: [a.test]}
    to: %s
  - name: tls-b
    match: {protocol: tls, sni: [b.test]}
    to: %s
  - name: tls-dead
    match: {protocol: tls, sni: [dead.test]}
    to: %s
  - name: ftp
    match: {protocol: ftp}
    to: %s
`, sniff, adminListen, sshTo, w.HTTP.Listener.Addr(), w.TLSA.Addr(), w.TLSB.Addr(), w.Dead, w.FTP.Addr())
	if o.FallbackTo != nil {
		fmt.Fprintf(&b, `  - name: fallback
    match: {protocol: unknown}
    to: %s
`, o.FallbackTo(w))
	}
	return b.String()
}

// Backend pickers for worldOpts.
func toEcho(w *world) string     { return w.Echo.Addr() }
func toReplyEOF(w *world) string { return w.ReplyEOF.Addr() }
