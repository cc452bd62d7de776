package userspace

import (
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"testing"

	"overlaynet/datapath"
	"overlaynet/datapath/offload"
	"overlaynet/encap"
	"overlaynet/encap/vxlan"
)

// benchOverlay is an overlay in point mode sending to a UDP sink on
// loopback, with no VNICs: enough to measure the switching decision,
// encapsulation and decapsulation without TAP devices.
func benchOverlay(b *testing.B) (*overlay, *net.UDPConn) { return testOverlay(b) }

// testOverlay is benchOverlay for any test.
func testOverlay(b testing.TB) (*overlay, *net.UDPConn) {
	b.Helper()
	sink, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sink.Close() })
	sink.SetReadBuffer(1 << 20)
	go func() { // drain
		buf := make([]byte, 65536)
		for {
			if _, err := sink.Read(buf); err != nil {
				return
			}
		}
	}()
	dp := New(slog.New(slog.DiscardHandler), Options{})
	point := encap.Dest{IP: netip.MustParseAddr("127.0.0.1"), Port: uint16(sink.LocalAddr().(*net.UDPAddr).Port)}
	ov, err := dp.CreateOverlay(datapath.OverlayConfig{Name: "bench", VNetID: 42, Encap: vxlan.Plugin{},
		Listen: netip.MustParseAddrPort("127.0.0.1:0"), MTU: 1400, Point: &point})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ov.Close() })
	return ov.(*overlay), sink
}

func benchFrame() []byte {
	f := make([]byte, 1400)
	copy(f[0:6], []byte{2, 8, 0x20, 0, 0, 2})
	copy(f[6:12], []byte{2, 8, 0x20, 0, 0, 1})
	f[12], f[13] = 0x08, 0x00
	f[14] = 0x45
	f[23] = 17
	return f
}

// BenchmarkForward measures one frame from a VNIC to the underlay: the
// switching decision, the flow hash, VXLAN encapsulation and the send.
func BenchmarkForward(b *testing.B) {
	ov, _ := benchOverlay(b)
	// Under mac-nospoof, as VNICs are by default: the check is measured.
	src := &vnic{ov: ov, name: "src", key: vnicKey{mac: [6]byte{2, 8, 0x20, 0, 0, 1}}}
	src.noSpoof.Store(true)
	buf := make([]byte, headroom+maxFrame)
	frame := benchFrame()
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf[headroom:], frame)
		ov.fromVNIC(src, buf, headroom, len(frame), 0)
	}
	if n := ov.ctr.Snapshot(datapath.Encapsulated)[0].Value; n == 0 {
		b.Fatal("nothing was sent")
	}
}

// TestNoSpoofUserspace: under mac-nospoof a frame from another source MAC
// is dropped and counted, never sent; the VNIC's own MAC passes; with the
// check off both pass.
func TestNoSpoofUserspace(t *testing.T) {
	ov, _ := testOverlay(t)
	src := &vnic{ov: ov, name: "src", key: vnicKey{mac: [6]byte{2, 8, 0x20, 0, 0, 1}}}
	src.noSpoof.Store(true)
	buf := make([]byte, headroom+maxFrame)
	send := func(srcMAC [6]byte) {
		f := benchFrame()
		copy(f[6:12], srcMAC[:])
		copy(buf[headroom:], f)
		ov.fromVNIC(src, buf, headroom, len(f), 0)
	}
	get := func(c datapath.Counter) uint64 { return ov.ctr.Snapshot(c)[0].Value }
	send([6]byte{2, 8, 0x20, 0, 0, 0x99})
	if get(datapath.DropSpoofed) != 1 || get(datapath.Encapsulated) != 0 {
		t.Errorf("spoofed frame: drop-spoofed %d (want 1), encapsulated %d (want 0)", get(datapath.DropSpoofed), get(datapath.Encapsulated))
	}
	send(src.key.mac)
	if get(datapath.DropSpoofed) != 1 || get(datapath.Encapsulated) != 1 {
		t.Errorf("honest frame: drop-spoofed %d (want 1), encapsulated %d (want 1)", get(datapath.DropSpoofed), get(datapath.Encapsulated))
	}
	if err := ov.SetNoSpoof("src", false); err == nil {
		t.Error("SetNoSpoof of a VNIC the overlay does not hold succeeded")
	}
	src.noSpoof.Store(false)
	send([6]byte{2, 8, 0x20, 0, 0, 0x99})
	if get(datapath.DropSpoofed) != 1 || get(datapath.Encapsulated) != 2 {
		t.Errorf("check off: drop-spoofed %d (want 1), encapsulated %d (want 2)", get(datapath.DropSpoofed), get(datapath.Encapsulated))
	}
}

// BenchmarkEncap measures the encapsulation step alone.
func BenchmarkEncap(b *testing.B) {
	buf := make([]byte, headroom+1400)
	b.ReportAllocs()
	for b.Loop() {
		vxlan.Encap(buf[headroom-vxlan.HeaderLen:headroom], 42)
		encap.FlowHash(buf[headroom:])
	}
}

// BenchmarkDecap measures one underlay packet to the switching decision
// (a MAC no VNIC has: counted and dropped, so no TAP is needed).
func BenchmarkDecap(b *testing.B) {
	ov, _ := benchOverlay(b)
	ln := ov.state.Load().ln
	pkt := make([]byte, vxlan.HeaderLen+1400)
	vxlan.Encap(pkt, 42)
	copy(pkt[vxlan.HeaderLen:], benchFrame())
	rx := &rxBatch{c: offload.NewCoalescer()}
	b.SetBytes(int64(len(pkt)))
	b.ReportAllocs()
	for b.Loop() {
		ln.packet(pkt, rx, netip.AddrPort{})
	}
	if n := ov.ctr.Snapshot(datapath.DropNoVNIC)[0].Value; n == 0 {
		b.Fatal("nothing was decapsulated")
	}
}

func TestZeroAllocs(t *testing.T) {
	for name, bench := range map[string]func(*testing.B){"forward": BenchmarkForward, "encap": BenchmarkEncap, "decap": BenchmarkDecap} {
		r := testing.Benchmark(bench)
		if a := r.AllocsPerOp(); a != 0 {
			t.Errorf("%s: %d allocs/op, want 0", name, a)
		}
	}
}

// TestNoSpoofSuperFrame: the check covers TCP super-frames (TSO) read with
// a virtio-net header too: a spoofed one is dropped whole and counted
// once, an honest one leaves as segments.
func TestNoSpoofSuperFrame(t *testing.T) {
	ov, _ := testOverlay(t)
	src := &vnic{ov: ov, name: "src", key: vnicKey{mac: [6]byte{2, 8, 0x20, 0, 0, 1}}}
	src.noSpoof.Store(true)
	tx := newTxScratch(0)
	buf := make([]byte, headroom+maxFrame)
	const payload = 3000
	send := func(srcMAC [6]byte) {
		f := buf[headroom : headroom+14+20+20+payload]
		clear(f)
		copy(f[0:6], []byte{2, 8, 0x20, 0, 0, 2})
		copy(f[6:12], srcMAC[:])
		f[12], f[13] = 0x08, 0x00
		ip := f[14:]
		ip[0], ip[8], ip[9] = 0x45, 64, 6
		binary.BigEndian.PutUint16(ip[2:4], uint16(len(ip)))
		copy(ip[12:16], []byte{10, 0, 0, 1})
		copy(ip[16:20], []byte{10, 0, 0, 2})
		tcp := ip[20:]
		tcp[12] = 5 << 4
		tcp[13] = 0x10 // ACK
		offload.VnetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: 54, GSOSize: 1000,
			CsumStart: 34, CsumOffset: 16}.Encode(buf[headroom-offload.VnetHdrLen:])
		ov.fromVNICOffload(src, tx, buf, len(f))
	}
	get := func(c datapath.Counter) uint64 { return ov.ctr.Snapshot(c)[0].Value }
	send([6]byte{2, 8, 0x20, 0, 0, 0x99})
	if get(datapath.DropSpoofed) != 1 || get(datapath.Encapsulated) != 0 {
		t.Errorf("spoofed super-frame: drop-spoofed %d (want 1), encapsulated %d (want 0)", get(datapath.DropSpoofed), get(datapath.Encapsulated))
	}
	send(src.key.mac)
	if get(datapath.DropSpoofed) != 1 || get(datapath.Encapsulated) != 3 {
		t.Errorf("honest super-frame: drop-spoofed %d (want 1), encapsulated %d (want 3 segments); malformed %d, mtu %d",
			get(datapath.DropSpoofed), get(datapath.Encapsulated), get(datapath.DropMalformed), get(datapath.DropMTU))
	}
}
