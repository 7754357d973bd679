package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// Replies portmux gives itself. They are written at once: FTP clients wait
// for each reply before the next command, so they cannot overtake one.
var (
	// LPRT and LPSV (RFC 1639) name data addresses in a form the gateway
	// does not rewrite or check: refused, so clients use PORT/EPRT or
	// PASV/EPSV, which it does.
	replyNoLong    = []byte("502 LPRT and LPSV are not supported through portmux: use PASV, EPSV, PORT or EPRT\r\n")
	replyNoTLS     = []byte("534 portmux relays plain FTP only: explicit FTPS (AUTH TLS) cannot pass its data-address rewriting; use implicit FTPS by SNI passthrough with a data port range\r\n")
	replyNoData    = []byte("425 Can't open data connection\r\n")
	replyPASVv6    = []byte("425 Can't open data connection: this server's address is IPv6, use EPSV\r\n")
	replyBadPORT   = []byte("500 Illegal PORT command\r\n")
	replyBadEPRT   = []byte("522 Illegal EPRT command: the data address must be your own\r\n")
	replyBadSyntax = []byte("501 Syntax error in parameters or arguments\r\n")
)

// pumpCommands relays the client's commands, watching the few that carry or
// ask for data addresses; a named function for goroutine dumps.
func (s *ftpSession) pumpCommands(done chan<- struct{}) {
	defer close(done)
	for {
		line, err := s.readLine(s.fromClient, s.client)
		if errors.Is(err, io.EOF) {
			// An unterminated last line is dropped: a command must end
			// with a newline, and a half-seen one cannot be checked.
			if cw, ok := s.backend.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite() // the backend answers what it has, then closes
			}
			return
		}
		if err != nil {
			s.end(fmt.Errorf("reading ftp client: %w", err))
			return
		}
		if err := s.command(line); err != nil {
			s.end(err)
			return
		}
	}
}

// command handles one client line.
func (s *ftpSession) command(line []byte) error {
	verb, arg := parseCommand(line)
	switch verb {
	case "AUTH":
		s.log.Info("ftp explicit TLS refused", zap.String("mechanism", arg))
		return s.writeClient(replyNoTLS)
	case "PASV":
		if !s.publicIP.Is4() {
			return s.writeClient(replyPASVv6)
		}
		s.passiveCmd.Store(cmdPASV)
	case "EPSV":
		s.passiveCmd.Store(cmdEPSV)
	case "PORT", "EPRT":
		return s.activeMode(verb, arg)
	case "LPRT", "LPSV":
		s.log.Info("ftp long address command refused", zap.String("verb", verb))
		return s.writeClient(replyNoLong)
	}
	return s.write(s.backend, line, &s.up)
}

// relayReplies relays the backend's replies, rewriting passive ones; a
// named function for goroutine dumps. It returns nil when the backend ends
// the control connection.
func (s *ftpSession) relayReplies() error {
	for {
		line, err := s.readLine(s.fromBackend, s.backend)
		if err != nil {
			if errors.Is(err, io.EOF) {
				if len(line) > 0 {
					return s.writeClient(line)
				}
				return nil
			}
			return fmt.Errorf("reading ftp backend: %w", err)
		}
		code, multi, ok := replyStart(line)
		switch {
		case ok && (code == 227 || code == 229):
			reply, err := s.wholeReply(line, code, multi)
			if err != nil {
				return err
			}
			err = s.passive(code, reply)
			if err != nil {
				return err
			}
		case ok && multi:
			if err := s.relayMultiline(line, code); err != nil {
				return err
			}
		default:
			if err := s.writeClient(line); err != nil {
				return err
			}
		}
	}
}

// relayMultiline relays a multi-line reply whole, so that no reply of
// portmux's own lands in its middle. Its lines are not buffered: STAT and
// HELP replies can be long.
func (s *ftpSession) relayMultiline(line []byte, code int) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	for {
		if err := s.writeClientLocked(line); err != nil {
			return err
		}
		next, err := s.readLine(s.fromBackend, s.backend)
		switch {
		case errors.Is(err, io.EOF) && len(next) > 0:
			return s.writeClientLocked(next)
		case errors.Is(err, io.EOF):
			return nil // relayReplies sees the EOF again
		case err != nil:
			return fmt.Errorf("reading ftp backend: %w", err)
		case replyEnd(next, code):
			return s.writeClientLocked(next)
		}
		line = next
	}
}

// wholeReply reads the rest of a passive reply; it is rewritten whole.
func (s *ftpSession) wholeReply(first []byte, code int, multi bool) ([]byte, error) {
	reply := first
	for multi {
		line, err := s.readLine(s.fromBackend, s.backend)
		if err != nil {
			return nil, fmt.Errorf("reading ftp backend: %w", err)
		}
		if len(reply)+len(line) > maxFTPLine {
			return nil, ErrFTPLineTooLong
		}
		reply = append(reply, line...)
		multi = !replyEnd(line, code)
	}
	return reply, nil
}

// passive answers a 227 or 229 reply. The backend's data port is dialed at
// the backend control connection's IP: the address inside a 227 is ignored,
// so a backend cannot point portmux elsewhere (FTP bounce), and NATed
// backends that announce an unreachable address still work. The prepared
// connection is filed as an expectation before the client hears the new
// address, so the client cannot arrive first.
func (s *ftpSession) passive(code int, reply []byte) error {
	epsv := code == 229
	switch s.passiveCmd.Swap(0) {
	case cmdPASV:
		epsv = false
	case cmdEPSV:
		epsv = true
	}
	port, err := passivePort(code, string(reply))
	if err != nil {
		s.log.Warn("ftp passive reply without a data address", zap.ByteString("reply", logReply(reply)))
		return s.writeClient(replyNoData)
	}
	s.closeActive(nil)
	s.claims.drop(s) // the backend has given up on the previous data port
	if s.claims == nil {
		s.log.Warn("ftp passive mode refused: no data claims table configured")
		return s.writeClient(replyNoData)
	}
	if !epsv && !s.publicIP.Is4() {
		return s.writeClient(replyPASVv6)
	}
	data := netip.AddrPortFrom(s.backendIP, port)
	d := net.Dialer{Timeout: s.f.dialTimeout(), LocalAddr: dialFromIP(s.backendSide)}
	conn, err := d.DialContext(s.ctx, "tcp", data.String())
	if err != nil {
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		s.log.Warn("ftp backend data port unreachable", zap.Stringer("data", data), zap.Error(err))
		return s.writeClient(replyNoData)
	}
	e := &expectation{key: claimKey{ip: s.clientIP}, backend: conn, sess: s}
	public := s.publicPort
	if s.f.DataPorts != nil {
		public, err = s.f.DataPorts.expect(s.ctx, s.clientIP, e)
	} else {
		err = s.claims.expect(s.ctx, e, true)
	}
	if err != nil {
		abortConn(conn) // the backend is told no transfer comes this way
		if s.ctx.Err() != nil {
			return s.ctx.Err()
		}
		s.log.Warn("ftp data connection cannot be expected", zap.Error(err))
		return s.writeClient(replyNoData)
	}
	if epsv {
		return s.writeClient([]byte("229 Entering Extended Passive Mode (|||" + strconv.Itoa(public) + "|)\r\n"))
	}
	ap := netip.AddrPortFrom(s.publicIP, uint16(public))
	return s.writeClient([]byte("227 Entering Passive Mode (" + formatPORT(ap) + ")\r\n"))
}

// activeMode handles PORT and EPRT. The client may only name its own IP (or
// the unspecified address, read as its own):
// anything else would make portmux connect to a third party on the
// client's behalf (FTP bounce, CERT CA-1997-27). The backend is given a
// listener of portmux's instead.
func (s *ftpSession) activeMode(verb, arg string) error {
	parse, refused := parsePORT, replyBadPORT
	if verb == "EPRT" {
		parse, refused = parseEPRT, replyBadEPRT
	}
	to, err := parse(arg)
	if err != nil {
		return s.writeClient(replyBadSyntax)
	}
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if to.Addr().IsUnspecified() {
		// lftp connected over loopback announces "EPRT |2|::|port|": the
		// client means itself, as servers such as vsftpd read it, and its
		// own address is the only one allowed anyway.
		to = netip.AddrPortFrom(s.clientIP, to.Port())
	}
	if to.Addr() != s.clientIP {
		s.log.Warn("ftp data address refused: not the client's own", zap.String("command", verb), zap.Stringer("address", to))
		return s.writeClient(refused)
	}
	s.claims.drop(s)
	var lc net.ListenConfig
	ln, err := lc.Listen(s.ctx, "tcp", netip.AddrPortFrom(s.backendSide, 0).String())
	if err != nil {
		s.log.Warn("ftp active data listener failed", zap.Error(err))
		return s.writeClient(replyNoData)
	}
	s.setActive(ln)
	s.data.Add(1)
	go s.acceptActive(ln.(*net.TCPListener), to)
	at := ln.Addr().(*net.TCPAddr).AddrPort()
	cmd := "EPRT " + formatEPRT(at)
	if verb == "PORT" && at.Addr().Is4() {
		cmd = "PORT " + formatPORT(at)
	}
	return s.write(s.backend, []byte(cmd+"\r\n"), &s.up)
}

// acceptActive waits for the backend's active data connection (one, from
// the backend's IP, within the claim expiry), then dials the client's data
// address and relays the two; a named function for goroutine dumps.
func (s *ftpSession) acceptActive(ln *net.TCPListener, to netip.AddrPort) {
	defer s.data.Done()
	defer s.closeActive(ln)
	expiry := DefaultClaimExpiry
	if s.claims != nil {
		expiry = s.claims.expiry
	}
	ln.SetDeadline(time.Now().Add(expiry))
	var back net.Conn
	for back == nil {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				s.log.Info("ftp active data connection expected from the backend but none came", zap.Duration("expiry", expiry))
			}
			return
		}
		if netAddrIP(c.RemoteAddr()) != s.backendIP {
			s.log.Warn("ftp active data connection refused: not from the backend", zap.Stringer("from", c.RemoteAddr()))
			c.Close()
			continue
		}
		back = c
	}
	s.closeActive(ln)
	d := net.Dialer{Timeout: s.f.dialTimeout(), LocalAddr: dialFromIP(s.clientSide)}
	c, err := d.DialContext(s.ctx, "tcp", to.String())
	if err != nil {
		abortConn(back) // a FIN would complete the backend's transfer, empty
		if s.ctx.Err() == nil {
			s.log.Warn("ftp client data port unreachable", zap.Stringer("data", to), zap.Error(err))
		}
		return
	}
	s.data.Add(1)
	s.relayData(c, back)
}

// dialFromIP is a dialer's local address on ip (any port), or nil to let
// the system choose. Data connections leave from the address the control
// connection uses, which is what firewalls and ftpserverlib's IP match
// (PasvConnectionsCheck) expect.
func dialFromIP(ip netip.Addr) net.Addr {
	if !ip.IsValid() {
		return nil // an untyped nil: a nil *net.TCPAddr in the interface would not be
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
}

// logReply shortens a reply for a log line.
func logReply(b []byte) []byte {
	if len(b) > 200 {
		b = b[:200]
	}
	return b
}
