// Package search defines search plugins — where a frame for a non-local
// MAC goes — and the registry they join by name, as varpd's plugins do.
// Adding a search plugin touches one folder below this one: it registers
// a Plugin from init, and overlayd imports the folder.
package search

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/registry"
)

// Mode is how a plugin answers: one destination for everything (point), or
// per-MAC lookups (dynamic).
type Mode int

// Target modes, numbered as illumos numbers them; Multicast is not
// illumos' (its straw man only proposes the plugin).
const (
	Point     Mode = 1
	Dynamic   Mode = 2
	Multicast Mode = 3
)

func (m Mode) String() string {
	switch m {
	case Point:
		return "point"
	case Dynamic:
		return "dynamic"
	case Multicast:
		return "multicast"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Plugin is a registered search plugin.
type Plugin struct {
	// Name is the value of the search property, e.g. "direct".
	Name string
	// Mode is the plugin's target mode.
	Mode Mode
	// Props describes the plugin's properties (names "<plugin>/...").
	Props func(dest encap.DestType) []prop.Desc
	// New creates an instance for one overlay. It fails when the plugin
	// cannot supply the destination type the encapsulation needs.
	New func(cfg Config) (Instance, error)
}

// Config is what an instance is created with.
type Config struct {
	// Props holds the overlay's properties; the instance reads its own.
	// It is a snapshot: a property change creates a new instance.
	Props *prop.Set
	// Dest is what the encapsulation needs to address a peer.
	Dest encap.DestType
	// VNetID is the overlay's virtual network id.
	VNetID uint32
	// Log is the overlay's logger.
	Log *slog.Logger
	// Host is the overlay the instance serves.
	Host Host
}

// Host is what an instance may tell the overlay it serves (illumos:
// libvarpd's inject_varp and fma_degrade/fma_restore). Everything a plugin
// knows reaches the data path through it or through the lookups the
// overlay makes (DynamicInstance, IPResolver, DHCPResolver): the overlay
// passes it on in whatever form the running data path takes, so that a
// plugin never knows which one runs.
type Host interface {
	// Invalidate forgets a MAC's answer, so that the next frame for it
	// starts a fresh lookup (and one in flight asks again).
	Invalidate(mac ether.MAC)
	// Learn installs what the plugin knows about a MAC without being
	// asked (a map file's entry, the MAC a VL3 answer carries), sparing
	// lookups.
	Learn(a Answer)
	// Announce tells the overlay's local guests on vlan that the overlay
	// address ip is now at mac (a gratuitous ARP or an unsolicited
	// neighbour advertisement, as illumos sends after a VL3 shootdown).
	Announce(vlan uint16, ip netip.Addr, mac ether.MAC)
	// Degrade marks the overlay DEGRADED with a reason an operator can
	// act on; Restore clears it. Both log the transition.
	Degrade(reason string)
	Restore()
}

// FloodHost is a Host whose data path replicates broadcast and unknown
// frames to a flood list (EVPN's type-3 routes, ingress replication). A
// plugin that has a list asks for it by assertion.
type FloodHost interface {
	Host
	// SetFlood replaces the flood list; false when the data path cannot
	// replicate.
	SetFlood(dests []encap.Dest) bool
}

// FloodInstance is implemented by dynamic instances that give their
// overlay a flood list (FloodHost.SetFlood): the data path then floods
// ARP and NDP too (datapath.OverlayConfig.Floods).
type FloodInstance interface {
	Instance
	GivesFloodList()
}

// AddressWatcher is implemented by instances that advertise the
// addresses local guests use (EVPN type-2 MAC/IP routes): the overlay
// tells them of each address a local guest is seen to use, from the
// ARP requests and neighbour solicitations it sends.
type AddressWatcher interface {
	GuestAddress(vlan uint16, mac ether.MAC, ip netip.Addr)
}

// VNICWatcher is implemented by instances that advertise the overlay's
// local VNICs (EVPN type-2 routes): the overlay tells them of each VNIC
// as it comes and goes, and of those already there when they start.
type VNICWatcher interface {
	VNICUp(vlan uint16, mac ether.MAC)
	VNICDown(vlan uint16, mac ether.MAC)
}

// Answer is what a plugin knows about one MAC.
type Answer struct {
	MAC ether.MAC
	// Dest is where frames for MAC go; the zero Dest when not known, or
	// when the answer only adds IPs or a DHCP server.
	Dest encap.Dest
	// IPs are overlay addresses at MAC: ARP and NDP are answered with it.
	IPs []netip.Addr
	// DHCPServer, when not zero, is where MAC's DHCPv4 broadcasts go.
	DHCPServer ether.MAC
}

// ErrNotFound is the answer of a lookup that knows no destination: frames
// for that key are dropped.
var ErrNotFound = errors.New("no such entry")

// Instance is a plugin serving one overlay.
type Instance interface {
	// Start verifies the configuration and acquires what the plugin
	// needs. An error aborts the overlay's creation.
	Start() error
	// Stop releases what Start acquired.
	Stop()
}

// DynamicInstance is implemented by dynamic-mode instances.
type DynamicInstance interface {
	Instance
	// Lookup returns where frames for mac, sent on vlan, go, or
	// ErrNotFound. It may block (a query to a mapping server) until ctx
	// ends; the caller runs it off the frame path.
	Lookup(ctx context.Context, vlan uint16, mac ether.MAC) (encap.Dest, error)
}

// IPResolver is implemented by dynamic instances that answer proxy ARP
// and NDP: which MAC an overlay IPv4 or IPv6 address belongs to.
type IPResolver interface {
	ResolveIP(ctx context.Context, vlan uint16, ip netip.Addr) (ether.MAC, error)
}

// DHCPResolver is implemented by dynamic instances that redirect DHCPv4
// broadcasts: which MAC a client's broadcasts go to.
type DHCPResolver interface {
	DHCPServer(ctx context.Context, vlan uint16, client ether.MAC) (ether.MAC, error)
}

// Preloader is implemented by dynamic instances that know answers before
// anyone asks (a map file): Preload installs them with Host.Learn once the
// overlay's data path exists, so that no first frame waits for, or is
// lost to, a lookup.
type Preloader interface {
	Preload()
}

// Refresher is implemented by instances that can reload their
// configuration on request (overlayadm refresh-overlay, SIGHUP).
type Refresher interface {
	Refresh() error
}

// GroupInstance is implemented by multicast-mode instances: the data
// path floods to a group and learns destinations itself.
type GroupInstance interface {
	Instance
	// Group is the multicast group; its port is the overlay's listen
	// port. Ageing and MaxLearned are as datapath.GroupConfig's.
	Group() (group netip.Addr, ageing time.Duration, maxLearned int)
}

// PointInstance is implemented by point-mode instances.
type PointInstance interface {
	Instance
	// Point is the single destination of every non-local frame.
	Point() encap.Dest
}

var plugins = registry.New[*Plugin]("search")

// Register adds a plugin; plugins call it from init. A duplicate name is a
// programming error and panics.
func Register(p *Plugin) { plugins.Register(p.Name, p) }

// Lookup returns the registered plugin with that name.
func Lookup(name string) (*Plugin, bool) { return plugins.Lookup(name) }

// Names returns the registered plugin names, sorted.
func Names() []string { return plugins.Names() }
