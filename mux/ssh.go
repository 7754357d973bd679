package mux

// sshPrefix starts every SSH identification string a client sends (RFC 4253
// §4.2; unlike a server, a client sends no other lines before it).
const sshPrefix = "SSH-"

// sniffSSH decides whether b, the first bytes of a connection, begin an SSH
// identification string.
func sniffSSH(b []byte) verdict {
	return sniffLiteral(b, sshPrefix)
}

// sniffLiteral decides whether b begins with lit, as soon as b is long
// enough or diverges from it.
func sniffLiteral(b []byte, lit string) verdict {
	n := min(len(b), len(lit))
	if string(b[:n]) != lit[:n] {
		return rejected
	}
	if n < len(lit) {
		return needMore
	}
	return matched
}
