package proxy

import (
	"context"
	"net/http"
	"sync/atomic"
)

// RouteNote learns which route took the first routed request of a
// connection that HTTPServer.Serve serves: put it in Serve's context with
// WithRouteNote. A connection handed over before its first request was
// read (HTTP/2, HTTP/1.1 inside terminated TLS) was routed without knowing
// its Host, so its log line would otherwise name a guess. The direct path
// notes the proxy's route; for requests net/http serves, the handler that
// routes them calls NoteRoute.
type RouteNote struct{ first atomic.Pointer[string] }

// ImplicitRoute names the requests no route took, which portmux answers
// itself (404 or 421, a refusal, OPTIONS * and CONNECT), as it names the
// implicit last HTTP route of a table: a connection whose first request
// was one is logged under it, not under the route the mux guessed.
const ImplicitRoute = ":http"

type routeNoteKey struct{}

// WithRouteNote returns ctx carrying n.
func WithRouteNote(ctx context.Context, n *RouteNote) context.Context {
	return context.WithValue(ctx, routeNoteKey{}, n)
}

// Route returns the route of the first routed request, "" before one.
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
func (n *RouteNote) note(route string) {
	if n != nil && n.first.Load() == nil {
		name := route // allocated only for the first request
		n.first.CompareAndSwap(nil, &name)
	}
}

// NoteRoute records route as the route that took r, for the RouteNote of
// r's connection when Serve handed that connection to net/http; the first
// route noted names the connection.
func NoteRoute(r *http.Request, route string) {
	if hd, ok := r.Context().Value(connKey{}).(*handed); ok {
		hd.routes.note(route)
	}
}
