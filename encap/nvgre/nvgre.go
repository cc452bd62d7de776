// Package nvgre is the NVGRE encapsulation (RFC 7637): GRE straight over
// IP (protocol 47), its key carrying a 24-bit virtual subnet id (VSID)
// and an 8-bit FlowID. No UDP, so a peer is an address alone, and the
// data path reads and writes GRE on a raw IP socket (IPProto).
package nvgre

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"overlaynet/encap"
	"overlaynet/prop"
)

// HeaderLen is the length of an NVGRE header: GRE's 4 bytes and the key.
const HeaderLen = 8

// MaxVSID is the largest virtual subnet id.
const MaxVSID = 1<<24 - 1

// ProtoEthernet is GRE's protocol type for an Ethernet payload
// ("Transparent Ethernet Bridging").
const ProtoEthernet = 0x6558

// IPProtoGRE is GRE's IP protocol number.
const IPProtoGRE = 47

// GRE flags, in the first 16 bits. NVGRE has the key bit (K) and
// neither checksum (C) nor sequence number (S); RFC 2784 has a receiver
// discard a packet with any of bits 1-5 set but those it implements (so
// also RFC 1701's routing, strict source route and recursion bits, whose
// fields would change the header's length), ignore bits 6-12, and the
// version (bits 13-15) is 0.
const (
	flagKey = 0x2000
	// mustBeZero: C, R, S, s, the top recursion bit, the version.
	mustBeZero = 0x8000 | 0x4000 | 0x1000 | 0x0800 | 0x0400 | 0x0007
)

// PropListenIP is NVGRE's one property: there is no port.
const PropListenIP = "nvgre/listen_ip"

// Decapsulation errors, so that the data path can count each reason.
var (
	ErrShort    = errors.New("nvgre: packet shorter than the NVGRE header")
	ErrFlags    = errors.New("nvgre: no GRE key, or a checksum, sequence number, routing or version other than 0")
	ErrProtocol = errors.New("nvgre: payload is not Ethernet (protocol type 0x6558)")
)

// Plugin is the NVGRE encapsulation.
type Plugin struct{}

func init() { encap.Register(Plugin{}) }

// Name implements encap.Plugin.
func (Plugin) Name() string { return "nvgre" }

// Dest implements encap.Plugin: NVGRE peers are addressed by IP alone.
func (Plugin) Dest() encap.DestType { return encap.DestIP }

// HeaderLen implements encap.Plugin.
func (Plugin) HeaderLen() int { return HeaderLen }

// MaxVNetID implements encap.Plugin.
func (Plugin) MaxVNetID() uint32 { return MaxVSID }

// IPProto implements encap.IPProtocol: NVGRE rides on IP directly.
func (Plugin) IPProto() int { return IPProtoGRE }

// Props implements encap.Plugin.
func (Plugin) Props() []prop.Desc {
	return []prop.Desc{
		{Name: PropListenIP, Type: prop.IP, Perm: prop.ReadWrite, Required: true,
			Check: prop.CheckUnderlayIP,
			Help:  "underlay address this host receives NVGRE (IP protocol 47) on"},
	}
}

// Listen implements encap.Plugin: the address, port 0.
func (Plugin) Listen(p *prop.Set) (netip.AddrPort, error) {
	ip := p.IP(PropListenIP)
	if !ip.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("missing required property %s", PropListenIP)
	}
	return netip.AddrPortFrom(ip, 0), nil
}

// Encap implements encap.Plugin.
func (Plugin) Encap(hdr []byte, vnetid uint32) { Encap(hdr, vnetid) }

// Decap implements encap.Plugin.
func (Plugin) Decap(pkt []byte) (uint32, []byte, error) { return Decap(pkt) }

// Encap writes an NVGRE header for vsid into hdr[:8]: the key bit,
// protocol 0x6558, and the key VSID << 8 with FlowID 0 (RFC 7637 §3.2:
// zero when the sender computes no flow entropy).
func Encap(hdr []byte, vsid uint32) {
	_ = hdr[7]
	binary.BigEndian.PutUint16(hdr[0:2], flagKey)
	binary.BigEndian.PutUint16(hdr[2:4], ProtoEthernet)
	binary.BigEndian.PutUint32(hdr[4:8], vsid<<8)
}

// Decap validates the NVGRE header at the start of pkt and returns the
// VSID and the inner frame. RFC 7637 §3.2: the checksum and sequence
// bits must be 0 and the key bit 1; the FlowID is the sender's and
// ignored here.
func Decap(pkt []byte) (uint32, []byte, error) {
	if len(pkt) < HeaderLen {
		return 0, nil, ErrShort
	}
	flags := binary.BigEndian.Uint16(pkt[0:2])
	if flags&mustBeZero != 0 || flags&flagKey == 0 {
		return 0, nil, ErrFlags
	}
	if binary.BigEndian.Uint16(pkt[2:4]) != ProtoEthernet {
		return 0, nil, ErrProtocol
	}
	return binary.BigEndian.Uint32(pkt[4:8]) >> 8, pkt[HeaderLen:], nil
}
