package encap

import "encoding/binary"

// FlowHash hashes the flow an Ethernet frame belongs to: both MAC
// addresses, the VLAN, and for IPv4/IPv6 the addresses, the protocol and
// the TCP/UDP/SCTP ports. Frames of one flow get the same hash, so a UDP
// encapsulation that derives its source port from it keeps each flow on
// one underlay path while spreading flows over ECMP paths (RFC 7348
// section 5). It does not allocate.
func FlowHash(frame []byte) uint32 {
	if len(frame) < 14 {
		return fnv(fnvOffset, frame)
	}
	h := fnv(fnvOffset, frame[:12])
	off := 12
	etype := binary.BigEndian.Uint16(frame[off:])
	if etype == 0x8100 && len(frame) >= 18 {
		// The VLAN id, not the priority bits, keeps VLANs apart.
		h = fnv(h, []byte{frame[14] & 0x0f, frame[15]})
		off = 16
		etype = binary.BigEndian.Uint16(frame[off:])
	}
	l3 := frame[off+2:]
	var proto byte
	var l4 []byte
	switch etype {
	case 0x0800:
		if len(l3) < 20 {
			return h
		}
		ihl := int(l3[0]&0x0f) * 4
		proto = l3[9]
		h = fnv(h, l3[12:20])
		// Later fragments carry no ports.
		if frag := binary.BigEndian.Uint16(l3[6:]) & 0x1fff; frag == 0 && ihl >= 20 && len(l3) >= ihl {
			l4 = l3[ihl:]
		}
	case 0x86dd:
		if len(l3) < 40 {
			return h
		}
		proto = l3[6]
		h = fnv(h, l3[8:40])
		l4 = l3[40:]
	default:
		return fnv(h, frame[off:off+2])
	}
	h = fnv(h, []byte{proto})
	switch proto {
	case 6, 17, 132:
		if len(l4) >= 4 {
			h = fnv(h, l4[:4])
		}
	}
	return h
}

const (
	fnvOffset = 2166136261
	fnvPrime  = 16777619
)

func fnv(h uint32, b []byte) uint32 {
	for _, c := range b {
		h ^= uint32(c)
		h *= fnvPrime
	}
	return h
}
