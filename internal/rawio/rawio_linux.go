package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Wrap returns c with its reads and writes made as raw system calls, when
// c is a TCP connection; any other c is returned as it is. The result is a
// net.Conn like c, which it embeds: deadlines, Close, CloseWrite and
// SyscallConn are c's own.
//
// Why: Go makes every socket read and write through syscall.Syscall, which
// tells the scheduler that a call is under way so that it can hand the
// goroutine's P to another thread, should the call block. A proxy busy with
// short exchanges makes a hundred thousand such calls a second, and the
// runtime's monitor thread (sysmon), finding Ps in system calls, then wakes
// every 20 µs to look at them instead of backing off towards 10 ms: 8% of
// portmux's CPU per plain HTTP request went to it (perf). Go's sockets are
// non-blocking, so these calls never wait; made raw, as the runtime makes
// its own epoll and futex calls, they leave sysmon asleep. Waiting for the
// socket to be ready, and deadlines, stay with Go's network poller, through
// syscall.RawConn.
//
// The race detector does not see the memory that raw reads and writes
// touch (syscall.Read and Write tell it), nor the ordering that passing
// bytes through a socket implies.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	r := &rawIOConn{TCPConn: tc, rc: rc}
	r.rd.attempt = r.rd.read
	r.wr.attempt = r.wr.write
	r.tryWrite = func(fd uintptr) { r.wr.done = r.wr.write(fd) }
	r.sendThenWait = r.sendAwaiting
	return r
}

// rawIOConn is a TCP connection read and written with raw system calls.
type rawIOConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	rd, wr rawOp

	// SendAwaitingReply's attempt (bound once) and its progress,
	// guarded by wr.mu (sendwait_linux.go).
	sendThenWait func(fd uintptr) bool
	send         sendState

	// LimitWriteStall's limit (0: none), and the write deadline its
	// writes arm unless one was set (deadlineSet, guarded by dl).
	stall       atomic.Int64     // a time.Duration
	tryWrite    func(fd uintptr) // wr.attempt without waiting, into wr.done
	dl          sync.Mutex
	deadlineSet bool
}

// rawOp is the state of one read or one write: syscall.RawConn takes a
// function of the descriptor alone, so the buffer and the result travel in
// here, and attempt is bound once (a closure per call would allocate).
// mu keeps one read (write) at a time, as net.Conn's own lock does.
type rawOp struct {
	mu      sync.Mutex
	buf     []byte
	n       int
	errno   syscall.Errno
	attempt func(fd uintptr) bool
	done    bool // the attempt finished (rawIOConn.tryWrite)
}

// Read reads as net.Conn's Read does: io.EOF once the peer has closed,
// *net.OpError otherwise.
func (c *rawIOConn) Read(p []byte) (int, error) {
	n, err := c.transfer(&c.rd, c.rc.Read, "read", p)
	if err == nil && n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, err
}

// Write writes all of p, unless the deadline passes or the connection
// fails first, as net.Conn's Write does.
func (c *rawIOConn) Write(p []byte) (int, error) {
	if c.stall.Load() > 0 {
		return c.transfer(&c.wr, c.writeStallLimited, "write", p)
	}
	return c.transfer(&c.wr, c.rc.Write, "write", p)
}

// LimitWriteStall makes every later write on c that finds the socket full
// fail (a timeout, os.ErrDeadlineExceeded) unless it completes within d,
// when no write deadline is set: a peer that stopped reading cannot hold a
// writer, and the connection, for ever. A write deadline, while set,
// governs instead. It reports false, and does nothing, for a c that Wrap
// did not make raw.
func LimitWriteStall(c net.Conn, d time.Duration) bool {
	r, ok := c.(*rawIOConn)
	if ok {
		r.stall.Store(int64(d))
	}
	return ok
}

// writeStallLimited is rc.Write (the wait of transfer) for a limited
// stall: one attempt without waiting, and when the socket is full, a
// write deadline d from now for the wait, removed after it.
func (c *rawIOConn) writeStallLimited(attempt func(fd uintptr) bool) error {
	c.wr.done = false
	if err := c.rc.Control(c.tryWrite); err != nil || c.wr.done {
		return err
	}
	if c.armStall() {
		defer c.disarmStall()
	}
	return c.rc.Write(attempt)
}

// armStall sets the stall deadline, unless a write deadline is set, and
// reports whether it did.
func (c *rawIOConn) armStall() bool {
	c.dl.Lock()
	defer c.dl.Unlock()
	if c.deadlineSet {
		return false
	}
	c.TCPConn.SetWriteDeadline(time.Now().Add(time.Duration(c.stall.Load())))
	return true
}

// disarmStall removes the stall deadline, unless a write deadline was set
// meanwhile (it replaced the stall deadline, and stays).
func (c *rawIOConn) disarmStall() {
	c.dl.Lock()
	defer c.dl.Unlock()
	if !c.deadlineSet {
		c.TCPConn.SetWriteDeadline(time.Time{})
	}
}

// SetWriteDeadline sets the write deadline, as net.Conn's does; while it
// is set, it governs writes instead of LimitWriteStall's limit.
func (c *rawIOConn) SetWriteDeadline(t time.Time) error {
	c.dl.Lock()
	defer c.dl.Unlock()
	c.deadlineSet = !t.IsZero()
	return c.TCPConn.SetWriteDeadline(t)
}

// SetDeadline sets both deadlines, as net.Conn's does (SetWriteDeadline).
func (c *rawIOConn) SetDeadline(t time.Time) error {
	c.dl.Lock()
	defer c.dl.Unlock()
	c.deadlineSet = !t.IsZero()
	return c.TCPConn.SetDeadline(t)
}

// transfer runs op's attempt on p through wait (the RawConn's Read or
// Write, which calls it again each time the socket becomes ready, until it
// is done), and words a failure as net.Conn's op does.
func (c *rawIOConn) transfer(op *rawOp, wait func(func(uintptr) bool) error, name string, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op.mu.Lock()
	defer op.mu.Unlock()
	op.buf, op.n, op.errno = p, 0, 0
	err := wait(op.attempt)
	op.buf = nil
	if err == nil && op.errno != 0 {
		err = op.errno
	}
	if err != nil {
		return op.n, c.opError(name, err)
	}
	return op.n, nil
}

// read makes one read(2) into buf. It returns false when the socket has
// nothing to read yet.
func (op *rawOp) read(fd uintptr) bool {
	n, errno := rawReadWrite(unix.SYS_READ, fd, op.buf)
	switch errno {
	case 0:
		op.n = n
	case unix.EAGAIN:
		return false
	default:
		op.errno = errno
	}
	return true
}

// write writes buf's unwritten bytes with write(2). It returns false when
// the socket's buffer is full.
func (op *rawOp) write(fd uintptr) bool {
	for op.n < len(op.buf) {
		n, errno := rawReadWrite(unix.SYS_WRITE, fd, op.buf[op.n:])
		switch errno {
		case 0:
			op.n += n
		case unix.EAGAIN:
			return false
		default:
			op.errno = errno
			return true
		}
	}
	return true
}

// rawReadWrite makes the system call trap (read or write) on fd with b,
// again when a signal interrupted it.
func rawReadWrite(trap, fd uintptr, b []byte) (int, syscall.Errno) {
	for {
		n, _, errno := unix.RawSyscall(trap, fd, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
		if errno != unix.EINTR {
			return int(n), errno
		}
	}
}

// Peek looks at c's next byte without consuming it, without blocking and
// without touching the poller's state (RawConn.Control, unlike Read, does
// not reset readiness): n is 1 when a byte waits, 0 with a nil error at
// EOF; EAGAIN means nothing has come. ok is false when c is no socket.
func Peek(c net.Conn) (n int, err error, ok bool) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err, true // closed
	}
	rc.Control(func(fd uintptr) {
		var errno syscall.Errno
		if n, errno = peekFD(fd); errno != 0 {
			err = errno
		}
	})
	return n, err, true
}

// Quiet reports whether c has nothing to read: its peer has neither
// closed it nor sent anything (Peek finds nothing yet). One system call,
// which does not block. A c that is no socket counts as quiet.
func Quiet(c net.Conn) bool {
	_, err, ok := Peek(c)
	return !ok || errors.Is(err, unix.EAGAIN)
}

// peekFD is Peek on a descriptor, made raw as Wrap's reads and writes
// are: a call that cannot wait need not be handed to the scheduler.
func peekFD(fd uintptr) (int, syscall.Errno) {
	var b [1]byte
	r, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), 0
}

// opError words err as net.Conn's Read and Write do: a *net.OpError named
// op, whose Err is the poller's (net.ErrClosed, os.ErrDeadlineExceeded) or
// an *os.SyscallError.
func (c *rawIOConn) opError(op string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		err = os.NewSyscallError(op, errno)
	}
	if oe, ok := err.(*net.OpError); ok { // the RawConn's, named raw-read or raw-write
		oe.Op = op
		return oe
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
