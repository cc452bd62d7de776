package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"
)

// superFrame builds an untagged TCP super-frame with n payload bytes, as
// a TAP with TSO would hand it over (IP lengths for the whole thing, TCP
// checksum partial).
func superFrame(v6 bool, n int, flags byte) ([]byte, VnetHdr) {
	r := rand.New(rand.NewPCG(uint64(n), 7))
	ipLen := 20
	if v6 {
		ipLen = 40
	}
	f := make([]byte, ethLen+ipLen+32+n)
	copy(f[0:6], []byte{2, 8, 0x20, 0, 0, 2})
	copy(f[6:12], []byte{2, 8, 0x20, 0, 0, 1})
	ip := f[ethLen:]
	var src, dst []byte
	if v6 {
		binary.BigEndian.PutUint16(f[12:], etherIPv6)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(32+n))
		ip[6], ip[7] = protoTCP, 64
		copy(ip[8:24], []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
		copy(ip[24:40], []byte{0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2})
		src, dst = ip[8:24], ip[24:40]
	} else {
		binary.BigEndian.PutUint16(f[12:], etherIPv4)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+32+n))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		ip[6] = 0x40 // DF
		ip[8], ip[9] = 64, protoTCP
		copy(ip[12:16], []byte{10, 0, 0, 1})
		copy(ip[16:20], []byte{10, 0, 0, 2})
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:20], 0))
		src, dst = ip[12:16], ip[16:20]
	}
	tcp := f[ethLen+ipLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5201)
	binary.BigEndian.PutUint32(tcp[4:], 0xfffff000) // wraps
	binary.BigEndian.PutUint32(tcp[8:], 777)
	tcp[12] = 8 << 4 // 32 bytes: 12 of options
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 500)
	copy(tcp[20:32], []byte{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) // NOP NOP TS
	for i := range tcp[32:] {
		tcp[32+i] = byte(r.Uint32())
	}
	binary.BigEndian.PutUint16(tcp[16:], Fold(PseudoHeader(protoTCP, src, dst, 32+n)))
	gso := uint8(GSOTCPv4)
	if v6 {
		gso = GSOTCPv6
	}
	return f, VnetHdr{Flags: FlagNeedsCsum, GSOType: gso, HdrLen: uint16(ethLen + ipLen + 32), GSOSize: 1000,
		CsumStart: uint16(ethLen + ipLen), CsumOffset: 16}
}

func segments(t *testing.T, f []byte, h VnetHdr, gap int) [][]byte {
	t.Helper()
	buf := make([]byte, 128<<10)
	slot, total, n, err := SegmentTCP(buf, f, h, gap, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for off := 0; off < total; off += slot {
		end := min(off+slot, total)
		out = append(out, buf[off+gap:end])
	}
	if len(out) != n {
		t.Fatalf("%d slots, %d segments", len(out), n)
	}
	return out
}

func checkSegment(t *testing.T, s []byte) {
	t.Helper()
	tf, ok := parseTCP(s)
	if !ok {
		t.Fatal("segment does not parse")
	}
	if !tf.v6 {
		if Checksum(s[ethLen:ethLen+20], 0) != 0 {
			t.Error("bad IPv4 header checksum")
		}
		if int(binary.BigEndian.Uint16(s[ethLen+2:])) != len(s)-ethLen {
			t.Error("bad IPv4 total length")
		}
	}
	src, dst := tf.addrs(s)
	if Checksum(s[tf.tcpOff:], PseudoHeader(protoTCP, src, dst, len(s)-tf.tcpOff)) != 0 {
		t.Error("bad TCP checksum")
	}
}

func TestSegmentAndCoalesce(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{1, 999, 1000, 1001, 2500, 30000, 64000} {
			f, h := superFrame(v6, n, tcpACK|tcpPSH)
			segs := segments(t, f, h, 8)
			if want := (n + 999) / 1000; len(segs) != want {
				t.Fatalf("v6=%v n=%d: %d segments, want %d", v6, n, len(segs), want)
			}
			var payload []byte
			for i, s := range segs {
				checkSegment(t, s)
				tf, _ := parseTCP(s)
				fl := s[tf.tcpOff+13]
				if i < len(segs)-1 && fl&tcpPSH != 0 || i == len(segs)-1 && fl&tcpPSH == 0 {
					t.Errorf("segment %d flags %#x", i, fl)
				}
				if seq := binary.BigEndian.Uint32(s[tf.tcpOff+4:]); seq != 0xfffff000+uint32(i*1000) {
					t.Errorf("segment %d seq %#x", i, seq)
				}
				payload = append(payload, s[tf.hdrLen:]...)
			}
			tf, _ := parseTCP(f)
			if !bytes.Equal(payload, f[tf.hdrLen:]) {
				t.Fatal("segments do not carry the payload")
			}
			// And back.
			c := NewCoalescer()
			for i, s := range segs {
				if !c.Add(s) {
					t.Fatalf("v6=%v n=%d: segment %d refused", v6, n, i)
				}
			}
			out := c.Flush()
			hdr := DecodeVnetHdr(out)
			sf := out[VnetHdrLen:]
			if len(segs) > 1 {
				if hdr.GSOSize != 1000 || hdr.Flags != FlagNeedsCsum || int(hdr.HdrLen) != tf.hdrLen {
					t.Errorf("GSO header %+v", hdr)
				}
				// What the kernel would do with it: segment again.
				again := segments(t, sf, hdr, 0)
				if len(again) != len(segs) {
					t.Fatalf("re-segmented into %d", len(again))
				}
				for i := range segs {
					if !bytes.Equal(again[i], segs[i]) {
						t.Fatalf("v6=%v n=%d: segment %d differs after coalescing and re-segmenting", v6, n, i)
					}
				}
			} else if hdr.Flags != FlagDataValid || !bytes.Equal(sf, segs[0]) {
				t.Errorf("single segment: %+v", hdr)
			}
		}
	}
}

func TestCoalesceRefuses(t *testing.T) {
	f, h := superFrame(false, 3000, tcpACK)
	segs := segments(t, f, h, 0)
	c := NewCoalescer()
	if !c.Add(segs[0]) {
		t.Fatal("first refused")
	}
	if c.Add(segs[2]) {
		t.Error("a gap in the sequence was accepted")
	}
	bad := append([]byte(nil), segs[1]...)
	bad[len(bad)-1] ^= 0xff
	if c.Add(bad) {
		t.Error("a bad checksum was accepted")
	}
	other := append([]byte(nil), segs[1]...)
	other[0] = 0x0a // another destination MAC
	if c.Add(other) {
		t.Error("another flow was accepted")
	}
	if !c.Add(segs[1]) || c.Pending() != 2 {
		t.Error("the right segment was refused")
	}
	syn, _ := superFrame(false, 10, tcpSYN|tcpACK)
	if NewCoalescer().Add(syn) {
		t.Error("a SYN was accepted")
	}
}

func TestFinishChecksum(t *testing.T) {
	f, h := superFrame(false, 500, tcpACK)
	h.GSOType = GSONone
	if err := FinishChecksum(f, h); err != nil {
		t.Fatal(err)
	}
	checkSegment(t, f)
	if FinishChecksum(f[:30], h) == nil {
		t.Error("a checksum past the frame was accepted")
	}
}

func BenchmarkSegment64K(b *testing.B) {
	f, h := superFrame(false, 64000, tcpACK)
	h.GSOSize = 1398
	buf := make([]byte, 128<<10)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, err := SegmentTCP(buf, f, h, 8, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// A GSO size that would make IP packets above 65535 bytes (their length
// fields have 16 bits) is refused rather than segmented with truncated
// lengths.
func TestSegmentRefusesOversizedSegments(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		f, h := superFrame(v6, 70000, tcpACK)
		h.GSOSize = 65535
		buf := make([]byte, 256<<10)
		if _, _, _, err := SegmentTCP(buf, f, h, 0, 0); !errors.Is(err, ErrMalformed) {
			t.Errorf("v6=%v: GSO size 65535 with %d-byte headers: %v, want ErrMalformed", v6, h.HdrLen, err)
		}
		// The largest segment that fits is made, with its length right.
		h.GSOSize = uint16(maxSuper - int(h.HdrLen) + ethLen)
		segs := segments(t, f, h, 0)
		if len(segs[0])-ethLen != maxSuper {
			t.Errorf("v6=%v: first segment %d bytes of IP, want %d", v6, len(segs[0])-ethLen, maxSuper)
		}
		checkSegment(t, segs[0])
	}
}
