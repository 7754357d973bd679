package proxy

import (
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// A response body on the direct path is relayed as the upstream framed it
// (Content-Length, chunked with its trailers, or until the upstream
// closes), each read written to the client at once, so streams such as
// SSE flow without buffering. bodyFraming follows the framing to know
// where the body ends.

// bodyFraming tracks how much of a body is left.
type bodyFraming struct {
	remaining  int64 // Content-Length bytes left, or chunk data bytes left
	data       int64 // the body's bytes so far, without chunk framing
	chunked    bool
	untilClose bool
	state      chunkState
	digits     int
}

// newBodyFraming returns the framing of resp's body.
func newBodyFraming(resp *responseHead, headReq bool) bodyFraming {
	switch {
	case headReq || !resp.hasBody():
		return bodyFraming{}
	case resp.chunked:
		return bodyFraming{chunked: true}
	case resp.untilClose:
		return bodyFraming{untilClose: true}
	}
	return bodyFraming{remaining: resp.contentLength}
}

// done reports whether the body is complete.
func (f *bodyFraming) done() bool {
	if f.chunked {
		return f.state == chunkDone
	}
	return !f.untilClose && f.remaining == 0
}

// chunkState is the position in a chunked body (RFC 9112 §7.1).
type chunkState uint8

const (
	chunkSize chunkState = iota
	chunkExt
	chunkSizeLF
	chunkData
	chunkDataCR
	chunkDataLF
	chunkTrailerStart
	chunkTrailer
	chunkTrailerLF
	chunkEndLF
	chunkDone
)

var errBadChunk = errors.New("malformed chunked body from upstream")

// feed advances over b and returns how many of its bytes belong to the
// body; fewer than len(b) only once the body is done.
func (f *bodyFraming) feed(b []byte) (int, error) {
	if f.untilClose {
		f.data += int64(len(b))
		return len(b), nil
	}
	if !f.chunked {
		n := min(int64(len(b)), f.remaining)
		f.remaining -= n
		f.data += n
		return int(n), nil
	}
	i := 0
	for i < len(b) && f.state != chunkDone {
		if f.state == chunkData {
			n := min(int64(len(b)-i), f.remaining)
			f.remaining -= n
			f.data += n
			i += int(n)
			if f.remaining == 0 {
				f.state = chunkDataCR
			}
			continue
		}
		if err := f.step(b[i]); err != nil {
			return i, err
		}
		i++
	}
	return i, nil
}

// fixedSteps are the states that take exactly one byte, and where it
// leads.
var fixedSteps = [chunkDone + 1]struct {
	want byte
	next chunkState
}{
	chunkDataCR:    {'\r', chunkDataLF},
	chunkDataLF:    {'\n', chunkSize},
	chunkTrailerLF: {'\n', chunkTrailerStart},
	chunkEndLF:     {'\n', chunkDone},
}

// step advances the chunk framing by one byte outside chunk data.
func (f *bodyFraming) step(c byte) error {
	if fs := fixedSteps[f.state]; fs.want != 0 {
		if c != fs.want {
			return errBadChunk
		}
		f.state = fs.next
		return nil
	}
	switch f.state {
	case chunkSizeLF:
		if c != '\n' {
			return errBadChunk
		}
		f.digits = 0
		f.state = chunkData
		if f.remaining == 0 {
			f.state = chunkTrailerStart // the last chunk
		}
	case chunkSize:
		switch v := hexValue(c); {
		case v >= 0 && f.digits < 15:
			f.remaining = f.remaining<<4 | int64(v)
			f.digits++
		case f.digits > 0 && (c == ';' || c == ' ' || c == '\t'):
			f.state = chunkExt
		case f.digits > 0 && c == '\r':
			f.state = chunkSizeLF
		default:
			return errBadChunk
		}
	case chunkExt, chunkTrailerStart, chunkTrailer:
		// A line's text up to its CR; a control byte, a bare LF above
		// all, would let client and proxy disagree on the end.
		switch {
		case c == '\r' && f.state == chunkExt:
			f.state = chunkSizeLF
		case c == '\r' && f.state == chunkTrailerStart:
			f.state = chunkEndLF
		case c == '\r':
			f.state = chunkTrailerLF
		case c < ' ' && c != '\t':
			return errBadChunk
		case f.state == chunkTrailerStart:
			f.state = chunkTrailer
		}
	}
	return nil
}

func hexValue(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// relayBody sends d.out (the response head) with the body bytes already
// read, then the rest of the body as it arrives. It reports the body's
// bytes relayed (its content, without chunk framing, as net/http's path
// counts), whether the upstream's message ended exactly where the framing
// says (so its connection can be reused), and the error of the client's
// side or of the upstream's.
func (d *directConn) relayBody(uc *upstreamConn, f bodyFraming) (n int64, complete bool, clientErr, err error) {
	if buffered := uc.br.Buffered(); buffered > 0 && !f.done() {
		b, _ := uc.br.Peek(buffered)
		use, ferr := f.feed(b)
		d.out = append(d.out, b[:use]...)
		uc.br.Discard(use)
		if ferr != nil {
			err = ferr
		}
	}
	if _, werr := d.conn.Write(d.out); werr != nil {
		return f.data, false, werr, nil
	}
	if err != nil || f.done() {
		return f.data, err == nil && uc.br.Buffered() == 0, nil, err
	}
	// The rest streams: watch the client meanwhile, as net/http does, so a
	// client that goes away ends the exchange.
	stop := d.watchClient(uc)
	defer func() {
		if stop() && clientErr == nil {
			clientErr = errClientGone
		}
	}()
	buf := relayBuffers.Get()
	defer relayBuffers.Put(buf)
	for {
		k, rerr := uc.br.Read(buf)
		use, ferr := f.feed(buf[:k])
		if use > 0 {
			if _, werr := d.conn.Write(buf[:use]); werr != nil {
				return f.data, false, werr, nil
			}
		}
		switch {
		case ferr != nil:
			return f.data, false, nil, ferr
		case f.done():
			return f.data, use == k && uc.br.Buffered() == 0, nil, nil
		case rerr == io.EOF && f.untilClose:
			return f.data, false, nil, nil
		case rerr == io.EOF:
			return f.data, false, nil, io.ErrUnexpectedEOF
		case rerr != nil:
			return f.data, false, nil, rerr
		}
	}
}

// relayBuffers pools the direct path's body copy buffers.
var relayBuffers = &copyBuffers{}

var errClientGone = errors.New("client went away")

// aLongTimeAgo is a deadline in the past, to interrupt a read.
var aLongTimeAgo = time.Unix(1, 0)

// watchClient reads ahead on the client connection while a response body
// streams (bytes of a pipelined request stay buffered). When the client
// has gone (its connection reset or failed), it closes the upstream
// connection, which ends the relay. A client that only ended its sending
// side (EOF, as `nc -N` does after the request) still gets its response,
// as HAProxy does; had it closed altogether, the next write tells. The
// returned stop ends the watch and reports whether the client went away.
func (d *directConn) watchClient(uc *upstreamConn) (stop func() bool) {
	d.conn.SetReadDeadline(time.Time{})
	var stopped, gone atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := d.br.Peek(1); err != nil && err != io.EOF && !stopped.Load() {
			gone.Store(true)
			uc.conn.Close()
		}
	}()
	return func() bool {
		stopped.Store(true)
		d.conn.SetReadDeadline(aLongTimeAgo)
		<-done
		return gone.Load()
	}
}
