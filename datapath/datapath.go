// Package datapath is the boundary between the control plane (package
// overlay: overlays, properties, the lookup engine and its plugins) and
// whatever moves frames. Everything above it speaks only these types, and
// nothing above it knows which data path runs.
//
//	overlay.Manager ──CreateOverlay(OverlayConfig)──▶ DataPath ─▶ Overlay
//	   (config)        Update AddVNIC RemoveVNIC SetNoSpoof Stats Close
//	overlay engine  ──SetTarget RemoveTarget FlushTargets Targets──▶ Overlay
//	   (lookups)      and, where Discover finds them (Capabilities):
//	                    Holder         Drop            frames held for a lookup
//	                    DropTable      SetDrop         an operator's drop entries
//	                    FrameInjector  Inject Resend   proxy answers as frames
//	                    NeighborTable  SetNeighbor     answers ARP/NDP itself
//	                    DHCPRedirector SetDHCPRedirect redirects DHCPv4 itself
//	                    Flooder        SetFlood        replicates floods (EVPN)
//	                    Deleter        Delete          objects outliving Close
//	Overlay ──Handler: Miss (all), Proxy (FrameInjector), MissIP (NeighborTable)──▶ engine
//
// The engine is the one writer of an overlay's target table and the one
// owner of its lookups: search plugins answer it (pull) or tell it what
// they learnt (push), and it passes answers to whichever data path runs,
// in the form that data path takes. A data path implements the core
// Overlay interface and declares a capability by implementing its
// interface; Discover finds them once, when the overlay is created, and
// nothing else type-asserts.
//
// Data paths register by name (Register, from init), as plugins do:
// userspace (TAP devices and UDP sockets, in Go), kernel (the Linux vxlan
// driver and a bridge) and memory (carries nothing; the core's tests run
// on it). Adding one touches its own folder and the import line that
// links it in (package plugins).
package datapath

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/proxy"
	"overlaynet/registry"
	"overlaynet/underlayns"
)

// OverlayConfig is what a data path needs to carry one overlay.
type OverlayConfig struct {
	// Name is the overlay's name, for logs and errors.
	Name string
	// VNetID is the virtual network id written into every packet.
	VNetID uint32
	// Encap frames packets on the underlay.
	Encap encap.Codec
	// Listen is the underlay address to receive on. Several overlays may
	// share one; they are told apart by VNetID.
	Listen netip.AddrPort
	// Underlay is the network namespace the underlay sockets (or the
	// kernel's vxlan device's) live in; nil for overlayd's own. It is set
	// at creation: Update never changes it.
	Underlay *underlayns.NS
	// MTU is the largest frame payload (without the Ethernet header) the
	// overlay carries; larger frames are dropped and counted.
	MTU int
	// Point, when set, is the one destination of every non-local frame
	// (point mode). Nil means dynamic mode: destinations per MAC, from
	// the target table, filled through Handler.
	Point *encap.Dest
	// Handler receives misses and proxy frames in dynamic mode.
	Handler Handler
	// Floods marks a dynamic overlay whose plugin gives a flood list
	// (Flooder: EVPN): ARP and NDP requests are flooded to it as well as
	// answered where an answer is known, since the owner of an address
	// may be known to nobody before it speaks. A data path that answers
	// them itself (NeighborTable) must not swallow the unanswered ones.
	Floods bool
	// Group, when set, is a multicast overlay's (neither point nor
	// dynamic): frames without a learned destination go to the group,
	// and destinations are learned from the frames received.
	Group *GroupConfig
}

// GroupConfig is a multicast overlay's, as the Linux vxlan driver's group
// mode: broadcast, multicast and unknown-unicast frames go to a multicast
// group that every member's underlay interface joins (the interface of
// the listen address: IGMP for IPv4, MLD for IPv6), and each remote MAC is
// learned from received frames (the outer source address, on the group's
// port).
type GroupConfig struct {
	// Dest is the group and its port (every member's listen port).
	Dest encap.Dest
	// Ageing is how long a learned destination lasts without a frame
	// from it.
	Ageing time.Duration
	// MaxLearned bounds the learned destinations; more are not learned
	// (and their frames go to the group) until some age out.
	MaxLearned int
}

// Handler is told what a data path cannot decide alone. Its methods are
// called on the frame path: they must start work and return at once.
type Handler interface {
	// Miss reports a unicast frame for a MAC with no target entry. A
	// Holder keeps frames for it (a bounded queue) until the answer
	// comes, SetTarget or Drop, and reports one miss per MAC until then;
	// the engine answers every miss, within its lookup timeout.
	Miss(mac ether.MAC, vlan uint16)
	// Proxy hands up a broadcast frame that a dynamic overlay answers
	// instead of flooding it (ARP request, neighbour solicitation, DHCP
	// broadcast); the answer comes back through FrameInjector. frame is
	// an untagged copy the handler owns.
	Proxy(vlan uint16, kind proxy.Kind, frame []byte)
	// MissIP reports an overlay address whose MAC a guest asked for, on a
	// NeighborTable data path; the answer comes back through SetNeighbor.
	MissIP(vlan uint16, ip netip.Addr)
}

// TargetState is the state of a target table entry.
type TargetState int

// Target states.
const (
	TargetValid   TargetState = iota // frames go to Dest
	TargetDrop                       // set by an operator: frames are dropped
	TargetPending                    // a lookup is outstanding; frames are held
)

// Target is a target table entry.
type Target struct {
	MAC   ether.MAC
	Dest  encap.Dest
	State TargetState
}

// VNICConfig describes a virtual NIC on an overlay.
type VNICConfig struct {
	// Name is the Linux interface name.
	Name string
	// MAC is the VNIC's address; frames to it are delivered to it.
	MAC ether.MAC
	// VLAN is the VLAN id inside the overlay, 0 for untagged. The VNIC's
	// user sends and receives untagged frames; the tag rides inside the
	// encapsulated frame.
	VLAN uint16
	// MTU is the VNIC's MTU, at most the overlay's; 0 means the
	// overlay's, following it when it changes.
	MTU int
	// NoSpoof drops (and counts, drop-spoofed) every frame the VNIC's
	// user sends from a source MAC other than MAC, as illumos'
	// protection=mac-nospoof does. The control plane turns it on unless
	// the operator said otherwise.
	NoSpoof bool
	// Persistent VNICs outlive overlayd, so that guests keep their
	// interface across a restart; Close leaves them, RemoveVNIC deletes.
	Persistent bool
	// Adopt takes over a persistent VNIC of that name left by an earlier
	// overlayd, wherever it now is, instead of creating one.
	Adopt bool
}

// DataPath carries overlays. Implementations are safe for concurrent use.
// One that holds resources of its own (threads, sockets) beyond its
// overlays' implements io.Closer; one that can find objects an earlier
// overlayd left behind implements Sweeper.
type DataPath interface {
	// CreateOverlay starts carrying an overlay. It fails, naming the
	// address, when the listen address cannot be bound.
	CreateOverlay(cfg OverlayConfig) (Overlay, error)
	// Listeners reports each underlay address being listened on, with
	// the counters that cannot be charged to one overlay (packets with an
	// unknown VNI, malformed headers). The control plane keeps two data
	// paths off one port with it: each opens its own sockets.
	Listeners() []Listener
}

// Sweeper is a DataPath whose objects outlive overlayd (the kernel's).
type Sweeper interface {
	// Sweep removes what an earlier overlayd made that no overlay or
	// VNIC claimed once the configuration was restored.
	Sweep()
}

// Overlay is one overlay carried by a data path: the core every data path
// has. Optional capabilities are the interfaces below, found by Discover.
type Overlay interface {
	// Update applies a changed configuration (set-linkprop). On error the
	// old configuration stays in force.
	//
	// When the MTU changed and some VNICs that follow it could not take
	// it (an interface moved into a network namespace overlayd may not
	// enter), Update makes the change all the same and returns an
	// *MTUError naming them.
	Update(cfg OverlayConfig) error
	// AddVNIC creates a VNIC and starts switching its frames.
	AddVNIC(cfg VNICConfig) error
	// RemoveVNIC deletes a VNIC, persistent or not.
	RemoveVNIC(name string) error
	// SetNoSpoof turns a VNIC's source MAC check (VNICConfig.NoSpoof)
	// on or off, at once.
	SetNoSpoof(name string, on bool) error
	// Stats returns the counters the data path keeps for the overlay.
	// A counter of OverlayCounters that is absent is one it does not
	// keep, not a zero.
	Stats() Stats

	// The target table of a dynamic overlay (point-mode overlays have
	// none), written by the lookup engine only. SetTarget makes a valid
	// entry; a Holder then sends the frames held for it, before any
	// newer frame to that MAC. RemoveTarget and FlushTargets delete
	// answers but leave lookups in flight alone.
	SetTarget(mac ether.MAC, dest encap.Dest)
	RemoveTarget(mac ether.MAC)
	FlushTargets()
	Targets() []Target

	// Close stops carrying the overlay and lets go of its VNICs: the
	// persistent ones stay for the next overlayd, the others go.
	Close() error
}

// Holder is an overlay that holds the frames for a MAC while its lookup
// runs (the userspace path's; the kernel drops them).
type Holder interface {
	// Drop answers a lookup with "no destination": the held frames are
	// dropped and counted, and so is every frame for mac until ttl has
	// passed (a negative entry), so that a flood of frames to an unknown
	// MAC costs one lookup per ttl, not one per frame.
	Drop(mac ether.MAC, ttl time.Duration)
}

// DropTable is an overlay that keeps an operator's drop entries
// (modify-overlay -s <mac>=drop).
type DropTable interface {
	// SetDrop makes mac's entry "drop" until it is removed.
	SetDrop(mac ether.MAC)
}

// FrameInjector is an overlay that hands proxy frames up (Handler.Proxy)
// and takes the answers as frames.
type FrameInjector interface {
	// Inject delivers an untagged frame to the local VNICs on vlan as if
	// it came from the underlay (proxy replies, gratuitous ARP).
	Inject(vlan uint16, frame []byte)
	// Resend sends an untagged frame through the overlay as if a VNIC on
	// vlan had sent it (a DHCP broadcast redirected to a unicast MAC).
	Resend(vlan uint16, frame []byte)
}

// NeighborTable is an overlay that answers ARP and NDP itself, from a
// table (the kernel's vxlan proxy mode), asking through Handler.MissIP.
type NeighborTable interface {
	// SetNeighbor records that the overlay address ip is at mac.
	SetNeighbor(ip netip.Addr, mac ether.MAC)
}

// DHCPRedirector is an overlay that redirects DHCPv4 broadcasts itself
// (the kernel path's netfilter rules) rather than handing them up.
type DHCPRedirector interface {
	// SetDHCPRedirect sends client's DHCPv4 broadcasts to server.
	SetDHCPRedirect(client, server ether.MAC)
}

// Flooder is a dynamic overlay that replicates frames to a flood list
// (ingress replication, as EVPN's type-3 routes give one): broadcast,
// multicast and unknown-unicast frames go to every destination on it,
// beside what the proxy answers. An empty list floods nothing (svp's,
// files' overlays: they never flood).
type Flooder interface {
	// SetFlood replaces the flood list.
	SetFlood(dests []encap.Dest)
}

// Deleter is an overlay whose objects outlive Close (kernel devices that
// carry traffic while overlayd is away).
type Deleter interface {
	// Delete closes the overlay and removes its objects (delete-overlay).
	Delete() error
}

// Capabilities are an overlay's optional interfaces, each nil when the
// data path does not have it.
type Capabilities struct {
	Hold      Holder
	Drops     DropTable
	Frames    FrameInjector
	Neighbors NeighborTable
	DHCP      DHCPRedirector
	Flood     Flooder
	Delete    Deleter
}

// Discover finds an overlay's capabilities: the one place that asks.
func Discover(o Overlay) Capabilities {
	var c Capabilities
	c.Hold, _ = o.(Holder)
	c.Drops, _ = o.(DropTable)
	c.Frames, _ = o.(FrameInjector)
	c.Neighbors, _ = o.(NeighborTable)
	c.DHCP, _ = o.(DHCPRedirector)
	c.Flood, _ = o.(Flooder)
	c.Delete, _ = o.(Deleter)
	return c
}

// Env is what a data path is made with: overlayd's identity and its
// command-line tuning. A data path reads what applies to it.
type Env struct {
	Log *slog.Logger
	// Owner tags the objects a data path makes that outlive overlayd,
	// so that it takes over only its own after a restart: overlayd gives
	// the identity of its state directory.
	Owner string
	// Offloads, Workers and Sched tune the userspace data path
	// (userspace.Options).
	Offloads bool
	Workers  int
	Sched    string
}

// Driver is a registered data path.
type Driver struct {
	// Name is the value of the datapath property, e.g. "userspace".
	Name string
	// Help is one line for the property's help.
	Help string
	// New makes the data path of one overlayd.
	New func(env Env) (DataPath, error)
}

var drivers = registry.New[Driver]("datapath")

// Register adds a data path; data paths call it from init. A duplicate
// name is a programming error and panics.
func Register(d Driver) { drivers.Register(d.Name, d) }

// Lookup returns the registered data path with that name.
func Lookup(name string) (Driver, bool) { return drivers.Lookup(name) }

// Names returns the registered data path names, sorted.
func Names() []string { return drivers.Names() }

// Listener describes one underlay listen address.
type Listener struct {
	Addr netip.AddrPort
	// NetNS is the underlay's network namespace, "" for overlayd's own.
	NetNS    string
	Overlays []string
	Stats    Stats
}

// Stat is one named counter.
type Stat struct {
	Name  string `json:"name"`
	Value uint64 `json:"value"`
}

// Stats is an ordered list of counters.
type Stats []Stat

// Get returns the value of the named counter, 0 if absent.
func (s Stats) Get(name string) uint64 {
	for _, st := range s {
		if st.Name == name {
			return st.Value
		}
	}
	return 0
}

// MTUError reports the VNICs whose interfaces kept their MTU when their
// overlay's changed (Overlay.Update): the change itself was made.
type MTUError struct {
	MTU   int // the overlay's new MTU
	VNICs []VNICMTUError
}

// VNICMTUError is one VNIC of an MTUError, or one of the overlay's own
// devices (Device set; VNIC then names the device).
type VNICMTUError struct {
	VNIC   string
	Device bool
	Kept   int // the MTU its interface still has, 0 if not known
	Err    error
}

// Error lists, by name, what kept which MTU and why:
// "VNIC vnic1 keeps mtu 1400: ...; the overlay's device X keeps ...".
func (e *MTUError) Error() string {
	vs := slices.Clone(e.VNICs)
	slices.SortFunc(vs, func(a, b VNICMTUError) int { return strings.Compare(a.VNIC, b.VNIC) })
	var b strings.Builder
	for i, v := range vs {
		if i > 0 {
			b.WriteString("; ")
		}
		if v.Device {
			fmt.Fprintf(&b, "the overlay's device %s", v.VNIC)
		} else {
			fmt.Fprintf(&b, "VNIC %s", v.VNIC)
		}
		if v.Kept != 0 {
			fmt.Fprintf(&b, " keeps mtu %d", v.Kept)
		}
		fmt.Fprintf(&b, ": %v", v.Err)
	}
	return b.String()
}

// Open makes every registered data path for one overlayd, by name. On
// error, those already made are closed.
func Open(env Env) (map[string]DataPath, error) {
	dps := map[string]DataPath{}
	for _, name := range Names() {
		d, _ := Lookup(name)
		dp, err := d.New(env)
		if err != nil {
			for _, made := range dps {
				if c, ok := made.(io.Closer); ok {
					c.Close()
				}
			}
			return nil, fmt.Errorf("data path %s: %w", name, err)
		}
		dps[name] = dp
	}
	return dps, nil
}
