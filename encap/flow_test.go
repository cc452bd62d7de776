package encap

import (
	"bytes"
	"encoding/binary"
	"testing"
)

var (
	macA = []byte{0x02, 0x08, 0x20, 0xaa, 0xbb, 0x01}
	macB = []byte{0x02, 0x08, 0x20, 0xaa, 0xbb, 0x02}
)

// flow describes a frame to build.
type flow struct {
	dst, src []byte // MACs
	vlan     int    // TCI; -1 for untagged
	v6       bool
	srcIP    []byte // 4 or 16 bytes
	dstIP    []byte
	proto    byte
	sport    uint16
	dport    uint16
	frag     uint16 // IPv4 flags+fragment offset field
	ihl      int    // IPv4 header length in 32-bit words; 0 means 5
	ttl      byte
	id       uint16
	payload  []byte
}

func v4(a, b, c, d byte) []byte { return []byte{a, b, c, d} }

func v6(last byte) []byte {
	ip := []byte{0x20, 0x01, 0x0d, 0xb8, 15: 0}
	ip[15] = last
	return ip
}

func tcp4() flow {
	return flow{dst: macB, src: macA, vlan: -1, srcIP: v4(10, 0, 0, 1), dstIP: v4(10, 0, 0, 2),
		proto: 6, sport: 40000, dport: 80, ttl: 64, payload: []byte("GET / HTTP/1.1\r\n")}
}

func udp6() flow {
	return flow{dst: macB, src: macA, vlan: -1, v6: true, srcIP: v6(1), dstIP: v6(2),
		proto: 17, sport: 5353, dport: 53, ttl: 64, payload: []byte("query")}
}

func (f flow) bytes() []byte {
	var b []byte
	b = append(b, f.dst...)
	b = append(b, f.src...)
	if f.vlan >= 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, uint16(f.vlan))
	}
	l4 := binary.BigEndian.AppendUint16(nil, f.sport)
	l4 = binary.BigEndian.AppendUint16(l4, f.dport)
	l4 = append(l4, 0, 0, 0, 1, 0, 0, 0, 0) // rest of a tiny L4 header
	l4 = append(l4, f.payload...)
	if f.v6 {
		b = binary.BigEndian.AppendUint16(b, 0x86dd)
		b = append(b, 0x60, 0, 0, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(l4)))
		b = append(b, f.proto, f.ttl)
		b = append(b, f.srcIP...)
		b = append(b, f.dstIP...)
	} else {
		ihl := f.ihl
		if ihl == 0 {
			ihl = 5
		}
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		hdr := make([]byte, max(ihl*4, 20))
		hdr[0] = 0x40 | byte(ihl&0x0f)
		binary.BigEndian.PutUint16(hdr[2:], uint16(len(hdr)+len(l4)))
		binary.BigEndian.PutUint16(hdr[4:], f.id)
		binary.BigEndian.PutUint16(hdr[6:], f.frag)
		hdr[8] = f.ttl
		hdr[9] = f.proto
		copy(hdr[12:16], f.srcIP)
		copy(hdr[16:20], f.dstIP)
		for i := 20; i < len(hdr); i++ {
			hdr[i] = 0x01 // NOP options
		}
		b = append(b, hdr...)
	}
	return append(b, l4...)
}

func TestFlowHashSameFlow(t *testing.T) {
	tests := []struct {
		name string
		a, b flow
	}{
		{"identical v4", tcp4(), tcp4()},
		{"identical v6", udp6(), udp6()},
		{"v4 payload differs", tcp4(), with(tcp4(), func(f *flow) { f.payload = []byte("other data, longer") })},
		{"v4 ttl and id differ", tcp4(), with(tcp4(), func(f *flow) { f.ttl = 3; f.id = 999 })},
		{"v4 empty payload", tcp4(), with(tcp4(), func(f *flow) { f.payload = nil })},
		{"v6 payload differs", udp6(), with(udp6(), func(f *flow) { f.payload = bytes.Repeat([]byte{1}, 1000) })},
		{"v6 hop limit differs", udp6(), with(udp6(), func(f *flow) { f.ttl = 1 })},
		{"vlan payload differs", with(tcp4(), func(f *flow) { f.vlan = 100 }),
			with(tcp4(), func(f *flow) { f.vlan = 100; f.payload = []byte("x") })},
		{"icmp ignores l4 bytes", with(tcp4(), func(f *flow) { f.proto = 1; f.sport = 0x0800 }),
			with(tcp4(), func(f *flow) { f.proto = 1; f.sport = 0x0000; f.dport = 7 })},
		{"first fragment vs unfragmented", tcp4(), with(tcp4(), func(f *flow) { f.frag = 0x2000 })},
		{"df flag ignored", tcp4(), with(tcp4(), func(f *flow) { f.frag = 0x4000 })},
		{"later fragments ignore ports", with(tcp4(), func(f *flow) { f.frag = 0x2000 | 185 }),
			with(tcp4(), func(f *flow) { f.frag = 185; f.sport = 1; f.dport = 2 })},
		{"bad ihl ignores ports", with(tcp4(), func(f *flow) { f.ihl = 4 }),
			with(tcp4(), func(f *flow) { f.ihl = 4; f.sport = 1 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha, hb := FlowHash(tt.a.bytes()), FlowHash(tt.b.bytes())
			if ha != hb {
				t.Errorf("hashes differ: %#x vs %#x", ha, hb)
			}
		})
	}
}

func with(f flow, change func(*flow)) flow {
	change(&f)
	return f
}

func TestFlowHashDifferentFlows(t *testing.T) {
	tests := []struct {
		name string
		a, b flow
	}{
		{"v4 source port", tcp4(), with(tcp4(), func(f *flow) { f.sport = 40001 })},
		{"v4 destination port", tcp4(), with(tcp4(), func(f *flow) { f.dport = 443 })},
		{"v4 source ip", tcp4(), with(tcp4(), func(f *flow) { f.srcIP = v4(10, 0, 0, 3) })},
		{"v4 destination ip", tcp4(), with(tcp4(), func(f *flow) { f.dstIP = v4(10, 0, 1, 2) })},
		{"v4 protocol", tcp4(), with(tcp4(), func(f *flow) { f.proto = 17 })},
		{"v4 sctp ports", with(tcp4(), func(f *flow) { f.proto = 132 }),
			with(tcp4(), func(f *flow) { f.proto = 132; f.dport = 81 })},
		{"v4 udp ports", with(tcp4(), func(f *flow) { f.proto = 17 }),
			with(tcp4(), func(f *flow) { f.proto = 17; f.sport = 1 })},
		{"v4 ports after options", with(tcp4(), func(f *flow) { f.ihl = 7 }),
			with(tcp4(), func(f *flow) { f.ihl = 7; f.dport = 8080 })},
		{"source mac", tcp4(), with(tcp4(), func(f *flow) { f.src = macB; f.dst = macB })},
		{"destination mac", tcp4(), with(tcp4(), func(f *flow) { f.dst = macA })},
		{"vlan vs untagged", tcp4(), with(tcp4(), func(f *flow) { f.vlan = 100 })},
		{"vlan id", with(tcp4(), func(f *flow) { f.vlan = 100 }), with(tcp4(), func(f *flow) { f.vlan = 200 })},
		{"v6 source port", udp6(), with(udp6(), func(f *flow) { f.sport = 5354 })},
		{"v6 destination port", udp6(), with(udp6(), func(f *flow) { f.dport = 54 })},
		{"v6 source ip", udp6(), with(udp6(), func(f *flow) { f.srcIP = v6(3) })},
		{"v6 destination ip", udp6(), with(udp6(), func(f *flow) { f.dstIP = v6(4) })},
		{"v6 protocol", udp6(), with(udp6(), func(f *flow) { f.proto = 6 })},
		{"first fragment keeps ports", with(tcp4(), func(f *flow) { f.frag = 0x2000 }),
			with(tcp4(), func(f *flow) { f.frag = 0x2000; f.sport = 1 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ha, hb := FlowHash(tt.a.bytes()), FlowHash(tt.b.bytes())
			if ha == hb {
				t.Errorf("different flows hash the same: %#x", ha)
			}
		})
	}
}

func TestFlowHashSpread(t *testing.T) {
	// Many flows differing only in one field should almost never collide.
	tests := []struct {
		name string
		make func(i int) flow
	}{
		{"v4 source ports", func(i int) flow { return with(tcp4(), func(f *flow) { f.sport = uint16(1024 + i) }) }},
		{"v4 destination ports", func(i int) flow { return with(tcp4(), func(f *flow) { f.dport = uint16(i) }) }},
		{"v4 source ips", func(i int) flow {
			return with(tcp4(), func(f *flow) { f.srcIP = v4(10, 1, byte(i>>8), byte(i)) })
		}},
		{"v6 source ports", func(i int) flow { return with(udp6(), func(f *flow) { f.sport = uint16(i) }) }},
		{"v6 destination ips", func(i int) flow {
			return with(udp6(), func(f *flow) { f.dstIP = v6(byte(i)); f.dstIP[14] = byte(i >> 8) })
		}},
		{"vlans", func(i int) flow { return with(tcp4(), func(f *flow) { f.vlan = i & 0xfff }) }},
	}
	const n = 4000
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			seen := map[uint32]bool{}
			// Also look at the spread of the low 16 bits, which a
			// UDP source port would carry.
			low := map[uint16]bool{}
			for i := range n {
				h := FlowHash(tt.make(i).bytes())
				seen[h] = true
				low[uint16(h)] = true
			}
			if len(seen) < n-2 {
				t.Errorf("%d flows gave only %d distinct hashes", n, len(seen))
			}
			if len(low) < n*9/10 {
				t.Errorf("%d flows gave only %d distinct low 16 bits", n, len(low))
			}
		})
	}
}

func TestFlowHashNonIP(t *testing.T) {
	frame := func(etype uint16, payload string) []byte {
		b := append(append([]byte{}, macB...), macA...)
		b = binary.BigEndian.AppendUint16(b, etype)
		return append(b, payload...)
	}
	arp1 := frame(0x0806, "who has 10.0.0.2")
	arp2 := frame(0x0806, "who has 10.0.0.3 and other bytes")
	if FlowHash(arp1) != FlowHash(arp2) {
		t.Error("non-IP frames of the same MACs and type hash differently by payload")
	}
	if FlowHash(arp1) == FlowHash(frame(0x88cc, "who has 10.0.0.2")) {
		t.Error("the ethertype of a non-IP frame does not change the hash")
	}
	// A tagged non-IP frame includes the VLAN.
	tag := func(vid uint16, etype uint16) []byte {
		b := append(append([]byte{}, macB...), macA...)
		b = binary.BigEndian.AppendUint16(b, 0x8100)
		b = binary.BigEndian.AppendUint16(b, vid)
		b = binary.BigEndian.AppendUint16(b, etype)
		return append(b, "payload"...)
	}
	if FlowHash(tag(5, 0x0806)) == FlowHash(tag(6, 0x0806)) {
		t.Error("VLAN id of a tagged ARP frame does not change the hash")
	}
	if FlowHash(tag(5, 0x0806)) != FlowHash(append(tag(5, 0x0806), "more"...)) {
		t.Error("tagged ARP frame hash depends on payload")
	}
	// IP frames too short for their header hash like frames without L3.
	shortV4 := frame(0x0800, "short")
	if FlowHash(shortV4) != FlowHash(frame(0x0800, "other")) {
		t.Error("truncated IPv4 frame hash depends on its bytes after the Ethernet header")
	}
	if FlowHash(frame(0x86dd, "x")) != FlowHash(frame(0x86dd, "")) {
		t.Error("truncated IPv6 frame hash depends on its bytes after the Ethernet header")
	}
}

func TestFlowHashDeterministic(t *testing.T) {
	// The hash is a pure function of the bytes: fixed values guard
	// against accidental changes that would move flows between paths
	// on an upgrade, and against per-process seeding.
	frames := [][]byte{nil, {}, {1}, tcp4().bytes(), udp6().bytes()}
	for _, f := range frames {
		h := FlowHash(f)
		for range 3 {
			if FlowHash(bytes.Clone(f)) != h {
				t.Fatalf("FlowHash(% x) is not deterministic", f)
			}
		}
	}
	if got := FlowHash(nil); got != fnvOffset {
		t.Errorf("FlowHash(nil) = %#x, want the FNV offset basis %#x", got, uint32(fnvOffset))
	}
	// FNV-1a of "a" is 0xe40c292c.
	if got := FlowHash([]byte("a")); got != 0xe40c292c {
		t.Errorf("FlowHash(\"a\") = %#x, want FNV-1a 0xe40c292c", got)
	}
}

func TestFlowHashTruncatedNoPanic(t *testing.T) {
	frames := map[string][]byte{
		"v4":            tcp4().bytes(),
		"v4 options":    with(tcp4(), func(f *flow) { f.ihl = 15 }).bytes(),
		"v4 vlan":       with(tcp4(), func(f *flow) { f.vlan = 7 }).bytes(),
		"v4 bad ihl":    with(tcp4(), func(f *flow) { f.ihl = 1 }).bytes(),
		"v4 fragment":   with(tcp4(), func(f *flow) { f.frag = 100 }).bytes(),
		"v6":            udp6().bytes(),
		"v6 vlan":       with(udp6(), func(f *flow) { f.vlan = 4095 }).bytes(),
		"v6 no payload": with(udp6(), func(f *flow) { f.payload = nil }).bytes(),
	}
	for name, full := range frames {
		for n := 0; n <= len(full); n++ {
			frame := full[:n:n]
			orig := bytes.Clone(frame)
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s truncated to %d bytes: panic %v", name, n, r)
					}
				}()
				FlowHash(frame)
			}()
			if !bytes.Equal(frame, orig) {
				t.Errorf("%s truncated to %d bytes: FlowHash modified the frame", name, n)
			}
		}
	}
	// An IHL larger than the frame holds must not read ports past the end.
	long := with(tcp4(), func(f *flow) { f.ihl = 15 }).bytes()
	cut := long[:14+40] // IHL says 60 bytes, only 40 present
	if FlowHash(cut) != FlowHash(with(tcp4(), func(f *flow) { f.ihl = 15; f.sport = 9 }).bytes()[:14+40]) {
		t.Error("ports read from beyond a truncated IPv4 header")
	}
}

func TestFlowHashTruncatedPorts(t *testing.T) {
	// Frames cut inside the L4 header hash without ports, so two flows
	// that differ only in the missing bytes hash the same.
	a := tcp4().bytes()
	b := with(tcp4(), func(f *flow) { f.sport = 1; f.dport = 2 }).bytes()
	l4 := 14 + 20
	for n := l4; n < l4+4; n++ {
		if FlowHash(a[:n]) != FlowHash(b[:n]) {
			t.Errorf("frame cut to %d bytes: hash depends on a partial port field", n)
		}
	}
	if FlowHash(a[:l4+4]) == FlowHash(b[:l4+4]) {
		t.Error("frame with complete ports: ports ignored")
	}
}

func TestFlowHashDoesNotAllocate(t *testing.T) {
	frames := [][]byte{tcp4().bytes(), udp6().bytes(), with(tcp4(), func(f *flow) { f.vlan = 9 }).bytes(), {1, 2, 3}}
	for _, f := range frames {
		allocs := testing.AllocsPerRun(200, func() { FlowHash(f) })
		if allocs != 0 {
			t.Errorf("FlowHash(%d-byte frame) allocates %v times, want 0", len(f), allocs)
		}
	}
}

func FuzzFlowHash(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3})
	f.Add(tcp4().bytes())
	f.Add(udp6().bytes())
	f.Add(with(tcp4(), func(f *flow) { f.vlan = 42 }).bytes())
	f.Add(with(udp6(), func(f *flow) { f.vlan = 42 }).bytes())
	f.Add(with(tcp4(), func(f *flow) { f.ihl = 15 }).bytes())
	f.Add(with(tcp4(), func(f *flow) { f.frag = 0x2000 | 1 }).bytes())
	f.Add(with(tcp4(), func(f *flow) { f.proto = 132 }).bytes()[:14+20+2])
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		h := FlowHash(frame)
		if !bytes.Equal(frame, orig) {
			t.Fatal("FlowHash modified the frame")
		}
		if FlowHash(orig) != h {
			t.Fatal("FlowHash is not deterministic")
		}
	})
}

func BenchmarkFlowHash(b *testing.B) {
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"ipv4-tcp", tcp4().bytes()},
		{"ipv6-udp", udp6().bytes()},
		{"vlan-ipv4", with(tcp4(), func(f *flow) { f.vlan = 10 }).bytes()},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var sink uint32
			for b.Loop() {
				sink += FlowHash(bc.frame)
			}
			_ = sink
		})
	}
}
