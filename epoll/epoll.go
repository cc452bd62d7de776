// Package epoll is a small event loop's view of Linux epoll: a Poller of
// non-blocking sockets taken from the Go runtime (Take), and a way to
// wake its Wait from another goroutine.
//
// It exists for servers and load generators with thousands of mostly
// idle connections, each sending small requests: there a goroutine per
// connection costs a read that finds nothing (EAGAIN) after every
// request, deadline bookkeeping and a scheduler hand-off per wake-up,
// which on a virtual machine add up to more than the request itself. One
// loop reading every ready connection after a single epoll_wait does
// without them.
package epoll

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Events for Add and Mod.
const (
	In  = unix.EPOLLIN | unix.EPOLLRDHUP
	Out = unix.EPOLLOUT
)

// Poller is one epoll instance. Add, Mod, Del and Wake may be called from
// any goroutine; Wait from one at a time.
type Poller struct {
	fd     int
	wakeFD int // an eventfd, registered with key -1
	events []unix.EpollEvent
}

// WakeKey is the key Wait reports for a Wake; the loop only needs to see
// it to look at whatever the waker queued.
const WakeKey = -1

// New returns a Poller that reports up to maxEvents ready sockets per Wait.
func New(maxEvents int) (*Poller, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	p := &Poller{fd: fd, wakeFD: wfd, events: make([]unix.EpollEvent, max(1, maxEvents))}
	if err := p.Add(wfd, unix.EPOLLIN, WakeKey); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// Add watches fd for events, reported with key.
func (p *Poller) Add(fd int, events uint32, key int32) error {
	ev := unix.EpollEvent{Events: events, Fd: key}
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl add: %w", err)
	}
	return nil
}

// Mod changes the events watched on fd.
func (p *Poller) Mod(fd int, events uint32, key int32) error {
	ev := unix.EpollEvent{Events: events, Fd: key}
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_MOD, fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl mod: %w", err)
	}
	return nil
}

// Del stops watching fd.
func (p *Poller) Del(fd int) error {
	if err := unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, fd, nil); err != nil {
		return fmt.Errorf("epoll_ctl del: %w", err)
	}
	return nil
}

// Wait waits up to timeout (negative: for ever) for events, and returns
// them; the slice is reused by the next call. A Wake shows as an event
// with key WakeKey (at most one per Wait, however many Wakes).
func (p *Poller) Wait(timeout time.Duration) ([]unix.EpollEvent, error) {
	ms := -1
	if timeout >= 0 {
		// Round up: a timer due in 300 µs must not become a busy loop.
		ms = int((timeout + time.Millisecond - 1) / time.Millisecond)
	}
	for {
		n, err := unix.EpollWait(p.fd, p.events, ms)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("epoll_wait: %w", err)
		}
		evs := p.events[:n]
		for i := range evs {
			if evs[i].Fd == WakeKey {
				var b [8]byte
				unix.Read(p.wakeFD, b[:]) // reset the counter
			}
		}
		return evs, nil
	}
}

// Wake makes the current or next Wait return.
func (p *Poller) Wake() {
	b := [8]byte{1}
	unix.Write(p.wakeFD, b[:])
}

// Close releases the Poller; the sockets in it stay open.
func (p *Poller) Close() error {
	unix.Close(p.wakeFD)
	return unix.Close(p.fd)
}

// Take takes c's socket out of the Go runtime's hands: it returns a
// non-blocking descriptor of the same socket (which the caller now owns
// and must close) and closes c, so that the runtime's poller no longer
// watches it. c must be a *net.TCPConn or another syscall.Conn over a
// socket; anything else is an error, and c is left open.
func Take(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("epoll: a %T has no socket to take", c)
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
