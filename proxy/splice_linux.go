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

// splice moves bytes from src to dst through a borrowed pipe. It waits for
// readability holding nothing (RawConn.Read with a function that first
// reports not-done), borrows a pipe when bytes are there, keeps it while they
// keep coming, and returns it before waiting again.
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
	// Bytes may already wait in the socket (the sniff may have read only part
	// of what arrived), and an edge-triggered poller would not wake us for
	// them: so the first step is a read attempt, not a wait.
	mustWait := false
	for {
		if mustWait {
			r.pipes.put(p)
			p = nil
			if err := waitReadable(srcRaw); err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) {
					if terr := r.onTimeout(src.SetReadDeadline); terr != nil {
						return total, terr
					}
					continue
				}
				return total, err
			}
		}
		if p == nil {
			if p, err = r.pipes.get(); err != nil {
				return total, err
			}
		}
		n, err := spliceIn(srcRaw, p)
		switch {
		case errors.Is(err, syscall.EAGAIN):
			mustWait = true
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A deadline set before the last wait expired while bytes kept
			// flowing: re-arm it if the connection is not really idle.
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
		mustWait = false
	}
}

// waitReadable blocks until src is readable, its deadline passes or it is
// closed, without reading anything.
func waitReadable(rc syscall.RawConn) error {
	waited := false
	return rc.Read(func(uintptr) bool {
		if waited {
			return true
		}
		waited = true
		return false
	})
}

// spliceIn makes one non-blocking splice from the socket into the empty pipe.
func spliceIn(rc syscall.RawConn, p *pipe) (int, error) {
	var (
		n    int64
		serr error
	)
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, serr = unix.Splice(int(fd), nil, p.w, nil, pipeSize, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
			if serr != syscall.EINTR {
				return true
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, os.NewSyscallError("splice", serr)
	}
	p.buffered = int(n)
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
