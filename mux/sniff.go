package mux

import (
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
)

// sniffChunk is how much a matcher asks the socket for at a time: enough for
// a typical ClientHello or request line in one read.
const sniffChunk = 2048

// sniffer runs the protocol matchers cmux calls. Its pool holds the matchers'
// read buffers so a sniff does not allocate one per matcher.
type sniffer struct {
	maxBytes int
	bufs     sync.Pool
}

func newSniffer(maxBytes int) *sniffer {
	s := &sniffer{maxBytes: maxBytes}
	s.bufs.New = func() any { b := make([]byte, sniffChunk); return &b }
	return s
}

// sniff reads from r into the pooled buffer until decide reaches a
// verdict, r fails (the sniff deadline passed or the client closed) or
// maxBytes were read undecided. decide gets everything read so far that
// fits the buffer (what the prefix sniffers, TLS and SSH, look at: they
// decide within a few bytes) and the bytes just read (what the incremental
// HTTP sniffer takes); past the buffer's size reading wraps around. Reads
// from cmux's reader replay the bytes earlier matchers buffered before
// touching the socket.
func (s *sniffer) sniff(r io.Reader, decide func(all, fresh []byte) verdict) bool {
	bp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bp)
	buf := *bp
	for total, off := 0, 0; total < s.maxBytes; {
		if off == len(buf) {
			off = 0
		}
		n, err := r.Read(buf[off:min(len(buf), off+s.maxBytes-total)])
		total += n
		if n > 0 {
			switch decide(buf[:off+n], buf[off:off+n]) {
			case matched:
				return true
			case rejected:
				return false
			}
		}
		off += n
		if err != nil {
			return false
		}
	}
	return false
}

// The cmux matchers, in priority order. Client-first protocols are decided
// the moment their bytes arrive; silence needs the deadline.
func (s *sniffer) matchTLS(r io.Reader) bool {
	return s.sniff(r, func(all, _ []byte) verdict { return sniffTLS(all) })
}

func (s *sniffer) matchSSH(r io.Reader) bool {
	return s.sniff(r, func(all, _ []byte) verdict { return sniffSSH(all) })
}

func (s *sniffer) matchHTTP(r io.Reader) bool {
	var h httpSniffer
	return s.sniff(r, func(_, fresh []byte) verdict {
		v := h.feed(fresh)
		if v == needMore && h.seen >= s.maxBytes {
			return h.atLimit()
		}
		return v
	})
}

// matchSilent is true only for a client that sent nothing before the sniff
// deadline: a client that connected and closed (EOF) is not silent, so it
// never reaches a server-first backend (certmagic's solver checks the port
// this way).
func matchSilent(r io.Reader) bool {
	var b [1]byte
	n, err := r.Read(b[:])
	return n == 0 && errors.Is(err, os.ErrDeadlineExceeded)
}

// drainPrefix returns exactly the bytes cmux buffered while sniffing mc and
// leaves the socket positioned after them. A read served from cmux's buffer
// returns as much as fits without touching the socket, so one read that
// does not fill buf has taken everything. Only a longer sniff (a large
// ClientHello) needs more reads, bounded by a read deadline in the past: a
// socket read then fails at once without consuming anything. A silent
// client was read nothing, so there is nothing to drain (a read would wait
// for the client).
func drainPrefix(mc *cmux.MuxConn, p Protocol, buf []byte) ([]byte, error) {
	if p == Silent {
		return buf, nil
	}
	n, _ := mc.Read(buf[len(buf):cap(buf)])
	buf = buf[:len(buf)+n]
	if len(buf) < cap(buf) {
		return buf, nil
	}
	if err := mc.Conn.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return buf, err
	}
	for {
		buf = slices.Grow(buf, sniffChunk)
		n, _ := mc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n == 0 {
			return buf, nil
		}
	}
}
