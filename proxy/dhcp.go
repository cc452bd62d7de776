package proxy

import "encoding/binary"

const (
	protoUDP      = 17
	portDHCPSrv   = 67
	portDHCPCli   = 68
	bootpMinLen   = 236 // the fixed BOOTP header, up to the options
	bootRequest   = 1
	bootReply     = 2
	bootpHTypeEth = 1
)

// dhcp returns the BOOTP message of an IPv4/UDP frame between the given
// ports, or nil.
func dhcp(f []byte, sport, dport uint16) []byte {
	if len(f) < ethLen+20 || binary.BigEndian.Uint16(f[12:14]) != etherTypeV4 {
		return nil
	}
	ip := f[ethLen:]
	ihl := int(ip[0]&0x0f) * 4
	// Version 4 and protocol UDP, both required (illumos checked with
	// the wrong operator and accepted either).
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != protoUDP {
		return nil
	}
	if frag := binary.BigEndian.Uint16(ip[6:8]) & 0x3fff; frag != 0 {
		return nil
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total < ihl+8 || total > len(ip) {
		return nil
	}
	udp := ip[ihl:total]
	if binary.BigEndian.Uint16(udp[0:2]) != sport || binary.BigEndian.Uint16(udp[2:4]) != dport {
		return nil
	}
	ulen := int(binary.BigEndian.Uint16(udp[4:6]))
	if ulen < 8+bootpMinLen || ulen > len(udp) {
		return nil
	}
	return udp[8:ulen]
}

// ParseDHCPClient recognises a broadcast DHCPv4 message from a client
// (BOOTREQUEST, UDP 68 to 67: DISCOVER, REQUEST, INFORM...) and returns
// the sending client's MAC, which decides where it is redirected.
func ParseDHCPClient(f []byte) (MAC, bool) {
	if len(f) < ethLen || MAC(f[0:6]) != Broadcast {
		return MAC{}, false
	}
	b := dhcp(f, portDHCPCli, portDHCPSrv)
	if b == nil || b[0] != bootRequest {
		return MAC{}, false
	}
	return MAC(f[6:12]), true
}

// ParseDHCPToClient recognises a broadcast DHCPv4 reply from a server
// (BOOTREPLY, UDP 67 to 68) and returns the client hardware address it is
// for, so that it can be delivered as unicast instead of being lost: a
// dynamic overlay does not flood.
func ParseDHCPToClient(f []byte) (MAC, bool) {
	if len(f) < ethLen || MAC(f[0:6]) != Broadcast {
		return MAC{}, false
	}
	b := dhcp(f, portDHCPSrv, portDHCPCli)
	if b == nil || b[0] != bootReply || b[1] != bootpHTypeEth || b[2] != 6 {
		return MAC{}, false
	}
	chaddr := MAC(b[28:34])
	if chaddr[0]&1 != 0 {
		return MAC{}, false
	}
	return chaddr, true
}
