// Package datapath is the boundary between the control plane (overlays,
// properties, plugins, the admin API) and whatever moves frames: the
// userspace data path (TAP devices and UDP sockets, in Go) or, later, the
// Linux kernel's vxlan driver. Everything above this package speaks only
// these types; nothing above it knows which data path runs.
package datapath

import (
	"net"
	"net/netip"

	"overlaynet/encap"
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
	// (point mode). Nil means dynamic mode: destinations per MAC.
	Point *encap.Dest
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
	// MTU is the VNIC's MTU, at most the overlay's.
	MTU int
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
	Update(cfg OverlayConfig) error
	// AddVNIC creates a VNIC and starts switching its frames.
	AddVNIC(cfg VNICConfig) error
	// RemoveVNIC deletes a VNIC.
	RemoveVNIC(name string) error
	// Stats returns the overlay's counters.
	Stats() Stats
	// Close stops carrying the overlay and deletes its VNICs.
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
