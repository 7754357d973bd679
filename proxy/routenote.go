package proxy

import (
	"context"
	"net/http"
	"sync/atomic"
)

// RouteNote learns which route served the first proxied request of a
// connection that HTTPServer.Serve serves: put it in Serve's context with
// WithRouteNote. A connection handed over before its first request was
// read (HTTP/2, HTTP/1.1 inside terminated TLS) was routed without knowing
// its Host, so its log line would otherwise name a guess.
type RouteNote struct{ first atomic.Pointer[string] }

type routeNoteKey struct{}

// WithRouteNote returns ctx carrying n.
func WithRouteNote(ctx context.Context, n *RouteNote) context.Context {
	return context.WithValue(ctx, routeNoteKey{}, n)
}

// Route returns the route of the first proxied request, "" before one.
func (n *RouteNote) Route() string {
	if p := n.first.Load(); p != nil {
		return *p
	}
	return ""
}

// routeNoteOf returns the note ctx carries, or nil.
func routeNoteOf(ctx context.Context) *RouteNote {
	n, _ := ctx.Value(routeNoteKey{}).(*RouteNote)
	return n
}

// note records route unless a route is noted already; n may be nil.
func (n *RouteNote) note(route *string) {
	if n != nil && n.first.Load() == nil {
		n.first.CompareAndSwap(nil, route)
	}
}

// noteRoute records p's route for the connection r arrived on, when that
// connection was handed to an HTTPServer by Serve.
func (p *HTTPProxy) noteRoute(r *http.Request) {
	if hd, ok := r.Context().Value(connKey{}).(*handed); ok {
		hd.routes.note(&p.Route)
	}
}
