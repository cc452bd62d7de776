package proxy

import (
	"encoding/binary"
	"net/netip"
)

const (
	ipv6Len        = 40
	protoICMPv6    = 58
	icmpNS         = 135
	icmpNA         = 136
	optSourceLLA   = 1
	optTargetLLA   = 2
	ndpHopLimit    = 255
	nsMinLen       = 24 // type, code, checksum, reserved, target
	naFlagSolicit  = 0x40
	naFlagOverride = 0x20
)

// Solicitation is a parsed IPv6 neighbour solicitation.
type Solicitation struct {
	SrcMAC MAC
	SrcIP  netip.Addr
	Target netip.Addr
	// tc and flow are copied into the advertisement, as illumos does.
	tcFlow uint32
}

// ParseNS parses a neighbour solicitation sent to a multicast address:
// hop limit 255, ICMPv6 directly after the IPv6 header, a valid checksum,
// a unicast target, and a source link-layer address option (so duplicate
// address detection probes, sent from ::, get no answer).
func ParseNS(f []byte) (Solicitation, bool) {
	if len(f) < ethLen+ipv6Len+nsMinLen || binary.BigEndian.Uint16(f[12:14]) != etherTypeV6 {
		return Solicitation{}, false
	}
	if f[0] != 0x33 || f[1] != 0x33 {
		return Solicitation{}, false
	}
	ip := f[ethLen:]
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != ndpHopLimit {
		return Solicitation{}, false
	}
	plen := int(binary.BigEndian.Uint16(ip[4:6]))
	if plen < nsMinLen || ipv6Len+plen > len(ip) {
		return Solicitation{}, false
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	if !dst.IsMulticast() || src.IsUnspecified() || src.IsMulticast() {
		return Solicitation{}, false
	}
	icmp := ip[ipv6Len : ipv6Len+plen]
	if icmp[0] != icmpNS || icmp[1] != 0 {
		return Solicitation{}, false
	}
	if icmpv6Checksum(src, dst, icmp) != 0 {
		return Solicitation{}, false
	}
	target := netip.AddrFrom16([16]byte(icmp[8:24]))
	if target.IsMulticast() || target.Is4In6() || target.IsLoopback() || target.IsUnspecified() {
		return Solicitation{}, false
	}
	s := Solicitation{SrcMAC: MAC(f[6:12]), SrcIP: src, Target: target,
		tcFlow: binary.BigEndian.Uint32(ip[0:4])}
	haveSLLA := false
	for opts := icmp[nsMinLen:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || int(opts[1])*8 > len(opts) {
			return Solicitation{}, false
		}
		n := int(opts[1]) * 8
		if opts[0] == optSourceLLA && n == 8 {
			haveSLLA = true
		}
		opts = opts[n:]
	}
	if !haveSLLA {
		return Solicitation{}, false
	}
	return s, true
}

// Advertisement builds the solicited neighbour advertisement saying that
// s.Target is at mac: flags Solicited and Override, one target
// link-layer address option, sent from the target to the solicitor.
func Advertisement(s Solicitation, mac MAC) []byte {
	const icmpLen = nsMinLen + 8
	f := make([]byte, ethLen+ipv6Len+icmpLen)
	copy(f[0:6], s.SrcMAC[:])
	copy(f[6:12], mac[:])
	binary.BigEndian.PutUint16(f[12:14], etherTypeV6)
	ip := f[ethLen:]
	binary.BigEndian.PutUint32(ip[0:4], s.tcFlow&0x0fffffff|6<<28)
	binary.BigEndian.PutUint16(ip[4:6], icmpLen)
	ip[6], ip[7] = protoICMPv6, ndpHopLimit
	src, dst := s.Target.As16(), s.SrcIP.As16()
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
	icmp := ip[ipv6Len:]
	icmp[0] = icmpNA
	icmp[4] = naFlagSolicit | naFlagOverride
	copy(icmp[8:24], src[:])
	icmp[24], icmp[25] = optTargetLLA, 1
	copy(icmp[26:32], mac[:])
	binary.BigEndian.PutUint16(icmp[2:4], icmpv6Checksum(s.Target, s.SrcIP, icmp))
	return f
}

// icmpv6Checksum returns the ICMPv6 checksum over the pseudo-header and
// msg. Over a message holding a correct checksum it returns 0.
func icmpv6Checksum(src, dst netip.Addr, msg []byte) uint16 {
	var sum uint32
	s, d := src.As16(), dst.As16()
	sum = add(sum, s[:])
	sum = add(sum, d[:])
	sum += uint32(len(msg)>>16) + uint32(len(msg)&0xffff)
	sum += protoICMPv6
	sum = add(sum, msg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func add(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// allNodes is ff02::1 and its multicast MAC.
var (
	allNodes    = netip.MustParseAddr("ff02::1")
	allNodesMAC = MAC{0x33, 0x33, 0, 0, 0, 1}
)

// UnsolicitedAdvertisement builds a neighbour advertisement to all nodes
// saying that ip is at mac (flag Override, not Solicited; RFC 4861 7.2.6),
// which makes neighbours update their caches.
func UnsolicitedAdvertisement(mac MAC, ip netip.Addr) []byte {
	f := Advertisement(Solicitation{SrcMAC: allNodesMAC, SrcIP: allNodes, Target: ip}, mac)
	icmp := f[ethLen+ipv6Len:]
	icmp[4] = naFlagOverride
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint16(icmp[2:4], icmpv6Checksum(ip, allNodes, icmp))
	return f
}
