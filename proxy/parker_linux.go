package proxy

import (
	"errors"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Parker parks idle splice directions. Instead of a goroutine blocked on
// each idle socket (with its stack), one goroutine waits on an epoll set
// for all of them and resumes a direction in a new goroutine when its
// socket has bytes (or its peer closed). An idle relayed connection then
// holds no goroutine of its own, no pipe and no buffer: only its sockets.
//
// Registration is level-triggered and one-shot: bytes that arrived between
// a direction's last read attempt and its registration fire at once, so no
// wakeup is lost. The epoll set itself waits in Go's network poller (an
// epoll descriptor is readable while it has events), so no OS thread sits
// blocked in epoll_wait and a wakeup costs the scheduler no thread
// hand-off. A Parker also enforces the idle timeout of parked relays (a
// sweep each second). It is safe for concurrent use; Close stops it.
type Parker struct {
	epfd int
	set  *os.File // epfd in Go's poller; closing it stops poll

	mu     sync.Mutex
	parked map[uint64]*spliceDir
	next   uint64
	closed bool
	done   chan struct{} // closed when poll returns
	swept  sync.WaitGroup
}

// NewParker starts a parker.
func NewParker() (*Parker, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	// O_NONBLOCK makes os.NewFile hand the descriptor to Go's poller (it
	// does not change epoll_wait, which is always called with timeout 0).
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	set := os.NewFile(uintptr(epfd), "parker-epoll")
	rc, err := set.SyscallConn()
	if err != nil {
		set.Close()
		return nil, err
	}
	p := &Parker{epfd: epfd, set: set, parked: map[uint64]*spliceDir{}, done: make(chan struct{})}
	go p.poll(rc)
	p.swept.Add(1)
	go p.sweep()
	return p, nil
}

func setToken(ev *unix.EpollEvent, t uint64) {
	ev.Fd, ev.Pad = int32(uint32(t)), int32(uint32(t>>32))
}

func tokenOf(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// poll is the parker's one waiting goroutine (named for stack dumps). Each
// RawConn.Read collects ready events without blocking and, when there are
// none, waits in Go's poller for the set to become readable. Collecting
// inside the same Read call is what makes this race-free: the poller's
// readiness is reset when Read starts, before the first attempt.
func (p *Parker) poll(rc syscall.RawConn) {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		var (
			n    int
			werr error
		)
		err := rc.Read(func(fd uintptr) bool {
			for {
				n, werr = unix.EpollWait(int(fd), events, 0)
				if werr != unix.EINTR {
					return werr != nil || n > 0
				}
			}
		})
		if err != nil || werr != nil {
			return // the set was closed (Close)
		}
		for i := range events[:n] {
			t := tokenOf(&events[i])
			p.mu.Lock()
			d := p.parked[t]
			delete(p.parked, t)
			p.mu.Unlock()
			if d != nil {
				go d.run()
			}
		}
	}
}

// park registers fd, the read side of d, for one readiness event. It
// reports false if the parker is closed or the registration failed: the
// caller still owns d and waits the ordinary way. After true, the caller
// must not touch d: the poller (or an abort) owns it.
//
// The registration and the entry in the parked set are made under the
// lock the poller takes to find d, so everything the caller wrote to d
// happens before the poller resumes it, even if the event fires at once.
func (p *Parker) park(d *spliceDir, fd int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	if d.token == 0 {
		p.next++
		d.token = p.next
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT}
	setToken(&ev, d.token)
	op := unix.EPOLL_CTL_ADD
	if d.registered {
		op = unix.EPOLL_CTL_MOD
	}
	err := unix.EpollCtl(p.epfd, op, fd, &ev)
	switch {
	case errors.Is(err, unix.EEXIST):
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	case errors.Is(err, unix.ENOENT):
		err = unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
	}
	if err != nil {
		return false
	}
	d.registered = true
	p.parked[d.token] = d
	return true
}

// unpark takes d out of the parked set; it reports whether d was parked
// (and will therefore not be resumed by the poller).
func (p *Parker) unpark(d *spliceDir) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.parked[d.token]; !ok {
		return false
	}
	delete(p.parked, d.token)
	return true
}

// sweep aborts parked relays idle for longer than their idle timeout, once
// a second (named for stack dumps).
func (p *Parker) sweep() {
	defer p.swept.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
		}
		var idle []*relay
		p.mu.Lock()
		for _, d := range p.parked {
			// Idle only if no direction is running: one may be moving
			// bytes it already took from its socket.
			if d.r.idle > 0 && d.r.running.Load() == 0 && !time.Now().Before(d.r.idleDeadline()) {
				idle = append(idle, d.r)
			}
		}
		p.mu.Unlock()
		for _, r := range idle {
			if !pendingInput(r.client) && !pendingInput(r.backend) {
				r.abort(ErrIdleTimeout)
			}
		}
	}
}

// Close stops the parker. Relays still parked are aborted.
func (p *Parker) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	var rs []*relay
	for _, d := range p.parked {
		rs = append(rs, d.r)
	}
	p.mu.Unlock()
	for _, r := range rs {
		r.abort(errParkerClosed)
	}
	p.set.Close() // wakes poll; the descriptor closes once poll is out
	<-p.done
	p.swept.Wait()
}

var errParkerClosed = errors.New("relay parker closed")
