package main

import (
	"net/netip"

	"github.com/portmux/portmux/config"
	"github.com/portmux/portmux/mux"
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
