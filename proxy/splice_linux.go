package proxy

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portmux/portmux/internal/rawio"
	"golang.org/x/sys/unix"
)

// pipe is a kernel pipe used as the in-between buffer of splice(2).
type pipe struct {
	r, w     int
	buffered int // bytes spliced in and not yet spliced out
}

// pipeSize is asked of the kernel for each pipe (F_SETPIPE_SZ): a larger
// pipe moves more per splice call during bulk transfers. The kernel fills it
// page by page, so an empty pipe costs little.
const pipeSize = 1 << 20

func newPipe() (*pipe, error) {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	// Best effort: the default 64 KiB pipe still works.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

func (p *pipe) close() {
	unix.Close(p.r)
	unix.Close(p.w)
}

// splice moves bytes from src to dst through a borrowed pipe. It borrows a
// pipe when bytes are there, keeps it while they keep coming, and gives it
// back before waiting for more, so an idle connection holds no pipe.
func (r *relay) splice(dst, src *net.TCPConn) (int64, error) {
	srcRaw, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRaw, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		total int64
		p     *pipe
	)
	defer func() { r.pipes.put(p) }()
	for {
		n, err := r.spliceIn(srcRaw, &p, true)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			// The connection may not be idle: the other direction moved
			// bytes, or this deadline was set long ago. onTimeout decides.
			if terr := r.onTimeout(src.SetReadDeadline); terr != nil {
				return total, terr
			}
			continue
		case err != nil:
			return total, err
		case n == 0:
			return total, nil // EOF
		}
		r.touch()
		w, err := r.spliceOut(dstRaw, dst, p)
		total += w
		if err != nil {
			return total, err
		}
	}
}

// spliceIn moves what the socket holds into the pipe *pp, waiting until it
// holds something. The attempt and the wait must be one RawConn.Read call:
// each call starts by resetting the poller's readiness state, so a separate
// wait after a failed attempt could sleep through bytes that arrived in
// between (the poller is edge-triggered). While waiting, the pipe is back in
// the pool.
func (r *relay) spliceIn(rc syscall.RawConn, pp **pipe, waitInline bool) (int, error) {
	var (
		n    int64
		serr error
	)
	err := rc.Read(func(fd uintptr) bool {
		if *pp == nil {
			if *pp, serr = r.pipes.get(); serr != nil {
				return true
			}
		}
		for {
			n, serr = unix.Splice(int(fd), nil, (*pp).w, nil, pipeSize, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			switch serr {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				r.pipes.put(*pp)
				*pp = nil
				// Wait for readability (then call again), or let the
				// caller park.
				return !waitInline
			}
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if serr == syscall.EAGAIN {
		return 0, serr
	}
	if serr != nil {
		return 0, os.NewSyscallError("splice", serr)
	}
	(*pp).buffered = int(n)
	return int(n), nil
}

// spliceOut empties the pipe into dst, waiting for dst to become writable
// when its send buffer is full.
func (r *relay) spliceOut(rc syscall.RawConn, dst *net.TCPConn, p *pipe) (int64, error) {
	var total int64
	for p.buffered > 0 {
		var (
			n    int64
			serr error
		)
		err := rc.Write(func(fd uintptr) bool {
			for {
				n, serr = unix.Splice(p.r, nil, int(fd), nil, p.buffered, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
				if serr == syscall.EINTR {
					continue
				}
				// false: wait until writable, then call again.
				return serr != syscall.EAGAIN
			}
		})
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if terr := r.onTimeout(dst.SetWriteDeadline); terr != nil {
					return total, terr
				}
				continue
			}
			return total, err
		}
		if serr != nil {
			return total, os.NewSyscallError("splice", serr)
		}
		p.buffered -= int(n)
		total += n
		r.touch()
	}
	return total, nil
}

// pendingInput reports whether c is a TCP socket with bytes waiting to be
// read. (Not a FIN: once read, EOF peeks forever, and a half-closed
// connection must still time out.)
func pendingInput(c net.Conn) bool {
	n, err, ok := rawio.Peek(c)
	return ok && err == nil && n > 0
}

// spliceDir is one direction of a relay whose idle sockets are parked (see
// Parker): it runs while bytes flow and holds no goroutine while parked.
type spliceDir struct {
	r              *relay
	dst, src       *net.TCPConn
	dstRaw, srcRaw syscall.RawConn
	total          int64
	pipe           *pipe
	token          uint64 // the parker's name for it
	registered     bool   // src is in the parker's epoll set
	done           func(n int64, err error)
}

func newSpliceDir(r *relay, dst, src *net.TCPConn, done func(int64, error)) (*spliceDir, error) {
	d := &spliceDir{r: r, dst: dst, src: src, done: done}
	var err error
	if d.srcRaw, err = src.SyscallConn(); err != nil {
		return nil, err
	}
	if d.dstRaw, err = dst.SyscallConn(); err != nil {
		return nil, err
	}
	return d, nil
}

// run moves bytes until the source is empty (then parks: the goroutine
// ends) or done (EOF or error: it completes). A named function so
// goroutine dumps say what it is.
func (d *spliceDir) run() {
	r := d.r
	r.running.Add(1)
	for {
		n, err := r.spliceIn(d.srcRaw, &d.pipe, false)
		if errors.Is(err, syscall.EAGAIN) {
			// Not running from here on (the idle sweep may judge the
			// relay), unless parking fails.
			r.running.Add(-1)
			parked := false
			perr := d.srcRaw.Control(func(fd uintptr) { parked = r.pipes.parker.park(d, int(fd)) })
			if parked && perr == nil {
				return // d belongs to the poller now
			}
			r.running.Add(1)
			n, err = r.spliceIn(d.srcRaw, &d.pipe, true) // could not park: wait here
		}
		if err == nil && n > 0 {
			r.touch()
			var w int64
			w, err = r.spliceOut(d.dstRaw, d.dst, d.pipe)
			d.total += w
			if err == nil {
				continue
			}
		}
		r.running.Add(-1) // ending: err, or EOF (n == 0)
		d.finish(err)
		return
	}
}

// finish completes the direction (exactly once: from run, or from an abort
// that took it out of the parked set).
func (d *spliceDir) finish(err error) {
	d.r.pipes.put(d.pipe)
	d.pipe = nil
	d.done(d.total, err)
}

// startParked relays client and backend with parked directions (see
// Parker): the direction that ends last calls done, and nothing waits for
// an idle relay. The client-to-backend direction runs in the caller's
// goroutine (one goroutine fewer per connection), so startParked returns
// once that direction has parked or ended.
func startParked(ctx context.Context, client, backend *net.TCPConn, idle time.Duration, pipes *Pipes, done func(Stats, error)) {
	r := newRelay(ctx, client, backend, idle, pipes)
	var (
		down    int64
		pending atomic.Int32 // directions not yet ended
	)
	pending.Store(2)
	ended := func() {
		if pending.Add(-1) == 0 { // the atomic orders r.up and down before their reads
			done(r.end(down))
		}
	}
	up, err1 := newSpliceDir(r, backend, client, func(n int64, err error) {
		r.up = n
		r.finish(backend, r.quiet(err))
		ended()
	})
	dn, err2 := newSpliceDir(r, client, backend, func(n int64, err error) {
		down = n
		r.finish(client, r.quiet(err))
		ended()
	})
	if err := errors.Join(err1, err2); err != nil {
		r.abort(err)
		done(r.end(0))
		return
	}
	if idle > 0 {
		// Only writes wait in place (a peer that stops reading); parked
		// reads are timed by the parker's sweep.
		client.SetWriteDeadline(r.idleDeadline())
		backend.SetWriteDeadline(r.idleDeadline())
	}
	r.mu.Lock()
	r.dirs = [2]*spliceDir{up, dn}
	r.mu.Unlock()
	go dn.run()
	up.run()
}

// unparkAll completes the directions still parked when the relay is torn
// down: the poller will not resume them once their sockets are closed.
func (r *relay) unparkAll() {
	r.mu.Lock()
	dirs := r.dirs
	r.mu.Unlock()
	for _, d := range dirs {
		if d != nil && r.pipes.parker.unpark(d) {
			d.finish(nil)
		}
	}
}

// parks reports whether relays sharing p park their idle directions.
func (p *Pipes) parks() bool { return p != nil && p.parker != nil }
