// Package encap defines encapsulation plugins — how an overlay frame is
// carried on the underlay wire — and the registry they join by name.
// Adding an encapsulation touches one folder below this one.
package encap

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"overlaynet/prop"
	"overlaynet/registry"
)

// DestType is the set of address parts an encapsulation needs to reach a
// peer, as the bit mask illumos uses.
type DestType uint8

// Destination parts.
const (
	DestEthernet DestType = 0x01
	DestIP       DestType = 0x02
	DestPort     DestType = 0x04
)

func (t DestType) String() string {
	var parts []string
	if t&DestEthernet != 0 {
		parts = append(parts, "ethernet")
	}
	if t&DestIP != 0 {
		parts = append(parts, "ip")
	}
	if t&DestPort != 0 {
		parts = append(parts, "port")
	}
	return strings.Join(parts, "+")
}

// Dest is an underlay destination: where a search plugin says a frame goes.
type Dest struct {
	IP   netip.Addr
	Port uint16
}

// AddrPort returns the destination as a socket address.
func (d Dest) AddrPort() netip.AddrPort { return netip.AddrPortFrom(d.IP, d.Port) }

func (d Dest) String() string { return d.AddrPort().String() }

// Codec is what a data path needs of an encapsulation: its name and how
// to frame packets. Implementations are stateless and safe for concurrent
// use; the data path calls Encap and Decap on every packet.
type Codec interface {
	// Name is the value of the encap property, e.g. "vxlan"; a data path
	// that builds on the kernel's devices chooses the device by it.
	Name() string
	// HeaderLen is the length of the header Encap writes.
	HeaderLen() int
	// Encap writes the header for vnetid into hdr[:HeaderLen()].
	Encap(hdr []byte, vnetid uint32)
	// Decap validates the header at the start of pkt and returns the
	// virtual network id and the inner frame (a sub-slice, not a copy).
	Decap(pkt []byte) (vnetid uint32, inner []byte, err error)
}

// IPProtocol is a Plugin carried straight over IP rather than UDP
// (NVGRE's GRE): the data path then sends and receives on a raw IP socket
// for that protocol, and a destination has no port (Dest without
// DestPort).
type IPProtocol interface {
	// IPProto is the IP protocol number.
	IPProto() int
}

// ErrCritical is what Decap returns for a packet that carries something
// the receiver must understand to forward it and does not (Geneve's
// critical-option bit): the data path drops it and counts it apart from
// malformed headers.
var ErrCritical = errors.New("critical option not understood")

// Plugin is an encapsulation: a Codec and what the control plane needs of
// it (its properties, and what a destination needs).
type Plugin interface {
	Codec
	// Dest is what a search plugin must supply to address a peer.
	Dest() DestType
	// MaxVNetID is the largest virtual network id the header can carry.
	MaxVNetID() uint32
	// Props describes the plugin's own properties (names "<plugin>/...").
	Props() []prop.Desc
	// Listen derives the underlay address to receive on from the
	// plugin's properties.
	Listen(p *prop.Set) (netip.AddrPort, error)
}

// UDPProps are the properties of an encapsulation over UDP, named after
// it ("vxlan": vxlan/listen_ip, vxlan/listen_port): the address and port
// this host receives on. label names it in the help ("VXLAN").
func UDPProps(name, label string, defaultPort int) []prop.Desc {
	return []prop.Desc{
		{Name: name + "/listen_ip", Type: prop.IP, Perm: prop.ReadWrite, Required: true,
			Check: prop.CheckUnderlayIP,
			Help:  "underlay address this host receives " + label + " on"},
		{Name: name + "/listen_port", Type: prop.Uint, Perm: prop.ReadWrite, Required: true,
			Default: strconv.Itoa(defaultPort), HasRange: true, Min: 1, Max: 65535,
			Help: "UDP port this host receives " + label + " on"},
	}
}

// UDPListen is the listen address of an encapsulation over UDP, from its
// UDPProps.
func UDPListen(p *prop.Set, name string) (netip.AddrPort, error) {
	ip := p.IP(name + "/listen_ip")
	if !ip.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("missing required property %s/listen_ip", name)
	}
	return netip.AddrPortFrom(ip, uint16(p.Uint(name+"/listen_port"))), nil
}

var plugins = registry.New[Plugin]("encap")

// Register adds a plugin; plugins call it from init. A duplicate name is a
// programming error and panics.
func Register(p Plugin) { plugins.Register(p.Name(), p) }

// Lookup returns the registered plugin with that name.
func Lookup(name string) (Plugin, bool) { return plugins.Lookup(name) }

// Names returns the registered plugin names, sorted.
func Names() []string { return plugins.Names() }
