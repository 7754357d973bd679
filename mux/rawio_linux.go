package mux

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// RawIO returns c with its reads and writes made as raw system calls, when
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
func RawIO(c net.Conn) net.Conn {
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
	return r
}

// rawIOConn is a TCP connection read and written with raw system calls.
type rawIOConn struct {
	*net.TCPConn
	rc     syscall.RawConn
	rd, wr rawOp
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
}

// Read reads as net.Conn's Read does: io.EOF once the peer has closed,
// *net.OpError otherwise.
func (c *rawIOConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.rd.do(c.rc.Read, p)
	if err != nil {
		return n, c.opError("read", err)
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// Write writes all of p, unless the deadline passes or the connection
// fails first, as net.Conn's Write does.
func (c *rawIOConn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.wr.do(c.rc.Write, p)
	if err != nil {
		return n, c.opError("write", err)
	}
	return n, nil
}

// do runs attempt through wait (the RawConn's Read or Write, which calls it
// again each time the socket becomes ready, until it is done).
func (op *rawOp) do(wait func(func(uintptr) bool) error, p []byte) (int, error) {
	op.mu.Lock()
	defer op.mu.Unlock()
	op.buf, op.n, op.errno = p, 0, 0
	err := wait(op.attempt)
	n, errno := op.n, op.errno
	op.buf = nil
	if err == nil && errno != 0 {
		err = errno
	}
	return n, err
}

// read makes one read(2) into buf. It returns false when the socket has
// nothing to read yet.
func (op *rawOp) read(fd uintptr) bool {
	for {
		n, _, errno := unix.RawSyscall(unix.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(op.buf))), uintptr(len(op.buf)))
		switch errno {
		case 0:
			op.n = int(n)
			return true
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			op.errno = errno
			return true
		}
	}
}

// write writes buf's unwritten bytes with write(2). It returns false when
// the socket's buffer is full.
func (op *rawOp) write(fd uintptr) bool {
	for op.n < len(op.buf) {
		rest := op.buf[op.n:]
		n, _, errno := unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(rest))), uintptr(len(rest)))
		switch errno {
		case 0:
			op.n += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			op.errno = errno
			return true
		}
	}
	return true
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
