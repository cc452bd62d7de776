package userspace

import (
	"encoding/binary"

	"overlaynet/ether"
)

const (
	ethHeaderLen = 14
	vlanTagLen   = 4
	etherTypeTag = 0x8100
	// headroom is the space kept in front of every frame read from a VNIC:
	// room for an inserted VLAN tag and any encapsulation header.
	headroom = 64
	// maxFrame bounds one frame; a TAP without offloads never exceeds the
	// MTU, but a bigger buffer costs nothing and tolerates odd senders.
	maxFrame = 65536
)

// vnicKey identifies a VNIC on its overlay: a MAC is only unique within a
// VLAN.
type vnicKey struct {
	vlan uint16
	mac  ether.MAC
}

// frameVLAN returns the VLAN id of an 802.1Q-tagged frame and whether it
// is tagged. The caller has checked the frame holds an Ethernet header.
func frameVLAN(f []byte) (uint16, bool) {
	if binary.BigEndian.Uint16(f[12:14]) != etherTypeTag {
		return 0, false
	}
	return binary.BigEndian.Uint16(f[14:16]) & 0x0fff, true
}

// insertTag turns the untagged frame buf[off:off+n] into a tagged one
// starting at off-4 and returns it. It moves only the two MAC addresses.
func insertTag(buf []byte, off, n int, vlan uint16) []byte {
	copy(buf[off-vlanTagLen:off+8], buf[off:off+12])
	binary.BigEndian.PutUint16(buf[off+8:], etherTypeTag)
	binary.BigEndian.PutUint16(buf[off+10:], vlan)
	return buf[off-vlanTagLen : off+n]
}

func isUnicast(mac []byte) bool { return mac[0]&1 == 0 }
