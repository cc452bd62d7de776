package userspace

import (
	"bytes"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"overlaynet/datapath"
	"overlaynet/datapath/offload"
	"overlaynet/encap"
	"overlaynet/encap/vxlan"
	"overlaynet/ether"
	"overlaynet/proxy"
)

// The switch's unit tests: the userspace data path on in-memory VNICs and
// underlay sockets (fakeio_test.go), without root or namespaces. A test
// is the worker: it queues what guests and peers send and drains the
// queues, as a worker does when epoll says they are ready.

var (
	swListen = netip.MustParseAddrPort("192.0.2.1:4789")
	swPeer   = encap.Dest{IP: netip.MustParseAddr("192.0.2.2"), Port: 4789}
	macA     = ether.MAC{2, 8, 0x20, 0, 0, 0xa}
	macB     = ether.MAC{2, 8, 0x20, 0, 0, 0xb}
	macC     = ether.MAC{2, 8, 0x20, 0, 0, 0xc}
	macD     = ether.MAC{2, 8, 0x20, 0, 0, 0xd}
	macR     = ether.MAC{2, 8, 0x20, 0, 1, 1} // remote: no local VNIC has it
	bcast    = ether.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
)

const swVNI = 42

// recHandler records what the switch hands up.
type recHandler struct {
	mu      sync.Mutex
	misses  []ether.MAC
	proxied []proxied
}

type proxied struct {
	vlan  uint16
	kind  proxy.Kind
	frame []byte
}

func (h *recHandler) Miss(mac ether.MAC, vlan uint16) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.misses = append(h.misses, mac)
}

func (h *recHandler) Proxy(vlan uint16, kind proxy.Kind, frame []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.proxied = append(h.proxied, proxied{vlan, kind, frame})
}

func (h *recHandler) MissIP(uint16, netip.Addr) { panic("the userspace switch has no neighbour table") }

func (h *recHandler) take() ([]ether.MAC, []proxied) {
	h.mu.Lock()
	defer h.mu.Unlock()
	m, p := h.misses, h.proxied
	h.misses, h.proxied = nil, nil
	return m, p
}

type switchHarness struct {
	t  *testing.T
	io *fakeIO
	dp *DataPath
	ov *overlay
	h  *recHandler
	sc *scratch
}

// newSwitch makes an overlay (VNI 42, MTU 1400) on an in-memory userspace
// data path: point mode to swPeer, or dynamic (point false) with a
// recording handler.
func newSwitch(t *testing.T, point, offloads bool) *switchHarness {
	t.Helper()
	return newSwitchEncap(t, point, offloads, vxlan.Plugin{})
}

// newSwitchEncap is newSwitch with another encapsulation.
func newSwitchEncap(t *testing.T, point, offloads bool, enc encap.Codec) *switchHarness {
	t.Helper()
	fio := newFakeIO()
	dp := newWithIO(slog.New(slog.NewTextHandler(io.Discard, nil)), Options{Offloads: offloads, Workers: 1}, fio)
	t.Cleanup(func() { dp.Close() })
	h := &recHandler{}
	cfg := datapath.OverlayConfig{Name: "sw", VNetID: swVNI, Encap: enc, Listen: swListen, MTU: 1400, Handler: h}
	if point {
		p := swPeer
		cfg.Point, cfg.Handler = &p, nil
	}
	o, err := dp.CreateOverlay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return &switchHarness{t: t, io: fio, dp: dp, ov: o.(*overlay), h: h, sc: newScratch(0)}
}

func (s *switchHarness) addVNIC(name string, mac ether.MAC, vlan uint16) *fakeVNIC {
	s.t.Helper()
	if err := s.ov.AddVNIC(datapath.VNICConfig{Name: name, MAC: mac, VLAN: vlan, NoSpoof: true}); err != nil {
		s.t.Fatal(err)
	}
	return s.io.vnic(name)
}

// guest has the VNIC name transmit frames, and the switch handle them.
func (s *switchHarness) guest(name string, frames ...[]byte) {
	s.t.Helper()
	v := s.ov.vnics.Load().byName[name]
	for _, f := range frames {
		s.io.vnic(name).send(f)
	}
	if !(tapQueue{v, 0}).drain(s.sc, budget) {
		s.t.Fatalf("VNIC %s reported gone", name)
	}
}

// underlay has the listen socket receive reads, and the switch handle them.
func (s *switchHarness) underlay(reads ...fakeRead) {
	s.t.Helper()
	ln := s.ov.state.Load().ln
	sock := s.io.sockets[swListen][0]
	for _, r := range reads {
		sock.deliver(r)
	}
	(lnQueue{ln, 0}).drain(s.sc, budget)
}

// counters returns the overlay's counters and the listener's.
func (s *switchHarness) counters() map[string]uint64 {
	out := map[string]uint64{}
	for _, st := range s.ov.Stats() {
		out[st.Name] = st.Value
	}
	for _, st := range s.dp.Listeners()[0].Stats {
		out["listener "+st.Name] = st.Value
	}
	return out
}

// frame is an untagged IPv4 frame from src to dst carrying seq.
func frame(dst, src ether.MAC, seq int, size int) []byte {
	f := make([]byte, max(size, 14+20+8))
	copy(f[0:6], dst[:])
	copy(f[6:12], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	f[14] = 0x45
	binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
	binary.BigEndian.PutUint32(f[14+20:], uint32(seq))
	return f
}

func tagged(f []byte, vlan uint16) []byte {
	out := append(slices.Clone(f[:12]), 0x81, 0, byte(vlan>>8), byte(vlan))
	return append(out, f[12:]...)
}

// vxlanPacket is a VXLAN datagram (UDP payload) carrying inner.
func vxlanPacket(vni uint32, inner []byte) []byte {
	p := make([]byte, vxlan.HeaderLen+len(inner))
	vxlan.Encap(p, vni)
	copy(p[vxlan.HeaderLen:], inner)
	return p
}

// decap checks a sent packet's VXLAN header and returns the inner frame.
func decap(t *testing.T, p sentPacket, dest encap.Dest) []byte {
	t.Helper()
	if p.dest != dest.AddrPort() {
		t.Errorf("sent to %v, want %v", p.dest, dest)
	}
	vni, inner, err := vxlan.Decap(p.data)
	if err != nil || vni != swVNI {
		t.Fatalf("sent packet: VNI %d, %v; want VNI %d", vni, err, swVNI)
	}
	return inner
}

// wantFrames checks that exactly want reached a VNIC.
func wantFrames(t *testing.T, who string, got [][]byte, want ...[]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s received %d frames, want %d", who, len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("%s frame %d:\n got % x\nwant % x", who, i, got[i], want[i])
		}
	}
}

// TestSwitchLocal: unicast between local VNICs stays local; broadcast
// reaches the other local VNICs and, in point mode, the peer; unicast to a
// remote MAC goes to the peer, encapsulated; frames from the peer reach
// the VNIC they are for.
func TestSwitchLocal(t *testing.T) {
	s := newSwitch(t, true, false)
	a, b := s.addVNIC("a", macA, 0), s.addVNIC("b", macB, 0)

	ab := frame(macB, macA, 1, 100)
	s.guest("a", ab)
	wantFrames(t, "b", b.received(), ab)
	wantFrames(t, "a", a.received())
	if sent := s.io.takeSent(); len(sent) != 0 {
		t.Fatalf("a local frame was sent to the underlay: %d packets", len(sent))
	}

	bc := frame(bcast, macA, 2, 100)
	s.guest("a", bc)
	wantFrames(t, "b", b.received(), bc)
	wantFrames(t, "a", a.received())
	sent := s.io.takeSent()
	if len(sent) != 1 || !bytes.Equal(decap(t, sent[0], swPeer), bc) {
		t.Fatalf("broadcast to the peer: %d packets", len(sent))
	}

	ar := frame(macR, macA, 3, 100)
	s.guest("a", ar)
	sent = s.io.takeSent()
	if len(sent) != 1 || !bytes.Equal(decap(t, sent[0], swPeer), ar) {
		t.Fatalf("unicast to a remote MAC: %d packets", len(sent))
	}

	ra := frame(macA, macR, 4, 100)
	s.underlay(fakeRead{data: vxlanPacket(swVNI, ra)})
	wantFrames(t, "a", a.received(), ra)
	wantFrames(t, "b", b.received())

	c := s.counters()
	if c["local-switched"] != 1 || c["in-frames"] != 3 || c["out-frames"] != 3 || c["encapsulated"] != 2 || c["decapsulated"] != 1 {
		t.Errorf("counters %v", c)
	}
}

// TestSwitchVLANs: a VLAN's VNICs see only their VLAN, untagged; the tag
// rides inside the encapsulated frame, both ways.
func TestSwitchVLANs(t *testing.T) {
	s := newSwitch(t, true, false)
	a := s.addVNIC("a", macA, 0)
	c, d := s.addVNIC("c", macC, 7), s.addVNIC("d", macD, 7)
	// The same MAC may be on two VLANs.
	a2 := s.addVNIC("a2", macA, 7)

	cd := frame(macD, macC, 1, 100)
	s.guest("c", cd)
	wantFrames(t, "d", d.received(), cd)

	ca := frame(macA, macC, 2, 100) // macA on VLAN 7 is a2, not a
	s.guest("c", ca)
	wantFrames(t, "a2", a2.received(), ca)
	wantFrames(t, "a", a.received())

	cb := frame(bcast, macC, 3, 100)
	s.guest("c", cb)
	wantFrames(t, "d", d.received(), cb)
	wantFrames(t, "a2", a2.received(), cb)
	wantFrames(t, "a", a.received())
	sent := s.io.takeSent()
	if len(sent) != 1 || !bytes.Equal(decap(t, sent[0], swPeer), tagged(cb, 7)) {
		t.Fatalf("VLAN broadcast to the peer: %d packets, want 1 tagged with VLAN 7", len(sent))
	}

	rd := frame(macD, macR, 4, 100)
	s.underlay(fakeRead{data: vxlanPacket(swVNI, tagged(rd, 7))})
	wantFrames(t, "d", d.received(), rd)
	s.underlay(fakeRead{data: vxlanPacket(swVNI, rd)}) // untagged: VLAN 0 has no macD
	if got := d.received(); len(got) != 0 {
		t.Errorf("an untagged frame reached a VLAN 7 VNIC")
	}
	wantFrames(t, "c", c.received())
}

// TestSwitchDrops: each malformed or refused frame is dropped, counted
// under its reason, and goes nowhere.
func TestSwitchDrops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		counter string
		do      func(s *switchHarness)
		also    string // another counter that moves
	}{
		{"short from a guest", "drop-malformed", func(s *switchHarness) { s.guest("a", make([]byte, 10)) }, ""},
		{"above the MTU", "drop-mtu", func(s *switchHarness) { s.guest("a", frame(macB, macA, 1, 14+1401)) }, ""},
		{"tagged by a guest", "drop-vlan", func(s *switchHarness) { s.guest("a", tagged(frame(macB, macA, 1, 100), 7)) }, ""},
		{"spoofed source", "drop-spoofed", func(s *switchHarness) { s.guest("a", frame(macB, macR, 1, 100)) }, ""},
		{"short underlay packet", "listener drop-short", func(s *switchHarness) { s.underlay(fakeRead{data: []byte{8, 0, 0}}) }, ""},
		{"bad VXLAN header", "listener drop-bad-header", func(s *switchHarness) {
			p := vxlanPacket(swVNI, frame(macA, macR, 1, 100))
			p[0] = 0 // no I flag
			s.underlay(fakeRead{data: p})
		}, ""},
		{"unknown VNI", "listener drop-unknown-vni", func(s *switchHarness) {
			s.underlay(fakeRead{data: vxlanPacket(swVNI+1, frame(macA, macR, 1, 100))})
		}, ""},
		{"no such VNIC", "drop-no-vnic", func(s *switchHarness) { s.underlay(fakeRead{data: vxlanPacket(swVNI, frame(macC, macR, 1, 100))}) }, ""},
		{"underlay frame above the MTU", "drop-mtu", func(s *switchHarness) {
			s.underlay(fakeRead{data: vxlanPacket(swVNI, frame(macA, macR, 1, 14+1401))})
		}, ""},
		{"VNIC refuses", "drop-vnic-write", func(s *switchHarness) {
			s.io.vnic("b").writeErr = errFakeDown
			s.guest("a", frame(macB, macA, 1, 100))
		}, "local-switched"},
		{"underlay refuses", "drop-send-error", func(s *switchHarness) {
			s.io.sendErr = errFakeDown
			s.guest("a", frame(macR, macA, 1, 100))
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSwitch(t, true, false)
			a, b := s.addVNIC("a", macA, 0), s.addVNIC("b", macB, 0)
			before := s.counters()
			tc.do(s)
			after := s.counters()
			for name, v := range after {
				want := before[name]
				if name == tc.counter {
					want++
				}
				if name != tc.counter && (name == tc.also || name == "in-frames" || name == "in-bytes" || name == "decapsulated" ||
					name == "decap-bytes" || name == "listener decapsulated" || name == "listener decap-bytes") {
					continue // the frame did come in
				}
				if v != want {
					t.Errorf("%s = %d, want %d", name, v, want)
				}
			}
			if got := len(a.received()) + len(b.received()) + len(s.io.takeSent()); got != 0 {
				t.Errorf("the dropped frame went somewhere: %d frames", got)
			}
		})
	}
}

// TestSwitchHoldInOrder: frames for a MAC without an answer are held, one
// miss reported; the answer sends them in order, before newer frames; a
// "drop" answer drops them and stands for its time; an operator's drop
// entry drops; a full queue drops the excess.
func TestSwitchHoldInOrder(t *testing.T) {
	s := newSwitch(t, false, false)
	s.addVNIC("a", macA, 0)
	var want [][]byte
	for i := 1; i <= 3; i++ {
		f := frame(macR, macA, i, 100)
		want = append(want, f)
		s.guest("a", f)
	}
	if sent := s.io.takeSent(); len(sent) != 0 {
		t.Fatalf("%d frames sent before the answer", len(sent))
	}
	if misses, _ := s.h.take(); !slices.Equal(misses, []ether.MAC{macR}) {
		t.Fatalf("misses %v, want one for %v", misses, macR)
	}
	if ts := s.ov.Targets(); len(ts) != 1 || ts[0].State != datapath.TargetPending {
		t.Fatalf("targets while the lookup runs: %+v", ts)
	}
	s.ov.SetTarget(macR, swPeer)
	f4 := frame(macR, macA, 4, 100)
	s.guest("a", f4)
	want = append(want, f4)
	sent := s.io.takeSent()
	if len(sent) != len(want) {
		t.Fatalf("%d frames sent after the answer, want %d", len(sent), len(want))
	}
	for i := range want {
		if got := decap(t, sent[i], swPeer); !bytes.Equal(got, want[i]) {
			t.Errorf("frame %d out of order or changed", i+1)
		}
	}

	// "No destination": held frames dropped, and the next too, without
	// another miss.
	unknown := ether.MAC{2, 8, 0x20, 0, 9, 9}
	s.guest("a", frame(unknown, macA, 5, 100))
	s.ov.Drop(unknown, time.Hour)
	s.guest("a", frame(unknown, macA, 6, 100))
	if misses, _ := s.h.take(); !slices.Equal(misses, []ether.MAC{unknown}) {
		t.Errorf("misses %v, want one", misses)
	}
	// An operator's drop entry.
	s.ov.SetDrop(macB)
	s.guest("a", frame(macB, macA, 7, 100))
	// A queue holds at most maxQueueFrames.
	full := ether.MAC{2, 8, 0x20, 0, 9, 8}
	for i := range maxQueueFrames + 1 {
		s.guest("a", frame(full, macA, 100+i, 100))
	}
	c := s.counters()
	if c["drop-no-target"] != 2 || c["drop-admin"] != 1 || c["queue-drops"] != 1 {
		t.Errorf("drop-no-target %d (want 2), drop-admin %d (want 1), queue-drops %d (want 1)", c["drop-no-target"], c["drop-admin"], c["queue-drops"])
	}
	if sent := s.io.takeSent(); len(sent) != 0 {
		t.Errorf("%d dropped frames were sent", len(sent))
	}
}

// TestSwitchHoldInOrderRacing: the guest keeps sending while the answer's
// held frames leave (slowly, here); every frame leaves, each after the
// ones sent before it, and the flush ends however fast the guest sends.
func TestSwitchHoldInOrderRacing(t *testing.T) {
	for round := range 10 {
		s := newSwitch(t, false, false)
		s.addVNIC("a", macA, 0)
		const held, n = 10, 100
		flushing := make(chan struct{})
		var once sync.Once
		s.io.onSend = func(b []byte) {
			if seq := binary.BigEndian.Uint32(b[vxlan.HeaderLen+14+20:]); seq < held {
				once.Do(func() { close(flushing) })
				time.Sleep(200 * time.Microsecond)
			}
		}
		i := 0
		for ; i < held; i++ {
			s.guest("a", frame(macR, macA, i, 100))
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.ov.SetTarget(macR, swPeer)
		}()
		<-flushing
		// More than a queue holds (32), sent while the flush is on:
		// they wait for it rather than queue (and overflow) behind it.
		for ; i < n; i++ {
			s.guest("a", frame(macR, macA, i, 100))
		}
		<-done
		if c := s.counters(); c["queue-drops"] != 0 {
			t.Fatalf("round %d: %d queue drops while the flush was on", round, c["queue-drops"])
		}
		sent := s.io.takeSent()
		if len(sent) != n {
			t.Fatalf("round %d: %d frames sent, want %d", round, len(sent), n)
		}
		for i, p := range sent {
			inner := decap(t, p, swPeer)
			if seq := int(binary.BigEndian.Uint32(inner[14+20:])); seq != i {
				t.Fatalf("round %d: frame %d left in place %d", round, seq, i)
			}
		}
	}
}

// arpRequest is a broadcast ARP request from src for target.
func arpRequest(t *testing.T, src ether.MAC, target string) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(src[:]), DstMAC: net.HardwareAddr(bcast[:]), EthernetType: layers.EthernetTypeARP}
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
		Operation: layers.ARPRequest, SourceHwAddress: src[:], SourceProtAddress: []byte{10, 0, 0, 1},
		DstHwAddress: make([]byte, 6), DstProtAddress: netip.MustParseAddr(target).AsSlice()}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, eth, arp); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestSwitchProxy: a dynamic overlay hands ARP, NDP and DHCP broadcasts
// up (untagged, with their VLAN) instead of flooding them to the
// underlay; the answers come back through Inject and Resend.
func TestSwitchProxy(t *testing.T) {
	s := newSwitch(t, false, false)
	a, b := s.addVNIC("a", macA, 0), s.addVNIC("b", macB, 0)
	c := s.addVNIC("c", macC, 7)

	req := arpRequest(t, macA, "10.0.0.9")
	s.guest("a", req)
	wantFrames(t, "b", b.received(), req) // local guests still see it
	_, got := s.h.take()
	if len(got) != 1 || got[0].kind != proxy.ARP || got[0].vlan != 0 || !bytes.Equal(got[0].frame, req) {
		t.Fatalf("proxied %+v, want the ARP request", got)
	}
	reqC := arpRequest(t, macC, "10.0.0.9")
	s.guest("c", reqC)
	if _, got := s.h.take(); len(got) != 1 || got[0].vlan != 7 || !bytes.Equal(got[0].frame, reqC) {
		t.Fatalf("proxied from VLAN 7: %+v, want the untagged request on VLAN 7", got)
	}
	if sent := s.io.takeSent(); len(sent) != 0 {
		t.Fatalf("a dynamic overlay flooded %d packets", len(sent))
	}

	reply, _ := proxy.ParseARP(reqC)
	answer := proxy.ARPReply(reply, macR)
	s.ov.Inject(7, answer)
	wantFrames(t, "c", c.received(), answer)
	wantFrames(t, "a", a.received())

	// A DHCP broadcast resent to the server's MAC goes where that MAC
	// does.
	s.ov.SetTarget(macR, swPeer)
	redirected := frame(macR, macA, 1, 300)
	s.ov.Resend(0, redirected)
	sent := s.io.takeSent()
	if len(sent) != 1 || !bytes.Equal(decap(t, sent[0], swPeer), redirected) {
		t.Fatalf("resent frame: %d packets", len(sent))
	}
}

// tcpSegment builds an IPv4 TCP frame from macA to dst with payload n
// bytes from seq, checksums complete, as gopacket makes it.
func tcpSegment(t *testing.T, dst ether.MAC, seq uint32, n int, psh bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(macA[:]), DstMAC: net.HardwareAddr(dst[:]), EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
		SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 0, 0, 2}}
	tcp := &layers.TCP{SrcPort: 40000, DstPort: 5201, Seq: seq, Ack: 1, ACK: true, PSH: psh, Window: 500}
	tcp.SetNetworkLayerForChecksum(ip)
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte(int(seq) + i)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// checkTCP decodes a TCP frame, checks its IPv4 and TCP checksums and
// returns its sequence number and payload.
func checkTCP(t *testing.T, f []byte) (uint32, []byte) {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if ip == nil || tcp == nil {
		t.Fatalf("not a TCP/IPv4 frame: %v", p)
	}
	if offload.Checksum(f[14:14+20], 0) != 0 {
		t.Error("bad IPv4 header checksum")
	}
	if int(ip.Length) != len(f)-14 {
		t.Errorf("IPv4 length %d, frame carries %d", ip.Length, len(f)-14)
	}
	seg := f[14+20:]
	if offload.Checksum(seg, offload.PseudoHeader(6, f[14+12:14+16], f[14+16:14+20], len(seg))) != 0 {
		t.Error("bad TCP checksum")
	}
	return tcp.Seq, tcp.Payload
}

// superFrame turns a whole TCP frame into what a TAP with TSO hands over:
// a virtio-net header asking for segments of mss, the TCP checksum left
// partial (the pseudo-header's sum).
func superFrame(f []byte, mss int) []byte {
	f = slices.Clone(f)
	binary.BigEndian.PutUint16(f[14+20+16:], offload.Fold(offload.PseudoHeader(6, f[14+12:14+16], f[14+16:14+20], len(f)-14-20)))
	h := offload.VnetHdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: 14 + 20 + 20,
		GSOSize: uint16(mss), CsumStart: 14 + 20, CsumOffset: 16}
	out := make([]byte, offload.VnetHdrLen+len(f))
	h.Encode(out)
	copy(out[offload.VnetHdrLen:], f)
	return out
}

// TestSwitchTSO: a guest's TCP super-frame leaves as one GSO send of
// MSS-sized segments, each a whole TCP segment with good checksums; to a
// local VNIC that takes offloads it goes as it is; to a MAC without an
// answer, segment by segment through the hold.
func TestSwitchTSO(t *testing.T) {
	s := newSwitch(t, true, true)
	s.addVNIC("a", macA, 0)
	b := s.addVNIC("b", macB, 0)
	whole := tcpSegment(t, macR, 1000, 5000, true)
	_, payload := checkTCP(t, whole)

	s.guest("a", superFrame(whole, 1000))
	sent := s.io.takeSent()
	if len(sent) != 5 {
		t.Fatalf("%d segments sent, want 5", len(sent))
	}
	var got []byte
	for i, p := range sent {
		if p.gso == 0 {
			t.Errorf("segment %d was not part of a GSO send", i)
		}
		seq, pl := checkTCP(t, decap(t, p, swPeer))
		if want := uint32(1000 + len(got)); seq != want || len(pl) != 1000 {
			t.Errorf("segment %d: seq %d (want %d), %d bytes (want 1000)", i, seq, want, len(pl))
		}
		got = append(got, pl...)
	}
	if !bytes.Equal(got, payload) {
		t.Error("the segments do not carry the super-frame's payload")
	}
	if c := s.counters(); c["encapsulated"] != 5 || c["in-frames"] != 1 {
		t.Errorf("counters %v", c)
	}

	// Local, to a VNIC with offloads: the super-frame as it is.
	local := superFrame(tcpSegment(t, macB, 1000, 5000, true), 1000)
	s.guest("a", local)
	wantFrames(t, "b", b.received(), local)

	// Dynamic, no answer yet: held segment by segment, sent after it.
	d := newSwitch(t, false, true)
	d.addVNIC("a", macA, 0)
	d.guest("a", superFrame(whole, 1000))
	d.ov.SetTarget(macR, swPeer)
	sent = d.io.takeSent()
	if len(sent) != 5 {
		t.Fatalf("dynamic: %d segments sent after the answer, want 5", len(sent))
	}
	for i, p := range sent {
		if seq, _ := checkTCP(t, decap(t, p, swPeer)); seq != uint32(1000+1000*i) {
			t.Errorf("dynamic segment %d: seq %d", i, seq)
		}
	}
}

// TestSwitchGRO: a run of TCP segments read in one UDP GRO read reaches a
// VNIC with offloads as one super-frame (virtio-net GSO header, MSS of
// the segments); a segment out of sequence starts another.
func TestSwitchGRO(t *testing.T) {
	s := newSwitch(t, true, true)
	b := s.addVNIC("b", macB, 0)
	var run []byte
	var payload []byte
	seg := 0
	for i := range 4 {
		f := tcpSegment(t, macB, uint32(1000+1000*i), 1000, i == 3)
		_, pl := checkTCP(t, f)
		payload = append(payload, pl...)
		p := vxlanPacket(swVNI, f)
		seg = len(p)
		run = append(run, p...)
	}
	s.underlay(fakeRead{data: run, gro: seg})
	got := b.received()
	if len(got) != 1 {
		t.Fatalf("%d writes to the VNIC, want 1 super-frame", len(got))
	}
	h := offload.DecodeVnetHdr(got[0])
	if h.GSOType != offload.GSOTCPv4 || h.GSOSize != 1000 {
		t.Errorf("virtio-net header %+v, want TCPv4 segments of 1000", h)
	}
	f := got[0][offload.VnetHdrLen:]
	if ip := int(binary.BigEndian.Uint16(f[14+2:])); ip != len(f)-14 {
		t.Errorf("IPv4 length %d, frame carries %d", ip, len(f)-14)
	}
	if !bytes.Equal(f[14+20+20:], payload) {
		t.Error("the super-frame does not carry the segments' payload in order")
	}

	// A gap in the sequence: two runs.
	run = run[:0]
	for i, seq := range []uint32{1000, 2000, 9000} {
		run = append(run, vxlanPacket(swVNI, tcpSegment(t, macB, seq, 1000, i == 2))...)
	}
	s.underlay(fakeRead{data: run, gro: seg})
	if got := b.received(); len(got) != 2 {
		t.Fatalf("%d writes for a run with a gap, want 2", len(got))
	}
}
