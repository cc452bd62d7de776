package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func TestParseARP(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    []byte
	}{
		{"gopacket", arpFrame(t)},
		{"linux", linuxARP},
		{"padded to 60", arpFrame(t, func(l *arpLayers) { l.pad = 60 - 42 })},
		{"unicast dst", arpFrame(t, func(l *arpLayers) { l.eth.DstMAC = hw(macAns) })},
		{"ARP probe from 0.0.0.0", arpFrame(t, func(l *arpLayers) {
			l.arp.SourceProtAddress = net.IPv4zero.To4()
		})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, ok := ParseARP(tc.f)
			if !ok {
				t.Fatal("not accepted")
			}
			want := ARPRequest{SenderMAC: macReq, SenderIP: ip4Req, TargetIP: ip4Tgt}
			if tc.name == "ARP probe from 0.0.0.0" {
				want.SenderIP = netip.IPv4Unspecified()
			}
			if req != want {
				t.Errorf("got %+v, want %+v", req, want)
			}
			if k := Classify(tc.f); k != ARP {
				t.Errorf("Classify = %v, want arp", k)
			}
		})
	}
}

// The sender hardware address comes from the ARP body, not the Ethernet
// header (they differ behind a bridge that rewrites the source, or for a
// proxy): the reply goes to the ARP sender.
func TestParseARPSenderFromBody(t *testing.T) {
	other := MAC{0x02, 0, 0, 0, 0, 0x77}
	f := arpFrame(t, func(l *arpLayers) { l.eth.SrcMAC = hw(other) })
	req, ok := ParseARP(f)
	if !ok || req.SenderMAC != macReq {
		t.Fatalf("got %+v %v, want sender %v", req, ok, hw(macReq))
	}
}

func TestParseARPRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*arpLayers)
	}{
		{"gratuitous request", func(l *arpLayers) { l.arp.DstProtAddress = ipSlice(ip4Req) }},
		{"reply", func(l *arpLayers) { l.arp.Operation = layers.ARPReply }},
		{"gratuitous reply", func(l *arpLayers) {
			l.arp.Operation = layers.ARPReply
			l.arp.DstProtAddress = ipSlice(ip4Req)
		}},
		{"RARP request op 3", func(l *arpLayers) { l.arp.Operation = 3 }},
		{"op 0x0101", func(l *arpLayers) { l.arp.Operation = 0x0101 }},
		{"hardware type IEEE 802 (6)", func(l *arpLayers) { l.arp.AddrType = layers.LinkTypeTokenRing }},
		{"hardware type 0x0100", func(l *arpLayers) { l.arp.AddrType = 0x0100 }},
		{"protocol IPv6", func(l *arpLayers) { l.arp.Protocol = layers.EthernetTypeIPv6 }},
		{"protocol IPv6, 16-byte addresses", func(l *arpLayers) {
			l.arp.Protocol = layers.EthernetTypeIPv6
			l.arp.SourceProtAddress = ipSlice(ip6Req)
			l.arp.DstProtAddress = ipSlice(ip6Tgt)
		}},
		{"hardware length 8", func(l *arpLayers) {
			l.arp.SourceHwAddress = append(hw(macReq), 0, 0)
			l.arp.DstHwAddress = make([]byte, 8)
		}},
		{"EtherType IPv4", func(l *arpLayers) { l.eth.EthernetType = layers.EthernetTypeIPv4 }},
		{"EtherType RARP", func(l *arpLayers) { l.eth.EthernetType = 0x8035 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := arpFrame(t, tc.mod)
			if req, ok := ParseARP(f); ok {
				t.Errorf("accepted: %+v", req)
			}
			if k := Classify(f); k != None {
				t.Errorf("Classify = %v, want none", k)
			}
		})
	}
}

func TestARPReply(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    []byte
		mac  MAC
	}{
		{"gopacket", arpFrame(t), macAns},
		{"linux", linuxARP, macAns},
		{"padded", arpFrame(t, func(l *arpLayers) { l.pad = 18 }), macAns},
		{"answer is the requester", arpFrame(t), macReq},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, ok := ParseARP(tc.f)
			if !ok {
				t.Fatal("request not accepted")
			}
			in := bytes.Clone(tc.f)
			out := ARPReply(req, tc.mac)
			checkARPReply(t, out, req, tc.mac)
			if !bytes.Equal(in, tc.f) {
				t.Error("ARPReply changed the request")
			}
			// A reply is not a request: never answered in turn.
			if k := Classify(out); k != None {
				t.Errorf("Classify(reply) = %v", k)
			}
		})
	}
}

// The reply to the Linux request, byte for byte: what Linux itself sends
// (checked against the layout of RFC 826).
func TestARPReplyGolden(t *testing.T) {
	req, _ := ParseARP(linuxARP)
	want := unhex(`0200 0000 000a 0200 0000 000b 0806 0001
		0800 0604 0002 0200 0000 000b c000 0202 0200 0000 000a c000 0201`)
	if got := ARPReply(req, macAns); !bytes.Equal(got, want) {
		t.Errorf("got  % x\nwant % x", got, want)
	}
}
