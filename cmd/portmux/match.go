package main

import (
	"net/netip"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
	"github.com/portmux/portmux/proxy"
)

// protocolsOf maps a config protocol name to what mux recognises: ftp is
// a silent (server-first) client; any is every protocol (nil).
func protocolsOf(name string) []mux.Protocol {
	switch name {
	case config.ProtocolTLS:
		return []mux.Protocol{mux.TLS}
	case config.ProtocolHTTP:
		return []mux.Protocol{mux.HTTP}
	case config.ProtocolSSH:
		return []mux.Protocol{mux.SSH}
	case config.ProtocolFTP, config.ProtocolSilent:
		return []mux.Protocol{mux.Silent}
	case config.ProtocolUnknown:
		return []mux.Protocol{mux.Unknown}
	}
	return nil
}

// compileMatch turns a validated config match into a mux match.
func compileMatch(m config.Match) mux.Match {
	return mux.Match{
		Protocols: protocolsOf(m.Protocol),
		SNI:       m.SNI,
		ALPN:      m.ALPN,
		Host:      m.Host,
		Path:      m.Path,
		Source:    parseSources(m.Source),
	}
}

// parseSources parses validated CIDRs and addresses.
func parseSources(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := config.ParseSource(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// compileRoute turns a validated config route into a mux route with its
// match and access lists; the caller sets what serves it.
func compileRoute(r config.Route) mux.Route {
	return mux.Route{Name: r.Name, Match: compileMatch(r.Match), Allow: parseSources(r.Allow), Deny: parseSources(r.Deny)}
}

// proxyHeader maps send_proxy to the relay's setting.
func proxyHeader(v string) proxy.ProxyHeader {
	switch v {
	case config.ProxyV1:
		return proxy.ProxyHeaderV1
	case config.ProxyV2:
		return proxy.ProxyHeaderV2
	}
	return proxy.NoProxyHeader
}
