package main

import (
	"context"
	"errors"
	"html/template"
	"io"
	"net"
	"net/http"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
)

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>portmux</title></head>
<body style="font-family: sans-serif; max-width: 50em; margin: 2em auto">
<h1>portmux is running</h1>
<p>This page is served by portmux itself (target <code>builtin:demo</code>): your
<code>{{.Method}}</code> request from <code>{{.Client}}</code> for host
<code>{{.Host}}</code> arrived as {{.How}}, was recognised by its first bytes and routed here.
The same port also takes TLS, SSH, FTP and other protocols.</p>
<h2>Routes (first match wins)</h2>
<table border="1" cellpadding="4" style="border-collapse: collapse">
<tr><th>#</th><th>name</th><th>protocol</th><th>match</th><th>to</th></tr>
{{range $i, $r := .Routes}}<tr><td>{{$i}}</td><td>{{$r.Name}}</td><td>{{$r.Match.Protocol}}</td>
<td>{{with $r.Match.SNI}}sni {{.}} {{end}}{{with $r.Match.ALPN}}alpn {{.}} {{end}}{{with $r.Match.Host}}host {{.}} {{end}}{{with $r.Match.Source}}source {{.}}{{end}}</td>
<td><code>{{$r.To}}</code></td></tr>
{{end}}</table>
<p>Run <code>portmux run -c portmux.yaml</code> with your own routes; see the README.</p>
</body></html>
`))

// serveDemo is the builtin:demo target: a page served in-process that shows
// how portmux saw the request and the routes in use.
func (a *app) serveDemo(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	how := "plain HTTP"
	if r.TLS != nil {
		how = "HTTPS (" + r.Proto + ", TLS terminated by portmux for " + r.TLS.ServerName + ")"
	}
	demoPage.Execute(w, struct {
		Method, Client, Host, How string
		Routes                    []config.Route
	}{r.Method, r.RemoteAddr, r.Host, how, a.gen.Load().cfg.Routes})
}

// serveEcho is the builtin:echo target: it sends every byte back, the
// sniffed ones first, and half-closes when the client does.
func serveEcho(ctx context.Context, c *mux.Conn) mux.Result {
	s := c.Stream()
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	// Only the Reader: a socket cannot splice onto itself, so io.Copy must
	// use a buffer.
	_, err := io.Copy(s, struct{ io.Reader }{s})
	if err == nil {
		err = s.CloseWrite()
	}
	s.Close()
	up, down := s.Counts()
	res := mux.Result{Backend: config.BuiltinEcho, Up: up, Down: down, Err: err}
	if errors.Is(err, net.ErrClosed) && ctx.Err() != nil {
		res.Outcome = mux.OutcomeShutdown
	}
	return res
}
