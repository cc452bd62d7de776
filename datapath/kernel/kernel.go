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
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/encap"
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

var _ datapath.DataPath = (*DataPath)(nil)

// shortName derives a stable interface name (at most 15 characters) from
// an overlay or VNIC name.
func shortName(prefix, name string) string {
	h := fnv.New32a()
	h.Write([]byte(name))
	return fmt.Sprintf("%s%08x", prefix, h.Sum32())
}

// overlay is one overlay's vxlan device and bridge.
type overlay struct {
	dp   *DataPath
	log  *slog.Logger
	name string

	mu    sync.Mutex
	cfg   datapath.OverlayConfig
	vx    *netlink.Vxlan
	br    *netlink.Bridge
	vnics map[string]string // VNIC name -> bridge-side veth name
	dhcp  map[datapath.MAC]datapath.MAC
	stop  chan struct{}
	done  chan struct{}
}

// CreateOverlay implements datapath.DataPath. Objects left by an earlier
// overlayd for this overlay are taken over when they match, and replaced
// when they do not.
func (dp *DataPath) CreateOverlay(cfg datapath.OverlayConfig) (datapath.Overlay, error) {
	if cfg.Encap.Name() != "vxlan" {
		return nil, fmt.Errorf("the kernel data path carries only vxlan, not %s", cfg.Encap.Name())
	}
	ov := &overlay{dp: dp, name: cfg.Name, cfg: cfg, vnics: map[string]string{},
		log: dp.log.With("overlay", cfg.Name), stop: make(chan struct{}), done: make(chan struct{})}
	if err := ov.build(); err != nil {
		ov.destroy()
		return nil, err
	}
	dp.mu.Lock()
	dp.overlays[cfg.Name] = ov
	dp.mu.Unlock()
	go ov.watchMisses()
	return ov, nil
}

// build makes (or takes over) the vxlan device and the bridge.
func (ov *overlay) build() error {
	cfg := ov.cfg
	vxName, brName := shortName("ovx", cfg.Name), shortName("ovb", cfg.Name)
	if l, err := netlink.LinkByName(vxName); err == nil {
		if vx, ok := l.(*netlink.Vxlan); ok && l.Attrs().Alias == aliasOverlay+cfg.Name && matches(vx, cfg) {
			ov.vx = vx
		} else if l.Attrs().Alias == aliasOverlay+cfg.Name {
			netlink.LinkDel(l) // ours, but from another configuration
		} else {
			return fmt.Errorf("a network interface named %s exists and is not overlayd's", vxName)
		}
	}
	if ov.vx == nil {
		vx := &netlink.Vxlan{
			LinkAttrs: netlink.LinkAttrs{Name: vxName, MTU: cfg.MTU},
			VxlanId:   int(cfg.VNetID),
			SrcAddr:   net.IP(cfg.Listen.Addr().AsSlice()),
			Port:      int(cfg.Listen.Port()),
			Learning:  false,
			L2miss:    cfg.Point == nil,
			L3miss:    cfg.Point == nil,
			Proxy:     cfg.Point == nil,
		}
		if err := netlink.LinkAdd(vx); err != nil {
			return fmt.Errorf("create vxlan device %s (vnetid %d, %s): %w", vxName, cfg.VNetID, cfg.Listen, err)
		}
		l, err := netlink.LinkByName(vxName)
		if err != nil {
			return err
		}
		ov.vx = l.(*netlink.Vxlan)
		if err := netlink.LinkSetAlias(ov.vx, aliasOverlay+cfg.Name); err != nil {
			return err
		}
	}
	if l, err := netlink.LinkByName(brName); err == nil {
		br, ok := l.(*netlink.Bridge)
		if !ok || l.Attrs().Alias != aliasOverlay+cfg.Name {
			return fmt.Errorf("a network interface named %s exists and is not overlayd's", brName)
		}
		ov.br = br
	} else {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: brName, MTU: cfg.MTU}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge %s: %w", brName, err)
		}
		l, err := netlink.LinkByName(brName)
		if err != nil {
			return err
		}
		ov.br = l.(*netlink.Bridge)
		if err := netlink.LinkSetAlias(ov.br, aliasOverlay+cfg.Name); err != nil {
			return err
		}
	}
	noIPv6(ov.br.Name)
	noAddresses(ov.vx.Name)
	if err := netlink.LinkSetMaster(ov.vx, ov.br); err != nil {
		return fmt.Errorf("attach %s to %s: %w", vxName, brName, err)
	}
	for _, l := range []netlink.Link{ov.vx, ov.br} {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	if cfg.Point != nil {
		if err := fdbReplace(ov.vx.Index, net.HardwareAddr{0, 0, 0, 0, 0, 0}, *cfg.Point); err != nil {
			return fmt.Errorf("point %s: %w", cfg.Point, err)
		}
	} else if err := ov.syncDHCP(); err != nil {
		// Server replies need the chain even before any redirection.
		ov.log.Warn("cannot install DHCP redirection; DHCP over this overlay will not work", "err", err)
	}
	return nil
}

// matches reports whether an existing vxlan device is what cfg asks for.
func matches(vx *netlink.Vxlan, cfg datapath.OverlayConfig) bool {
	return vx.VxlanId == int(cfg.VNetID) && vx.Port == int(cfg.Listen.Port()) &&
		vx.SrcAddr.Equal(net.IP(cfg.Listen.Addr().AsSlice())) && vx.L2miss == (cfg.Point == nil)
}

// destroy removes the overlay's objects.
func (ov *overlay) destroy() {
	if ov.br != nil {
		ov.deleteDHCP()
	}
	if ov.vx != nil {
		netlink.LinkDel(ov.vx)
	}
	if ov.br != nil {
		netlink.LinkDel(ov.br)
	}
}

// Update implements datapath.Overlay: the kernel objects are rebuilt
// when what they were made with changes.
func (ov *overlay) Update(cfg datapath.OverlayConfig) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	old := ov.cfg
	if cfg.VNetID != old.VNetID || cfg.Listen != old.Listen || (cfg.Point == nil) != (old.Point == nil) {
		netlink.LinkDel(ov.vx)
		ov.vx = nil
		ov.cfg = cfg
		if err := ov.build(); err != nil {
			ov.cfg = old
			ov.build()
			return err
		}
	}
	if cfg.MTU != old.MTU {
		netlink.LinkSetMTU(ov.vx, cfg.MTU)
	}
	if cfg.Point != nil {
		if err := fdbReplace(ov.vx.Index, net.HardwareAddr{0, 0, 0, 0, 0, 0}, *cfg.Point); err != nil {
			return err
		}
	}
	ov.cfg = cfg
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
	port := shortName("ovp", cfg.Name)
	if l, err := netlink.LinkByName(port); err == nil {
		if l.Attrs().Alias == aliasVNIC+cfg.Name && cfg.Adopt {
			ov.vnics[cfg.Name] = port
			return nil
		}
		if l.Attrs().Alias != aliasVNIC+cfg.Name {
			return fmt.Errorf("a network interface named %s exists and is not overlayd's", port)
		}
		netlink.LinkDel(l)
	}
	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return fmt.Errorf("a network interface named %s already exists", cfg.Name)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = ov.cfg.MTU
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MTU: mtu, MasterIndex: ov.br.Index}, PeerName: cfg.Name,
		PeerHardwareAddr: cfg.MAC}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", port, cfg.Name, err)
	}
	cleanup := func() { netlink.LinkDel(veth) }
	noIPv6(port)
	for _, name := range []string{port, cfg.Name} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			cleanup()
			return err
		}
		netlink.LinkSetAlias(l, aliasVNIC+cfg.Name)
		netlink.LinkSetMTU(l, mtu)
		// Only the bridge end is set up here: the VNIC end is its user's
		// to bring up, wherever it moves it, so that it says nothing into
		// the overlay from overlayd's namespace meanwhile.
		if name == port {
			if err := netlink.LinkSetUp(l); err != nil {
				cleanup()
				return fmt.Errorf("set %s up: %w", name, err)
			}
		}
	}
	ov.vnics[cfg.Name] = port
	ov.log.Info("VNIC up", "vnic", cfg.Name, "mac", cfg.MAC.String(), "bridge_port", port)
	return nil
}

// RemoveVNIC implements datapath.Overlay: deleting the bridge end deletes
// the pair, wherever the VNIC end has been moved.
func (ov *overlay) RemoveVNIC(name string) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	port, ok := ov.vnics[name]
	if !ok {
		return fmt.Errorf("no VNIC %s on this overlay", name)
	}
	if l, err := netlink.LinkByName(port); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("delete %s: %w", port, err)
		}
	}
	delete(ov.vnics, name)
	return nil
}

// Stats implements datapath.Overlay from the vxlan device's counters.
func (ov *overlay) Stats() datapath.Stats {
	var c datapath.Counters
	if l, err := netlink.LinkByIndex(ov.vx.Index); err == nil && l.Attrs().Statistics != nil {
		st := l.Attrs().Statistics
		c.Add(datapath.Encapsulated, st.TxPackets)
		c.Add(datapath.EncapBytes, st.TxBytes)
		c.Add(datapath.Decapsulated, st.RxPackets)
		c.Add(datapath.DecapBytes, st.RxBytes)
		// The vxlan driver counts a frame without a forwarding entry
		// (an L2 miss) as a transmit drop.
		c.Add(datapath.DropNoTarget, st.TxDropped)
		c.Add(datapath.DropSendError, st.TxErrors)
		c.Add(datapath.DropMalformed, st.RxErrors)
		c.Add(datapath.DropNoVNIC, st.RxDropped)
	}
	return c.Snapshot(datapath.OverlayCounters...)
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

// Delete removes every object of the overlay (delete-overlay).
func (ov *overlay) Delete() error {
	ov.Close()
	ov.destroy()
	return nil
}

// Listeners implements datapath.DataPath.
func (dp *DataPath) Listeners() []datapath.Listener {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	byAddr := map[netip.AddrPort][]string{}
	for _, ov := range dp.overlays {
		byAddr[ov.cfg.Listen] = append(byAddr[ov.cfg.Listen], ov.name)
	}
	var out []datapath.Listener
	for a, names := range byAddr {
		out = append(out, datapath.Listener{Addr: a, Overlays: names, Stats: new(datapath.Counters).Snapshot(datapath.ListenerCounters...)})
	}
	return out
}

// Close implements datapath.DataPath.
func (dp *DataPath) Close() error { return nil }

// SetTarget implements datapath.Overlay: a forwarding entry.
func (ov *overlay) SetTarget(mac datapath.MAC, dest encap.Dest) {
	if err := fdbReplace(ov.vx.Index, net.HardwareAddr(mac[:]), dest); err != nil {
		ov.log.Warn("cannot install forwarding entry", "mac", net.HardwareAddr(mac[:]).String(), "dest", dest.String(), "err", err)
	}
}

// DropTarget implements datapath.Overlay. The kernel drops frames for
// MACs without an entry anyway; an operator's drop entry is not
// supported here.
func (ov *overlay) DropTarget(mac datapath.MAC, admin bool) {
	if admin {
		ov.log.Warn("drop entries are not supported on the kernel data path; frames to an unknown MAC are dropped anyway", "mac", net.HardwareAddr(mac[:]).String())
	}
}

// RemoveTarget implements datapath.Overlay. A vxlan forwarding entry is
// deleted by MAC and destination, so each of the MAC's is looked up.
func (ov *overlay) RemoveTarget(mac datapath.MAC) {
	es, err := fdbList(ov.vx.Index)
	if err != nil {
		return
	}
	for _, e := range es {
		if n := e.neigh; bytes.Equal(n.HardwareAddr, mac[:]) && n.IP != nil {
			if err := fdbDelete(ov.vx.Index, e); err != nil {
				ov.log.Warn("cannot delete forwarding entry", "mac", net.HardwareAddr(mac[:]).String(), "err", err)
			}
		}
	}
}

// FlushTargets implements datapath.Overlay, keeping a point overlay's
// default entry.
func (ov *overlay) FlushTargets() {
	for _, t := range ov.Targets() {
		if t.MAC != (datapath.MAC{}) {
			ov.RemoveTarget(t.MAC)
		}
	}
}

// Targets implements datapath.Overlay: the vxlan device's forwarding
// entries that carry a destination.
func (ov *overlay) Targets() []datapath.Target {
	es, err := fdbList(ov.vx.Index)
	if err != nil {
		return nil
	}
	var out []datapath.Target
	for _, e := range es {
		if t, ok := e.target(ov.cfg.Listen.Port()); ok {
			out = append(out, t)
		}
	}
	return out
}

// SetNeighbor implements datapath.Overlay: the vxlan device answers ARP
// and NDP for ip from this entry (proxy mode).
func (ov *overlay) SetNeighbor(ip netip.Addr, mac datapath.MAC) {
	family := unix.AF_INET
	if ip.Is6() {
		family = unix.AF_INET6
	}
	if err := netlink.NeighSet(&netlink.Neigh{LinkIndex: ov.vx.Index, Family: family, State: netlink.NUD_PERMANENT,
		IP: net.IP(ip.AsSlice()), HardwareAddr: net.HardwareAddr(mac[:])}); err != nil {
		ov.log.Warn("cannot install neighbour entry", "ip", ip.String(), "err", err)
	}
}

// Inject implements datapath.Overlay; not supported on this data path.
func (ov *overlay) Inject(uint16, []byte) {}

// Resend implements datapath.Overlay; not supported on this data path.
func (ov *overlay) Resend(uint16, []byte) {}

// fdbReplace installs (or replaces) a forwarding entry mac -> dest. The
// all-zeros default entry (a point overlay's) cannot be replaced, only
// deleted and appended.
func fdbReplace(ifindex int, mac net.HardwareAddr, dest encap.Dest) error {
	if !bytes.Equal(mac, make([]byte, 6)) {
		return fdbWrite(unix.NLM_F_CREATE|unix.NLM_F_REPLACE, ifindex, mac, dest)
	}
	if old, err := fdbList(ifindex); err == nil {
		for _, o := range old {
			if !bytes.Equal(o.neigh.HardwareAddr, mac) {
				continue
			}
			if t, ok := o.target(dest.Port); ok && t.Dest == dest {
				return nil // already there
			}
			fdbDelete(ifindex, o)
		}
	}
	return fdbWrite(unix.NLM_F_CREATE|unix.NLM_F_APPEND, ifindex, mac, dest)
}

// watchMisses turns the vxlan device's miss notifications into lookups.
func (ov *overlay) watchMisses() {
	defer close(ov.done)
	if ov.cfg.Point != nil || ov.cfg.Handler == nil {
		<-ov.stop
		return
	}
	ch := make(chan netlink.NeighUpdate, 1024)
	if err := netlink.NeighSubscribe(ch, ov.stop); err != nil {
		ov.log.Error("cannot watch the kernel's misses: lookups will not happen", "err", err)
		<-ov.stop
		return
	}
	for {
		select {
		case <-ov.stop:
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			if u.Type != unix.RTM_GETNEIGH || u.LinkIndex != ov.vx.Index {
				continue
			}
			switch {
			case len(u.HardwareAddr) == 6 && u.IP == nil:
				ov.cfg.Handler.Miss(datapath.MAC(u.HardwareAddr), 0)
			case u.IP != nil:
				ip, _ := netip.AddrFromSlice(u.IP)
				ov.cfg.Handler.MissIP(0, ip.Unmap())
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
		claimed[ov.vx.Name] = true
		claimed[ov.br.Name] = true
		for _, port := range ov.vnics {
			claimed[port] = true
		}
		ov.mu.Unlock()
	}
	dp.mu.Unlock()
	sweepDHCP(claimed, dp.log)
	links, err := netlink.LinkList()
	if err != nil {
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
		if err := netlink.LinkDel(l); err == nil {
			dp.log.Info("removed a kernel object no overlay claims", "link", a.Name, "alias", a.Alias)
		}
	}
}

// noAddresses keeps IPv6 on but gives the interface no address of its
// own: the vxlan device needs IPv6 to answer neighbour solicitations from
// its table, but must not solicit routers or report multicast listening
// into the overlay.
func noAddresses(name string) {
	os.WriteFile("/proc/sys/net/ipv6/conf/"+name+"/addr_gen_mode", []byte("1"), 0)
}

// noIPv6 keeps IPv6 off the switch's own interfaces: an overlay is never
// given an address, and otherwise the bridge and its ports would send
// router solicitations and MLD reports of their own into the overlay.
func noIPv6(names ...string) {
	for _, n := range names {
		os.WriteFile("/proc/sys/net/ipv6/conf/"+n+"/disable_ipv6", []byte("1"), 0)
	}
}
