package proxy

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

type namedFrame struct {
	name string
	f    []byte
	kind Kind
}

// validFrames are one frame of each kind the proxy answers, plus
// variants, with what Classify must say.
func validFrames(tb testing.TB) []namedFrame {
	return []namedFrame{
		{"arp", arpFrame(tb), ARP},
		{"arp-padded", arpFrame(tb, func(l *arpLayers) { l.pad = 18 }), ARP},
		{"arp-linux", linuxARP, ARP},
		{"ns", nsFrame(tb), NDP},
		{"ns-linux", linuxNSGlobal, NDP},
		{"ns-linux-ll", linuxNSLinkLocal, NDP},
		{"ns-trailer", nsFrame(tb, func(l *nsLayers) { l.trailer = make([]byte, 10) }), NDP},
		{"dhcp-discover", dhcpClientFrame(tb, layers.DHCPMsgTypeDiscover), DHCPClient},
		{"dhcp-request", dhcpClientFrame(tb, layers.DHCPMsgTypeRequest), DHCPClient},
		{"dhcp-offer", dhcpServerFrame(tb, layers.DHCPMsgTypeOffer), DHCPToClient},
		{"dhcp-ack", dhcpServerFrame(tb, layers.DHCPMsgTypeAck), DHCPToClient},
		{"dhcp-ack-trailer", append(dhcpServerFrame(tb, layers.DHCPMsgTypeAck), make([]byte, 6)...), DHCPToClient},
	}
}

func TestClassify(t *testing.T) {
	frames := append(validFrames(t), []namedFrame{
		{"empty", nil, None},
		{"13 bytes", make([]byte, 13), None},
		{"14 zero bytes", make([]byte, 14), None},
		{"60 zero bytes", make([]byte, 60), None},
		{"arp reply", arpFrame(t, func(l *arpLayers) { l.arp.Operation = layers.ARPReply }), None},
		{"gratuitous arp", arpFrame(t, func(l *arpLayers) { l.arp.DstProtAddress = ipSlice(ip4Req) }), None},
		{"arp for IPv6", arpFrame(t, func(l *arpLayers) { l.arp.Protocol = layers.EthernetTypeIPv6 }), None},
		{"linux DAD", linuxDAD, None},
		{"linux RS", linuxRS, None},
		{"linux NA", linuxNAGlobal, None},
		{"ns hop limit 64", nsFrame(t, func(l *nsLayers) { l.ip.HopLimit = 64 }), None},
		{"ns to unicast MAC", nsFrame(t, func(l *nsLayers) { l.eth.DstMAC = hw(macAns) }), None},
		{"dhcp to unicast MAC", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, func(l *dhcpLayers) { l.eth.DstMAC = hw(macSrv) }), None},
		{"dhcp wrong ports", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, func(l *dhcpLayers) { l.udp.SrcPort, l.udp.DstPort = 67, 68 }), None},
		{"tcp 68->67", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, func(l *dhcpLayers) {
			l.ip.Protocol = layers.IPProtocolTCP
			l.tcp = &layers.TCP{SrcPort: 68, DstPort: 67}
		}), None},
		{"vlan-tagged arp", func() []byte {
			f := arpFrame(t)
			tagged := append(bytes.Clone(f[:12]), 0x81, 0x00, 0x00, 0x2a)
			return append(tagged, f[12:]...)
		}(), None}, // the caller strips tags
	}...)
	for _, tc := range frames {
		t.Run(tc.name, func(t *testing.T) {
			if k := Classify(tc.f); k != tc.kind {
				t.Errorf("Classify = %v, want %v", k, tc.kind)
			}
			if k := refClassify(tc.f); k != tc.kind {
				t.Errorf("reference classifier = %v, want %v (test bug?)", k, tc.kind)
			}
		})
	}
}

// classifyAll runs every parser on f, cut to its length so that reading or
// reslicing past the end panics.
func classifyAll(f []byte) Kind {
	f = f[:len(f):len(f)]
	ParseARP(f)
	ParseNS(f)
	ParseDHCPClient(f)
	ParseDHCPToClient(f)
	return Classify(f)
}

// Every prefix of every valid frame: no panic, and a frame classifies
// positively exactly when it holds the whole message (the ARP body, the
// IPv6 payload, the IPv4 packet).
func TestClassifyTruncated(t *testing.T) {
	for _, tc := range validFrames(t) {
		t.Run(tc.name, func(t *testing.T) {
			var need int
			switch tc.kind {
			case ARP:
				need = 14 + 28
			case NDP:
				need = 14 + 40 + int(binary.BigEndian.Uint16(tc.f[18:20]))
			default:
				need = 14 + int(binary.BigEndian.Uint16(tc.f[16:18]))
			}
			if need > len(tc.f) {
				t.Fatalf("need %d > %d", need, len(tc.f))
			}
			for n := 0; n <= len(tc.f); n++ {
				want := None
				if n >= need {
					want = tc.kind
				}
				if k := classifyAll(bytes.Clone(tc.f[:n])); k != want {
					t.Errorf("%d of %d bytes: %v, want %v", n, len(tc.f), k, want)
				}
			}
		})
	}
}

// Every single-byte change to a valid frame: no panic, and the reference
// classifier agrees.
func TestClassifyMutated(t *testing.T) {
	for _, tc := range validFrames(t) {
		for i := range tc.f {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				f := bytes.Clone(tc.f)
				f[i] ^= x
				if k, want := classifyAll(f), refClassify(f); k != want {
					t.Errorf("%s, byte %d ^ %#02x: %v, reference %v", tc.name, i, x, k, want)
				}
			}
		}
	}
}

func TestRedirect(t *testing.T) {
	for _, tc := range validFrames(t) {
		f := bytes.Clone(tc.f)
		Redirect(f, macSrv)
		if !bytes.Equal(f[:6], macSrv[:]) || !bytes.Equal(f[6:], tc.f[6:]) || len(f) != len(tc.f) {
			t.Errorf("%s: got % x", tc.name, f)
		}
	}
	for n := 0; n <= 7; n++ {
		f := bytes.Repeat([]byte{0xaa}, n)
		Redirect(f[:n:n], macSrv)
		want := bytes.Repeat([]byte{0xaa}, n)
		if n >= 6 {
			copy(want, macSrv[:])
		}
		if !bytes.Equal(f, want) {
			t.Errorf("%d bytes: got % x, want % x", n, f, want)
		}
	}
	// A redirected broadcast is not classified again.
	f := dhcpClientFrame(t, layers.DHCPMsgTypeDiscover)
	Redirect(f, macSrv)
	if k := Classify(f); k != None {
		t.Errorf("redirected DHCP frame classifies as %v", k)
	}
	// Redirecting to broadcast (a client mapping, back) restores it.
	Redirect(f, Broadcast)
	if k := Classify(f); k != DHCPClient {
		t.Errorf("re-broadcast DHCP frame classifies as %v", k)
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		None: "none", ARP: "arp", NDP: "ndp", DHCPClient: "dhcp-client", DHCPToClient: "dhcp-to-client",
		-1: "kind(-1)", 5: "kind(5)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
		if got := fmt.Sprint(k); got != want {
			t.Errorf("fmt.Sprint(Kind(%d)) = %q, want %q", int(k), got, want)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	frames := validFrames(t)
	for _, tc := range frames {
		f := tc.f
		check := func(what string, fn func()) {
			if n := testing.AllocsPerRun(100, fn); n != 0 {
				t.Errorf("%s(%s): %v allocations", what, tc.name, n)
			}
		}
		check("Classify", func() { Classify(f) })
		check("ParseARP", func() { ParseARP(f) })
		check("ParseNS", func() { ParseNS(f) })
		check("ParseDHCPClient", func() { ParseDHCPClient(f) })
		check("ParseDHCPToClient", func() { ParseDHCPToClient(f) })
		buf := bytes.Clone(f)
		check("Redirect", func() { Redirect(buf, macAns) })
	}
}

// Advertisement and ARPReply allocate only the frame they return.
func TestReplyAllocs(t *testing.T) {
	req, _ := ParseARP(arpFrame(t))
	s, _ := ParseNS(nsFrame(t))
	if n := testing.AllocsPerRun(100, func() { ARPReply(req, macAns) }); n > 1 {
		t.Errorf("ARPReply: %v allocations", n)
	}
	if n := testing.AllocsPerRun(100, func() { Advertisement(s, macAns) }); n > 1 {
		t.Errorf("Advertisement: %v allocations", n)
	}
}

func BenchmarkClassify(b *testing.B) {
	frames := append(validFrames(b),
		namedFrame{"unicast-ipv4", dhcpClientFrame(b, layers.DHCPMsgTypeDiscover, func(l *dhcpLayers) { l.eth.DstMAC = hw(macSrv) }), None},
		namedFrame{"ns-bad-checksum", func() []byte { f := nsFrame(b); f[56] ^= 1; return f }(), None},
		namedFrame{"linux-dad", linuxDAD, None},
	)
	for _, tc := range frames {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.f)))
			for b.Loop() {
				if Classify(tc.f) != tc.kind {
					b.Fatal("wrong kind")
				}
			}
		})
	}
}

func BenchmarkAdvertisement(b *testing.B) {
	s, _ := ParseNS(nsFrame(b))
	b.ReportAllocs()
	for b.Loop() {
		Advertisement(s, macAns)
	}
}

func BenchmarkARPReply(b *testing.B) {
	req, _ := ParseARP(arpFrame(b))
	b.ReportAllocs()
	for b.Loop() {
		ARPReply(req, macAns)
	}
}

func TestGratuitousFrames(t *testing.T) {
	mac := MAC{2, 8, 0x20, 0, 0, 9}
	g := GratuitousARP(mac, netip.MustParseAddr("10.0.0.9"))
	if MAC(g[0:6]) != Broadcast || MAC(g[6:12]) != mac {
		t.Fatalf("gratuitous ARP addresses: %x", g[:12])
	}
	if _, ok := ParseARP(g); ok {
		t.Error("a gratuitous ARP must not be answered by the proxy")
	}
	a := g[14:]
	if a[7] != 1 || MAC(a[8:14]) != mac || !bytes.Equal(a[14:18], a[24:28]) {
		t.Errorf("gratuitous ARP body: %x", a)
	}
	na := UnsolicitedAdvertisement(mac, netip.MustParseAddr("fd00::9"))
	ip := na[14:]
	icmp := ip[40:]
	if icmp[0] != 136 || icmp[4] != 0x20 {
		t.Errorf("unsolicited NA: type %d flags %#x", icmp[0], icmp[4])
	}
	src := netip.AddrFrom16([16]byte(ip[8:24]))
	dst := netip.AddrFrom16([16]byte(ip[24:40]))
	if icmpv6Checksum(src, dst, icmp) != 0 {
		t.Error("unsolicited NA checksum wrong")
	}
	if dst != allNodes || MAC(na[0:6]) != allNodesMAC {
		t.Errorf("unsolicited NA to %s %x", dst, na[0:6])
	}
}
