package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// FTP relays FTP control connections to one backend and brings their data
// connections through portmux: it is an application-level gateway (ALG).
//
// Behind a firewall that opens one port, plain FTP breaks: the backend's
// passive reply sends the client to a data port that is not open. FTP reads
// the control connection line by line and rewrites the data addresses:
//
//   - PASV/EPSV: the backend's 227/229 reply is answered with portmux's own
//     address (PublicAddr, PublicPort or a DataPorts port). portmux dials the
//     backend's data port at once, from the control connection's backend IP
//     (never the IP inside a 227: that would let a backend bounce portmux
//     elsewhere, and NATed backends report addresses nobody can reach), and
//     files that connection in Claims until the client's data connection
//     arrives from the control connection's client IP.
//   - PORT/EPRT: only the client's own IP is accepted (no FTP bounce);
//     portmux listens on its backend-facing address, gives the backend that
//     address instead, and when the backend connects, dials the client.
//   - AUTH (explicit FTPS, RFC 4217) is refused with 534: once the control
//     connection is encrypted its data addresses can no longer be read or
//     rewritten, so the transfers would fail later and less clearly. Implicit
//     FTPS can be passed through by SNI with a data port range configured on
//     the backend itself.
//
// Everything else passes through untouched. Data connections are relayed
// with Relay (splice). Its fields are read only; an FTP value is safe for
// concurrent use.
type FTP struct {
	// Addr is the backend's control address, host:port.
	Addr string
	// DialTimeout bounds connecting to the backend, control and data. If
	// zero, 5s is used.
	DialTimeout time.Duration
	// IdleTimeout closes the control connection when no byte moved on it
	// and no data connection was open for this long. It also bounds data
	// connections. If zero or negative, connections never time out.
	IdleTimeout time.Duration
	// PublicAddr is the address passive replies give clients. Behind NAT or
	// Docker, portmux's own listening address is wrong. If invalid, the local
	// address of the client's control connection is used. PASV can only carry
	// IPv4: with an IPv6 address, PASV gets 425 and clients use EPSV.
	PublicAddr netip.Addr
	// PublicPort is the port passive replies give clients: portmux's
	// multiplexed port as clients reach it. If zero, the local port of the
	// client's control connection is used. Unused with DataPorts.
	PublicPort int
	// DataPorts, if set, takes passive data connections on a port range
	// instead of the multiplexed port.
	DataPorts *DataPorts
	// Claims is the table of data connections expected at the multiplexed
	// port, shared by all FTP routes and given to mux as Options.Claim. It
	// must be set unless DataPorts is: without it passive commands get 425.
	Claims *DataClaims
	// Pipes is the shared splice pipe pool; nil means no pooling.
	Pipes *Pipes
	// Logger receives FTP events (refused commands, claims); nil logs nothing.
	Logger *zap.Logger
	// SendProxy, if set, starts the backend control connection with a
	// PROXY protocol header naming the client.
	SendProxy ProxyHeader
}

// ErrFTPLineTooLong is returned by FTP.Serve when a peer sent a control line
// longer than 8 KiB: no FTP command or reply line is near that long.
var ErrFTPLineTooLong = errors.New("ftp: control line too long")

const maxFTPLine = 8 << 10

// Serve dials the backend and relays the control connection until either
// side closes it, then waits for the session's data connections. Serve owns
// client: it is closed when Serve returns. prefix holds the bytes read from
// client while sniffing (usually none: FTP clients wait for the greeting).
// Stats count the control and data bytes.
func (f *FTP) Serve(ctx context.Context, client net.Conn, prefix []byte) (Stats, error) {
	backend, err := dialBackend(ctx, f.Addr, f.dialTimeout(), f.SendProxy, client.RemoteAddr(), client.LocalAddr())
	if err != nil {
		client.Close()
		return Stats{}, err
	}
	s := f.newSession(ctx, client, backend, prefix)
	return s.run(ctx)
}

func (f *FTP) dialTimeout() time.Duration {
	if f.DialTimeout <= 0 {
		return defaultDialTimeout
	}
	return f.DialTimeout
}

// ftpSession is one control connection and the data connections it opens.
type ftpSession struct {
	f               *FTP
	ctx             context.Context // cancelled when the control connection ends
	cancel          context.CancelFunc
	log             *zap.Logger
	client, backend net.Conn
	fromClient      *bufio.Reader
	fromBackend     *bufio.Reader
	claims          *DataClaims // where passive expectations go (DataPorts' table if set)

	clientIP    netip.Addr // the only IP data may come from or go to
	clientSide  netip.Addr // portmux's address toward the client (active dials)
	backendIP   netip.Addr // the backend's data ports are here, whatever its replies say
	backendSide netip.Addr // portmux's address toward the backend (data dials, PORT listeners)
	publicIP    netip.Addr
	publicPort  int

	idle       time.Duration
	start      time.Time
	lastActive atomic.Int64 // nanoseconds since start
	dataLive   atomic.Int32 // data relays running: the control connection is not idle meanwhile
	passiveCmd atomic.Int32 // the last passive command sent: cmdPASV or cmdEPSV
	up, down   atomic.Int64

	writeMu sync.Mutex // one reply at a time to the client

	activeMu sync.Mutex
	active   net.Listener // the listener of the last PORT/EPRT, if it waits

	data sync.WaitGroup // data relays and active accepts

	errMu sync.Mutex
	ended bool
	err   error
}

const (
	cmdPASV = 1 + iota
	cmdEPSV
)

func (f *FTP) newSession(ctx context.Context, client, backend net.Conn, prefix []byte) *ftpSession {
	log := f.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &ftpSession{
		f:           f,
		log:         log.With(zap.Stringer("client", client.RemoteAddr()), zap.String("backend", f.Addr)),
		client:      client,
		backend:     backend,
		fromClient:  bufio.NewReaderSize(io.MultiReader(bytes.NewReader(prefix), client), maxFTPLine),
		fromBackend: bufio.NewReaderSize(backend, maxFTPLine),
		claims:      f.Claims,
		clientIP:    netAddrIP(client.RemoteAddr()),
		clientSide:  netAddrIP(client.LocalAddr()),
		backendIP:   netAddrIP(backend.RemoteAddr()),
		backendSide: netAddrIP(backend.LocalAddr()),
		publicIP:    f.PublicAddr.Unmap(),
		publicPort:  f.PublicPort,
		idle:        f.IdleTimeout,
		start:       time.Now(),
	}
	if f.DataPorts != nil {
		s.claims = f.DataPorts.claims
	}
	if !s.publicIP.IsValid() {
		s.publicIP = s.clientSide
	}
	if s.publicPort <= 0 {
		if ap, err := netip.ParseAddrPort(client.LocalAddr().String()); err == nil {
			s.publicPort = int(ap.Port())
		}
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	return s
}

// run relays until the backend closes the control connection or either
// side fails, then ends everything the session opened.
func (s *ftpSession) run(parent context.Context) (Stats, error) {
	stop := context.AfterFunc(parent, func() { s.end(parent.Err()) })
	defer stop()
	done := make(chan struct{})
	go s.pumpCommands(done)
	s.end(s.relayReplies())
	<-done
	s.claims.drop(s)
	s.closeActive(nil)
	s.data.Wait()
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return Stats{Up: s.up.Load(), Down: s.down.Load()}, s.err
}

// end records the first error (nil: a clean end) and tears the session
// down; errors caused by the teardown itself are not recorded.
func (s *ftpSession) end(err error) {
	s.errMu.Lock()
	if s.ended {
		s.errMu.Unlock()
		return
	}
	s.ended, s.err = true, err
	s.errMu.Unlock()
	s.cancel()
	s.client.Close()
	s.backend.Close()
}

func (s *ftpSession) touch() { s.lastActive.Store(int64(time.Since(s.start))) }

func (s *ftpSession) idleDeadline() time.Time {
	return s.start.Add(time.Duration(s.lastActive.Load()) + s.idle)
}

// readLine reads one control line, newline included, of at most maxFTPLine
// bytes (a full buffer without a newline is too long). At EOF it returns
// the unterminated rest with io.EOF.
func (s *ftpSession) readLine(r *bufio.Reader, c net.Conn) ([]byte, error) {
	var line []byte
	for {
		if s.idle > 0 {
			c.SetReadDeadline(s.idleDeadline())
		}
		chunk, err := r.ReadSlice('\n')
		if len(line)+len(chunk) > maxFTPLine || errors.Is(err, bufio.ErrBufferFull) {
			return nil, ErrFTPLineTooLong
		}
		line = append(line, chunk...)
		switch {
		case err == nil:
			s.touch()
			return line, nil
		case errors.Is(err, os.ErrDeadlineExceeded) && s.idle > 0:
			// A long transfer leaves the control connection silent: it
			// is idle only when no data connection is open either.
			if s.dataLive.Load() > 0 {
				s.touch()
			} else if !time.Now().Before(s.idleDeadline()) {
				return nil, ErrIdleTimeout
			}
		default:
			return line, err
		}
	}
}

// writeClient writes one whole reply to the client.
func (s *ftpSession) writeClient(b []byte) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	return s.writeClientLocked(b)
}

func (s *ftpSession) writeClientLocked(b []byte) error {
	return s.write(s.client, b, &s.down)
}

// write writes to one side of the control connection, counting the bytes.
func (s *ftpSession) write(c net.Conn, b []byte, count *atomic.Int64) error {
	if s.idle > 0 {
		c.SetWriteDeadline(time.Now().Add(s.idle))
	}
	n, err := c.Write(b)
	count.Add(int64(n))
	s.touch()
	return err
}

// relayData relays one data connection with splice until both directions
// end; a named function for goroutine dumps. The caller counted it in
// s.data.
func (s *ftpSession) relayData(client, backend net.Conn) {
	defer s.data.Done()
	s.dataLive.Add(1)
	defer s.dataLive.Add(-1)
	st, err := Relay(s.ctx, client, backend, s.idle, s.f.Pipes)
	s.up.Add(st.Up)
	s.down.Add(st.Down)
	s.touch()
	if err != nil && s.ctx.Err() == nil {
		s.log.Info("ftp data connection failed", zap.Error(err), zap.Int64("up", st.Up), zap.Int64("down", st.Down))
	} else if c := s.log.Check(zapcore.DebugLevel, "ftp data connection done"); c != nil {
		c.Write(zap.Int64("up", st.Up), zap.Int64("down", st.Down))
	}
}

// announced is the data address the session gave its client for an
// expectation under key: on the multiplexed port (key.port 0, which the
// table cannot know) the public port, else the DataPorts port. An EPSV
// reply carries only the port.
func (s *ftpSession) announced(key claimKey) netip.AddrPort {
	port := key.port
	if port == 0 {
		port = s.publicPort
	}
	return netip.AddrPortFrom(s.publicIP, uint16(port))
}

// setActive makes ln the session's PORT listener, closing the previous one:
// the backend uses only the last data address it was given.
func (s *ftpSession) setActive(ln net.Listener) {
	s.activeMu.Lock()
	old := s.active
	s.active = ln
	s.activeMu.Unlock()
	if old != nil {
		old.Close()
	}
}

// closeActive closes the PORT listener if it is ln (any, if ln is nil).
func (s *ftpSession) closeActive(ln net.Listener) {
	s.activeMu.Lock()
	old := s.active
	if ln == nil || old == ln {
		s.active = nil
	}
	s.activeMu.Unlock()
	if old != nil && (ln == nil || old == ln) {
		old.Close()
	}
}
