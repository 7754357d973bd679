package mux

import (
	"net/url"
	"path"
	"strings"
)

// StripPathPrefix removes the first of prefixes (match.path entries) that
// the decoded path falls under, as path conditions see it (routingPath),
// and returns the rest (at least "/") and that prefix without its final
// slash. A path under none of them, or under "/", which strips nothing,
// comes back unchanged with ok false.
func StripPathPrefix(prefixes []string, decoded string) (rest, prefix string, ok bool) {
	p := routingPath(decoded, false)
	for _, pre := range prefixes {
		pre = strings.TrimSuffix(pre, "/")
		r, under := cutPathPrefix(p, pre)
		switch {
		case !under:
			continue
		case pre == "":
			return decoded, "", false
		case r == "":
			r = "/"
		}
		return r, pre, true
	}
	return decoded, "", false
}

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
