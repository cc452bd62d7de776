// Package proxy parses the broadcast and multicast frames that a dynamic
// overlay answers instead of flooding them over the underlay — ARP
// requests, IPv6 neighbour solicitations, DHCPv4 broadcasts — and builds
// the answers: an ARP reply, a neighbour advertisement, a DHCP frame
// redirected to a unicast MAC (SPEC section 5, "Proxy helpers").
//
// Frames are untagged Ethernet frames; the caller handles VLAN tags. The
// parsers never panic on any input and never allocate.
package proxy

import (
	"encoding/binary"
	"net/netip"
	"strconv"
)

// MAC is an Ethernet address.
type MAC = [6]byte

// Broadcast is ff:ff:ff:ff:ff:ff.
var Broadcast = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// Kind is what a frame asks of the proxy.
type Kind int

// Frame kinds.
const (
	None         Kind = iota
	ARP               // an ARP request for an IPv4 address
	NDP               // an IPv6 neighbour solicitation
	DHCPClient        // a DHCPv4 broadcast from a client to servers
	DHCPToClient      // a DHCPv4 broadcast from a server to a client
)

func (k Kind) String() string {
	names := [...]string{"none", "arp", "ndp", "dhcp-client", "dhcp-to-client"}
	if k < 0 || int(k) >= len(names) {
		return "kind(" + strconv.Itoa(int(k)) + ")"
	}
	return names[k]
}

const (
	ethLen       = 14
	etherTypeARP = 0x0806
	etherTypeV4  = 0x0800
	etherTypeV6  = 0x86dd
)

// Classify says whether a frame is one the proxy answers. It checks
// enough to tell the kinds apart; the Parse functions check the rest.
func Classify(f []byte) Kind {
	if len(f) < ethLen {
		return None
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherTypeARP:
		if _, ok := ParseARP(f); ok {
			return ARP
		}
	case etherTypeV6:
		if _, ok := ParseNS(f); ok {
			return NDP
		}
	case etherTypeV4:
		if MAC(f[0:6]) != Broadcast {
			return None
		}
		if _, ok := ParseDHCPClient(f); ok {
			return DHCPClient
		}
		if _, ok := ParseDHCPToClient(f); ok {
			return DHCPToClient
		}
	}
	return None
}

// ARPRequest is a parsed ARP request.
type ARPRequest struct {
	SenderMAC MAC
	SenderIP  netip.Addr
	TargetIP  netip.Addr
}

// ParseARP parses an Ethernet/IPv4 ARP request. Gratuitous requests
// (sender IP equal to target IP) are refused: they announce, they do not
// ask.
func ParseARP(f []byte) (ARPRequest, bool) {
	if len(f) < ethLen+28 || binary.BigEndian.Uint16(f[12:14]) != etherTypeARP {
		return ARPRequest{}, false
	}
	a := f[ethLen:]
	if binary.BigEndian.Uint16(a[0:2]) != 1 || binary.BigEndian.Uint16(a[2:4]) != etherTypeV4 ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:8]) != 1 {
		return ARPRequest{}, false
	}
	r := ARPRequest{
		SenderMAC: MAC(a[8:14]),
		SenderIP:  netip.AddrFrom4([4]byte(a[14:18])),
		TargetIP:  netip.AddrFrom4([4]byte(a[24:28])),
	}
	if r.SenderIP == r.TargetIP {
		return ARPRequest{}, false
	}
	return r, true
}

// ARPReply builds the reply to req saying that req.TargetIP is at mac.
func ARPReply(req ARPRequest, mac MAC) []byte {
	f := make([]byte, ethLen+28)
	copy(f[0:6], req.SenderMAC[:])
	copy(f[6:12], mac[:])
	binary.BigEndian.PutUint16(f[12:14], etherTypeARP)
	a := f[ethLen:]
	binary.BigEndian.PutUint16(a[0:2], 1)
	binary.BigEndian.PutUint16(a[2:4], etherTypeV4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:8], 2) // reply
	copy(a[8:14], mac[:])
	t := req.TargetIP.As4()
	copy(a[14:18], t[:])
	copy(a[18:24], req.SenderMAC[:])
	s := req.SenderIP.As4()
	copy(a[24:28], s[:])
	return f
}

// Redirect rewrites the destination MAC of a frame in place.
func Redirect(f []byte, dst MAC) {
	if len(f) >= 6 {
		copy(f[0:6], dst[:])
	}
}

// GratuitousARP builds an ARP request announcing that ip is at mac
// (sender and target IP both ip, broadcast), which makes neighbours
// update their caches: what illumos's svp plugin injects when a mapping
// server says an address moved.
func GratuitousARP(mac MAC, ip netip.Addr) []byte {
	f := ARPReply(ARPRequest{SenderMAC: Broadcast, SenderIP: ip, TargetIP: ip}, mac)
	binary.BigEndian.PutUint16(f[ethLen+6:ethLen+8], 1) // a request
	copy(f[ethLen+18:ethLen+24], Broadcast[:])
	return f
}
