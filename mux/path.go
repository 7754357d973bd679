package mux

import (
	"net/url"
	"path"
	"strings"
)

// routingPath is the path that match.path conditions see: p decoded (when
// escaped, as in a request line) and with its dot segments resolved and
// repeated slashes merged, as an upstream such as nginx reads it. Matching
// the path as sent would let "/x/../admin/" or "//admin/" past a route for
// /admin that refuses the client, to a route whose upstream then serves
// /admin/ anyway. The request itself is forwarded unchanged.
//
// A path with nothing to resolve comes back as is, without allocating. An
// escaped path that does not decode is left escaped: net/http answers such
// a request 400 and the direct path hands it to net/http.
func routingPath(p string, escaped bool) string {
	if escaped && strings.IndexByte(p, '%') >= 0 {
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	if !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	clean := path.Clean(p)
	// path.Clean drops a trailing slash: keep the directory a directory
	// ("/a/b/.." is "/a/", as a browser resolves it).
	if clean != "/" && (strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")) {
		if clean == p[:len(p)-1] {
			return p // only the slash was dropped
		}
		clean += "/"
	}
	return clean
}
