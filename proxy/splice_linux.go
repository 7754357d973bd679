package proxy

import (
	"errors"
	"net"
	"os"
	"syscall"

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
		n, err := r.spliceIn(srcRaw, &p)
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
func (r *relay) spliceIn(rc syscall.RawConn, pp **pipe) (int, error) {
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
				return false // wait for readability, then call again
			}
			return true
		}
	})
	if err != nil {
		return 0, err
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
// connection must still time out.) It peeks without consuming and without touching the
// poller's state (RawConn.Control, unlike Read, does not reset readiness).
func pendingInput(c net.Conn) bool {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	pending := false
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		pending = err == nil && n > 0
	})
	return pending
}
