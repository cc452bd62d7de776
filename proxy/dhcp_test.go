package proxy

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

func TestParseDHCPClient(t *testing.T) {
	relayed := func(l *dhcpLayers) { l.dhcp.ClientHWAddr = hw(macClient) } // chaddr != Ethernet source
	for _, tc := range []struct {
		name string
		f    []byte
	}{
		{"discover", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover)},
		{"request", dhcpClientFrame(t, layers.DHCPMsgTypeRequest)},
		{"inform from a configured address", dhcpClientFrame(t, layers.DHCPMsgTypeInform, func(l *dhcpLayers) {
			l.ip.SrcIP = net.IPv4(192, 0, 2, 50).To4()
			l.dhcp.ClientIP = net.IPv4(192, 0, 2, 50).To4()
		})},
		{"release", dhcpClientFrame(t, layers.DHCPMsgTypeRelease)},
		{"chaddr differs from Ethernet source", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, relayed)},
		{"IPv4 options (router alert)", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, func(l *dhcpLayers) {
			l.ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		})},
		{"don't fragment", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, func(l *dhcpLayers) {
			l.ip.Flags = layers.IPv4DontFragment
		})},
		{"directed broadcast IP", dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, func(l *dhcpLayers) {
			l.ip.DstIP = net.IPv4(192, 0, 2, 255).To4()
		})},
		{"bare BOOTP, no cookie", func() []byte {
			f := dhcpClientFrame(t, layers.DHCPMsgTypeDiscover)
			return shrinkUDP(f, 236)
		}()},
		{"Ethernet trailer", append(dhcpClientFrame(t, layers.DHCPMsgTypeDiscover), 0, 0, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac, ok := ParseDHCPClient(tc.f)
			if !ok {
				t.Fatal("not accepted")
			}
			if mac != macReq {
				t.Errorf("got %v, want the Ethernet source %v", hw(mac), hw(macReq))
			}
			if _, ok := ParseDHCPToClient(tc.f); ok {
				t.Error("ParseDHCPToClient accepted a client message")
			}
			if k := Classify(tc.f); k != DHCPClient {
				t.Errorf("Classify = %v, want dhcp-client", k)
			}
			if k := refClassify(tc.f); k != DHCPClient {
				t.Errorf("reference classifier says %v (test bug?)", k)
			}
		})
	}
}

// shrinkUDP cuts the BOOTP message of f to n bytes, fixing the IPv4 and
// UDP lengths (checksums are not looked at).
func shrinkUDP(f []byte, n int) []byte {
	ihl := int(f[14]&0x0f) * 4
	f = f[:14+ihl+8+n]
	binary.BigEndian.PutUint16(f[14+2:], uint16(ihl+8+n))
	binary.BigEndian.PutUint16(f[14+ihl+4:], uint16(8+n))
	return f
}

func TestParseDHCPToClient(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    []byte
	}{
		{"offer", dhcpServerFrame(t, layers.DHCPMsgTypeOffer)},
		{"ack", dhcpServerFrame(t, layers.DHCPMsgTypeAck)},
		{"nak", dhcpServerFrame(t, layers.DHCPMsgTypeNak)},
		{"through a relay (giaddr set)", dhcpServerFrame(t, layers.DHCPMsgTypeOffer, func(l *dhcpLayers) {
			l.dhcp.RelayAgentIP = net.IPv4(192, 0, 2, 1).To4()
			l.eth.SrcMAC = hw(MAC{0x02, 0, 0, 0, 0, 0x01})
		})},
		{"IPv4 options", dhcpServerFrame(t, layers.DHCPMsgTypeAck, func(l *dhcpLayers) {
			l.ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		})},
		{"bare BOOTP", shrinkUDP(dhcpServerFrame(t, layers.DHCPMsgTypeOffer), 236)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mac, ok := ParseDHCPToClient(tc.f)
			if !ok {
				t.Fatal("not accepted")
			}
			if mac != macClient {
				t.Errorf("got %v, want chaddr %v", hw(mac), hw(macClient))
			}
			if _, ok := ParseDHCPClient(tc.f); ok {
				t.Error("ParseDHCPClient accepted a server message")
			}
			if k := Classify(tc.f); k != DHCPToClient {
				t.Errorf("Classify = %v, want dhcp-to-client", k)
			}
			if k := refClassify(tc.f); k != DHCPToClient {
				t.Errorf("reference classifier says %v (test bug?)", k)
			}
		})
	}
}

func TestDHCPRejects(t *testing.T) {
	cli := func(mods ...func(*dhcpLayers)) []byte { return dhcpClientFrame(t, layers.DHCPMsgTypeDiscover, mods...) }
	srv := func(mods ...func(*dhcpLayers)) []byte { return dhcpServerFrame(t, layers.DHCPMsgTypeOffer, mods...) }
	poke := func(f []byte, off int, b ...byte) []byte { copy(f[off:], b); return f }
	for _, tc := range []struct {
		name string
		f    []byte
	}{
		{"client to a unicast MAC", cli(func(l *dhcpLayers) { l.eth.DstMAC = hw(macSrv) })},
		{"server to a unicast MAC", srv(func(l *dhcpLayers) { l.eth.DstMAC = hw(macClient) })},
		{"client to a multicast MAC", cli(func(l *dhcpLayers) { l.eth.DstMAC = hw(MAC{0x01, 0, 0x5e, 0, 0, 1}) })},
		{"client 68->68", cli(func(l *dhcpLayers) { l.udp.DstPort = 68 })},
		{"client 67->67 (relay to relay)", cli(func(l *dhcpLayers) { l.udp.SrcPort = 67 })},
		{"client 1068->67", cli(func(l *dhcpLayers) { l.udp.SrcPort = 1068 })},
		{"server 67->67", srv(func(l *dhcpLayers) { l.udp.DstPort = 67 })},
		{"server 68->68", srv(func(l *dhcpLayers) { l.udp.SrcPort = 68 })},
		{"client ports with BOOTREPLY", cli(func(l *dhcpLayers) { l.dhcp.Operation = layers.DHCPOpReply })},
		{"server ports with BOOTREQUEST", srv(func(l *dhcpLayers) { l.dhcp.Operation = layers.DHCPOpRequest })},
		{"client, TCP 68->67", cli(func(l *dhcpLayers) {
			l.ip.Protocol = layers.IPProtocolTCP
			l.tcp = &layers.TCP{SrcPort: 68, DstPort: 67}
		})},
		{"server, TCP 67->68", srv(func(l *dhcpLayers) {
			l.ip.Protocol = layers.IPProtocolTCP
			l.tcp = &layers.TCP{SrcPort: 67, DstPort: 68}
		})},
		{"UDP header, protocol TCP", poke(cli(), 14+9, 6)},
		{"UDP header, protocol UDP-Lite", poke(cli(), 14+9, 136)},
		{"more fragments", cli(func(l *dhcpLayers) { l.ip.Flags = layers.IPv4MoreFragments })},
		{"fragment offset", cli(func(l *dhcpLayers) { l.ip.FragOffset = 185 })},
		{"last fragment", srv(func(l *dhcpLayers) { l.ip.FragOffset = 1; l.ip.Flags = layers.IPv4DontFragment })},
		{"IP version 6 header bits", poke(cli(), 14, 0x65)},
		{"IP version 5", poke(cli(), 14, 0x55)},
		{"IHL 4", poke(cli(), 14, 0x44)},
		{"IHL beyond total length", poke(cli(), 14, 0x4f, 0, 0, 64)},
		{"IPv4 total length beyond the frame", func() []byte {
			f := cli()
			binary.BigEndian.PutUint16(f[16:], binary.BigEndian.Uint16(f[16:])+1)
			return f
		}()},
		{"IPv4 total length 0 (TSO style)", poke(cli(), 16, 0, 0)},
		{"UDP length beyond the IP packet", func() []byte {
			f := cli()
			binary.BigEndian.PutUint16(f[38:], binary.BigEndian.Uint16(f[38:])+1)
			return f
		}()},
		{"UDP length 0", poke(cli(), 38, 0, 0)},
		{"BOOTP one byte short", shrinkUDP(cli(), 235)},
		{"EtherType ARP", cli(func(l *dhcpLayers) { l.eth.EthernetType = layers.EthernetTypeARP })},
		{"EtherType IPv6", srv(func(l *dhcpLayers) { l.eth.EthernetType = layers.EthernetTypeIPv6 })},
		{"multicast chaddr", srv(func(l *dhcpLayers) { l.dhcp.ClientHWAddr = hw(MAC{0x01, 0, 0x5e, 0, 0, 1}) })},
		{"broadcast chaddr", srv(func(l *dhcpLayers) { l.dhcp.ClientHWAddr = hw(Broadcast) })},
		{"reply, htype 6", srv(func(l *dhcpLayers) { l.dhcp.HardwareType = layers.LinkTypeTokenRing })},
		{"reply, hlen 8", poke(srv(), 14+20+8+2, 8)},
		{"reply, hlen 16 (InfiniBand-ish)", poke(srv(), 14+20+8+1, 32, 16)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if mac, ok := ParseDHCPClient(tc.f); ok {
				t.Errorf("ParseDHCPClient accepted: %v", hw(mac))
			}
			if mac, ok := ParseDHCPToClient(tc.f); ok {
				t.Errorf("ParseDHCPToClient accepted: %v", hw(mac))
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
