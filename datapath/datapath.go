// Package datapath is the boundary between the control plane (overlays,
// properties, plugins, the admin API) and whatever moves frames: the
// userspace data path (TAP devices and UDP sockets, in Go) or, later, the
// Linux kernel's vxlan driver. Everything above this package speaks only
// these types; nothing above it knows which data path runs.
package datapath

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"overlaynet/encap"
	"overlaynet/proxy"
)

// OverlayConfig is what a data path needs to carry one overlay.
type OverlayConfig struct {
	// Name is the overlay's name, for logs and errors.
	Name string
	// VNetID is the virtual network id written into every packet.
	VNetID uint32
	// Encap frames packets on the underlay.
	Encap encap.Plugin
	// Listen is the underlay address to receive on. Several overlays may
	// share one; they are told apart by VNetID.
	Listen netip.AddrPort
	// MTU is the largest frame payload (without the Ethernet header) the
	// overlay carries; larger frames are dropped and counted.
	MTU int
	// Point, when set, is the one destination of every non-local frame
	// (point mode). Nil means dynamic mode: destinations per MAC, from
	// the target table, filled through Handler.
	Point *encap.Dest
	// Handler receives misses and proxy frames in dynamic mode.
	Handler Handler
}

// MAC is an Ethernet address as the data path keys it.
type MAC = [6]byte

// Handler is told what a data path cannot decide alone. Its methods are
// called on the frame path: they must start work and return at once.
type Handler interface {
	// Miss reports a unicast frame for a MAC with no target entry. The
	// data path holds frames for it (a bounded queue) until SetTarget or
	// DropTarget answers; it reports one miss per MAC until then.
	Miss(mac MAC, vlan uint16)
	// Proxy hands up a broadcast frame that a dynamic overlay answers
	// instead of flooding it (ARP request, neighbour solicitation, DHCP
	// broadcast). frame is an untagged copy the handler owns.
	Proxy(vlan uint16, kind proxy.Kind, frame []byte)
	// MissIP reports an overlay address whose MAC a guest asked for, on a
	// data path that answers ARP and NDP itself from a neighbour table
	// (the kernel's); the answer comes back through SetNeighbor.
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
	MAC   MAC
	Dest  encap.Dest
	State TargetState
}

// VNICConfig describes a virtual NIC on an overlay.
type VNICConfig struct {
	// Name is the Linux interface name.
	Name string
	// MAC is the VNIC's address; frames to it are delivered to it.
	MAC net.HardwareAddr
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
type DataPath interface {
	// CreateOverlay starts carrying an overlay. It fails, naming the
	// address, when the listen address cannot be bound.
	CreateOverlay(cfg OverlayConfig) (Overlay, error)
	// Listeners reports each underlay address being listened on, with
	// the counters that cannot be charged to one overlay (packets with an
	// unknown VNI, malformed headers).
	Listeners() []Listener
	// Close stops everything.
	Close() error
}

// Overlay is one overlay carried by a data path.
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
	// Stats returns the overlay's counters.
	Stats() Stats

	// The target table of a dynamic overlay (point-mode overlays have
	// none). SetTarget makes a valid entry and sends the frames held
	// for it. DropTarget answers a lookup with "drop": held frames are
	// dropped and, with admin unset, the answer is remembered for a few
	// seconds (a negative entry) so that a flood of frames to an unknown
	// MAC costs one lookup, not one per frame; with admin set the entry
	// stays until removed (modify-overlay -s <mac>=drop). RemoveTarget
	// and FlushTargets delete answers but leave lookups in flight alone.
	SetTarget(mac MAC, dest encap.Dest)
	DropTarget(mac MAC, admin bool)
	RemoveTarget(mac MAC)
	FlushTargets()
	Targets() []Target

	// SetNeighbor tells a data path that answers ARP and NDP itself that
	// ip is at mac; the others ignore it.
	SetNeighbor(ip netip.Addr, mac MAC)
	// SetDHCPRedirect tells a data path that redirects DHCP itself (the
	// kernel's) that client's DHCPv4 broadcasts go to server; the others
	// ask the plugin frame by frame and ignore it.
	SetDHCPRedirect(client, server MAC)

	// Inject delivers an untagged frame to the local VNICs on vlan as if
	// it came from the underlay (proxy replies, gratuitous ARP).
	Inject(vlan uint16, frame []byte)
	// Resend sends an untagged frame through the overlay as if a VNIC on
	// vlan had sent it (a DHCP broadcast redirected to a unicast MAC).
	Resend(vlan uint16, frame []byte)
	// Close stops carrying the overlay and lets go of its VNICs: the
	// persistent ones stay for the next overlayd, the others go.
	Close() error
}

// Listener describes one underlay listen address.
type Listener struct {
	Addr     netip.AddrPort
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
