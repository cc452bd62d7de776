package bench

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An event loop's view of Linux epoll, for the scale simulation's hosts
// (scaleloop.go): a poller of non-blocking sockets taken from the Go
// runtime (takeFD).

// Events for add and mod.
const (
	pollIn  = unix.EPOLLIN | unix.EPOLLRDHUP
	pollOut = unix.EPOLLOUT
)

// poller is one epoll instance, used by one loop.
type poller struct {
	fd     int
	events []unix.EpollEvent
}

// newPoller returns a poller that reports up to maxEvents ready sockets
// per wait.
func newPoller(maxEvents int) (*poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	return &poller{fd: fd, events: make([]unix.EpollEvent, max(1, maxEvents))}, nil
}

// add watches fd for events, reported with key.
func (p *poller) add(fd int, events uint32, key int32) error {
	ev := unix.EpollEvent{Events: events, Fd: key}
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// mod changes the events watched on fd.
func (p *poller) mod(fd int, events uint32, key int32) error {
	ev := unix.EpollEvent{Events: events, Fd: key}
	return unix.EpollCtl(p.fd, unix.EPOLL_CTL_MOD, fd, &ev)
}

// del stops watching fd.
func (p *poller) del(fd int) error {
	return unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, fd, nil)
}

// wait waits up to timeout for events and returns them; the slice is
// reused by the next call.
func (p *poller) wait(timeout time.Duration) ([]unix.EpollEvent, error) {
	// Round up: a timer due in 300 µs must not become a busy loop.
	ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
	for {
		n, err := unix.EpollWait(p.fd, p.events, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("epoll_wait: %w", err)
		}
		return p.events[:n], nil
	}
}

// close releases the poller; the sockets in it stay open.
func (p *poller) close() error { return unix.Close(p.fd) }

// takeFD takes c's socket out of the Go runtime's hands: it returns a
// non-blocking descriptor of the same socket (which the caller now owns
// and must close) and closes c, so that the runtime's poller no longer
// watches it. c must be a *net.TCPConn or another syscall.Conn over a
// socket; anything else is an error, and c is left open.
func takeFD(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("a %T has no socket to take", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) {
		fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, fmt.Errorf("dup: %w", dupErr)
	}
	c.Close()
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("set non-blocking: %w", err)
	}
	return fd, nil
}
