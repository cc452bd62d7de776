// Package vxlan is the VXLAN encapsulation (RFC 7348): an 8-byte header
// carrying a 24-bit virtual network id, over UDP.
package vxlan

import (
	"encoding/binary"
	"errors"
	"net/netip"

	"overlaynet/encap"
	"overlaynet/prop"
)

// HeaderLen is the length of a VXLAN header.
const HeaderLen = 8

// DefaultPort is the IANA VXLAN port.
const DefaultPort = 4789

// MaxVNI is the largest VXLAN network identifier.
const MaxVNI = 1<<24 - 1

// flagI is the "VNI valid" flag, the only flag VXLAN defines.
const flagI = 0x08

// Property names.
const (
	PropListenIP   = "vxlan/listen_ip"
	PropListenPort = "vxlan/listen_port"
)

// Decapsulation errors, so that the data path can count each reason.
var (
	ErrShort   = errors.New("vxlan: packet shorter than the VXLAN header")
	ErrNoIFlag = errors.New("vxlan: I flag not set")
)

// Plugin is the VXLAN encapsulation.
type Plugin struct{}

func init() { encap.Register(Plugin{}) }

// Name implements encap.Plugin.
func (Plugin) Name() string { return "vxlan" }

// Dest implements encap.Plugin: VXLAN peers are addressed by IP and port.
func (Plugin) Dest() encap.DestType { return encap.DestIP | encap.DestPort }

// HeaderLen implements encap.Plugin.
func (Plugin) HeaderLen() int { return HeaderLen }

// MaxVNetID implements encap.Plugin.
func (Plugin) MaxVNetID() uint32 { return MaxVNI }

// Props implements encap.Plugin.
func (Plugin) Props() []prop.Desc { return encap.UDPProps("vxlan", "VXLAN", DefaultPort) }

// Listen implements encap.Plugin.
func (Plugin) Listen(p *prop.Set) (netip.AddrPort, error) { return encap.UDPListen(p, "vxlan") }

// Encap implements encap.Plugin.
func (Plugin) Encap(hdr []byte, vnetid uint32) { Encap(hdr, vnetid) }

// Decap implements encap.Plugin.
func (Plugin) Decap(pkt []byte) (uint32, []byte, error) { return Decap(pkt) }

// Encap writes a VXLAN header for vni into hdr[:8].
func Encap(hdr []byte, vni uint32) {
	_ = hdr[7]
	binary.BigEndian.PutUint32(hdr[0:4], flagI<<24)
	binary.BigEndian.PutUint32(hdr[4:8], vni<<8)
}

// Decap validates the VXLAN header at the start of pkt and returns the VNI
// and the inner frame. Reserved bits are ignored, as RFC 7348 asks of
// receivers.
func Decap(pkt []byte) (uint32, []byte, error) {
	if len(pkt) < HeaderLen {
		return 0, nil, ErrShort
	}
	if pkt[0]&flagI == 0 {
		return 0, nil, ErrNoIFlag
	}
	return binary.BigEndian.Uint32(pkt[4:8]) >> 8, pkt[HeaderLen:], nil
}
