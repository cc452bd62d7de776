// Package underlayns lets an overlay's underlay live in a network
// namespace other than overlayd's own (illumos IPD 18's "zone
// netstack"): sockets are opened, and the kernel's vxlan devices made,
// from a thread that stays in that namespace.
//
// Entering a namespace (setns) needs CAP_SYS_ADMIN, which overlayd drops
// once it has restored its configuration. So each namespace gets one
// thread, entered while overlayd may (at startup: its restored overlays
// and the namespaces named with overlayd --underlay-netns), and kept for
// the life of the process; a socket made on it stays in that namespace
// wherever it is used from, and making one there needs no privilege.
package underlayns

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a network namespace with a thread in it. A nil *NS is overlayd's
// own namespace.
type NS struct {
	path string
	fd   netns.NsHandle // held open: the namespace lives while we do
	reqs chan func()
}

var (
	mu sync.Mutex
	// byID finds a namespace's thread by the namespace's identity (the
	// device and inode of its file), not by path: a path may name
	// another namespace later (a recreated /run/netns/NAME, a reused
	// PID), and two paths may name one.
	byID = map[[2]uint64]*NS{}
)

// nameRE is a namespace name as ip netns makes them (/run/netns/NAME).
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

// Path resolves a property value: a name from 'ip netns add' is
// /run/netns/NAME; an absolute path (/proc/PID/ns/net) is itself.
func Path(ref string) (string, error) {
	switch {
	case filepath.IsAbs(ref):
		return filepath.Clean(ref), nil
	case nameRE.MatchString(ref) && ref != "." && ref != "..":
		return filepath.Join("/run/netns", ref), nil
	}
	return "", fmt.Errorf("%q is neither a network namespace name (ip netns add NAME) nor an absolute path such as /proc/PID/ns/net", ref)
}

// Get returns the namespace ref names, entering it (once, for the life
// of the process) if no thread is in it yet. "" is overlayd's own: nil.
func Get(ref string) (*NS, error) {
	if ref == "" {
		return nil, nil
	}
	path, err := Path(ref)
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	id := [2]uint64{uint64(st.Dev), st.Ino}
	mu.Lock()
	defer mu.Unlock()
	if n := byID[id]; n != nil {
		return n, nil
	}
	fd, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", path, err)
	}
	n := &NS{path: path, fd: fd, reqs: make(chan func())}
	entered := make(chan error, 1)
	go n.run(entered)
	if err := <-entered; err != nil {
		fd.Close()
		if os.IsPermission(err) || err == unix.EPERM {
			return nil, fmt.Errorf("enter network namespace %s: %w: overlayd has dropped CAP_SYS_ADMIN; name it with overlayd --underlay-netns %s so that it is entered at startup (or run overlayd with --keep-privileges)", path, err, ref)
		}
		return nil, fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	byID[id] = n
	return n, nil
}

// run is the namespace's thread: it enters the namespace and runs what
// Do asks, forever. If it cannot enter, its thread dies with it (locked
// and never unlocked), so no goroutine runs in a half-switched thread.
func (n *NS) run(entered chan<- error) {
	runtime.LockOSThread()
	if err := netns.Set(n.fd); err != nil {
		entered <- err
		return
	}
	entered <- nil
	for fn := range n.reqs {
		fn()
	}
}

// Path is the namespace's file ("" for overlayd's own).
func (n *NS) Path() string {
	if n == nil {
		return ""
	}
	return n.path
}

// FD is a descriptor of the namespace, -1 for overlayd's own.
func (n *NS) FD() int {
	if n == nil {
		return -1
	}
	return int(n.fd)
}

// Do runs fn in the namespace (in overlayd's own for a nil n) and returns
// its error. Sockets fn opens belong to the namespace; fn must not keep
// the thread busy (it is the namespace's only one).
func (n *NS) Do(fn func() error) error {
	if n == nil {
		return fn()
	}
	errc := make(chan error, 1)
	n.reqs <- func() { errc <- fn() }
	return <-errc
}

// own is overlayd's own network namespace, taken at start, on the main
// thread, before any thread entered another. (/proc/self/ns/net would not
// do: it is the main thread's, and the main thread may be one that a
// namespace's thread locked and moved.)
var own, ownErr = netns.Get()

// InterfaceOf returns the index of the interface that holds addr, in the
// current thread's network namespace (call it in Do): where a multicast
// overlay joins its group.
func InterfaceOf(addr netip.Addr) (int, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0, err
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr.Unmap() {
					return ifi.Index, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no interface holds %s", addr)
}

// Own returns a handle on overlayd's own network namespace, to make
// devices there from another namespace's thread. It stays open for the
// life of the process: the caller does not close it.
func Own() (netns.NsHandle, error) {
	return own, ownErr
}
