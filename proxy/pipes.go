package proxy

import "sync"

// Pipes is a bounded pool of kernel pipes for splice(2) and of copy buffers
// for the portable path. One Pipes is shared by every relay of a process; it
// is safe for concurrent use. A nil *Pipes is valid: pipes and buffers are
// then made for each use and released afterwards.
//
// A relay borrows a pipe only while bytes are in flight and gives it back
// before it waits for more, so idle connections hold no pipe (each pipe costs
// two file descriptors).
type Pipes struct {
	free    chan *pipe
	buffers sync.Pool
	parker  *Parker // nil: idle directions wait in their goroutines
}

// EnableParking makes relays sharing p park their idle directions with a
// Parker, so an idle connection holds no goroutine of its own. Call it
// before the first relay; Close stops the parker.
func (p *Pipes) EnableParking() error {
	pk, err := NewParker()
	if err != nil {
		return err
	}
	p.parker = pk
	return nil
}

// NewPipes returns a pool that keeps at most max idle pipes open.
func NewPipes(max int) *Pipes {
	p := &Pipes{free: make(chan *pipe, max)}
	p.buffers.New = func() any { b := make([]byte, copyBufferSize); return &b }
	return p
}

// copyBufferSize is the buffer of the portable copy path: large enough for
// a full TLS record.
const copyBufferSize = 32 << 10

func (p *Pipes) get() (*pipe, error) {
	if p != nil {
		select {
		case pp := <-p.free:
			return pp, nil
		default:
		}
	}
	return newPipe()
}

// put returns a pipe; a pipe that still holds bytes (an aborted transfer) is
// closed instead, since its contents belong to a dead connection.
func (p *Pipes) put(pp *pipe) {
	if pp == nil {
		return
	}
	if p == nil || pp.buffered != 0 {
		pp.close()
		return
	}
	select {
	case p.free <- pp:
	default:
		pp.close()
	}
}

// Close stops the parker (aborting relays still parked) and closes the idle
// pipes. Pipes in use are closed when they come back.
func (p *Pipes) Close() {
	if p == nil {
		return
	}
	if p.parker != nil {
		p.parker.Close()
	}
	for {
		select {
		case pp := <-p.free:
			pp.close()
		default:
			return
		}
	}
}

func (p *Pipes) buffer() *[]byte {
	if p == nil {
		b := make([]byte, copyBufferSize)
		return &b
	}
	return p.buffers.Get().(*[]byte)
}

func (p *Pipes) putBuffer(b *[]byte) {
	if p != nil {
		p.buffers.Put(b)
	}
}
