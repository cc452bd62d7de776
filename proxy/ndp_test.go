package proxy

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// nonce is an RFC 7527 nonce option, as Linux adds to DAD probes.
var nonce = []byte{14, 1, 0x63, 0x64, 0xed, 0x00, 0xf5, 0x37}

func sllaOpt(m MAC) []byte { return append([]byte{1, 1}, m[:]...) }

func TestParseNS(t *testing.T) {
	llTgt := netip.MustParseAddr("fe80::ff:fe00:b")
	for _, tc := range []struct {
		name   string
		f      []byte
		target netip.Addr
		src    netip.Addr
	}{
		{"gopacket", nsFrame(t), ip6Tgt, ip6Req},
		{"linux global target", linuxNSGlobal, ip6Tgt, ip6Req},
		{"linux link-local target", linuxNSLinkLocal, llTgt, ip6Req},
		{"global source", nsFrame(t, func(l *nsLayers) {
			l.ip.SrcIP = ipSlice(netip.MustParseAddr("2001:db8::a"))
		}), ip6Tgt, netip.MustParseAddr("2001:db8::a")},
		{"to all-nodes", nsFrame(t, func(l *nsLayers) {
			l.ip.DstIP = ipSlice(netip.IPv6LinkLocalAllNodes())
			l.eth.DstMAC = hw(MAC{0x33, 0x33, 0, 0, 0, 1})
		}), ip6Tgt, ip6Req},
		{"flow label and traffic class", nsFrame(t, func(l *nsLayers) {
			l.ip.TrafficClass, l.ip.FlowLabel = 0xb8, 0xabcde
		}), ip6Tgt, ip6Req},
		{"nonce after SLLA", nsFrame(t, func(l *nsLayers) {
			l.rawOpts = append(sllaOpt(macReq), nonce...)
		}), ip6Tgt, ip6Req},
		{"nonce before SLLA", nsFrame(t, func(l *nsLayers) {
			l.rawOpts = append(bytes.Clone(nonce), sllaOpt(macReq)...)
		}), ip6Tgt, ip6Req},
		{"unknown 16-byte option then SLLA", nsFrame(t, func(l *nsLayers) {
			l.rawOpts = append(make([]byte, 16), sllaOpt(macReq)...)
			l.rawOpts[0], l.rawOpts[1] = 200, 2
		}), ip6Tgt, ip6Req},
		{"Ethernet trailer after the packet", nsFrame(t, func(l *nsLayers) {
			l.trailer = []byte{0xde, 0xad, 0xbe, 0xef}
		}), ip6Tgt, ip6Req},
		{"SLLA differs from Ethernet source", nsFrame(t, func(l *nsLayers) {
			l.ns.Options[0].Data = hw(MAC{0x02, 0, 0, 0, 0, 0x99})
		}), ip6Tgt, ip6Req},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := ParseNS(tc.f)
			if !ok {
				t.Fatal("not accepted")
			}
			if s.SrcMAC != macReq || s.SrcIP != tc.src || s.Target != tc.target {
				t.Errorf("got %v %v %v, want %v %v %v", hw(s.SrcMAC), s.SrcIP, s.Target, hw(macReq), tc.src, tc.target)
			}
			if k := Classify(tc.f); k != NDP {
				t.Errorf("Classify = %v, want ndp", k)
			}
			if k := refClassify(tc.f); k != NDP {
				t.Errorf("reference classifier says %v (test bug?)", k)
			}
		})
	}
}

func TestParseNSRejects(t *testing.T) {
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolICMPv6
	hbh.Options = []*layers.IPv6HopByHopOption{
		{OptionType: 5, OptionData: []byte{0, 0}}, // router alert
		{OptionType: 1, OptionData: []byte{}},     // PadN
	}
	for _, tc := range []struct {
		name string
		f    []byte
	}{
		{"linux DAD probe from ::", linuxDAD},
		{"DAD probe from :: with SLLA", nsFrame(t, func(l *nsLayers) {
			l.ip.SrcIP = ipSlice(netip.IPv6Unspecified())
		})},
		{"linux router solicitation", linuxRS},
		{"hop limit 254", nsFrame(t, func(l *nsLayers) { l.ip.HopLimit = 254 })},
		{"hop limit 64", nsFrame(t, func(l *nsLayers) { l.ip.HopLimit = 64 })},
		{"hop limit 1", nsFrame(t, func(l *nsLayers) { l.ip.HopLimit = 1 })},
		{"bad checksum", func() []byte {
			f := nsFrame(t)
			f[14+40+2] ^= 0x01
			return f
		}()},
		{"checksum computed over another source", func() []byte {
			f := nsFrame(t)
			f[14+8+15] ^= 0x01
			return f
		}()},
		{"no options", nsFrame(t, func(l *nsLayers) { l.ns.Options = nil })},
		{"nonce only", nsFrame(t, func(l *nsLayers) { l.rawOpts = bytes.Clone(nonce) })},
		{"zero-length option", nsFrame(t, func(l *nsLayers) { l.rawOpts = []byte{1, 0, 0, 0, 0, 0, 0, 0} })},
		{"zero-length option after SLLA", nsFrame(t, func(l *nsLayers) {
			l.rawOpts = append(sllaOpt(macReq), 14, 0, 0, 0, 0, 0, 0, 0)
		})},
		{"option longer than the packet", nsFrame(t, func(l *nsLayers) {
			l.rawOpts = append(sllaOpt(macReq), 14, 2, 0, 0, 0, 0, 0, 0)
		})},
		{"one stray option byte", nsFrame(t, func(l *nsLayers) { l.rawOpts = append(sllaOpt(macReq), 1) })},
		{"SLLA of length 2 (not Ethernet)", nsFrame(t, func(l *nsLayers) {
			l.ns.Options[0].Data = make([]byte, 14)
		})},
		{"target link-layer option instead of SLLA", nsFrame(t, func(l *nsLayers) {
			l.ns.Options[0].Type = layers.ICMPv6OptTargetAddress
		})},
		{"unicast destination MAC", nsFrame(t, func(l *nsLayers) { l.eth.DstMAC = hw(macAns) })},
		{"broadcast destination MAC", nsFrame(t, func(l *nsLayers) { l.eth.DstMAC = hw(Broadcast) })},
		{"IPv4 multicast destination MAC", nsFrame(t, func(l *nsLayers) {
			l.eth.DstMAC = hw(MAC{0x01, 0x00, 0x5e, 0, 0, 1})
		})},
		{"unicast destination IP", nsFrame(t, func(l *nsLayers) { l.ip.DstIP = ipSlice(ip6Tgt) })},
		{"multicast source IP", nsFrame(t, func(l *nsLayers) {
			l.ip.SrcIP = ipSlice(netip.IPv6LinkLocalAllNodes())
		})},
		{"code 1", nsFrame(t, func(l *nsLayers) {
			l.icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 1)
		})},
		{"code 255", nsFrame(t, func(l *nsLayers) {
			l.icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 255)
		})},
		{"neighbour advertisement", nsFrame(t, func(l *nsLayers) {
			l.icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0)
		})},
		{"redirect type 137", nsFrame(t, func(l *nsLayers) {
			l.icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRedirect, 0)
		})},
		{"multicast target", nsFrame(t, func(l *nsLayers) {
			l.ns.TargetAddress = ipSlice(netip.MustParseAddr("ff02::1:ff00:b"))
		})},
		{"loopback target", nsFrame(t, func(l *nsLayers) { l.ns.TargetAddress = ipSlice(netip.IPv6Loopback()) })},
		{"unspecified target", nsFrame(t, func(l *nsLayers) {
			l.ns.TargetAddress = ipSlice(netip.IPv6Unspecified())
		})},
		{"v4-mapped target", nsFrame(t, func(l *nsLayers) {
			l.ns.TargetAddress = ipSlice(netip.MustParseAddr("::ffff:192.0.2.2"))
		})},
		{"echo request to 33:33:00:00:00:01", nsFrame(t, func(l *nsLayers) {
			l.ip.DstIP = ipSlice(netip.IPv6LinkLocalAllNodes())
			l.eth.DstMAC = hw(MAC{0x33, 0x33, 0, 0, 0, 1})
			l.icmp.TypeCode = layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)
			l.body = []byte{0x12, 0x34, 0, 1, 'p', 'i', 'n', 'g', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
		})},
		{"hop-by-hop header before ICMPv6", nsFrame(t, func(l *nsLayers) { l.ip.HopByHop = hbh })},
		{"next header UDP", nsFrame(t, func(l *nsLayers) { l.ip.NextHeader = layers.IPProtocolUDP })},
		{"EtherType IPv4", nsFrame(t, func(l *nsLayers) { l.eth.EthernetType = layers.EthernetTypeIPv4 })},
		{"IP version 4 in an IPv6 EtherType", func() []byte {
			f := nsFrame(t)
			f[14] = 0x40
			return f
		}()},
		{"payload length beyond the frame", func() []byte {
			f := nsFrame(t)
			binary.BigEndian.PutUint16(f[14+4:], 33)
			return f
		}()},
		{"payload length 23", func() []byte {
			f := nsFrame(t)
			binary.BigEndian.PutUint16(f[14+4:], 23)
			return f
		}()},
		{"payload length 0", func() []byte {
			f := nsFrame(t)
			binary.BigEndian.PutUint16(f[14+4:], 0)
			return f
		}()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, ok := ParseNS(tc.f); ok {
				t.Errorf("accepted: %+v", s)
			}
			if k := Classify(tc.f); k != None {
				t.Errorf("Classify = %v, want none", k)
			}
			if k := refClassify(tc.f); k != None {
				t.Errorf("reference classifier says %v (test bug?)", k)
			}
		})
	}
}

// A shorter payload length that still covers a whole NS (the SLLA option
// left outside): the checksum no longer matches, and even with a
// matching one there is no SLLA.
func TestParseNSPayloadLengthExcludesSLLA(t *testing.T) {
	f := nsFrame(t, func(l *nsLayers) { l.ns.Options = nil })
	f = append(f, sllaOpt(macReq)...) // SLLA as trailer, outside the payload
	if _, ok := ParseNS(f); ok {
		t.Error("accepted an SLLA outside the IPv6 payload")
	}
}

func TestAdvertisement(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    []byte
		mac  MAC
	}{
		{"gopacket", nsFrame(t), macAns},
		{"linux global", linuxNSGlobal, macAns},
		{"linux link-local", linuxNSLinkLocal, macAns},
		{"flow label", nsFrame(t, func(l *nsLayers) { l.ip.TrafficClass, l.ip.FlowLabel = 0xb8, 0xabcde }), macAns},
		{"answer with odd bytes", nsFrame(t), MAC{0xff, 0x01, 0x80, 0x7f, 0xfe, 0xff}},
		{"nonce and trailer", nsFrame(t, func(l *nsLayers) {
			l.rawOpts = append(bytes.Clone(nonce), sllaOpt(macReq)...)
			l.trailer = make([]byte, 7)
		}), macAns},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, ok := ParseNS(tc.f)
			if !ok {
				t.Fatal("solicitation not accepted")
			}
			in := bytes.Clone(tc.f)
			out := Advertisement(s, tc.mac)
			checkAdvertisement(t, out, s, tc.mac)
			if !bytes.Equal(in, tc.f) {
				t.Error("Advertisement changed the solicitation")
			}
			// Traffic class and flow label are copied from the request.
			if got, want := binary.BigEndian.Uint32(out[14:18]), binary.BigEndian.Uint32(tc.f[14:18]); got != want {
				t.Errorf("version/class/flow %#08x, want %#08x", got, want)
			}
			if k := Classify(out); k != None {
				t.Errorf("Classify(advertisement) = %v", k)
			}
		})
	}
}

// What the Linux kernel answered to its own solicitations, byte for byte.
func TestAdvertisementMatchesLinux(t *testing.T) {
	for _, tc := range []struct {
		name   string
		ns, na []byte
	}{
		{"global", linuxNSGlobal, linuxNAGlobal},
		{"link-local", linuxNSLinkLocal, linuxNALinkLocal},
	} {
		s, ok := ParseNS(tc.ns)
		if !ok {
			t.Fatalf("%s: not accepted", tc.name)
		}
		if got := Advertisement(s, macAns); !bytes.Equal(got, tc.na) {
			t.Errorf("%s:\ngot  % x\nwant % x", tc.name, got, tc.na)
		}
	}
}

// Advertisements built from solicitations not made by ParseNS: any
// addresses, including an IPv4 one (written as v4-mapped) and the zero
// Addr, give a well-formed frame with a valid checksum and no panic.
func TestAdvertisementAnySolicitation(t *testing.T) {
	for _, s := range []Solicitation{
		{SrcMAC: macReq, SrcIP: ip6Req, Target: ip6Tgt},
		{SrcMAC: macReq, SrcIP: netip.MustParseAddr("2001:db8::1"), Target: netip.MustParseAddr("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")},
		{SrcMAC: macReq, SrcIP: netip.MustParseAddr("192.0.2.1"), Target: netip.MustParseAddr("192.0.2.2")},
		{},
		{SrcMAC: Broadcast, tcFlow: 0xffffffff},
	} {
		out := Advertisement(s, macAns)
		if sum := pseudoChecksum(out[22:38], out[38:54], 58, out[54:]); sum != 0xffff {
			t.Errorf("%+v: pseudo-header sum %#04x", s, sum)
		}
		if out[14]>>4 != 6 {
			t.Errorf("%+v: IP version %d", s, out[14]>>4)
		}
	}
}

// icmpv6Checksum against the hand-written sum, on odd lengths too.
func TestICMPv6Checksum(t *testing.T) {
	src, dst := ip6Req.As16(), ip6Tgt.As16()
	msg := make([]byte, 0, 80)
	for n := 0; n < 80; n++ {
		msg = append(msg, byte(n*37+11))
		var c [2]byte
		binary.BigEndian.PutUint16(c[:], icmpv6Checksum(ip6Req, ip6Tgt, msg))
		want := ^pseudoChecksum(src[:], dst[:], 58, msg)
		if got := binary.BigEndian.Uint16(c[:]); got != want {
			t.Fatalf("len %d: %#04x, want %#04x", len(msg), got, want)
		}
	}
}
