package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/portmux/portmux/config"
)

// upstreamTLS builds the TLS client configs of cfg's routes that have an
// upstream_tls section, nested routes included, by route name. Validate
// has read the same files; they are read again because they may have
// changed since, and an error refuses the config as a whole (a reload
// keeps the running one).
func (a *app) upstreamTLS(cfg *config.Config) (map[string]*tls.Config, error) {
	confs := map[string]*tls.Config{}
	var add func(routes []config.Route) error
	add = func(routes []config.Route) error {
		for _, r := range routes {
			if u := r.UpstreamTLS; u != nil {
				c, err := clientTLSConfig(u)
				if err != nil {
					return fmt.Errorf("config: route %s: upstream_tls: %w", r.Name, err)
				}
				if u.InsecureSkipVerify {
					a.logger.Warn("upstream certificates are not verified (upstream_tls.insecure_skip_verify)",
						zap.String("route", r.Name))
				}
				confs[r.Name] = c
			}
			if err := add(r.Routes); err != nil {
				return err
			}
		}
		return nil
	}
	return confs, add(cfg.Routes)
}

// clientTLSConfig is the tls.Config that u describes.
func clientTLSConfig(u *config.UpstreamTLS) (*tls.Config, error) {
	c := &tls.Config{ServerName: u.ServerName, InsecureSkipVerify: u.InsecureSkipVerify}
	if u.CA != "" {
		pem, err := os.ReadFile(u.CA)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca: no certificate in %q", u.CA)
		}
	}
	if u.Cert != "" {
		pair, err := tls.LoadX509KeyPair(u.Cert, u.Key)
		if err != nil {
			return nil, fmt.Errorf("cert: %w", err)
		}
		c.Certificates = []tls.Certificate{pair}
	}
	return c, nil
}
