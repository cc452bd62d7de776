package userspace

import (
	"bytes"
	"encoding/binary"
	"testing"

	"overlaynet/datapath"
	"overlaynet/datapath/offload"
)

// FuzzSuperFrame is the path a guest's TCP super-frame takes before it
// is sent: admitSuper decides whether it may be segmented (the guest
// chose its headers and its virtio-net header alike), then SegmentTCP
// cuts it into the worker's scratch buffer behind the encapsulation
// headroom. No segment of an admitted frame may exceed the overlay MTU,
// whatever the guest claimed in hdr_len.
func FuzzSuperFrame(f *testing.F) {
	tcp4 := make([]byte, 14+20+20+3000)
	binary.BigEndian.PutUint16(tcp4[12:], 0x0800)
	tcp4[14], tcp4[14+9] = 0x45, 6
	tcp4[14+20+12] = 5 << 4
	tcp6 := make([]byte, 14+40+32+3000)
	binary.BigEndian.PutUint16(tcp6[12:], 0x86dd)
	tcp6[14], tcp6[14+6] = 0x60, 6
	tcp6[14+40+12] = 8 << 4
	for _, fr := range [][]byte{tcp4, tcp6} {
		f.Add(fr, uint8(offload.GSOTCPv4), uint16(1448), uint16(54), uint16(1500))
		f.Add(fr, uint8(offload.GSOTCPv6|offload.GSOECN), uint16(1460), uint16(0), uint16(1500))
		f.Add(fr, uint8(offload.GSOTCPv4), uint16(8000), uint16(0), uint16(9000))
		f.Add(fr, uint8(offload.GSOUDP), uint16(1000), uint16(0), uint16(1500))
	}
	tx := newTxScratch(0)
	f.Fuzz(func(t *testing.T, frame []byte, gsoType uint8, gsoSize, hdrLen, mtu uint16) {
		if len(frame) > maxFrame {
			return // a TAP read is at most this long
		}
		h := offload.VnetHdr{Flags: offload.FlagNeedsCsum, GSOType: gsoType, GSOSize: gsoSize, HdrLen: hdrLen}
		drop, ok := admitSuper(frame, h, int(mtu))
		if !ok {
			if drop != datapath.DropMalformed && drop != datapath.DropMTU {
				t.Fatalf("refused, counting %v", drop)
			}
			return
		}
		if g := gsoType &^ offload.GSOECN; g != offload.GSOTCPv4 && g != offload.GSOTCPv6 {
			t.Fatalf("admitted GSO type %#x", gsoType)
		}
		in := bytes.Clone(frame)
		slot, total, n, err := offload.SegmentTCP(tx.segs, in, h, headroom, 0)
		if err != nil {
			// Only GSO size 0, or a run of segments too long for the
			// scratch buffer (a tiny GSO size), may be refused here.
			hl, _ := offload.TCPHeaderLen(frame)
			payload := len(frame) - hl
			if need := max((payload+int(gsoSize)-1)/max(int(gsoSize), 1), 1)*(headroom+hl) + payload; gsoSize != 0 && need <= len(tx.segs) {
				t.Fatalf("admitted super-frame of %d bytes at GSO size %d not segmented: %v", len(frame), gsoSize, err)
			}
			return
		}
		count := 0
		for off := 0; off < total; off += slot {
			seg := tx.segs[off+headroom : min(off+slot, total)]
			if ipLen := len(seg) - ethHeaderLen; ipLen > int(mtu) {
				t.Fatalf("segment %d: %d bytes of IP, MTU %d", count, ipLen, mtu)
			}
			count++
		}
		if count != n {
			t.Fatalf("%d slots, %d segments", count, n)
		}
	})
}
