package config

import (
	"testing"
)

// FuzzParseSource feeds ParseSource (match.source, allow, deny,
// proxy_protocol.trusted entries). What it accepts is a valid, masked
// prefix without a zone, with IPv4-mapped forms unmapped, that formats
// back to itself; a bare address becomes its own single-address prefix.
// Seeds in testdata/fuzz/FuzzParseSource; run as in docs/fuzzing.md.
func FuzzParseSource(f *testing.F) {
	f.Add("10.0.0.0/8")          // CIDR
	f.Add("10.1.2.3/8")          // unmasked: masked to 10.0.0.0/8
	f.Add("192.0.2.7")           // bare IPv4: /32
	f.Add("2001:db8::/32")       // IPv6 CIDR
	f.Add("::ffff:10.0.0.0/104") // IPv4-mapped: 10.0.0.0/8
	f.Add("::ffff:10.0.0.0/95")  // mapped form too short to unmap
	f.Add("fe80::1%eth0")        // zone: refused
	f.Add("10.0.0.0/+8")         // sign: refused
	f.Add("10.0.0.0/033")        // leading zero
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSource(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
			t.Fatalf("ParseSource(%q) = %v", s, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			t.Fatalf("ParseSource(%q) = %v: mapped form not unmapped", s, p)
		}
		if again, err := ParseSource(p.String()); err != nil || again != p {
			t.Fatalf("ParseSource(%q) = %v; again %v, %v", s, p, again, err)
		}
	})
}
