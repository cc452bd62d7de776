package proxy

// Test helpers: frames built with gopacket (an independent encoder), frames
// captured from Linux, an independent ICMPv6 checksum, and a reference
// classifier written on top of gopacket's decoders that the fuzz targets
// compare Classify against.

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macReq    = MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a} // requester / DHCP client
	macAns    = MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b} // the answer the plugin gives
	macSrv    = MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x5e} // DHCP server
	macClient = MAC{0x02, 0x00, 0x00, 0x00, 0xc1, 0x1e} // chaddr of a BOOTREPLY

	ip4Req = netip.MustParseAddr("192.0.2.1")
	ip4Tgt = netip.MustParseAddr("192.0.2.2")

	ip6Req = netip.MustParseAddr("fe80::ff:fe00:a")
	ip6Tgt = netip.MustParseAddr("2001:db8::b")
)

func hw(m MAC) net.HardwareAddr { return net.HardwareAddr(bytes.Clone(m[:])) }

func ipSlice(a netip.Addr) net.IP {
	if a.Is4() {
		b := a.As4()
		return net.IP(b[:])
	}
	b := a.As16()
	return net.IP(b[:])
}

// solicitedNode returns ff02::1:ffXX:XXXX for a and its 33:33 MAC.
func solicitedNode(a netip.Addr) (netip.Addr, MAC) {
	t := a.As16()
	s := netip.MustParseAddr("ff02::1:ff00:0").As16()
	copy(s[13:], t[13:])
	return netip.AddrFrom16(s), MAC{0x33, 0x33, s[12], s[13], s[14], s[15]}
}

// serialize builds a frame with checksums and lengths computed by gopacket.
func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	if err := gopacket.SerializeLayers(buf, opts, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return bytes.Clone(buf.Bytes())
}

// ---- ARP ----

type arpLayers struct {
	eth *layers.Ethernet
	arp *layers.ARP
	pad int // bytes of zero trailer (Ethernet minimum-size padding)
}

// arpFrame builds a who-has ip4Tgt tell ip4Req request from macReq, then
// lets mods change it.
func arpFrame(tb testing.TB, mods ...func(*arpLayers)) []byte {
	tb.Helper()
	l := &arpLayers{
		eth: &layers.Ethernet{SrcMAC: hw(macReq), DstMAC: hw(Broadcast), EthernetType: layers.EthernetTypeARP},
		arp: &layers.ARP{
			AddrType:          layers.LinkTypeEthernet,
			Protocol:          layers.EthernetTypeIPv4,
			Operation:         layers.ARPRequest,
			SourceHwAddress:   hw(macReq),
			SourceProtAddress: ipSlice(ip4Req),
			DstHwAddress:      make(net.HardwareAddr, 6),
			DstProtAddress:    ipSlice(ip4Tgt),
		},
	}
	for _, m := range mods {
		m(l)
	}
	ls := []gopacket.SerializableLayer{l.eth, l.arp}
	if l.pad > 0 {
		ls = append(ls, gopacket.Payload(make([]byte, l.pad)))
	}
	return serialize(tb, ls...)
}

// ---- IPv6 neighbour solicitation ----

type nsLayers struct {
	eth  *layers.Ethernet
	ip   *layers.IPv6
	icmp *layers.ICMPv6
	ns   *layers.ICMPv6NeighborSolicitation
	// rawOpts, when set, replaces ns.Options with these exact bytes (so
	// malformed options can be built; the checksum still covers them).
	rawOpts []byte
	// body, when set, replaces the whole NS body after the 4-byte ICMPv6
	// header (for other ICMPv6 types).
	body []byte
	// trailer bytes appended after the IPv6 packet (Ethernet padding).
	trailer []byte
}

// nsFrame builds a neighbour solicitation for ip6Tgt from macReq/ip6Req to
// the target's solicited-node address, with a source link-layer address
// option, then lets mods change it. Checksum and payload length are
// computed by gopacket after the mods.
func nsFrame(tb testing.TB, mods ...func(*nsLayers)) []byte {
	tb.Helper()
	dst, dmac := solicitedNode(ip6Tgt)
	l := &nsLayers{
		eth: &layers.Ethernet{SrcMAC: hw(macReq), DstMAC: hw(dmac), EthernetType: layers.EthernetTypeIPv6},
		ip: &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
			SrcIP: ipSlice(ip6Req), DstIP: ipSlice(dst)},
		icmp: &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)},
		ns: &layers.ICMPv6NeighborSolicitation{TargetAddress: ipSlice(ip6Tgt),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: hw(macReq)}}},
	}
	for _, m := range mods {
		m(l)
	}
	if err := l.icmp.SetNetworkLayerForChecksum(l.ip); err != nil {
		tb.Fatal(err)
	}
	ls := []gopacket.SerializableLayer{l.eth, l.ip, l.icmp}
	switch {
	case l.body != nil:
		ls = append(ls, gopacket.Payload(l.body))
	case l.rawOpts != nil:
		l.ns.Options = nil
		ls = append(ls, l.ns, gopacket.Payload(l.rawOpts))
	default:
		ls = append(ls, l.ns)
	}
	f := serialize(tb, ls...)
	return append(f, l.trailer...)
}

// ---- DHCPv4 ----

type dhcpLayers struct {
	eth  *layers.Ethernet
	ip   *layers.IPv4
	udp  *layers.UDP
	tcp  *layers.TCP // replaces udp when set
	dhcp *layers.DHCPv4
}

func dhcpMsgType(t layers.DHCPMsgType) layers.DHCPOption {
	return layers.NewDHCPOption(layers.DHCPOptMessageType, []byte{byte(t)})
}

// dhcpClientFrame builds a broadcast DHCPDISCOVER (or REQUEST...) from
// macReq, 0.0.0.0:68 -> 255.255.255.255:67.
func dhcpClientFrame(tb testing.TB, mt layers.DHCPMsgType, mods ...func(*dhcpLayers)) []byte {
	tb.Helper()
	l := &dhcpLayers{
		eth: &layers.Ethernet{SrcMAC: hw(macReq), DstMAC: hw(Broadcast), EthernetType: layers.EthernetTypeIPv4},
		ip: &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4zero.To4(), DstIP: net.IPv4bcast.To4()},
		udp: &layers.UDP{SrcPort: 68, DstPort: 67},
		dhcp: &layers.DHCPv4{Operation: layers.DHCPOpRequest, HardwareType: layers.LinkTypeEthernet,
			Xid: 0x12345678, Flags: 0x8000, ClientHWAddr: hw(macReq),
			Options: layers.DHCPOptions{
				dhcpMsgType(mt),
				layers.NewDHCPOption(layers.DHCPOptParamsRequest, []byte{1, 3, 6, 15}),
			}},
	}
	if mt == layers.DHCPMsgTypeRequest {
		l.dhcp.Options = append(l.dhcp.Options,
			layers.NewDHCPOption(layers.DHCPOptRequestIP, []byte{192, 0, 2, 50}),
			layers.NewDHCPOption(layers.DHCPOptServerID, []byte{192, 0, 2, 254}))
	}
	for _, m := range mods {
		m(l)
	}
	return serializeDHCP(tb, l)
}

// dhcpServerFrame builds a broadcast DHCPOFFER (or ACK...) from macSrv,
// 192.0.2.254:67 -> 255.255.255.255:68, for chaddr macClient.
func dhcpServerFrame(tb testing.TB, mt layers.DHCPMsgType, mods ...func(*dhcpLayers)) []byte {
	tb.Helper()
	l := &dhcpLayers{
		eth: &layers.Ethernet{SrcMAC: hw(macSrv), DstMAC: hw(Broadcast), EthernetType: layers.EthernetTypeIPv4},
		ip: &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolUDP,
			SrcIP: net.IPv4(192, 0, 2, 254).To4(), DstIP: net.IPv4bcast.To4()},
		udp: &layers.UDP{SrcPort: 67, DstPort: 68},
		dhcp: &layers.DHCPv4{Operation: layers.DHCPOpReply, HardwareType: layers.LinkTypeEthernet,
			Xid: 0x12345678, Flags: 0x8000, ClientHWAddr: hw(macClient),
			YourClientIP: net.IPv4(192, 0, 2, 50).To4(), NextServerIP: net.IPv4(192, 0, 2, 254).To4(),
			Options: layers.DHCPOptions{
				dhcpMsgType(mt),
				layers.NewDHCPOption(layers.DHCPOptServerID, []byte{192, 0, 2, 254}),
				layers.NewDHCPOption(layers.DHCPOptLeaseTime, []byte{0, 0, 0x0e, 0x10}),
				layers.NewDHCPOption(layers.DHCPOptSubnetMask, []byte{255, 255, 255, 0}),
			}},
	}
	for _, m := range mods {
		m(l)
	}
	return serializeDHCP(tb, l)
}

func serializeDHCP(tb testing.TB, l *dhcpLayers) []byte {
	tb.Helper()
	if l.tcp != nil {
		if err := l.tcp.SetNetworkLayerForChecksum(l.ip); err != nil {
			tb.Fatal(err)
		}
		// The BOOTP bytes as a TCP payload.
		b := serialize(tb, l.dhcp)
		return serialize(tb, l.eth, l.ip, l.tcp, gopacket.Payload(b))
	}
	if err := l.udp.SetNetworkLayerForChecksum(l.ip); err != nil {
		tb.Fatal(err)
	}
	return serialize(tb, l.eth, l.ip, l.udp, l.dhcp)
}

// ---- frames captured from Linux (veth pair, tcpdump -xx) ----

func unhex(s string) []byte {
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		panic(err)
	}
	return b
}

var (
	// ARP, Request who-has 192.0.2.2 tell 192.0.2.1 (unpadded, as a veth
	// delivers it).
	linuxARP = unhex(`ffff ffff ffff 0200 0000 000a 0806 0001
		0800 0604 0001 0200 0000 000a c000 0201 0000 0000 0000 c000 0202`)
	// fe80::ff:fe00:a > ff02::1:ff00:b: neighbor solicitation, who has
	// 2001:db8::b, source link-address 02:00:00:00:00:0a.
	linuxNSGlobal = unhex(`3333 ff00 000b 0200 0000 000a 86dd 6000
		0000 0020 3aff fe80 0000 0000 0000 0000 00ff fe00 000a ff02 0000 0000 0000 0000
		0001 ff00 000b 8700 4c3b 0000 0000 2001 0db8 0000 0000 0000 0000 0000 000b 0101
		0200 0000 000a`)
	// The kernel's own answer to linuxNSGlobal, from 02:00:00:00:00:0b.
	linuxNAGlobal = unhex(`0200 0000 000a 0200 0000 000b 86dd 6000
		0000 0020 3aff 2001 0db8 0000 0000 0000 0000 0000 000b fe80 0000 0000 0000 0000
		00ff fe00 000a 8800 ba85 6000 0000 2001 0db8 0000 0000 0000 0000 0000 000b 0201
		0200 0000 000b`)
	// fe80::ff:fe00:a > ff02::1:ff00:b: who has fe80::ff:fe00:b.
	linuxNSLinkLocal = unhex(`3333 ff00 000b 0200 0000 000a 86dd 6000
		0000 0020 3aff fe80 0000 0000 0000 0000 00ff fe00 000a ff02 0000 0000 0000 0000
		0001 ff00 000b 8700 7c73 0000 0000 fe80 0000 0000 0000 0000 00ff fe00 000b 0101
		0200 0000 000a`)
	linuxNALinkLocal = unhex(`0200 0000 000a 0200 0000 000b 86dd 6000
		0000 0020 3aff fe80 0000 0000 0000 0000 00ff fe00 000b fe80 0000 0000 0000 0000
		00ff fe00 000a 8800 1af6 6000 0000 fe80 0000 0000 0000 0000 00ff fe00 000b 0201
		0200 0000 000b`)
	// Duplicate address detection probe: :: > ff02::1:ff00:a, who has
	// 2001:db8::a, with a nonce option (type 14) and no SLLA.
	linuxDAD = unhex(`3333 ff00 000a 0200 0000 000a 86dd 6000
		0000 0020 3aff 0000 0000 0000 0000 0000 0000 0000 0000 ff02 0000 0000 0000 0000
		0001 ff00 000a 8700 f934 0000 0000 2001 0db8 0000 0000 0000 0000 0000 000a 0e01
		6364 ed00 f537`)
	// Router solicitation to ff02::2 with a source link-address option.
	linuxRS = unhex(`3333 0000 0002 0200 0000 000a 86dd 6000
		0000 0010 3aff fe80 0000 0000 0000 0000 00ff fe00 000a ff02 0000 0000 0000 0000
		0000 0000 0002 8500 7b1a 0000 0000 0101 0200 0000 000a`)
)

// ---- independent checks ----

// pseudoChecksum is a hand-written RFC 1071 sum over the IPv6
// pseudo-header (RFC 8200 8.1) and an upper-layer message. It returns the
// folded one's-complement sum, not its complement: 0xffff means valid.
func pseudoChecksum(src, dst []byte, next byte, msg []byte) uint16 {
	var b []byte
	b = append(b, src...)
	b = append(b, dst...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(msg)))
	b = append(b, 0, 0, 0, next)
	b = append(b, msg...)
	if len(b)%2 == 1 {
		b = append(b, 0)
	}
	var sum uint64
	for i := 0; i < len(b); i += 2 {
		sum += uint64(b[i])<<8 | uint64(b[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// feedback records whether a gopacket decoder saw a truncated layer.
type feedback struct{ truncated bool }

func (f *feedback) SetTruncated() { f.truncated = true }

func isUnicastV6(a netip.Addr) bool {
	return !a.IsMulticast() && !a.Is4In6() && !a.IsLoopback() && !a.IsUnspecified()
}

func addr16(b []byte) netip.Addr { return netip.AddrFrom16([16]byte(b)) }

// refClassify is what Classify should say, decided from gopacket's decoding
// of the frame and the rules of SPEC section 5 / illumos.md 4.4 (with the
// illumos quirks fixed: NS checksum, code and hop limit verified; IPv4
// version and protocol both required).
func refClassify(f []byte) Kind {
	var eth layers.Ethernet
	if err := eth.DecodeFromBytes(f, gopacket.NilDecodeFeedback); err != nil {
		return None
	}
	// Classify reads bytes 12:14 as an EtherType even below 0x600; none of
	// the EtherTypes it answers is that small, so the 802.3 case is None.
	switch eth.EthernetType {
	case layers.EthernetTypeARP:
		if refARP(eth.Payload) {
			return ARP
		}
	case layers.EthernetTypeIPv6:
		if bytes.HasPrefix(eth.DstMAC, []byte{0x33, 0x33}) && refNS(eth.Payload) {
			return NDP
		}
	case layers.EthernetTypeIPv4:
		if !bytes.Equal(eth.DstMAC, Broadcast[:]) {
			return None
		}
		switch refDHCP(eth.Payload) {
		case 1:
			return DHCPClient
		case 2:
			return DHCPToClient
		}
	}
	return None
}

func refARP(b []byte) bool {
	var a layers.ARP
	if err := a.DecodeFromBytes(b, gopacket.NilDecodeFeedback); err != nil {
		return false
	}
	return a.AddrType == layers.LinkTypeEthernet && a.Protocol == layers.EthernetTypeIPv4 &&
		a.HwAddressSize == 6 && a.ProtAddressSize == 4 && a.Operation == layers.ARPRequest &&
		!bytes.Equal(a.SourceProtAddress, a.DstProtAddress)
}

func refNS(b []byte) bool {
	var ip layers.IPv6
	var fb feedback
	if err := ip.DecodeFromBytes(b, &fb); err != nil || fb.truncated {
		return false
	}
	src, dst := addr16(ip.SrcIP), addr16(ip.DstIP)
	if ip.Version != 6 || ip.NextHeader != layers.IPProtocolICMPv6 || ip.HopLimit != 255 ||
		ip.Length < 24 || !dst.IsMulticast() || src.IsUnspecified() || src.IsMulticast() {
		return false
	}
	var icmp layers.ICMPv6
	if err := icmp.DecodeFromBytes(ip.Payload, gopacket.NilDecodeFeedback); err != nil {
		return false
	}
	if icmp.TypeCode != layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0) {
		return false
	}
	if err := icmp.SetNetworkLayerForChecksum(&ip); err != nil {
		panic(err)
	}
	if err, res := icmp.VerifyChecksum(); err != nil || !res.Valid {
		return false
	}
	var ns layers.ICMPv6NeighborSolicitation
	if err := ns.DecodeFromBytes(icmp.Payload, gopacket.NilDecodeFeedback); err != nil {
		return false // includes zero-length and overlong options
	}
	if !isUnicastV6(addr16(ns.TargetAddress)) {
		return false
	}
	for _, o := range ns.Options {
		if o.Type == layers.ICMPv6OptSourceAddress && len(o.Data) == 6 {
			return true
		}
	}
	return false
}

// refDHCP returns 1 for a BOOTREQUEST 68->67, 2 for an Ethernet BOOTREPLY
// 67->68 to a unicast chaddr, 0 otherwise.
func refDHCP(b []byte) int {
	if len(b) < 20 {
		return 0
	}
	// Classify does not look into IPv4 options; gopacket refuses malformed
	// ones, so hide them from it (as NOPs).
	b = bytes.Clone(b)
	for i := 20; i < int(b[0]&0x0f)*4 && i < len(b); i++ {
		b[i] = 1
	}
	var ip layers.IPv4
	var fb feedback
	if err := ip.DecodeFromBytes(b, &fb); err != nil || fb.truncated {
		return 0
	}
	rawLen := binary.BigEndian.Uint16(b[2:4]) // gopacket turns 0 into len(b)
	if ip.Version != 4 || ip.Protocol != layers.IPProtocolUDP ||
		ip.Flags&layers.IPv4MoreFragments != 0 || ip.FragOffset != 0 ||
		int(rawLen) < int(ip.IHL)*4+8 {
		return 0
	}
	var udp layers.UDP
	fb = feedback{}
	if err := udp.DecodeFromBytes(ip.Payload, &fb); err != nil || fb.truncated || udp.Length < 8+236 {
		return 0
	}
	bootp := udp.Payload
	switch {
	case udp.SrcPort == 68 && udp.DstPort == 67 && bootp[0] == 1:
		return 1
	case udp.SrcPort == 67 && udp.DstPort == 68 && bootp[0] == 2 &&
		bootp[1] == 1 && bootp[2] == 6 && bootp[28]&1 == 0:
		return 2
	}
	return 0
}

// ---- decoding our outputs ----

// checkARPReply decodes an ARPReply output with gopacket and checks every
// field against the request it answers.
func checkARPReply(tb testing.TB, out []byte, req ARPRequest, mac MAC) {
	tb.Helper()
	p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("reply does not decode: %v", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if eth == nil || arp == nil {
		tb.Fatalf("reply is not Ethernet+ARP: %v", p)
	}
	if len(out) != 42 {
		tb.Errorf("reply is %d bytes, want 42", len(out))
	}
	if !bytes.Equal(eth.DstMAC, req.SenderMAC[:]) || !bytes.Equal(eth.SrcMAC, mac[:]) ||
		eth.EthernetType != layers.EthernetTypeARP {
		tb.Errorf("Ethernet %v -> %v type %v, want %v -> %v ARP",
			eth.SrcMAC, eth.DstMAC, eth.EthernetType, hw(mac), hw(req.SenderMAC))
	}
	if arp.AddrType != layers.LinkTypeEthernet || arp.Protocol != layers.EthernetTypeIPv4 ||
		arp.HwAddressSize != 6 || arp.ProtAddressSize != 4 {
		tb.Errorf("ARP header %v/%v/%d/%d", arp.AddrType, arp.Protocol, arp.HwAddressSize, arp.ProtAddressSize)
	}
	if arp.Operation != layers.ARPReply {
		tb.Errorf("ARP operation %d, want 2", arp.Operation)
	}
	tgt, snd := req.TargetIP.As4(), req.SenderIP.As4()
	if !bytes.Equal(arp.SourceHwAddress, mac[:]) || !bytes.Equal(arp.SourceProtAddress, tgt[:]) ||
		!bytes.Equal(arp.DstHwAddress, req.SenderMAC[:]) || !bytes.Equal(arp.DstProtAddress, snd[:]) {
		tb.Errorf("ARP says %v is at %v, to %v at %v; want %v at %v, to %v at %v",
			net.IP(arp.SourceProtAddress), net.HardwareAddr(arp.SourceHwAddress),
			net.IP(arp.DstProtAddress), net.HardwareAddr(arp.DstHwAddress),
			req.TargetIP, hw(mac), req.SenderIP, hw(req.SenderMAC))
	}
}

// checkAdvertisement decodes an Advertisement output with gopacket and
// checks it, including its checksum, verified twice independently of
// package proxy.
func checkAdvertisement(tb testing.TB, out []byte, s Solicitation, mac MAC) {
	tb.Helper()
	p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		tb.Fatalf("advertisement does not decode: %v", el.Error())
	}
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
	na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
	if eth == nil || ip == nil || icmp == nil || na == nil {
		tb.Fatalf("advertisement is not Ethernet+IPv6+ICMPv6 NA: %v", p)
	}
	if len(out) != 14+40+32 {
		tb.Errorf("advertisement is %d bytes, want 86", len(out))
	}
	if !bytes.Equal(eth.DstMAC, s.SrcMAC[:]) || !bytes.Equal(eth.SrcMAC, mac[:]) ||
		eth.EthernetType != layers.EthernetTypeIPv6 {
		tb.Errorf("Ethernet %v -> %v type %v, want %v -> %v IPv6",
			eth.SrcMAC, eth.DstMAC, eth.EthernetType, hw(mac), hw(s.SrcMAC))
	}
	tgt, sol := s.Target.As16(), s.SrcIP.As16()
	if ip.Version != 6 || ip.HopLimit != 255 || ip.NextHeader != layers.IPProtocolICMPv6 ||
		ip.Length != 32 || !bytes.Equal(ip.SrcIP, tgt[:]) || !bytes.Equal(ip.DstIP, sol[:]) {
		tb.Errorf("IPv6 v%d hlim %d next %v len %d %v -> %v; want v6 hlim 255 ICMPv6 len 32 %v -> %v",
			ip.Version, ip.HopLimit, ip.NextHeader, ip.Length, ip.SrcIP, ip.DstIP, s.Target, s.SrcIP)
	}
	if want := layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborAdvertisement, 0); icmp.TypeCode != want {
		tb.Errorf("ICMPv6 %v, want %v", icmp.TypeCode, want)
	}
	// Checksum, 1: gopacket's own verification.
	if err := icmp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	if err, res := icmp.VerifyChecksum(); err != nil || !res.Valid {
		tb.Errorf("gopacket: ICMPv6 checksum invalid: %v %+v", err, res)
	}
	// Checksum, 2: a hand-written pseudo-header sum.
	if sum := pseudoChecksum(ip.SrcIP, ip.DstIP, 58, out[14+40:]); sum != 0xffff {
		tb.Errorf("pseudo-header sum %#04x, want 0xffff", sum)
	}
	if !na.Solicited() || !na.Override() || na.Router() || na.Flags != 0x60 {
		tb.Errorf("NA flags %#02x, want solicited|override (0x60)", na.Flags)
	}
	if !bytes.Equal(out[14+40+5:14+40+8], []byte{0, 0, 0}) {
		tb.Errorf("NA reserved bytes not zero: % x", out[14+40+4:14+40+8])
	}
	if !bytes.Equal(na.TargetAddress, tgt[:]) {
		tb.Errorf("NA target %v, want %v", na.TargetAddress, s.Target)
	}
	if len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress ||
		!bytes.Equal(na.Options[0].Data, mac[:]) {
		tb.Errorf("NA options %v, want exactly one target link-layer address %v", na.Options, hw(mac))
	}
}
