package proxy

import (
	"context"
	"net"
	"net/http"
	"strings"

	"go.uber.org/zap"
)

// NoRoute answers a request that no route takes: 421 Misdirected Request
// when it came over TLS for a Host other than the connection's SNI (the
// connection was set up for another name; RFC 9110 §15.5.20 tells the
// client to retry on a new connection, as browsers that coalesce HTTP/2
// connections must), 404 Not Found otherwise (nothing here serves that
// host or path). host is r's host name as routing compared it (without
// port, case or trailing dot), so that the answer agrees with routing. It
// logs one access line.
func NoRoute(w http.ResponseWriter, r *http.Request, host string, logger *zap.Logger) {
	status, msg := http.StatusNotFound, "404 not found: no route for this host and path\n"
	if r.TLS != nil && r.TLS.ServerName != "" && !strings.EqualFold(r.TLS.ServerName, host) {
		status, msg = http.StatusMisdirectedRequest, "421 misdirected request: this connection is for another host\n"
	}
	answer(w, r, logger, "", status, msg, "no_route")
}

// AboutServer answers the requests that concern the server rather than
// a resource a route serves, and reports whether r was one. OPTIONS *
// asks what the server supports (RFC 9110 §9.3.7, used as a ping): 200
// without a body, as net/http's server answers it. CONNECT asks a forward
// proxy for a tunnel, which a reverse proxy does not open: 501, where an
// upstream would get a request line it cannot read. One access log line.
func AboutServer(w http.ResponseWriter, r *http.Request, logger *zap.Logger) bool {
	switch {
	case r.Method == http.MethodOptions && r.RequestURI == "*":
		w.Header().Set("Content-Length", "0")
		answer(w, r, logger, "", http.StatusOK, "", "server_options")
	case r.Method == http.MethodConnect:
		answer(w, r, logger, "", http.StatusNotImplemented,
			"501 not implemented: portmux is a reverse proxy and opens no CONNECT tunnels\n", "connect_refused")
	default:
		return false
	}
	return true
}

// FaultyTarget answers 400, and reports true, for a request whose target
// holds a '#', as the direct path refuses it (requestHead.parseRequest):
// RFC 9112 allows none there, and routing would take it as part of the
// path (/admin#/../x is /x) where an upstream may take it as the start of a
// fragment (/admin). Over HTTP/1 the connection closes after the answer.
// One access log line.
func FaultyTarget(w http.ResponseWriter, r *http.Request, logger *zap.Logger) bool {
	if strings.IndexByte(r.RequestURI, '#') < 0 {
		return false
	}
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
	answer(w, r, logger, "", http.StatusBadRequest, "400 bad request: '#' in the request target\n", "bad_request")
	return true
}

// answer writes a short plain-text answer portmux gives itself (msg may be
// empty) and its access log line, naming route when there is one.
func answer(w http.ResponseWriter, r *http.Request, logger *zap.Logger, route string, status int, msg, outcome string) {
	fields := make([]zap.Field, 0, 8)
	if route != "" {
		fields = append(fields, zap.String("route", route))
	}
	fields = append(fields, zap.String("method", r.Method), zap.String("host", r.Host), zap.String("path", r.URL.Path),
		zap.Int("status", status), zap.String("client", r.RemoteAddr), zap.String("proto", r.Proto), zap.String("outcome", outcome))
	logger.Info("request", fields...)
	if msg != "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
	}
	w.WriteHeader(status)
	w.Write([]byte(msg))
}

// RedirectHTTPS answers with a permanent redirect (308, which keeps the
// method and body) to the same URL over HTTPS. A request that reached port
// 80, or a listener marked by OnPlainListener, goes to the default HTTPS
// port: the port it asked for speaks no TLS. One that reached portmux's
// multiplexed port keeps that port, since it serves HTTPS too.
func RedirectHTTPS(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, port, err := net.SplitHostPort(host); err == nil && (port == "80" || r.Context().Value(plainListenerKey{}) != nil) {
		host = h
	}
	http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

type plainListenerKey struct{}

// OnPlainListener marks r as received on a listener that serves plain HTTP
// only (http_listen), for RedirectHTTPS.
func OnPlainListener(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), plainListenerKey{}, true))
}

// Forbidden answers a request from a client the route's allow/deny lists
// refuse: 403, one access log line.
func Forbidden(w http.ResponseWriter, r *http.Request, route string, logger *zap.Logger) {
	answer(w, r, logger, route, http.StatusForbidden, "403 forbidden\n", "denied")
}
