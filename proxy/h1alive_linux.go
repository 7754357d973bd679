package proxy

import (
	"errors"
	"net"

	"github.com/portmux/portmux/internal/rawio"
	"golang.org/x/sys/unix"
)

// stillOpen reports whether an idle upstream connection is worth keeping:
// the upstream has neither closed it nor sent anything unasked. It peeks
// without blocking, one system call. (A request's own check is made as it
// is sent: rawio.SendAwaitingReply.)
func stillOpen(c net.Conn) bool {
	_, err, ok := rawio.Peek(c)
	return !ok || errors.Is(err, unix.EAGAIN)
}
