package proxy

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzFTPPassiveReply feeds the 227/229 parsers backend replies. A port they
// return is never 0, and a 227 they accept still parses after portmux's own
// reply replaces it.
func FuzzFTPPassiveReply(f *testing.F) {
	f.Add(227, "227 Entering Passive Mode (192,168,1,2,4,1)\r\n")   // RFC 959
	f.Add(227, "227 Entering Passive Mode 10,0,0,1,255,255\r\n")    // no parentheses (RFC 1123 scan)
	f.Add(227, "227-Here\r\n227 comes (1,2,3,4,0,22)\r\n")          // multi-line
	f.Add(227, "227 v1,2 (300,1,1,1,1,1) (1,1,1,1,0,23)")           // decoys before the address
	f.Add(227, "227 (1,2,3,4,5,1000)")                              // a number too long
	f.Add(229, "229 Entering Extended Passive Mode (|||6446|)\r\n") // RFC 2428
	f.Add(229, "229 (see below) (!!!21!)")                          // prose paren, other delimiter
	f.Add(229, "229 (|||65536|)")                                   // port out of range
	f.Add(229, "229 (|1|1.2.3.4|21|)")                              // a host where none belongs
	f.Fuzz(func(t *testing.T, code int, reply string) {
		if code != 227 {
			code = 229
		}
		port, err := passivePort(code, reply)
		if err != nil {
			return
		}
		if port == 0 {
			t.Fatalf("passivePort(%d, %q) = 0 without an error", code, reply)
		}
		out := "227 Entering Passive Mode (" + formatPORT(netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), port)) + ")"
		if again, err := passivePort(227, out); err != nil || again != port {
			t.Fatalf("own reply %q parses as %d, %v; want %d", out, again, err, port)
		}
	})
}

// FuzzFTPDataArgs feeds PORT and EPRT arguments. What they accept formats
// back to something that parses to the same address.
func FuzzFTPDataArgs(f *testing.F) {
	f.Add("127,0,0,1,4,1")                  // PORT
	f.Add("256,0,0,1,4,1")                  // a byte too big
	f.Add("127,0,0,1,0,0")                  // port 0
	f.Add("|1|132.235.1.2|6275|")           // EPRT IPv4
	f.Add("|2|1080::8:800:200C:417A|5282|") // EPRT IPv6
	f.Add("|2|::ffff:1.2.3.4|21|")          // IPv4-mapped
	f.Add("|2|fe80::1%eth0|21|")            // zone
	f.Add("!1!10.0.0.1!21!")                // another delimiter
	f.Fuzz(func(t *testing.T, arg string) {
		if ap, err := parsePORT(arg); err == nil {
			if !ap.Addr().Is4() || ap.Port() == 0 {
				t.Fatalf("parsePORT(%q) = %v", arg, ap)
			}
			if again, err := parsePORT(formatPORT(ap)); err != nil || again != ap {
				t.Fatalf("PORT %q -> %v -> %v, %v", arg, ap, again, err)
			}
		}
		if ap, err := parseEPRT(arg); err == nil {
			if ap.Port() == 0 || ap.Addr().Zone() != "" {
				t.Fatalf("parseEPRT(%q) = %v", arg, ap)
			}
			if again, err := parseEPRT(formatEPRT(ap)); err != nil || again != ap {
				t.Fatalf("EPRT %q -> %v -> %v, %v", arg, ap, again, err)
			}
		}
		verb, rest := parseCommand([]byte("PORT " + arg + "\r\n"))
		if verb != "PORT" && !bytes.ContainsAny([]byte(arg), "\r\n") {
			t.Fatalf("parseCommand(PORT %q) = %q, %q", arg, verb, rest)
		}
	})
}

// FuzzFTPReplyFraming feeds line sequences to the multi-line reply framing:
// a reply that starts multi-line ends only on its own code followed by a
// space, and a line that ends a reply always starts one too.
func FuzzFTPReplyFraming(f *testing.F) {
	f.Add([]byte("220-welcome\r\n227 (1,2,3,4,5,6)\r\n220 ready\r\n")) // inner line with another code
	f.Add([]byte("211-Features:\r\n EPSV\r\n MLST size*;\r\n211 End\r\n"))
	f.Add([]byte("220\r\n"))               // bare code
	f.Add([]byte("220-a\n220-b\n220 c\n")) // LF only, inner continuation of the same code
	f.Fuzz(func(t *testing.T, stream []byte) {
		code, inMulti := 0, false
		for _, line := range bytes.SplitAfter(stream, []byte("\n")) {
			c, multi, ok := replyStart(line)
			if ok && (c < 0 || c > 999) {
				t.Fatalf("replyStart(%q) = %d", line, c)
			}
			if end := replyEnd(line, c); end && (!ok || multi) {
				t.Fatalf("replyEnd(%q) without a final reply line", line)
			}
			switch {
			case inMulti && replyEnd(line, code):
				inMulti = false
			case inMulti:
			case ok && multi:
				code, inMulti = c, true
			}
		}
	})
}
