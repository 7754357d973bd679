package proxy

import (
	"bytes"
	"strings"
	"testing"
)

// gatewayVerbs are the commands the FTP gateway must see to keep its
// promises: explicit TLS refused, passive replies rewritten, active
// addresses checked (no FTP bounce).
var gatewayVerbs = map[string]bool{"AUTH": true, "PASV": true, "EPSV": true, "PORT": true, "EPRT": true}

// serverVerb is the command ftpserverlib v0.32.3 (the backend of the e2e
// tests and the soak) takes from a line split at '\n': bufio.Reader.ReadLine
// drops the "\n" and a "\r" before it, parseLine splits at the first space,
// and handleCommand upper-cases.
func serverVerb(line []byte) string {
	if l, ok := bytes.CutSuffix(line, []byte("\n")); ok {
		line = bytes.TrimSuffix(l, []byte("\r"))
	}
	v, _, _ := strings.Cut(string(line), " ")
	return strings.ToUpper(v)
}

// FuzzFTPCommand feeds the gateway's command parsing client control
// streams. parseCommand never panics, returns an upper-case verb without
// spaces and a trimmed argument, and, line by line as both sides frame
// them, sees every gateway verb the backend would execute: a PORT, EPRT or
// AUTH the backend obeys can never slip past the gateway as something else.
// Seeds in testdata/fuzz/FuzzFTPCommand; run as in docs/fuzzing.md.
func FuzzFTPCommand(f *testing.F) {
	f.Add([]byte("USER anonymous\r\nPASS x\r\nEPSV\r\nRETR f\r\n")) // a passive session
	f.Add([]byte("port 127,0,0,1,4,1\r\nLIST\r\n"))                 // lower case
	f.Add([]byte("\xff\xf4\xff\xf2ABOR\r\n"))                       // Telnet IP, Synch before ABOR (RFC 959)
	f.Add([]byte("\xff\xfb\x01PORT 1,2,3,4,5,6\r\n"))               // Telnet WILL option, then PORT
	f.Add([]byte("  EPRT |1|10.0.0.1|21|\n"))                       // leading spaces, bare LF
	f.Add([]byte("AUTH TLS\r\r\n"))                                 // a stray CR
	f.Add([]byte("PORT\t1,2,3,4,5,6\r\n"))                          // tab, not space
	f.Fuzz(func(t *testing.T, stream []byte) {
		for _, line := range bytes.SplitAfter(stream, []byte("\n")) {
			verb, arg := parseCommand(line)
			if strings.Contains(verb, " ") || verb != strings.ToUpper(verb) {
				t.Fatalf("parseCommand(%q): verb %q", line, verb)
			}
			if arg != strings.TrimSpace(arg) {
				t.Fatalf("parseCommand(%q): argument %q not trimmed", line, arg)
			}
			if sv := serverVerb(line); gatewayVerbs[sv] && sv != verb {
				t.Fatalf("line %q: the backend runs %s, the gateway sees %q", line, sv, verb)
			}
		}
	})
}
