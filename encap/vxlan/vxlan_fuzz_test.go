package vxlan

import (
	"errors"
	"testing"
	"unsafe"
)

func FuzzDecap(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x08})
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x08, 0, 0, 0, 0, 0, 0x2a, 0})
	f.Add([]byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0, 0xde, 0xad})
	f.Add([]byte{0x00, 0, 0, 0, 0, 0, 0x2a, 0, 1, 2, 3})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		vni, inner, err := Decap(pkt)
		switch {
		case len(pkt) < HeaderLen:
			if !errors.Is(err, ErrShort) {
				t.Fatalf("Decap(%d bytes) error %v, want ErrShort", len(pkt), err)
			}
		case pkt[0]&flagI == 0:
			if !errors.Is(err, ErrNoIFlag) {
				t.Fatalf("Decap without I flag: error %v, want ErrNoIFlag", err)
			}
		default:
			if err != nil {
				t.Fatalf("Decap(valid header) error %v", err)
			}
		}
		if err != nil {
			if vni != 0 || inner != nil {
				t.Fatalf("Decap error %v with vni %d inner %v", err, vni, inner)
			}
			return
		}
		if len(inner) != len(pkt)-HeaderLen {
			t.Fatalf("len(inner) = %d, want %d", len(inner), len(pkt)-HeaderLen)
		}
		if len(inner) > 0 && unsafe.SliceData(inner) != &pkt[HeaderLen] {
			t.Fatal("inner is not a sub-slice of pkt")
		}
		if vni > MaxVNI {
			t.Fatalf("VNI %#x exceeds 24 bits", vni)
		}
		hdr := make([]byte, HeaderLen)
		Encap(hdr, vni)
		vni2, inner2, err := Decap(hdr)
		if err != nil {
			t.Fatalf("Decap(Encap(%d)) error %v", vni, err)
		}
		if vni2 != vni || len(inner2) != 0 {
			t.Fatalf("Decap(Encap(%d)) = %d, %d bytes", vni, vni2, len(inner2))
		}
		// Only the I flag and the VNI bytes matter.
		if hdr[0] != 0x08 || hdr[4] != pkt[4] || hdr[5] != pkt[5] || hdr[6] != pkt[6] {
			t.Fatalf("Encap(%d) = % x, packet header % x", vni, hdr, pkt[:HeaderLen])
		}
	})
}
