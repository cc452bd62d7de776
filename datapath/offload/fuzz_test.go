package offload

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// The guest controls every byte of what it writes to its TAP, virtio-net
// header included; the underlay delivers whatever a peer (or anyone who
// can reach the VXLAN port) sends. These targets feed both to the
// offload code and check what comes out, not only that nothing panics.

// fixFrame makes the lengths and checksums of a TCP frame agree with its
// bytes, so that the fuzzer reaches past the checks that reject frames
// whose checksums are wrong (it would almost never guess them).
func fixFrame(f []byte) {
	t, ok := parseTCP(f)
	if !ok {
		return
	}
	ip := f[t.ipOff:]
	if t.v6 {
		binary.BigEndian.PutUint16(ip[4:], uint16(len(f)-ethLen-ipv6HdrLen))
	} else {
		binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-ethLen))
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:t.ipLen], 0))
	}
	src, dst := t.addrs(f)
	binary.BigEndian.PutUint16(f[t.tcpOff+16:], 0)
	binary.BigEndian.PutUint16(f[t.tcpOff+16:], Checksum(f[t.tcpOff:], PseudoHeader(protoTCP, src, dst, len(f)-t.tcpOff)))
}

// FuzzVnetHdr checks the virtio-net header's encoding and FinishChecksum,
// which completes the partial checksum of a guest's ordinary (non-GSO)
// frame at offsets the guest chose.
func FuzzVnetHdr(f *testing.F) {
	sf, h := superFrame(false, 100, tcpACK)
	f.Add(sf, h.CsumStart, h.CsumOffset)
	sf, h = superFrame(true, 1, tcpACK|tcpPSH)
	f.Add(sf, h.CsumStart, h.CsumOffset)
	f.Add([]byte{1, 2, 3}, uint16(1), uint16(0))
	f.Add([]byte{1, 2, 3, 4}, uint16(0), uint16(0xffff))
	f.Fuzz(func(t *testing.T, data []byte, start, off uint16) {
		if len(data) >= VnetHdrLen {
			h := DecodeVnetHdr(data)
			var b [VnetHdrLen]byte
			h.Encode(b[:])
			if !bytes.Equal(b[:], data[:VnetHdrLen]) || DecodeVnetHdr(b[:]) != h {
				t.Fatalf("header %+v encodes as % x, came from % x", h, b, data[:VnetHdrLen])
			}
		}
		fr := bytes.Clone(data)
		h := VnetHdr{Flags: FlagNeedsCsum, CsumStart: start, CsumOffset: off}
		err := FinishChecksum(fr, h)
		at := int(start) + int(off)
		if at+2 > len(data) {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("checksum at %d+%d of a %d-byte frame: %v", start, off, len(data), err)
			}
			if !bytes.Equal(fr, data) {
				t.Fatal("a refused frame was changed")
			}
			return
		}
		if err != nil {
			t.Fatalf("checksum at %d+%d of a %d-byte frame: %v", start, off, len(data), err)
		}
		// Only the checksum field changes; with it, the bytes from
		// CsumStart sum (with the pseudo-header sum the field held) to
		// a valid checksum, and the field is never 0 (which means "no
		// checksum" to UDP).
		if !bytes.Equal(fr[:at], data[:at]) || !bytes.Equal(fr[at+2:], data[at+2:]) {
			t.Fatal("bytes outside the checksum field changed")
		}
		if off%2 != 0 {
			// A field at an odd offset straddles two of the words
			// summed, so no value in it verifies; the kernel stores
			// the sum there all the same, and so does FinishChecksum.
			// Only the guest's own frame is wrong.
			return
		}
		initial := uint64(binary.BigEndian.Uint16(data[at:]))
		if c := Checksum(fr[start:], initial); c != 0 {
			t.Fatalf("finished checksum does not verify (residue %#x)", c)
		}
		if binary.BigEndian.Uint16(fr[at:]) == 0 {
			t.Fatal("finished checksum is 0")
		}
	})
}

// FuzzSegmentTCP feeds a guest's super-frame, with the GSO size, headroom
// and VLAN tag the data path would use, to SegmentTCP and checks every
// segment: headers complete and consistent, payload at most the MSS and
// all but the last exactly the MSS, sequence numbers and flags right, and
// the payloads together exactly the super-frame's.
func FuzzSegmentTCP(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{0, 1, 999, 1000, 2500} {
			sf, h := superFrame(v6, n, tcpACK|tcpPSH|tcpFIN|tcpCWR)
			f.Add(sf, h.GSOSize, uint8(8), uint16(0))
			f.Add(sf, uint16(7), uint8(0), uint16(5))
		}
	}
	f.Add([]byte{}, uint16(1000), uint8(0), uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, mss uint16, gap uint8, vlan uint16) {
		in := bytes.Clone(data)
		h := VnetHdr{GSOType: GSOTCPv4, GSOSize: mss}
		dst := make([]byte, 1<<20)
		slot, total, n, err := SegmentTCP(dst, in, h, int(gap), vlan)
		if !bytes.Equal(in, data) {
			t.Fatal("SegmentTCP changed its input")
		}
		orig, ok := parseTCP(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			if ok && mss > 0 && int(mss)+orig.ipLen+orig.tcpLen <= maxSuper && (len(data)-orig.hdrLen)/int(mss) < 100 {
				t.Fatalf("a well-formed super-frame was refused: %v", err)
			}
			return
		}
		if !ok || mss == 0 {
			t.Fatalf("segmented a frame that does not parse (mss %d)", mss)
		}
		payload := data[orig.hdrLen:]
		if want := max((len(payload)+int(mss)-1)/int(mss), 1); n != want {
			t.Fatalf("%d segments of %d bytes at MSS %d, want %d", n, len(payload), mss, want)
		}
		tag := 0
		if vlan != 0 {
			tag = 4
		}
		if want := n*(int(gap)+orig.hdrLen+tag) + len(payload); total != want {
			t.Fatalf("total %d, want %d", total, want)
		}
		seq0 := binary.BigEndian.Uint32(data[orig.tcpOff+4:])
		flags0 := data[orig.tcpOff+13]
		id0 := binary.BigEndian.Uint16(data[orig.ipOff+4:])
		var joined []byte
		i := 0
		for o := 0; o < total; o, i = o+slot, i+1 {
			end := min(o+slot, total)
			if end != total && end-o != slot {
				t.Fatalf("slot %d is %d bytes, want %d", i, end-o, slot)
			}
			seg := bytes.Clone(dst[o+int(gap) : end])
			if tag != 0 {
				if binary.BigEndian.Uint16(seg[12:]) != etherVLAN || binary.BigEndian.Uint16(seg[14:]) != vlan {
					t.Fatalf("segment %d: tag % x, want VLAN %d", i, seg[12:16], vlan)
				}
				seg = append(seg[:12:12], seg[16:]...)
			}
			st, ok := parseTCP(seg)
			if !ok || st != orig {
				t.Fatalf("segment %d headers %+v, super-frame's %+v", i, st, orig)
			}
			chunk := seg[st.hdrLen:]
			if len(chunk) > int(mss) || end != total && len(chunk) != int(mss) {
				t.Fatalf("segment %d carries %d bytes at MSS %d", i, len(chunk), mss)
			}
			joined = append(joined, chunk...)
			ip := seg[st.ipOff:]
			if st.v6 {
				if got := int(binary.BigEndian.Uint16(ip[4:])); got != len(seg)-ethLen-ipv6HdrLen {
					t.Fatalf("segment %d: IPv6 payload length %d of %d bytes", i, got, len(seg)-ethLen-ipv6HdrLen)
				}
			} else {
				if got := int(binary.BigEndian.Uint16(ip[2:])); got != len(seg)-ethLen {
					t.Fatalf("segment %d: IPv4 total length %d of %d bytes", i, got, len(seg)-ethLen)
				}
				if Checksum(ip[:st.ipLen], 0) != 0 {
					t.Fatalf("segment %d: bad IPv4 header checksum", i)
				}
				if id := binary.BigEndian.Uint16(ip[4:]); id != id0+uint16(i) {
					t.Fatalf("segment %d: IP id %d, want %d", i, id, id0+uint16(i))
				}
			}
			src, dstA := st.addrs(seg)
			if Checksum(seg[st.tcpOff:], PseudoHeader(protoTCP, src, dstA, len(seg)-st.tcpOff)) != 0 {
				t.Fatalf("segment %d: bad TCP checksum", i)
			}
			tcp := seg[st.tcpOff:]
			if seq := binary.BigEndian.Uint32(tcp[4:]); seq != seq0+uint32(i)*uint32(mss) {
				t.Fatalf("segment %d: seq %d, want %d", i, seq, seq0+uint32(i)*uint32(mss))
			}
			want := flags0
			if i < n-1 {
				want &^= tcpFIN | tcpPSH
			}
			if i > 0 {
				want &^= tcpCWR
			}
			if tcp[13] != want {
				t.Fatalf("segment %d: flags %#x, want %#x", i, tcp[13], want)
			}
			// Everything else in the headers is the super-frame's.
			same := [][2]int{{0, st.ipOff + 2}, {st.ipOff + 6, st.ipOff + 10}, {st.ipOff + 12, st.tcpOff + 4}}
			if st.v6 {
				same = [][2]int{{0, st.ipOff + 4}, {st.ipOff + 6, st.tcpOff + 4}}
			}
			same = append(same, [][2]int{{st.tcpOff + 8, st.tcpOff + 13}, {st.tcpOff + 14, st.tcpOff + 16}, {st.tcpOff + 18, st.hdrLen}}...)
			for _, r := range same {
				if !bytes.Equal(seg[r[0]:r[1]], data[r[0]:r[1]]) {
					t.Fatalf("segment %d: header bytes %d-%d changed", i, r[0], r[1])
				}
			}
		}
		if i != n {
			t.Fatalf("%d slots, %d segments", i, n)
		}
		if !bytes.Equal(joined, payload) {
			t.Fatal("the segments' payloads are not the super-frame's")
		}
	})
}

// FuzzCoalesce feeds runs of frames, as decapsulated from the underlay,
// to a Coalescer the way the data path does (a frame it refuses flushes
// what is held and starts a new run), and checks every flush: one frame
// comes out as it went in; several come out as a GSO super-frame whose
// header is right and which, segmented again, gives back exactly the
// frames that went in (but for their IPv4 ids).
//
// The input is a sequence of frames, each behind a 2-byte length; with
// fix set, every frame's lengths and checksums are made right first.
func FuzzCoalesce(f *testing.F) {
	for _, v6 := range []bool{false, true} {
		for _, n := range []int{1, 2500, 6000} {
			sf, h := superFrame(v6, n, tcpACK|tcpPSH)
			buf := make([]byte, 64<<10)
			slot, total, _, err := SegmentTCP(buf, sf, h, 0, 0)
			if err != nil {
				f.Fatal(err)
			}
			var in []byte
			for o := 0; o < total; o += slot {
				s := buf[o:min(o+slot, total)]
				in = binary.BigEndian.AppendUint16(in, uint16(len(s)))
				in = append(in, s...)
			}
			f.Add(in, false)
		}
	}
	f.Add([]byte{0, 3, 1, 2, 3}, true)
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		var frames [][]byte
		for len(data) >= 2 {
			n := min(int(binary.BigEndian.Uint16(data)), len(data)-2)
			fr := bytes.Clone(data[2 : 2+n])
			if fix {
				fixFrame(fr)
			}
			frames = append(frames, fr)
			data = data[2+n:]
		}
		c := NewCoalescer()
		var held [][]byte
		for _, fr := range frames {
			if c.Add(fr) {
				held = append(held, fr)
				continue
			}
			checkFlush(t, c, held)
			held = nil
			if c.Add(fr) {
				held = append(held, fr)
			} else if c.Pending() != 0 {
				t.Fatal("a refused frame is held")
			}
		}
		checkFlush(t, c, held)
	})
}

func checkFlush(t *testing.T, c *Coalescer, held [][]byte) {
	t.Helper()
	if c.Pending() != len(held) {
		t.Fatalf("%d frames pending, %d added", c.Pending(), len(held))
	}
	out := c.Flush()
	if c.Pending() != 0 {
		t.Fatal("frames pending after Flush")
	}
	if len(held) == 0 {
		if out != nil {
			t.Fatalf("an empty coalescer flushed %d bytes", len(out))
		}
		return
	}
	h := DecodeVnetHdr(out)
	sup := bytes.Clone(out[VnetHdrLen:])
	if len(held) == 1 {
		if h != (VnetHdr{Flags: FlagDataValid}) || !bytes.Equal(sup, held[0]) {
			t.Fatalf("one frame flushed as %+v, %d bytes (went in as %d)", h, len(sup), len(held[0]))
		}
		return
	}
	first, _ := parseTCP(held[0])
	want := VnetHdr{Flags: FlagNeedsCsum, GSOType: GSOTCPv4, HdrLen: uint16(first.hdrLen),
		GSOSize: uint16(len(held[0]) - first.hdrLen), CsumStart: uint16(first.tcpOff), CsumOffset: 16}
	if first.v6 {
		want.GSOType = GSOTCPv6
	}
	if h != want {
		t.Fatalf("super-frame header %+v, want %+v", h, want)
	}
	size := first.hdrLen
	for _, fr := range held {
		size += len(fr) - first.hdrLen
	}
	if len(sup) != size || len(sup)-ethLen > maxSuper {
		t.Fatalf("super-frame of %d bytes, frames carried %d", len(sup), size)
	}
	st, ok := parseTCP(sup)
	if !ok || st != first {
		t.Fatalf("super-frame headers %+v, first frame's %+v", st, first)
	}
	ip := sup[st.ipOff:]
	if st.v6 {
		if int(binary.BigEndian.Uint16(ip[4:])) != len(sup)-ethLen-ipv6HdrLen {
			t.Fatal("super-frame IPv6 payload length wrong")
		}
	} else {
		if int(binary.BigEndian.Uint16(ip[2:])) != len(sup)-ethLen || Checksum(ip[:st.ipLen], 0) != 0 {
			t.Fatal("super-frame IPv4 total length or header checksum wrong")
		}
	}
	// The kernel finishes the partial checksum: it must then verify.
	fin := bytes.Clone(sup)
	if err := FinishChecksum(fin, h); err != nil {
		t.Fatal(err)
	}
	src, dst := st.addrs(fin)
	if Checksum(fin[st.tcpOff:], PseudoHeader(protoTCP, src, dst, len(fin)-st.tcpOff)) != 0 {
		t.Fatal("super-frame TCP checksum does not verify once finished")
	}
	// Segmented again (as the guest's kernel would see it), it gives
	// back the frames that went in; only IPv4 ids may differ.
	buf := make([]byte, 2*len(sup)+len(held)*st.hdrLen)
	slot, total, n, err := SegmentTCP(buf, sup, h, 0, 0)
	if err != nil || n != len(held) {
		t.Fatalf("re-segmenting the super-frame: %d segments, %v; %d went in", n, err, len(held))
	}
	for i, o := 0, 0; o < total; i, o = i+1, o+slot {
		seg, fr := buf[o:min(o+slot, total)], held[i]
		if len(seg) != len(fr) {
			t.Fatalf("segment %d: %d bytes, went in as %d", i, len(seg), len(fr))
		}
		if !st.v6 {
			seg, fr = bytes.Clone(seg), bytes.Clone(fr)
			clear(seg[st.ipOff+4 : st.ipOff+6])
			clear(seg[st.ipOff+10 : st.ipOff+12])
			clear(fr[st.ipOff+4 : st.ipOff+6])
			clear(fr[st.ipOff+10 : st.ipOff+12])
		}
		if !bytes.Equal(seg, fr) {
			t.Fatalf("segment %d differs from the frame that went in:\n% x\n% x", i, seg, fr)
		}
	}
}
