package proxy

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// fuzzSeeds are the valid frames and the tricky negatives.
func fuzzSeeds(tb testing.TB) [][]byte {
	var seeds [][]byte
	for _, tc := range validFrames(tb) {
		seeds = append(seeds, tc.f)
	}
	return append(seeds,
		linuxDAD, linuxRS, linuxNAGlobal,
		arpFrame(tb, func(l *arpLayers) { l.arp.DstProtAddress = ipSlice(ip4Req) }),
		nsFrame(tb, func(l *nsLayers) { l.rawOpts = append(bytes.Clone(nonce), sllaOpt(macReq)...) }),
		nsFrame(tb, func(l *nsLayers) { l.rawOpts = []byte{1, 0, 0, 0, 0, 0, 0, 0} }),
		dhcpServerFrame(tb, layers.DHCPMsgTypeOffer, func(l *dhcpLayers) {
			l.ip.Options = []layers.IPv4Option{{OptionType: 0x94, OptionLength: 4, OptionData: []byte{0, 0}}}
		}),
		dhcpServerFrame(tb, layers.DHCPMsgTypeAck, func(l *dhcpLayers) { l.dhcp.ClientHWAddr = hw(Broadcast) }),
	)
}

// fuzzMAC makes an answer MAC out of fuzzer bytes.
func fuzzMAC(b []byte) MAC {
	m := macAns
	copy(m[:], b)
	return m
}

// checkFrame runs every parser on f and checks that they agree with each
// other, with Classify, with the gopacket reference classifier and with
// the bytes of f, then builds and checks the answer.
func checkFrame(t *testing.T, f []byte, mac MAC) Kind {
	t.Helper()
	f = f[:len(f):len(f)] // reading or reslicing past the end must panic
	orig := bytes.Clone(f)
	k := Classify(f)
	req, arpOK := ParseARP(f)
	s, nsOK := ParseNS(f)
	cli, cliOK := ParseDHCPClient(f)
	to, toOK := ParseDHCPToClient(f)
	if !bytes.Equal(f, orig) {
		t.Fatal("a parser modified its input")
	}
	if ref := refClassify(f); k != ref {
		t.Fatalf("Classify = %v, reference = %v\n% x", k, ref, f)
	}
	if (k == ARP) != arpOK || (k == NDP) != nsOK || (k == DHCPClient) != cliOK || (k == DHCPToClient) != toOK {
		t.Fatalf("Classify = %v but ARP %v NS %v DHCPClient %v DHCPToClient %v", k, arpOK, nsOK, cliOK, toOK)
	}
	switch k {
	case ARP:
		if req.SenderMAC != MAC(f[22:28]) || req.SenderIP.As4() != [4]byte(f[28:32]) ||
			req.TargetIP.As4() != [4]byte(f[38:42]) || !req.SenderIP.Is4() || !req.TargetIP.Is4() {
			t.Fatalf("ParseARP = %+v, not the frame's fields", req)
		}
		out := ARPReply(req, mac)
		checkARPReply(t, out, req, mac)
		if k := Classify(out); k != None {
			t.Fatalf("Classify(ARPReply) = %v", k)
		}
	case NDP:
		checkSolicitation(t, f, s)
		out := Advertisement(s, mac)
		checkAdvertisement(t, out, s, mac)
		if k := Classify(out); k != None {
			t.Fatalf("Classify(Advertisement) = %v", k)
		}
	case DHCPClient:
		if cli != MAC(f[6:12]) {
			t.Fatalf("ParseDHCPClient = %v, Ethernet source %v", hw(cli), f[6:12])
		}
	case DHCPToClient:
		ihl := int(f[14]&0x0f) * 4
		if off := 14 + ihl + 8 + 28; to != MAC(f[off:off+6]) || to[0]&1 != 0 {
			t.Fatalf("ParseDHCPToClient = %v, chaddr % x", hw(to), f[off:off+6])
		}
	}
	if k == DHCPClient || k == DHCPToClient {
		r := bytes.Clone(f)
		Redirect(r, mac)
		if !bytes.Equal(r[:6], mac[:]) || !bytes.Equal(r[6:], f[6:]) {
			t.Fatal("Redirect changed more than the destination")
		}
	}
	return k
}

// checkSolicitation checks ParseNS's result against the frame's bytes.
func checkSolicitation(t *testing.T, f []byte, s Solicitation) {
	t.Helper()
	if s.SrcMAC != MAC(f[6:12]) || s.SrcIP.As16() != [16]byte(f[22:38]) || s.Target.As16() != [16]byte(f[62:78]) ||
		!s.SrcIP.Is6() || !s.Target.Is6() || s.SrcIP.Zone() != "" || s.Target.Zone() != "" {
		t.Fatalf("ParseNS = %+v, not the frame's fields", s)
	}
	if sum := pseudoChecksum(f[22:38], f[38:54], 58, f[54:54+int(binary.BigEndian.Uint16(f[18:20]))]); sum != 0xffff {
		t.Fatalf("ParseNS accepted a bad checksum (sum %#04x)", sum)
	}
}

func FuzzClassify(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFrame(t, data, macAns)
	})
}

// fixNSChecksum writes a correct ICMPv6 checksum into an IPv6 frame, so
// that the fuzzer gets past the checksum test to the rest of ParseNS.
func fixNSChecksum(f []byte) {
	if len(f) < 14+40+4 {
		return
	}
	end := min(14+40+int(binary.BigEndian.Uint16(f[18:20])), len(f))
	if end < 14+40+4 {
		return
	}
	icmp := f[54:end]
	icmp[2], icmp[3] = 0, 0
	binary.BigEndian.PutUint16(icmp[2:], ^pseudoChecksum(f[22:38], f[38:54], 58, icmp))
}

func FuzzParseNS(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false, macAns[:])
	}
	f.Add(nsFrame(f, func(l *nsLayers) { l.ip.HopLimit = 64 }), true, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(linuxNSLinkLocal, true, []byte{0x33, 0x33, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte, fix bool, m []byte) {
		data = bytes.Clone(data)
		if fix {
			fixNSChecksum(data)
		}
		mac := fuzzMAC(m)
		s, ok := ParseNS(data)
		if k := checkFrame(t, data, mac); (k == NDP) != ok {
			t.Fatalf("ParseNS %v, Classify %v", ok, k)
		}
		if !ok {
			return
		}
		// Redundant with checkFrame, kept here for the stated property:
		// the advertisement has a valid checksum.
		out := Advertisement(s, mac)
		if sum := pseudoChecksum(out[22:38], out[38:54], 58, out[54:]); sum != 0xffff {
			t.Fatalf("advertisement checksum invalid (sum %#04x)", sum)
		}
	})
}

// fixIPLengths makes the IPv4 total length and the UDP length match the
// frame, so that the fuzzer gets past them to the ports and BOOTP header.
func fixIPLengths(f []byte) {
	if len(f) < 14+20 {
		return
	}
	ihl := int(f[14]&0x0f) * 4
	n := len(f) - 14
	if n > 0xffff || ihl < 20 || n < ihl+8 {
		return
	}
	binary.BigEndian.PutUint16(f[16:], uint16(n))
	binary.BigEndian.PutUint16(f[14+ihl+4:], uint16(n-ihl))
}

func FuzzDHCP(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false, macSrv[:])
	}
	f.Add(shrinkUDP(dhcpClientFrame(f, layers.DHCPMsgTypeDiscover), 236), true, macSrv[:])
	f.Fuzz(func(t *testing.T, data []byte, fix bool, m []byte) {
		data = bytes.Clone(data)
		if fix {
			fixIPLengths(data)
		}
		mac := fuzzMAC(m)
		cli, cliOK := ParseDHCPClient(data)
		to, toOK := ParseDHCPToClient(data)
		k := checkFrame(t, data, mac)
		if cliOK && toOK {
			t.Fatalf("both client (%v) and to-client (%v)", hw(cli), hw(to))
		}
		if (cliOK || toOK) && !bytes.Equal(data[:6], Broadcast[:]) {
			t.Fatal("accepted a frame not sent to broadcast")
		}
		// A redirected frame (to a unicast MAC) is never classified again.
		if cliOK || toOK {
			r := bytes.Clone(data)
			Redirect(r, MAC{mac[0] &^ 1, mac[1], mac[2], mac[3], mac[4], mac[5]})
			if k2 := Classify(r); k2 != None {
				t.Fatalf("redirected %v frame classifies as %v", k, k2)
			}
		}
	})
}
