// Package geneve is the Geneve encapsulation (RFC 8926): an 8-byte base
// header, variable-length options and a 24-bit virtual network id, over
// UDP. Frames go out with no options; options in received packets are
// skipped by their length, and a packet that marks one critical is
// dropped, since this receiver understands none.
package geneve

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"overlaynet/encap"
	"overlaynet/prop"
)

// HeaderLen is the length of the header Encap writes: the base header,
// no options.
const HeaderLen = 8

// DefaultPort is the IANA Geneve port.
const DefaultPort = 6081

// MaxVNI is the largest Geneve virtual network identifier.
const MaxVNI = 1<<24 - 1

// ProtoEthernet is the protocol type of an Ethernet payload ("Transparent
// Ethernet Bridging").
const ProtoEthernet = 0x6558

// Header bits, in the second byte.
const (
	flagOAM      = 0x80 // O: a control packet, not for the tenant
	flagCritical = 0x40 // C: a critical option is present
)

// Property names.
const (
	PropListenIP   = "geneve/listen_ip"
	PropListenPort = "geneve/listen_port"
)

// Decapsulation errors, so that the data path can count each reason.
var (
	ErrShort    = errors.New("geneve: packet shorter than its Geneve header and options")
	ErrVersion  = errors.New("geneve: unknown version")
	ErrOAM      = errors.New("geneve: control (OAM) packet")
	ErrProtocol = errors.New("geneve: payload is not Ethernet (protocol type 0x6558)")
	// ErrCritical is encap.ErrCritical: the data path counts it apart.
	ErrCritical = fmt.Errorf("geneve: %w", encap.ErrCritical)
)

// Plugin is the Geneve encapsulation.
type Plugin struct{}

func init() { encap.Register(Plugin{}) }

// Name implements encap.Plugin.
func (Plugin) Name() string { return "geneve" }

// Dest implements encap.Plugin: Geneve peers are addressed by IP and port.
func (Plugin) Dest() encap.DestType { return encap.DestIP | encap.DestPort }

// HeaderLen implements encap.Plugin.
func (Plugin) HeaderLen() int { return HeaderLen }

// MaxVNetID implements encap.Plugin.
func (Plugin) MaxVNetID() uint32 { return MaxVNI }

// Props implements encap.Plugin.
func (Plugin) Props() []prop.Desc { return encap.UDPProps("geneve", "Geneve", DefaultPort) }

// Listen implements encap.Plugin.
func (Plugin) Listen(p *prop.Set) (netip.AddrPort, error) { return encap.UDPListen(p, "geneve") }

// Encap implements encap.Plugin.
func (Plugin) Encap(hdr []byte, vnetid uint32) { Encap(hdr, vnetid) }

// Decap implements encap.Plugin.
func (Plugin) Decap(pkt []byte) (uint32, []byte, error) { return Decap(pkt) }

// Encap writes a Geneve header for vni into hdr[:8]: version 0, no
// options, neither O nor C, an Ethernet payload.
func Encap(hdr []byte, vni uint32) {
	_ = hdr[7]
	binary.BigEndian.PutUint32(hdr[0:4], ProtoEthernet)
	binary.BigEndian.PutUint32(hdr[4:8], vni<<8)
}

// Decap validates the Geneve header at the start of pkt, skips its
// options, and returns the VNI and the inner frame. Reserved bits are
// ignored, as RFC 8926 asks of receivers.
func Decap(pkt []byte) (uint32, []byte, error) {
	if len(pkt) < HeaderLen {
		return 0, nil, ErrShort
	}
	if pkt[0]>>6 != 0 {
		return 0, nil, ErrVersion
	}
	n := HeaderLen + int(pkt[0]&0x3f)*4
	if len(pkt) < n {
		return 0, nil, ErrShort
	}
	// RFC 8926 §3.4: a critical option not understood means drop, and
	// no option is understood here.
	if pkt[1]&flagCritical != 0 {
		return 0, nil, ErrCritical
	}
	if pkt[1]&flagOAM != 0 {
		return 0, nil, ErrOAM
	}
	if binary.BigEndian.Uint16(pkt[2:4]) != ProtoEthernet {
		return 0, nil, ErrProtocol
	}
	return binary.BigEndian.Uint32(pkt[4:8]) >> 8, pkt[n:], nil
}
