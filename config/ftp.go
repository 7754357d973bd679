package config

import (
	"net/netip"
	"strconv"
	"strings"
)

// FTP configures the FTP gateway of a route with protocol ftp, which
// rewrites passive and active data addresses so that data connections also
// pass through portmux.
type FTP struct {
	// PublicAddress is the IP address clients are told to open data
	// connections to. Behind NAT or in a container the listener's own
	// address is not what clients dial. Empty: the local address of the
	// client's control connection.
	PublicAddress string `koanf:"public_address"`

	// PublicPort is the port clients are told to open passive data
	// connections to when they reach portmux through a port mapping (such
	// as docker run -p 443:8443). 0: the port the client connected to.
	PublicPort int `koanf:"public_port"`

	// DataPorts is an optional port range such as "30000-30009" on which
	// portmux takes passive data connections instead of the multiplexed
	// port (for users who open such a range; it also avoids mistaking
	// another connection from the client's IP for its data connection).
	DataPorts string `koanf:"data_ports"`
}

// maxDataPorts bounds the data port range (each port is a listener).
const maxDataPorts = 1000

// PortRange returns the bounds of DataPorts; ok is false when unset.
func (f FTP) PortRange() (first, last int, ok bool) {
	a, b, found := strings.Cut(f.DataPorts, "-")
	if !found {
		return 0, 0, false
	}
	first, err1 := strconv.Atoi(strings.TrimSpace(a))
	last, err2 := strconv.Atoi(strings.TrimSpace(b))
	return first, last, err1 == nil && err2 == nil
}

// validate records the problems of an ftp section at path.
func (f *FTP) validate(p *problems, path string) {
	if f.PublicAddress != "" {
		if _, err := netip.ParseAddr(f.PublicAddress); err != nil {
			p.add(path+".public_address", "invalid IP address %q", f.PublicAddress)
		}
	}
	if f.PublicPort < 0 || f.PublicPort > 65535 {
		p.add(path+".public_port", "must be between 1 and 65535, got %d", f.PublicPort)
	}
	if f.DataPorts == "" {
		return
	}
	first, last, ok := f.PortRange()
	switch {
	case !ok:
		p.add(path+".data_ports", `invalid range %q: want "FIRST-LAST" such as "30000-30009"`, f.DataPorts)
	case first < 1024 || last > 65535 || first > last:
		p.add(path+".data_ports", "invalid range %q: want 1024 <= first <= last <= 65535", f.DataPorts)
	case last-first+1 > maxDataPorts:
		p.add(path+".data_ports", "range %q has %d ports: at most %d", f.DataPorts, last-first+1, maxDataPorts)
	}
}
