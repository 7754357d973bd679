package config

import (
	"crypto/tls"
	"slices"
)

// checkUpstreamTLS records the problems of r's upstream_tls section, at
// path. It loads the files the section names, as Validate does for
// tls.trusted_roots: a missing or broken file fails here, not on the
// first request.
func (r *Route) checkUpstreamTLS(p *problems, path string) {
	u := r.UpstreamTLS
	if !slices.ContainsFunc(append([]string{r.To}, r.Upstreams...), isHTTPSURL) {
		p.add(path, "only used with an https:// target")
	}
	if u.CA != "" {
		if u.InsecureSkipVerify {
			p.add(path+".ca", "not used with insecure_skip_verify: true (set one or the other)")
		} else if err := checkRoots(u.CA); err != nil {
			p.add(path+".ca", "%v", err)
		}
	}
	if u.ServerName != "" {
		if err := checkCertName(u.ServerName); err != nil {
			p.add(path+".server_name", "invalid name %q: %v", u.ServerName, err)
		}
	}
	switch {
	case u.Cert == "" && u.Key == "":
	case u.Cert == "":
		p.add(path+".cert", "missing: key is set, cert and key go together")
	case u.Key == "":
		p.add(path+".key", "missing: cert is set, cert and key go together")
	default:
		certErr, keyErr := checkRegularFile(u.Cert), checkRegularFile(u.Key)
		if certErr != nil {
			p.add(path+".cert", "%v", certErr)
		}
		if keyErr != nil {
			p.add(path+".key", "%v", keyErr)
		}
		if certErr != nil || keyErr != nil {
			return
		}
		if _, err := tls.LoadX509KeyPair(u.Cert, u.Key); err != nil {
			p.add(path+".cert", "cannot load the key pair %q and %q: %v", u.Cert, u.Key, unwrapPath(err))
		}
	}
}
