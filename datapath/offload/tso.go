package offload

import (
	"encoding/binary"
	"fmt"
)

const (
	ethLen     = 14
	etherIPv4  = 0x0800
	etherIPv6  = 0x86dd
	etherVLAN  = 0x8100
	protoTCP   = 6
	tcpFIN     = 0x01
	tcpSYN     = 0x02
	tcpRST     = 0x04
	tcpPSH     = 0x08
	tcpACK     = 0x10
	tcpURG     = 0x20
	tcpECE     = 0x40
	tcpCWR     = 0x80
	ipv6HdrLen = 40
)

// tcpFrame locates the headers of an untagged Ethernet frame carrying
// TCP over IPv4 or IPv6 (without IPv6 extension headers).
type tcpFrame struct {
	v6     bool
	ipOff  int // 14
	ipLen  int // IP header length
	tcpOff int
	tcpLen int
	hdrLen int // Ethernet + IP + TCP headers
}

func parseTCP(f []byte) (tcpFrame, bool) {
	if len(f) < ethLen+20 {
		return tcpFrame{}, false
	}
	t := tcpFrame{ipOff: ethLen}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherIPv4:
		ip := f[ethLen:]
		if ip[0]>>4 != 4 || ip[9] != protoTCP {
			return t, false
		}
		t.ipLen = int(ip[0]&0x0f) * 4
		if t.ipLen < 20 || binary.BigEndian.Uint16(ip[6:8])&0x3fff != 0 { // fragments
			return t, false
		}
	case etherIPv6:
		ip := f[ethLen:]
		if len(ip) < ipv6HdrLen || ip[0]>>4 != 6 || ip[6] != protoTCP {
			return t, false
		}
		t.v6, t.ipLen = true, ipv6HdrLen
	default:
		return t, false
	}
	t.tcpOff = ethLen + t.ipLen
	if len(f) < t.tcpOff+20 {
		return t, false
	}
	t.tcpLen = int(f[t.tcpOff+12]>>4) * 4
	t.hdrLen = t.tcpOff + t.tcpLen
	if t.tcpLen < 20 || len(f) < t.hdrLen {
		return t, false
	}
	return t, true
}

func (t tcpFrame) addrs(f []byte) (src, dst []byte) {
	ip := f[t.ipOff:]
	if t.v6 {
		return ip[8:24], ip[24:40]
	}
	return ip[12:16], ip[16:20]
}

// SegmentTCP splits the TCP super-frame f (untagged Ethernet; h is the
// header it came with) into segments of at most h.GSOSize payload bytes
// and writes them into dst one after the other, each preceded by gap free
// bytes for the caller's encapsulation header and, with vlan set, carrying
// an 802.1Q tag. Every segment gets complete IP and TCP headers and
// checksums. It returns the size of one slot (gap + segment; every slot
// but the last has this size), the total written, and the segment count.
func SegmentTCP(dst, f []byte, h VnetHdr, gap int, vlan uint16) (slot, total, n int, err error) {
	t, ok := parseTCP(f)
	if !ok {
		return 0, 0, 0, fmt.Errorf("%w: a GSO frame that is not TCP over IP", ErrMalformed)
	}
	mss := int(h.GSOSize)
	payload := f[t.hdrLen:]
	if mss <= 0 {
		return 0, 0, 0, fmt.Errorf("%w: GSO size 0", ErrMalformed)
	}
	if ip := t.ipLen + t.tcpLen + min(mss, len(payload)); ip > maxSuper {
		// The IP length fields have 16 bits: a larger segment would go
		// out with a truncated length.
		return 0, 0, 0, fmt.Errorf("%w: GSO size %d makes %d-byte IP packets", ErrMalformed, mss, ip)
	}
	tag := 0
	if vlan != 0 {
		tag = 4
	}
	hdr := t.hdrLen + tag
	n = (len(payload) + mss - 1) / mss
	if n == 0 {
		n = 1
	}
	slot = gap + hdr + min(mss, len(payload))
	total = gap*n + hdr*n + len(payload)
	if total > len(dst) {
		return 0, 0, 0, fmt.Errorf("%w: %d segments need %d bytes, buffer has %d", ErrMalformed, n, total, len(dst))
	}
	src, dstAddr := t.addrs(f)
	seq := binary.BigEndian.Uint32(f[t.tcpOff+4:])
	flags := f[t.tcpOff+13]
	var id uint16
	if !t.v6 {
		id = binary.BigEndian.Uint16(f[t.ipOff+4:])
	}
	off := 0
	for i := 0; i < n; i++ {
		chunk := payload[min(i*mss, len(payload)):min((i+1)*mss, len(payload))]
		seg := dst[off+gap : off+gap+hdr+len(chunk)]
		// Ethernet, with the tag inserted after the addresses.
		copy(seg[:12], f[:12])
		if tag != 0 {
			binary.BigEndian.PutUint16(seg[12:], etherVLAN)
			binary.BigEndian.PutUint16(seg[14:], vlan)
		}
		copy(seg[12+tag:], f[12:t.hdrLen])
		copy(seg[hdr:], chunk)
		ip := seg[t.ipOff+tag:]
		tcp := seg[t.tcpOff+tag:]
		tcpTotal := t.tcpLen + len(chunk)
		if t.v6 {
			binary.BigEndian.PutUint16(ip[4:], uint16(tcpTotal))
		} else {
			binary.BigEndian.PutUint16(ip[2:], uint16(t.ipLen+tcpTotal))
			binary.BigEndian.PutUint16(ip[4:], id+uint16(i))
			binary.BigEndian.PutUint16(ip[10:], 0)
			binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:t.ipLen], 0))
		}
		binary.BigEndian.PutUint32(tcp[4:], seq+uint32(i*mss))
		fl := flags
		if i < n-1 {
			fl &^= tcpFIN | tcpPSH
		}
		if i > 0 {
			fl &^= tcpCWR
		}
		tcp[13] = fl
		binary.BigEndian.PutUint16(tcp[16:], 0)
		binary.BigEndian.PutUint16(tcp[16:], Checksum(tcp[:tcpTotal], PseudoHeader(protoTCP, src, dstAddr, tcpTotal)))
		off += gap + hdr + len(chunk)
	}
	return slot, total, n, nil
}

// TCPHeaderLen returns the length of the Ethernet, IP and TCP headers of
// an untagged TCP frame, measured rather than taken from a virtio-net
// header's hint.
func TCPHeaderLen(f []byte) (int, bool) {
	t, ok := parseTCP(f)
	return t.hdrLen, ok
}
