package userspace

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"overlaynet/ether"
)

// tap is one TAP device: the kernel side is the VNIC's network interface,
// this side reads the frames it transmits and writes the frames it
// receives, one frame per system call. The descriptor is kept bare, out
// of the Go runtime's poller: only the worker waits on it (worker.go).
type tap struct {
	name string
	// mu is held for reading around every use of fd, and for writing by
	// close, so that a descriptor number is never used after it is
	// closed and perhaps reused.
	mu sync.RWMutex
	// fds are the TAP's queues: one, or with several workers one per
	// worker (IFF_MULTI_QUEUE). The kernel spreads the VNIC's flows over
	// the queues and sends a flow out of the queue its frames last came
	// in by, so each flow stays with one worker both ways.
	qfds       []int
	closed     bool
	persistent bool
	// vnet: frames carry a virtio-net header and may be TCP super-frames
	// (TSO) with partial checksums.
	vnet bool
}

// gsoMaxSize caps the TCP super-frames a VNIC hands over.
const gsoMaxSize = 60000

// aliasPrefix marks the interfaces overlayd made (IFLA_IFALIAS), so that
// a restarted daemon finds its persistent VNICs wherever operators moved
// them, and never takes an interface it did not make. The full alias is
// vnicAlias: the prefix, the VNIC's name and the owner's tag.
const aliasPrefix = "overlayd vnic "

// vnicAlias is the alias of the TAP name made by the data path whose
// Options.Owner is owner. Without an owner, or from an overlayd older
// than the tag, it is aliasPrefix+name alone.
func vnicAlias(name, owner string) string {
	if owner == "" {
		return aliasPrefix + name
	}
	return aliasPrefix + name + " of " + owner
}

// openTAP creates the TAP interface name with the given MAC and MTU and
// sets it up, tagged as owner's. A persistent TAP outlives overlayd
// (TUNSETPERSIST), so that guests keep their interface across a restart;
// with adopt set, an existing persistent TAP of that name that this
// owner made is taken over instead, in whatever network namespace it now
// is, as it is. mac is the VNIC's (saved) MAC: it is what tells an
// untagged TAP from an older overlayd apart from someone else's (see
// classifyTAP).
func openTAP(name, owner string, mac ether.MAC, mtu int, persistent, adopt, vnet bool, queues int) (*tap, error) {
	if adopt {
		t, found, err := adoptTAP(name, owner, mac, vnet, queues)
		if found || err != nil {
			return t, err
		}
	}
	if l, err := netlink.LinkByName(name); err == nil {
		// An interface this owner made but never saved (it stopped
		// between making and saving) is taken back; anything else,
		// another overlayd's VNIC too, is not ours.
		a := l.Attrs().Alias
		if classifyTAP(l.Type(), a, l.Attrs().HardwareAddr, name, owner, mac) == tapForeign {
			return nil, foreignTAPError(name, a, l.Attrs().HardwareAddr, owner, mac, "")
		}
		if err := notInUse(l); err != nil {
			return nil, err
		}
	}
	fds, err := tunAttachQueues(name, vnet, queues)
	if err != nil {
		return nil, fmt.Errorf("create TAP %s: %w", name, err)
	}
	t := &tap{name: name, qfds: fds, vnet: vnet}
	if err := t.configure(mac, mtu, persistent, owner); err != nil {
		t.destroy()
		return nil, err
	}
	return t, nil
}

// tapOwnership is whose an existing interface with a VNIC's name is.
type tapOwnership int

const (
	// tapForeign: not ours; left alone.
	tapForeign tapOwnership = iota
	// tapOurs: a TAP tagged with this owner's identity.
	tapOurs
	// tapLegacy: a TAP with the untagged alias of an overlayd older than
	// the owner tag, and the VNIC's MAC: ours from before the upgrade, to
	// be taken over and tagged.
	tapLegacy
)

// classifyTAP decides whose the interface of kind (netlink's link type)
// with alias and MAC is, for the VNIC name of this owner whose MAC is
// want. Tagged TAPs are told apart by the tag alone. An untagged one
// (alias aliasPrefix+name) says nothing of which overlayd made it: any
// state directory's, before the tag, made the same alias. Taking one
// that another daemon's guest uses would steal its interface, so only
// the VNIC's own MAC makes it ours. Without an owner there is no tag,
// and the untagged alias is this data path's own.
func classifyTAP(kind, alias string, mac net.HardwareAddr, name, owner string, want ether.MAC) tapOwnership {
	switch {
	case kind != "tuntap":
		return tapForeign
	case alias == vnicAlias(name, owner):
		return tapOurs
	case alias == aliasPrefix+name && bytes.Equal(mac, want[:]):
		return tapLegacy
	}
	return tapForeign
}

// foreignTAPError explains why the interface name (alias, MAC), in the
// network namespace where says ("" for overlayd's own), is not taken for
// the VNIC of that name, and what to do.
func foreignTAPError(name, alias string, mac net.HardwareAddr, owner string, want ether.MAC, where string) error {
	in, there := "", ""
	if where != "" {
		in, there = " in network namespace "+where, " there"
	}
	fix := fmt.Sprintf("rename it (ip link set %s name NEWNAME) or delete it (ip link delete %s)%s, or give the VNIC another name", name, name, there)
	switch {
	case alias == aliasPrefix+name:
		return fmt.Errorf("TAP %s%s has the untagged alias of an older overlayd but MAC %s, not the VNIC's %s: it belongs to someone else and is left alone; %s",
			name, in, mac, ether.Long(want), fix)
	case strings.HasPrefix(alias, aliasPrefix):
		return fmt.Errorf("a network interface named %s already exists%s: another overlayd's VNIC (alias %q, this overlayd's tag is %q); %s", name, in, alias, owner, fix)
	}
	return fmt.Errorf("a network interface named %s already exists%s; %s", name, in, fix)
}

// tunAttach opens /dev/net/tun and creates, or attaches to, the TAP
// named name in the caller's network namespace; with vnet, frames carry a
// virtio-net header and the kernel may hand over TCP super-frames with
// partial checksums (TSO), as it would to a VM's virtio NIC.
func tunAttach(name string, vnet, multi bool) (int, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("interface name %q: %w", name, err)
	}
	flags := uint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if vnet {
		flags |= unix.IFF_VNET_HDR
	}
	if multi {
		flags |= unix.IFF_MULTI_QUEUE
	}
	ifr.SetUint16(flags)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, err
	}
	offloads := 0
	if vnet {
		offloads = unix.TUN_F_CSUM | unix.TUN_F_TSO4 | unix.TUN_F_TSO6
	}
	// Set either way: a TAP taken over keeps the offloads of its last
	// owner otherwise.
	if err := unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, offloads); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("TUNSETOFFLOAD: %w", err)
	}
	return fd, nil
}

// tunAttachQueues attaches up to n queues of the TAP named name,
// creating it if need be: several with IFF_MULTI_QUEUE, else one. A
// persistent TAP keeps the kind it was made with, so when the kernel
// refuses one kind (EINVAL), the other is taken: an old single-queue TAP
// then gets one queue, whatever n is.
func tunAttachQueues(name string, vnet bool, n int) ([]int, error) {
	multi := n > 1
	fd, err := tunAttach(name, vnet, multi)
	if errors.Is(err, unix.EINVAL) {
		multi = !multi
		fd, err = tunAttach(name, vnet, multi)
	}
	if err != nil {
		return nil, err
	}
	fds := []int{fd}
	for multi && len(fds) < n {
		fd, err := tunAttach(name, vnet, true)
		if err != nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
			return nil, fmt.Errorf("queue %d: %w", len(fds), err)
		}
		fds = append(fds, fd)
	}
	return fds, nil
}

func (t *tap) configure(mac ether.MAC, mtu int, persistent bool, owner string) error {
	link, err := netlink.LinkByName(t.name)
	if err != nil {
		return fmt.Errorf("find TAP %s: %w", t.name, err)
	}
	if err := netlink.LinkSetHardwareAddr(link, mac[:]); err != nil {
		return fmt.Errorf("set MAC %s on %s: %w", ether.Long(mac), t.name, err)
	}
	if err := netlink.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set MTU %d on %s: %w", mtu, t.name, err)
	}
	if err := netlink.LinkSetAlias(link, vnicAlias(t.name, owner)); err != nil {
		return fmt.Errorf("tag %s: %w", t.name, err)
	}
	if t.vnet {
		// A super-frame cut into segments, each with its own headers,
		// must still fit one UDP GSO send (64 KB): smaller super-frames
		// leave in one system call and arrive as one GRO batch.
		if err := netlink.LinkSetGSOMaxSize(link, gsoMaxSize); err != nil {
			return fmt.Errorf("set GSO size on %s: %w", t.name, err)
		}
	}
	if persistent {
		if err := t.setPersist(true); err != nil {
			return fmt.Errorf("make %s persistent: %w", t.name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up: %w", t.name, err)
	}
	return nil
}

func (t *tap) setPersist(on bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return os.ErrClosed
	}
	v := 0
	if on {
		v = 1
	}
	if err := unix.IoctlSetInt(t.qfds[0], unix.TUNSETPERSIST, v); err != nil {
		return err
	}
	t.persistent = on
	return nil
}

// setMTU changes the interface's MTU wherever it is: in our network
// namespace, or in the one it was moved into (which the TAP's file tells:
// TUNGETDEVNETNS), where it is found by name or, renamed, by its MAC.
// Entering another namespace needs CAP_SYS_ADMIN, which overlayd drops
// after startup unless --keep-privileges: the error then says where the
// interface is and how to set it there.
func (t *tap) setMTU(mtu int, mac ether.MAC) error {
	if link, err := netlink.LinkByName(t.name); err == nil && bytes.Equal(link.Attrs().HardwareAddr, mac[:]) {
		return netlink.LinkSetMTU(link, mtu)
	}
	t.mu.RLock()
	if t.closed {
		t.mu.RUnlock()
		return os.ErrClosed
	}
	fd, err := unix.IoctlRetInt(t.qfds[0], unix.TUNGETDEVNETNS)
	t.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("interface %s is no longer in overlayd's network namespace, and the kernel does not say where it is: %w", t.name, err)
	}
	ns := netns.NsHandle(fd)
	defer ns.Close()
	where := nsName(ns)
	var h *netlink.Handle
	if self, err := netns.Get(); err == nil && self.Equal(ns) {
		// Still ours, renamed: no namespace to enter.
		self.Close()
		h = &netlink.Handle{}
	} else {
		if err == nil {
			self.Close()
		}
		if h, err = netlink.NewHandleAt(ns); err != nil {
			how := fmt.Sprintf("ip link set %s mtu %d there", t.name, mtu)
			if !strings.HasPrefix(where, "net:[") {
				how = fmt.Sprintf("ip -n %s link set %s mtu %d", where, t.name, mtu)
			}
			return fmt.Errorf("interface %s is in network namespace %s, which overlayd cannot enter (%v; it can with --keep-privileges): set it there (%s)",
				t.name, where, err, how)
		}
		defer h.Close()
	}
	link, err := h.LinkByName(t.name)
	if err != nil || !bytes.Equal(link.Attrs().HardwareAddr, mac[:]) {
		link = nil
		links, _ := h.LinkList()
		for _, l := range links {
			if l.Type() == "tuntap" && bytes.Equal(l.Attrs().HardwareAddr, mac[:]) {
				link = l
				break
			}
		}
	}
	if link == nil {
		return fmt.Errorf("interface %s is in network namespace %s, which has no TAP of that name or MAC", t.name, where)
	}
	if err := h.LinkSetMTU(link, mtu); err != nil {
		return fmt.Errorf("set mtu %d on %s in network namespace %s: %w", mtu, link.Attrs().Name, where, err)
	}
	return nil
}

func (t *tap) fds() []int    { return t.qfds }
func (t *tap) vnetHdr() bool { return t.vnet }

// read reads one frame from queue q; unix.EAGAIN when none is waiting.
func (t *tap) read(q int, b []byte) (int, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return 0, os.ErrClosed
	}
	for {
		n, err := unix.Read(t.qfds[q], b)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// write writes one frame into queue q (modulo the queues there are):
// the worker writes into its own, so that the kernel sends the flow's
// replies back through it. A TAP's send buffer is unbounded, so a write
// does not wait; it may fail when the interface is down or gone.
func (t *tap) write(q int, b []byte) error {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		return os.ErrClosed
	}
	fd := t.qfds[q%len(t.qfds)]
	for {
		_, err := unix.Write(fd, b)
		if err != unix.EINTR {
			return err
		}
	}
}

// close lets go of the TAP; a persistent one stays for the next overlayd.
func (t *tap) close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil
	}
	t.closed = true
	var err error
	for _, fd := range t.qfds {
		if e := unix.Close(fd); e != nil {
			err = e
		}
	}
	return err
}

// destroy deletes the TAP, persistent or not.
func (t *tap) destroy() error {
	if t.persistent {
		t.setPersist(false)
	}
	return t.close()
}

// adoptTAP looks for a persistent TAP named name that owner made, in this
// network namespace and then in every other one it can see, and attaches
// to it there. Other overlayds' TAPs of that name (another state
// directory: another lab on the same machine, an aborted run's leftovers)
// are left alone, wherever they are. A TAP without a tag, made by an
// overlayd older than the tag, is taken when no tagged one is found and
// it has the VNIC's MAC, and tagged. An untagged one with another MAC is
// refused with an error naming it: it may be another daemon's guest's,
// or ours with its MAC changed, and only the operator can tell.
func adoptTAP(name, owner string, mac ether.MAC, vnet bool, queues int) (*tap, bool, error) {
	nss := namespaces()
	defer func() {
		for _, ns := range nss {
			ns.Close()
		}
	}()
	want := vnicAlias(name, owner)
	var old []netns.NsHandle
	var refused error
	for i, ns := range nss {
		l := tapLink(ns, name)
		if l == nil {
			continue
		}
		a, hw := l.Attrs().Alias, l.Attrs().HardwareAddr
		switch classifyTAP(l.Type(), a, hw, name, owner, mac) {
		case tapOurs:
			return attachIn(ns, name, "", vnet, queues)
		case tapLegacy:
			old = append(old, ns)
		case tapForeign:
			if a == aliasPrefix+name && refused == nil {
				where := ""
				if i > 0 { // nss[0] is overlayd's own
					where = nsName(ns)
				}
				refused = foreignTAPError(name, a, hw, owner, mac, where)
			}
		}
	}
	for _, ns := range old {
		t, found, err := attachIn(ns, name, want, vnet, queues)
		// One that a process holds open is a running overlayd's, not
		// ours: we are the only overlayd of this state directory.
		if errors.Is(err, errHeld) || errors.Is(err, unix.EBUSY) {
			continue
		}
		if found || err != nil {
			return t, found, err
		}
	}
	if refused != nil {
		return nil, true, refused
	}
	return nil, false, nil
}

// tapLink returns the TAP called name in ns, or nil when ns holds no TAP
// of that name.
func tapLink(ns netns.NsHandle, name string) netlink.Link {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil // a namespace gone meanwhile
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil || link.Type() != "tuntap" {
		return nil
	}
	return link
}

// nsName names a network namespace for people: by its ip netns name when
// it has one, else as /proc/PID/ns/net shows it.
func nsName(ns netns.NsHandle) string {
	var st syscall.Stat_t
	if syscall.Fstat(int(ns), &st) != nil {
		return "(unknown)"
	}
	named, _ := filepath.Glob("/run/netns/*")
	for _, p := range named {
		var nst syscall.Stat_t
		if syscall.Stat(p, &nst) == nil && nst.Ino == st.Ino && nst.Dev == st.Dev {
			return filepath.Base(p)
		}
	}
	return fmt.Sprintf("net:[%d]", st.Ino)
}

// notInUse refuses a TAP that some process holds open: a single-queue TAP
// would refuse a second owner by itself (EBUSY), but a multi-queue one
// would take it as more queues, and the two would share the flows (the
// kernel reports the attached queues of multi-queue TAPs only).
func notInUse(l netlink.Link) error {
	if tt, ok := l.(*netlink.Tuntap); ok && tt.Queues > 0 {
		return fmt.Errorf("TAP %s is %w", l.Attrs().Name, errHeld)
	}
	return nil
}

// errHeld: a TAP some process holds open.
var errHeld = errors.New("held open by another process (another overlayd?)")

// attachIn attaches to the TAP called name in ns, which classifyTAP found
// to be ours, and with retag set gives it that alias. It reports the TAP
// found unless ns no longer holds it.
func attachIn(ns netns.NsHandle, name, retag string, vnet bool, queues int) (*tap, bool, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, false, nil // a namespace gone meanwhile
	}
	defer h.Close()
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, false, nil
	}
	if err := notInUse(link); err != nil {
		return nil, true, fmt.Errorf("take over TAP %s: %w", name, err)
	}
	// /dev/net/tun binds to the namespace it is opened in, so open it
	// there, on a thread that is thrown away afterwards.
	type result struct {
		fds []int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if err := netns.Set(ns); err != nil {
			ch <- result{nil, err}
			return
		}
		fds, err := tunAttachQueues(name, vnet, queues)
		ch <- result{fds, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, true, fmt.Errorf("take over TAP %s: %w", name, r.err)
	}
	t := &tap{name: name, qfds: r.fds, persistent: true, vnet: vnet}
	if retag != "" {
		if err := h.LinkSetAlias(link, retag); err != nil {
			t.close()
			return nil, true, fmt.Errorf("take over TAP %s: tag it: %w", name, err)
		}
	}
	return t, true, nil
}

// namespaces returns handles on every network namespace in sight, ours
// first: the named ones (/run/netns) and those of running processes.
func namespaces() []netns.NsHandle {
	var out []netns.NsHandle
	seen := map[uint64]bool{}
	add := func(h netns.NsHandle, err error) {
		if err != nil {
			return
		}
		var st syscall.Stat_t
		if syscall.Fstat(int(h), &st) != nil || seen[st.Ino] {
			h.Close()
			return
		}
		seen[st.Ino] = true
		out = append(out, h)
	}
	add(netns.Get())
	named, _ := filepath.Glob("/run/netns/*")
	for _, p := range named {
		add(netns.GetFromPath(p))
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	for _, p := range procs {
		add(netns.GetFromPath(p))
	}
	return out
}
