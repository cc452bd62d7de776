// Package kernel is the data path that leaves every frame to the Linux
// kernel: per overlay a vxlan device (no learning, miss notifications on,
// ARP/NDP answered from its neighbour table) and a bridge for local
// switching; each VNIC is a veth pair, one end on the bridge and the other
// the VNIC an operator moves into a container. overlayd only installs
// forwarding entries (the target table is the vxlan device's forwarding
// database) and neighbour entries, and answers the kernel's misses through
// the same lookup engine and plugins as the userspace data path.
//
// Every object it makes is named from a hash of its overlay or VNIC and
// tagged with an interface alias, so that overlayd removes exactly its own
// objects and a restarted overlayd takes them over instead of duplicating
// them; traffic to known destinations never stops while it is away.
package kernel

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/underlayns"
)

// Alias prefixes tagging the kernel objects overlayd makes.
const (
	aliasOverlay = "overlayd overlay "
	aliasVNIC    = "overlayd vnic "
)

// DataPath is the kernel data path.
type DataPath struct {
	log *slog.Logger

	mu       sync.Mutex
	overlays map[string]*overlay
}

// New returns a kernel data path.
func New(log *slog.Logger) *DataPath {
	return &DataPath{log: log, overlays: map[string]*overlay{}}
}

// Name is this data path's name, the value of the datapath property.
const Name = "kernel"

// devices are the encapsulations this data path has a kernel device for.
var devices = map[string]bool{"vxlan": true}

// otherDevices are the kernel devices of encapsulations this data path
// does not carry, with the kernel option that builds each.
var otherDevices = map[string]struct{ kind, config string }{
	"geneve": {"geneve", "CONFIG_GENEVE"},
	"nvgre":  {"gretap", "CONFIG_NET_IPGRE"},
}

// refuseEncap says why the kernel data path cannot carry an
// encapsulation, from what the running kernel has: no device at all, or
// a device without the forwarding database that sends each MAC to its
// own host (vxlan's, which this data path's target table is).
func refuseEncap(enc string) error {
	other, ok := otherDevices[enc]
	if !ok {
		return fmt.Errorf("the kernel data path has no device for the %s encapsulation (it has: %s); create the overlay with -p datapath=userspace",
			enc, strings.Join(slices.Sorted(maps.Keys(devices)), ", "))
	}
	if err := probeLink(other.kind); err != nil {
		return fmt.Errorf("the kernel data path cannot carry %s: this kernel has no %s device (module %s, %s: %v); create the overlay with -p datapath=userspace, which carries it in overlayd",
			enc, other.kind, other.kind, other.config, err)
	}
	return fmt.Errorf("the kernel data path cannot carry %s: the kernel's %s device has no forwarding database to send each MAC to its own host, as vxlan's has; create the overlay with -p datapath=userspace, which carries it in overlayd",
		enc, other.kind)
}

// probeLink finds out at run time whether the kernel makes links of a
// kind, by making one (aimed at a documentation address) and deleting it.
func probeLink(kind string) error {
	attrs := netlink.LinkAttrs{Name: fmt.Sprintf("ovq%d", os.Getpid()%1000000)}
	remote := net.IPv4(192, 0, 2, 1)
	var l netlink.Link
	switch kind {
	case "geneve":
		l = &netlink.Geneve{LinkAttrs: attrs, ID: 1, Remote: remote}
	case "gretap":
		l = &netlink.Gretap{LinkAttrs: attrs, Remote: remote}
	default:
		return fmt.Errorf("no probe for %s", kind)
	}
	if err := netlink.LinkAdd(l); err != nil {
		return err
	}
	return netlink.LinkDel(l)
}

func init() {
	datapath.Register(datapath.Driver{Name: Name,
		Help: "frames left to the Linux kernel: a vxlan device and a bridge per overlay, a veth pair per VNIC",
		New: func(env datapath.Env) (datapath.DataPath, error) {
			return New(env.Log.With("datapath", Name)), nil
		}})
}

var (
	_ datapath.DataPath       = (*DataPath)(nil)
	_ datapath.Sweeper        = (*DataPath)(nil)
	_ datapath.NeighborTable  = (*overlay)(nil)
	_ datapath.DHCPRedirector = (*overlay)(nil)
	_ datapath.Deleter        = (*overlay)(nil)
)

// shortName derives a stable interface name (at most 15 characters) from
// an overlay or VNIC name.
func shortName(prefix, name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s%08x", prefix, h.Sum32())
}

// overlay is one overlay's vxlan device and bridge.
type overlay struct {
	dp     *DataPath
	log    *slog.Logger
	name   string
	brName string // fixed: the bridge outlives every Update

	// st is replaced, never modified: SetTarget, the miss watcher, Stats
	// and the other readers load it without the lock and always see a
	// whole set of objects, while Update builds the next one beside it.
	st atomic.Pointer[kstate]

	mu sync.Mutex // serialises changes
	// fdbMu keeps forwarding and neighbour entries from being written
	// (read-locked by SetTarget, RemoveTarget, SetNeighbor) while Update
	// copies them to a new vxlan device (write-locked): an entry removed
	// meanwhile would otherwise come back on the new device, and one set
	// meanwhile would be lost with the old.
	fdbMu sync.RWMutex
	vnics map[string]*kvnic
	dhcp  map[ether.MAC]ether.MAC
	flood []encap.Dest // SetFlood's, guarded by mu
	stop  chan struct{}
	done  chan struct{}
}

// kstate is an overlay's configuration and the kernel objects carrying it.
type kstate struct {
	cfg datapath.OverlayConfig
	vx  *netlink.Vxlan
	br  *netlink.Bridge
	// base holds the counters of the vxlan devices this one replaced, so
	// that the overlay's counters never go backwards across an Update.
	base vxStats
}

// vxStats are the counters of a vxlan device that Stats reports.
type vxStats struct {
	txPackets, txBytes, rxPackets, rxBytes   uint64
	txDropped, txErrors, rxErrors, rxDropped uint64
}

// vxCounters reads a vxlan device's counters (zero when it is gone).
func vxCounters(ifindex int) vxStats {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil || l.Attrs().Statistics == nil {
		return vxStats{}
	}
	s := l.Attrs().Statistics
	return vxStats{s.TxPackets, s.TxBytes, s.RxPackets, s.RxBytes, s.TxDropped, s.TxErrors, s.RxErrors, s.RxDropped}
}

// plus adds b's counters to a's.
func (a vxStats) plus(b vxStats) vxStats {
	return vxStats{a.txPackets + b.txPackets, a.txBytes + b.txBytes, a.rxPackets + b.rxPackets, a.rxBytes + b.rxBytes,
		a.txDropped + b.txDropped, a.txErrors + b.txErrors, a.rxErrors + b.rxErrors, a.rxDropped + b.rxDropped}
}

// kvnic is a VNIC: a veth pair, port the end on the bridge.
type kvnic struct {
	port    string
	mac     ether.MAC
	mtu     int // its own; 0 follows the overlay's
	noSpoof bool
}

// vxNames are the two names an overlay's vxlan device may have: a new
// device (another vnetid) is built under the one not in use, beside the
// old, so that the overlay is never without one.
func vxNames(name string) [2]string {
	return [2]string{shortName("ovx", name), shortName("ovy", name)}
}

// CreateOverlay implements datapath.DataPath. Objects left by an earlier
// overlayd for this overlay are taken over when they match, and replaced
// when they do not.
func (dp *DataPath) CreateOverlay(cfg datapath.OverlayConfig) (datapath.Overlay, error) {
	if !devices[cfg.Encap.Name()] {
		return nil, refuseEncap(cfg.Encap.Name())
	}
	ov := &overlay{dp: dp, name: cfg.Name, brName: shortName("ovb", cfg.Name), vnics: map[string]*kvnic{},
		log: dp.log.With("overlay", cfg.Name), stop: make(chan struct{}), done: make(chan struct{})}
	st, err := ov.build(cfg)
	if err != nil {
		ov.destroy(st)
		return nil, err
	}
	// The source MAC chain is left as it is: rebuilt from no VNICs it
	// would let a restarted overlayd's guests spoof until their VNICs are
	// taken over. AddVNIC and Sweep bring it up to date.
	ov.st.Store(st)
	dp.mu.Lock()
	dp.overlays[cfg.Name] = ov
	dp.mu.Unlock()
	go ov.watchMisses()
	return ov, nil
}

// build makes (or takes over) the vxlan device and the bridge for cfg.
// On error the returned state holds what was made, for destroy.
func (ov *overlay) build(cfg datapath.OverlayConfig) (*kstate, error) {
	st := &kstate{cfg: cfg}
	var free []string
	names := vxNames(cfg.Name)
	for _, name := range names {
		l, err := netlink.LinkByName(name)
		if err != nil {
			free = append(free, name)
			continue
		}
		if l.Attrs().Alias != aliasOverlay+cfg.Name {
			continue // not ours: never touched
		}
		if vx, ok := l.(*netlink.Vxlan); ok && st.vx == nil && matches(vx, cfg) {
			st.vx = vx
			continue
		}
		// Ours, but from another configuration.
		if err := netlink.LinkDel(l); err != nil {
			return st, fmt.Errorf("delete %s, left from another configuration: %w", name, err)
		}
		free = append(free, name)
	}
	if st.vx == nil {
		if len(free) == 0 {
			return st, fmt.Errorf("network interfaces named %s exist and are not overlayd's", names[0]+" and "+names[1])
		}
		vx, err := newVxlan(free[0], cfg)
		if err != nil {
			return st, err
		}
		st.vx = vx
	}
	if l, err := netlink.LinkByName(ov.brName); err == nil {
		br, ok := l.(*netlink.Bridge)
		if !ok || l.Attrs().Alias != aliasOverlay+cfg.Name {
			return st, fmt.Errorf("a network interface named %s exists and is not overlayd's", ov.brName)
		}
		st.br = br
	} else {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: ov.brName, MTU: cfg.MTU}}
		if err := netlink.LinkAdd(br); err != nil {
			return st, fmt.Errorf("create bridge %s: %w", ov.brName, err)
		}
		l, err := netlink.LinkByName(ov.brName)
		if err != nil {
			return st, fmt.Errorf("find the new bridge %s: %w", ov.brName, err)
		}
		st.br = l.(*netlink.Bridge)
		if err := netlink.LinkSetAlias(st.br, aliasOverlay+cfg.Name); err != nil {
			return st, fmt.Errorf("tag bridge %s: %w", ov.brName, err)
		}
	}
	if err := noIPv6(st.br.Name); err != nil {
		return st, err
	}
	if err := ov.attach(st); err != nil {
		return st, err
	}
	if cfg.Point == nil && cfg.Group == nil {
		if err := ov.syncDHCP(); err != nil {
			// Server replies need the chain even before any redirection.
			ov.log.Warn("cannot install DHCP redirection; DHCP over this overlay will not work", "err", err)
		}
	}
	return st, nil
}

// newVxlan creates a vxlan device for cfg, tagged as the overlay's.
func newVxlan(name string, cfg datapath.OverlayConfig) (*netlink.Vxlan, error) {
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: cfg.MTU},
		VxlanId:   int(cfg.VNetID),
		SrcAddr:   net.IP(cfg.Listen.Addr().AsSlice()),
		Port:      int(cfg.Listen.Port()),
		Learning:  false,
		L2miss:    dynamic(cfg),
		// ARP and NDP answered by the driver from its neighbour table,
		// unless the plugin floods (EVPN): then they go to the flood
		// list, which the driver's proxy mode would never do.
		L3miss: dynamic(cfg) && !cfg.Floods,
		Proxy:  dynamic(cfg) && !cfg.Floods,
	}
	if g := cfg.Group; g != nil {
		// The driver's own group mode: it joins the group on the
		// listen address's interface, floods to it and learns.
		err := cfg.Underlay.Do(func() (err error) { vx.VtepDevIndex, err = underlayns.InterfaceOf(cfg.Listen.Addr()); return err })
		if err != nil {
			return nil, fmt.Errorf("the interface to join group %s on: %w", g.Dest.IP, err)
		}
		vx.Group = net.IP(g.Dest.IP.AsSlice())
		vx.Learning = true
		vx.Age = int(g.Ageing / time.Second)
		vx.Limit = g.MaxLearned
	}
	add := func() error { return netlink.LinkAdd(vx) }
	if ns := cfg.Underlay; ns != nil {
		// The vxlan driver opens its socket in the namespace the device
		// is created from: create it from the underlay's, right into
		// ours, where the bridge and the VNICs are.
		own, err := underlayns.Own()
		if err != nil {
			return nil, fmt.Errorf("overlayd's own network namespace: %w", err)
		}
		vx.Namespace = netlink.NsFd(own)
		add = func() error { return ns.Do(func() error { return netlink.LinkAdd(vx) }) }
	}
	if err := add(); err != nil {
		where := ""
		if cfg.Underlay != nil {
			where = " in " + cfg.Underlay.Path()
		}
		return nil, fmt.Errorf("create vxlan device %s (vnetid %d, %s%s): %w", name, cfg.VNetID, cfg.Listen, where, err)
	}
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetAlias(l, aliasOverlay+cfg.Name)
	}
	if err != nil {
		if e := netlink.LinkDel(vx); e != nil {
			err = fmt.Errorf("%w (and deleting it: %v)", err, e)
		}
		return nil, fmt.Errorf("tag the new vxlan device %s: %w", name, err)
	}
	return l.(*netlink.Vxlan), nil
}

// attach puts st's vxlan device on its bridge, brings both up and
// installs a point overlay's one destination.
func (ov *overlay) attach(st *kstate) error {
	if err := noAddresses(st.vx.Name); err != nil {
		return err
	}
	if err := netlink.LinkSetMaster(st.vx, st.br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", st.vx.Name, st.br.Name, err)
	}
	for _, l := range []netlink.Link{st.vx, st.br} {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	if p := st.cfg.Point; p != nil {
		if err := fdbReplace(st.vx.Index, ether.MAC{}, *p); err != nil {
			return fmt.Errorf("point %s: %w", p, err)
		}
	}
	return nil
}

// matches reports whether an existing vxlan device is what cfg asks for.
func matches(vx *netlink.Vxlan, cfg datapath.OverlayConfig) bool {
	return vx.VxlanId == int(cfg.VNetID) && vx.Port == int(cfg.Listen.Port()) &&
		vx.SrcAddr.Equal(net.IP(cfg.Listen.Addr().AsSlice())) && vx.L2miss == dynamic(cfg) &&
		vx.Proxy == (dynamic(cfg) && !cfg.Floods) &&
		vx.NetNsID == underlayID(cfg.Underlay) && sameGroup(vx, cfg.Group)
}

// dynamic reports whether cfg is a dynamic overlay's: lookups on misses,
// proxy ARP and NDP, DHCP redirection.
func dynamic(cfg datapath.OverlayConfig) bool { return cfg.Point == nil && cfg.Group == nil }

// sameGroup reports whether a vxlan device is in the group mode g asks
// for (or in none, for a nil g).
func sameGroup(vx *netlink.Vxlan, g *datapath.GroupConfig) bool {
	if g == nil {
		return len(vx.Group) == 0 || vx.Group.IsUnspecified()
	}
	return vx.Group.Equal(net.IP(g.Dest.IP.AsSlice())) && vx.Learning && vx.Age == int(g.Ageing/time.Second) && vx.Limit == g.MaxLearned
}

// underlayID is the id overlayd's namespace gives an underlay namespace,
// as a device's link namespace (NetNsID) shows it: -1 for our own.
func underlayID(ns *underlayns.NS) int {
	if ns == nil {
		return -1
	}
	id, err := netlink.GetNetNsIdByFd(ns.FD())
	if err != nil || id < 0 {
		return -2 // no id yet, so no device of ours has it: matches none
	}
	return id
}

// destroy removes the overlay's objects in st (any may be missing).
func (ov *overlay) destroy(st *kstate) {
	if st == nil {
		return
	}
	if st.br != nil {
		ov.deleteNft()
	}
	var links []netlink.Link
	if st.vx != nil {
		links = append(links, st.vx)
	}
	if st.br != nil {
		links = append(links, st.br)
	}
	for _, l := range links {
		if err := netlink.LinkDel(l); err != nil {
			ov.log.Warn("cannot delete a kernel object of the overlay", "link", l.Attrs().Name, "err", err)
		}
	}
}

// Update implements datapath.Overlay. A new vnetid, listen address or
// mode needs a new vxlan device (the kernel cannot change them on a
// running one): it is built beside the old one and switched to at once,
// so that readers always see a working set of objects. With the vnetid
// unchanged the new device gets the old one's forwarding and neighbour
// entries, so known destinations stay known; with a new vnetid they are
// another network's answers and are not carried over.
func (ov *overlay) Update(cfg datapath.OverlayConfig) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	old := ov.st.Load()
	st := &kstate{cfg: cfg, vx: old.vx, br: old.br, base: old.base}
	if cfg.VNetID != old.cfg.VNetID || cfg.Listen != old.cfg.Listen || (cfg.Point == nil) != (old.cfg.Point == nil) ||
		!sameGroupConfig(cfg.Group, old.cfg.Group) {
		if err := ov.replaceVxlan(old, st); err != nil {
			return err
		}
	} else {
		if cfg.Point != nil && *cfg.Point != *old.cfg.Point {
			if err := fdbReplace(st.vx.Index, ether.MAC{}, *cfg.Point); err != nil {
				return fmt.Errorf("point %s: %w", cfg.Point, err)
			}
		}
		ov.st.Store(st)
	}
	if cfg.MTU != old.cfg.MTU {
		return ov.applyMTU(st, old.cfg.MTU)
	}
	return nil
}

// sameGroupConfig reports whether two overlays' group modes are alike.
func sameGroupConfig(a, b *datapath.GroupConfig) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// createVxlan makes a vxlan device; a test replaces it to make Update
// fail half-way.
var createVxlan = newVxlan

// replaceVxlan makes the vxlan device for st.cfg, publishes st with it
// and retires old's device. On error the overlay is left on old's
// configuration (rebuilt if its device had to go first).
func (ov *overlay) replaceVxlan(old, st *kstate) error {
	cfg := st.cfg
	names := vxNames(cfg.Name)
	name := names[0]
	if old.vx.Name == name {
		name = names[1]
	}
	if l, err := netlink.LinkByName(name); err == nil {
		if l.Attrs().Alias != aliasOverlay+cfg.Name {
			return fmt.Errorf("a network interface named %s exists and is not overlayd's", name)
		}
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete %s, left from another configuration: %w", name, err)
		}
	}
	// No entry is written from here until the new device is published.
	ov.fdbMu.Lock()
	defer ov.fdbMu.Unlock()
	var fdb []fdbEntry
	var neighs []netlink.Neigh
	if cfg.VNetID == old.cfg.VNetID {
		var err error
		if fdb, err = fdbList(old.vx.Index); err != nil {
			return fmt.Errorf("list the forwarding entries to carry over: %w", err)
		}
		neighs = ov.neighbours(old.vx.Index)
	}
	oldPort := old.cfg.Listen.Port()
	oldCounters := vxCounters(old.vx.Index)
	// The kernel holds one device per (vnetid, port): with those
	// unchanged the old device has to go first.
	first := cfg.VNetID == old.cfg.VNetID && cfg.Listen.Port() == old.cfg.Listen.Port()
	if first {
		if err := netlink.LinkDel(old.vx); err != nil {
			return fmt.Errorf("delete vxlan device %s: %w", old.vx.Name, err)
		}
	}
	vx, err := createVxlan(name, cfg)
	if err == nil {
		st.vx = vx
		err = ov.attach(st)
	}
	if err != nil {
		if vx != nil {
			if e := netlink.LinkDel(vx); e != nil {
				ov.log.Warn("cannot delete the half-built vxlan device", "link", name, "err", e)
			}
		}
		st.vx = old.vx
		if first { // put the old configuration back
			back, e := ov.build(old.cfg)
			if e != nil {
				ov.log.Error("cannot rebuild the old vxlan device either; the overlay carries nothing", "err", e)
				return fmt.Errorf("%w; and rebuilding the old vxlan device: %v", err, e)
			}
			back.base = old.base.plus(oldCounters)
			ov.copyEntries(back.vx, fdb, neighs, oldPort)
			ov.syncFlood(back)
			ov.st.Store(back)
		}
		return err
	}
	ov.copyEntries(vx, fdb, neighs, oldPort)
	ov.syncFlood(st)
	if !first {
		// The old device carried on meanwhile.
		oldCounters = vxCounters(old.vx.Index)
	}
	st.base = st.base.plus(oldCounters)
	ov.st.Store(st)
	if !first {
		if err := netlink.LinkDel(old.vx); err != nil {
			// At least it carries nothing more into the bridge.
			ov.log.Warn("cannot delete the old vxlan device; it is taken off the bridge and set down", "link", old.vx.Name, "err", err)
			netlink.LinkSetNoMaster(old.vx)
			netlink.LinkSetDown(old.vx)
		}
	}
	return nil
}

// neighbours lists the permanent neighbour entries (the ARP/NDP answers)
// of a vxlan device.
func (ov *overlay) neighbours(ifindex int) []netlink.Neigh {
	var out []netlink.Neigh
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		ns, err := netlink.NeighList(ifindex, fam)
		if err != nil {
			ov.log.Warn("cannot list neighbour entries", "err", err)
			continue
		}
		for _, n := range ns {
			if n.State&netlink.NUD_PERMANENT != 0 {
				out = append(out, n)
			}
		}
	}
	return out
}

// copyEntries installs forwarding and neighbour entries on vx; an
// entry without a port of its own had the old device's, oldPort.
func (ov *overlay) copyEntries(vx *netlink.Vxlan, fdb []fdbEntry, neighs []netlink.Neigh, oldPort uint16) {
	for _, e := range fdb {
		t, ok := e.target(oldPort)
		if !ok || t.MAC == (ether.MAC{}) {
			continue // a point overlay's default entry is attach's
		}
		if e.neigh.State&netlink.NUD_PERMANENT == 0 {
			// Learned by the driver (group mode): the new device
			// learns again; written here it would be permanent, and
			// never follow the MAC.
			continue
		}
		if err := fdbReplace(vx.Index, t.MAC, t.Dest); err != nil {
			ov.log.Warn("cannot carry a forwarding entry over to the new vxlan device", "mac", ether.Long(t.MAC), "err", err)
		}
	}
	for _, n := range neighs {
		n.LinkIndex = vx.Index
		if err := netlink.NeighSet(&n); err != nil {
			ov.log.Warn("cannot carry a neighbour entry over to the new vxlan device", "ip", n.IP.String(), "err", err)
		}
	}
}

// applyMTU gives the overlay's MTU to its vxlan device, its bridge and
// every VNIC that follows it, wherever the VNIC has been moved; an
// *MTUError names the VNICs that kept the old one. Called with ov.mu.
func (ov *overlay) applyMTU(st *kstate, oldMTU int) error {
	mtu := st.cfg.MTU
	mtuErr := &datapath.MTUError{MTU: mtu}
	for _, l := range []netlink.Link{st.vx, st.br} {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			ov.log.Warn("cannot apply the new overlay MTU", "link", l.Attrs().Name, "mtu", mtu, "err", err)
			mtuErr.VNICs = append(mtuErr.VNICs, datapath.VNICMTUError{VNIC: l.Attrs().Name, Device: true, Kept: oldMTU, Err: err})
		}
	}
	ns := &netnsSet{}
	defer ns.Close()
	for name, v := range ov.vnics {
		if v.mtu != 0 {
			continue
		}
		if err := setVNICMTU(v.port, mtu, ns); err != nil {
			ov.log.Warn("cannot apply the new overlay MTU to a VNIC", "vnic", name, "mtu", mtu, "err", err)
			mtuErr.VNICs = append(mtuErr.VNICs, datapath.VNICMTUError{VNIC: name, Kept: oldMTU, Err: err})
		}
	}
	if len(mtuErr.VNICs) == 0 {
		return nil
	}
	return mtuErr
}

// setVNICMTU sets the MTU of both ends of a VNIC's veth pair. The VNIC
// end may have been moved into another network namespace: that one is
// found by the id the kernel gives it as seen from ours (the bridge
// end's link-netnsid) among the namespaces in sight, the named ones and
// those of running processes, as AddVNIC's takeover does, and the MTU is
// set there. Entering a namespace needs CAP_SYS_ADMIN, which overlayd
// drops after startup unless --keep-privileges; without it the error
// says so. (IFLA_TARGET_NETNSID, which would need only CAP_NET_ADMIN, is
// not honoured by this kernel for RTM_SETLINK.)
func setVNICMTU(port string, mtu int, ns *netnsSet) error {
	l, err := netlink.LinkByName(port)
	if err != nil {
		return fmt.Errorf("find the bridge port %s: %w", port, err)
	}
	a := l.Attrs()
	// The bridge end first when growing, last when shrinking: the
	// bridge never passes frames larger than the VNIC takes meanwhile.
	if mtu > a.MTU {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, port, err)
		}
	}
	if a.ParentIndex == 0 {
		return fmt.Errorf("the bridge port %s names no peer", port)
	}
	h := &netlink.Handle{} // this namespace
	if a.NetNsID >= 0 {
		if h, err = ns.handle(a.NetNsID); err != nil {
			return fmt.Errorf("the VNIC end of %s is in another network namespace: %w", port, err)
		}
		defer h.Close()
	}
	peer, err := h.LinkByIndex(a.ParentIndex)
	if err == nil {
		err = h.LinkSetMTU(peer, mtu)
	}
	if err != nil {
		return fmt.Errorf("set MTU %d on the VNIC end of %s: %w", mtu, port, err)
	}
	if mtu < a.MTU {
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fmt.Errorf("set MTU %d on %s: %w", mtu, port, err)
		}
	}
	return nil
}

// AddVNIC implements datapath.Overlay: a veth pair, the VNIC end named as
// the VNIC and free to move, the other end on the bridge.
func (ov *overlay) AddVNIC(cfg datapath.VNICConfig) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if cfg.VLAN != 0 {
		return fmt.Errorf("VLAN %d: this kernel has no 802.1Q devices and no bridge VLAN filtering, which the kernel data path would need; create the overlay with -p datapath=userspace", cfg.VLAN)
	}
	st := ov.st.Load()
	port := shortName("ovp", cfg.Name)
	v := &kvnic{port: port, mac: cfg.MAC, mtu: cfg.MTU, noSpoof: cfg.NoSpoof}
	if l, err := netlink.LinkByName(port); err == nil {
		if l.Attrs().Alias == aliasVNIC+cfg.Name && cfg.Adopt {
			return ov.addVNIC(cfg.Name, v)
		}
		if l.Attrs().Alias != aliasVNIC+cfg.Name {
			return fmt.Errorf("a network interface named %s exists and is not overlayd's", port)
		}
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete %s, left by an earlier VNIC %s: %w", port, cfg.Name, err)
		}
	}
	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return fmt.Errorf("a network interface named %s already exists", cfg.Name)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = st.cfg.MTU
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MTU: mtu, MasterIndex: st.br.Index}, PeerName: cfg.Name,
		PeerHardwareAddr: cfg.MAC[:]}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", port, cfg.Name, err)
	}
	fail := func(err error) error {
		if e := netlink.LinkDel(veth); e != nil {
			ov.log.Warn("cannot delete the half-made VNIC", "vnic", cfg.Name, "err", e)
		}
		return err
	}
	if err := noIPv6(port); err != nil {
		return fail(err)
	}
	for _, name := range []string{port, cfg.Name} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return fail(fmt.Errorf("find the new %s: %w", name, err))
		}
		if err := netlink.LinkSetAlias(l, aliasVNIC+cfg.Name); err != nil {
			return fail(fmt.Errorf("tag %s: %w", name, err))
		}
		if err := netlink.LinkSetMTU(l, mtu); err != nil {
			return fail(fmt.Errorf("set MTU %d on %s: %w", mtu, name, err))
		}
		// Only the bridge end is set up here: the VNIC end is its user's
		// to bring up, wherever it moves it, so that it says nothing into
		// the overlay from overlayd's namespace meanwhile.
		if name == port {
			if err := netlink.LinkSetUp(l); err != nil {
				return fail(fmt.Errorf("set %s up: %w", name, err))
			}
		}
	}
	if err := ov.addVNIC(cfg.Name, v); err != nil {
		return fail(err)
	}
	ov.log.Info("VNIC up", "vnic", cfg.Name, "mac", ether.Short(cfg.MAC), "bridge_port", port, "nospoof", cfg.NoSpoof)
	return nil
}

// addVNIC records a VNIC and installs its source MAC check. Called with
// ov.mu.
func (ov *overlay) addVNIC(name string, v *kvnic) error {
	ov.vnics[name] = v
	if err := ov.syncSpoof(); err != nil {
		delete(ov.vnics, name)
		return err
	}
	return nil
}

// SetNoSpoof implements datapath.Overlay.
func (ov *overlay) SetNoSpoof(name string, on bool) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	v, ok := ov.vnics[name]
	if !ok {
		return fmt.Errorf("no VNIC %s on this overlay", name)
	}
	v.noSpoof = on
	if err := ov.syncSpoof(); err != nil {
		v.noSpoof = !on
		return err
	}
	return nil
}

// RemoveVNIC implements datapath.Overlay: deleting the bridge end deletes
// the pair, wherever the VNIC end has been moved.
func (ov *overlay) RemoveVNIC(name string) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	v, ok := ov.vnics[name]
	if !ok {
		return fmt.Errorf("no VNIC %s on this overlay", name)
	}
	if l, err := netlink.LinkByName(v.port); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete %s: %w", v.port, err)
		}
	}
	delete(ov.vnics, name)
	if err := ov.syncSpoof(); err != nil {
		ov.log.Warn("cannot remove the deleted VNIC's source MAC check", "vnic", name, "err", err)
	}
	return nil
}

// Stats implements datapath.Overlay from the vxlan device's counters and
// the source MAC check's.
func (ov *overlay) Stats() datapath.Stats {
	var c datapath.Counters
	st := ov.st.Load()
	s := st.base.plus(vxCounters(st.vx.Index))
	c.Add(datapath.Encapsulated, s.txPackets)
	c.Add(datapath.EncapBytes, s.txBytes)
	c.Add(datapath.Decapsulated, s.rxPackets)
	c.Add(datapath.DecapBytes, s.rxBytes)
	// The vxlan driver counts a frame without a forwarding entry (an L2
	// miss) as a transmit drop.
	c.Add(datapath.DropNoTarget, s.txDropped)
	c.Add(datapath.DropSendError, s.txErrors)
	c.Add(datapath.DropMalformed, s.rxErrors)
	c.Add(datapath.DropNoVNIC, s.rxDropped)
	c.Add(datapath.DropSpoofed, ov.spoofed())
	return c.Snapshot(kernelCounters...)
}

// kernelCounters are the overlay counters the kernel path has (from the
// vxlan device and the spoofing rule); the others it does not report.
var kernelCounters = []datapath.Counter{
	datapath.Encapsulated, datapath.EncapBytes, datapath.Decapsulated, datapath.DecapBytes,
	datapath.DropNoTarget, datapath.DropSendError, datapath.DropMalformed, datapath.DropNoVNIC, datapath.DropSpoofed,
}

// Close implements datapath.Overlay: the kernel objects stay, carrying
// traffic to known destinations while overlayd is away.
func (ov *overlay) Close() error {
	close(ov.stop)
	<-ov.done
	ov.dp.mu.Lock()
	delete(ov.dp.overlays, ov.name)
	ov.dp.mu.Unlock()
	return nil
}

// Delete implements datapath.Deleter: every object of the overlay goes
// (delete-overlay).
func (ov *overlay) Delete() error {
	ov.Close()
	ov.mu.Lock()
	defer ov.mu.Unlock()
	ov.destroy(ov.st.Load())
	return nil
}

// Listeners implements datapath.DataPath.
func (dp *DataPath) Listeners() []datapath.Listener {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	type key struct {
		ns   string
		addr netip.AddrPort
	}
	byAddr := map[key][]string{}
	for _, ov := range dp.overlays {
		cfg := ov.st.Load().cfg
		k := key{cfg.Underlay.Path(), cfg.Listen}
		byAddr[k] = append(byAddr[k], ov.name)
	}
	var out []datapath.Listener
	for k, names := range byAddr {
		out = append(out, datapath.Listener{Addr: k.addr, NetNS: k.ns, Overlays: names, Stats: new(datapath.Counters).Snapshot(datapath.ListenerCounters...)})
	}
	return out
}

// SetTarget implements datapath.Overlay: a forwarding entry.
func (ov *overlay) SetTarget(mac ether.MAC, dest encap.Dest) {
	ov.fdbMu.RLock()
	defer ov.fdbMu.RUnlock()
	if err := fdbReplace(ov.st.Load().vx.Index, mac, dest); err != nil {
		ov.log.Warn("cannot install forwarding entry", "mac", ether.Long(mac), "dest", dest.String(), "err", err)
	}
}

// RemoveTarget implements datapath.Overlay. A vxlan forwarding entry is
// deleted by MAC and destination, so each of the MAC's is looked up.
func (ov *overlay) RemoveTarget(mac ether.MAC) {
	ov.fdbMu.RLock()
	defer ov.fdbMu.RUnlock()
	idx := ov.st.Load().vx.Index
	es, err := fdbList(idx)
	if err != nil {
		ov.log.Warn("cannot list forwarding entries", "err", err)
		return
	}
	for _, e := range es {
		if n := e.neigh; bytes.Equal(n.HardwareAddr, mac[:]) && n.IP != nil {
			// One gone meanwhile is what was wanted.
			if err := fdbDelete(idx, e); err != nil && !errors.Is(err, unix.ENOENT) {
				ov.log.Warn("cannot delete forwarding entry", "mac", ether.Long(mac), "err", err)
			}
		}
	}
}

// FlushTargets implements datapath.Overlay, keeping a point overlay's
// default entry.
func (ov *overlay) FlushTargets() {
	for _, t := range ov.Targets() {
		if t.MAC != (ether.MAC{}) {
			ov.RemoveTarget(t.MAC)
		}
	}
}

// Targets implements datapath.Overlay: the vxlan device's forwarding
// entries that carry a destination.
func (ov *overlay) Targets() []datapath.Target {
	st := ov.st.Load()
	es, err := fdbList(st.vx.Index)
	if err != nil {
		ov.log.Warn("cannot list forwarding entries", "err", err)
		return nil
	}
	var out []datapath.Target
	for _, e := range es {
		if t, ok := e.target(st.cfg.Listen.Port()); ok {
			if st.cfg.Group != nil && t.MAC == (ether.MAC{}) {
				continue // the group's: show-overlay -t shows it as *
			}
			out = append(out, t)
		}
	}
	return out
}

// SetNeighbor implements datapath.NeighborTable: the vxlan device answers ARP
// and NDP for ip from this entry (proxy mode).
func (ov *overlay) SetNeighbor(ip netip.Addr, mac ether.MAC) {
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	ov.fdbMu.RLock()
	defer ov.fdbMu.RUnlock()
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: ov.st.Load().vx.Index, Family: family, State: netlink.NUD_PERMANENT,
		IP: net.IP(ip.AsSlice()), HardwareAddr: net.HardwareAddr(mac[:])}); err != nil {
		ov.log.Warn("cannot install neighbour entry", "ip", ip.String(), "err", err)
	}
}

// SetFlood implements datapath.Flooder: the vxlan device's all-zeros
// entries, one per destination, to each of which the driver replicates
// broadcast and unknown frames.
func (ov *overlay) SetFlood(dests []encap.Dest) {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	ov.flood = slices.Clone(dests)
	ov.fdbMu.RLock()
	defer ov.fdbMu.RUnlock()
	ov.syncFlood(ov.st.Load())
}

// syncFlood makes st's device's all-zeros entries the flood list. Called
// with ov.mu.
func (ov *overlay) syncFlood(st *kstate) {
	if st.cfg.Point != nil || st.cfg.Group != nil {
		return // their all-zeros entry is attach's, or the driver's
	}
	es, err := fdbList(st.vx.Index)
	if err != nil {
		ov.log.Warn("cannot list forwarding entries for the flood list", "err", err)
		return
	}
	have := map[encap.Dest]bool{}
	for _, e := range es {
		t, ok := e.target(st.cfg.Listen.Port())
		if !ok || t.MAC != (ether.MAC{}) {
			continue
		}
		if slices.Contains(ov.flood, t.Dest) {
			have[t.Dest] = true
			continue
		}
		if err := fdbDelete(st.vx.Index, e); err != nil {
			ov.log.Warn("cannot remove a flood destination", "dest", t.Dest.String(), "err", err)
		}
	}
	for _, d := range ov.flood {
		if !have[d] {
			if err := fdbWrite(unix.NLM_F_CREATE|unix.NLM_F_APPEND, st.vx.Index, ether.MAC{}, d); err != nil {
				ov.log.Warn("cannot add a flood destination", "dest", d.String(), "err", err)
			}
		}
	}
}

// fdbReplace installs (or replaces) a forwarding entry mac -> dest. The
// all-zeros default entry (a point overlay's) cannot be replaced, only
// deleted and appended.
func fdbReplace(ifindex int, mac ether.MAC, dest encap.Dest) error {
	if mac != (ether.MAC{}) {
		return fdbWrite(unix.NLM_F_CREATE|unix.NLM_F_REPLACE, ifindex, mac, dest)
	}
	old, err := fdbList(ifindex)
	if err != nil {
		return fmt.Errorf("list forwarding entries: %w", err)
	}
	for _, o := range old {
		if !bytes.Equal(o.neigh.HardwareAddr, mac[:]) {
			continue
		}
		if t, ok := o.target(dest.Port); ok && t.Dest == dest {
			return nil // already there
		}
		if err := fdbDelete(ifindex, o); err != nil {
			return fmt.Errorf("delete the old default entry: %w", err)
		}
	}
	return fdbWrite(unix.NLM_F_CREATE|unix.NLM_F_APPEND, ifindex, mac, dest)
}

// watchMisses turns the vxlan device's miss notifications into lookups.
// The device is looked up in the current state for every notification,
// so misses of a device that Update has just put in place count.
func (ov *overlay) watchMisses() {
	defer close(ov.done)
	if cfg := ov.st.Load().cfg; cfg.Point != nil || cfg.Handler == nil {
		<-ov.stop
		return
	}
	for {
		if !ov.watchOnce() {
			return
		}
		// The subscription broke: under a storm of misses the socket's
		// buffer overflows (ENOBUFS) and the netlink library gives up.
		// The misses lost meanwhile come again with the MACs' next
		// frames, so a new subscription loses no lookup for good.
		ov.log.Warn("the kernel's miss notifications stopped; watching again")
		select {
		case <-ov.stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// missBuffer is the receive buffer asked for the miss notifications.
const missBuffer = 4 << 20

// watchOnce watches misses until overlayd stops it (false) or the
// subscription breaks (true).
func (ov *overlay) watchOnce() bool {
	done := make(chan struct{})
	ch := make(chan netlink.NeighUpdate, 1024)
	defer func() {
		close(done) // closes the subscription's socket
		// The library's reader may be blocked on a full ch: it ends,
		// closing ch, once it has sent what it holds.
		go func() {
			for range ch {
			}
		}()
	}()
	opts := netlink.NeighSubscribeOptions{
		ReceiveBufferSize: missBuffer, ReceiveBufferForceSize: true,
		ErrorCallback: func(err error) { ov.log.Debug("miss notifications", "err", err) },
	}
	err := netlink.NeighSubscribeWithOptions(ch, done, opts)
	if err != nil {
		// SO_RCVBUFFORCE needs CAP_NET_ADMIN in the initial user
		// namespace: inside another, ask for the buffer without force.
		opts.ReceiveBufferForceSize = false
		err = netlink.NeighSubscribeWithOptions(ch, done, opts)
	}
	if err != nil {
		ov.log.Error("cannot watch the kernel's misses; trying again in 1 s", "err", err)
		select {
		case <-ov.stop:
			return false
		case <-time.After(time.Second):
		}
		return true
	}
	for {
		select {
		case <-ov.stop:
			return false
		case u, ok := <-ch:
			if !ok {
				return true
			}
			st := ov.st.Load()
			if u.Type != unix.RTM_GETNEIGH || u.LinkIndex != st.vx.Index {
				continue
			}
			switch {
			case len(u.HardwareAddr) == 6 && u.IP == nil:
				st.cfg.Handler.Miss(ether.MAC(u.HardwareAddr), 0)
			case u.IP != nil:
				ip, _ := netip.AddrFromSlice(u.IP)
				st.cfg.Handler.MissIP(0, ip.Unmap())
			}
		}
	}
}

// Sweep deletes the kernel objects an earlier overlayd made that no
// overlay or VNIC claimed when this one restored its configuration: what
// was temporary, or deleted meanwhile. Objects overlayd did not make are
// never touched.
func (dp *DataPath) Sweep() {
	dp.mu.Lock()
	claimed := map[string]bool{}
	for _, ov := range dp.overlays {
		ov.mu.Lock()
		st := ov.st.Load()
		claimed[st.vx.Name] = true
		claimed[st.br.Name] = true
		for _, v := range ov.vnics {
			claimed[v.port] = true
		}
		// The chain may still hold the rules of VNICs that were not
		// restored: it is rebuilt from those that were.
		if err := ov.syncSpoof(); err != nil {
			dp.log.Warn("cannot bring the source MAC check up to date", "overlay", st.cfg.Name, "err", err)
		}
		ov.mu.Unlock()
	}
	dp.mu.Unlock()
	sweepNft(claimed, dp.log)
	links, err := netlink.LinkList()
	if err != nil {
		dp.log.Warn("cannot list network interfaces; objects left by an earlier overlayd stay", "err", err)
		return
	}
	for _, l := range links {
		a := l.Attrs()
		ours := strings.HasPrefix(a.Alias, aliasOverlay) || strings.HasPrefix(a.Alias, aliasVNIC)
		if !ours || claimed[a.Name] {
			continue
		}
		// A VNIC's own end, still here, goes with its bridge-side end.
		if strings.HasPrefix(a.Alias, aliasVNIC) && !strings.HasPrefix(a.Name, "ovp") {
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			dp.log.Warn("cannot remove a kernel object no overlay claims", "link", a.Name, "alias", a.Alias, "err", err)
		} else {
			dp.log.Info("removed a kernel object no overlay claims", "link", a.Name, "alias", a.Alias)
		}
	}
}

// noAddresses keeps IPv6 on but gives the interface no address of its
// own: the vxlan device needs IPv6 to answer neighbour solicitations from
// its table, but must not solicit routers or report multicast listening
// into the overlay.
func noAddresses(name string) error {
	return sysctl("/proc/sys/net/ipv6/conf/"+name+"/addr_gen_mode", "1")
}

// noIPv6 keeps IPv6 off the switch's own interfaces: an overlay is never
// given an address, and otherwise the bridge and its ports would send
// router solicitations and MLD reports of their own into the overlay.
func noIPv6(name string) error {
	return sysctl("/proc/sys/net/ipv6/conf/"+name+"/disable_ipv6", "1")
}

// sysctl writes a setting; a kernel without IPv6 has none to write.
func sysctl(path, value string) error {
	err := os.WriteFile(path, []byte(value), 0)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("set %s: %w", path, err)
	}
	return nil
}

// netnsSet finds network namespaces by the id ours gives them. It looks
// through the namespaces in sight once, on first use, so that an MTU
// change over many moved VNICs does not scan /proc for each.
type netnsSet struct {
	scanned bool
	byID    map[int]netns.NsHandle
	path    map[int]string
}

// handle opens a netlink handle in the network namespace that has id
// nsid in ours.
func (s *netnsSet) handle(nsid int) (*netlink.Handle, error) {
	if !s.scanned {
		s.scan()
	}
	ns, ok := s.byID[nsid]
	if !ok {
		return nil, fmt.Errorf("no network namespace with id %d in sight (neither in /run/netns nor of a running process)", nsid)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("enter it (%s; overlayd needs CAP_SYS_ADMIN, kept with --keep-privileges, or set the MTU where the VNIC lives): %w", s.path[nsid], err)
	}
	return h, nil
}

// scan opens each network namespace in sight, the named ones and those
// of running processes, once each, keyed by its id in ours.
func (s *netnsSet) scan() {
	s.scanned = true
	s.byID = map[int]netns.NsHandle{}
	s.path = map[int]string{}
	paths, _ := filepath.Glob("/run/netns/*")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	seen := map[uint64]bool{}
	for _, p := range append(paths, procs...) {
		ns, err := netns.GetFromPath(p)
		if err != nil {
			continue // gone meanwhile, or not ours to see
		}
		var st unix.Stat_t
		if unix.Fstat(int(ns), &st) != nil || seen[st.Ino] {
			ns.Close()
			continue
		}
		seen[st.Ino] = true
		id, err := netlink.GetNetNsIdByFd(int(ns))
		if err != nil || id < 0 {
			ns.Close()
			continue
		}
		if _, dup := s.byID[id]; dup {
			ns.Close()
			continue
		}
		s.byID[id] = ns
		s.path[id] = p
	}
}

// Close closes the namespaces the set holds open.
func (s *netnsSet) Close() {
	for _, ns := range s.byID {
		ns.Close()
	}
	s.byID = nil
}
