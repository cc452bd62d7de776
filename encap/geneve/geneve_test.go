package geneve

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"overlaynet/encap"
)

// inner is a small Ethernet frame to carry.
var inner = []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 20}

// TestEncapHeaderBytes: the header is version 0, no options, no flags,
// protocol 0x6558 and the VNI, and Encap writes every byte of it.
func TestEncapHeaderBytes(t *testing.T) {
	for _, tt := range []struct {
		vni  uint32
		want []byte
	}{
		{0, []byte{0, 0, 0x65, 0x58, 0, 0, 0, 0}},
		{42, []byte{0, 0, 0x65, 0x58, 0, 0, 0x2a, 0}},
		{0x123456, []byte{0, 0, 0x65, 0x58, 0x12, 0x34, 0x56, 0}},
		{MaxVNI, []byte{0, 0, 0x65, 0x58, 0xff, 0xff, 0xff, 0}},
	} {
		buf := bytes.Repeat([]byte{0xa5}, HeaderLen+2)
		Plugin{}.Encap(buf, tt.vni)
		if !bytes.Equal(buf[:HeaderLen], tt.want) || buf[HeaderLen] != 0xa5 {
			t.Errorf("Encap(VNI %d) = % x, want % x", tt.vni, buf, tt.want)
		}
	}
}

// serialize builds a Geneve packet with gopacket's layer, another
// implementation of RFC 8926.
func serialize(t *testing.T, g *layers.Geneve) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, g, gopacket.Payload(inner)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestGopacketInterop: packets gopacket builds, with options or without,
// decode in ours to the VNI and inner frame; ours decode in gopacket.
func TestGopacketInterop(t *testing.T) {
	opts := []*layers.GeneveOption{
		{Class: 0x0102, Type: 0x03, Length: 8, Data: []byte{1, 2, 3, 4}},
		{Class: 0xffff, Type: 0x7f, Length: 12, Data: []byte{1, 2, 3, 4, 5, 6, 7, 8}},
	}
	for _, g := range []*layers.Geneve{
		{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 42},
		{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 0xabcdef, Options: opts},
	} {
		pkt := serialize(t, g)
		vni, got, err := Decap(pkt)
		if err != nil || vni != g.VNI || !bytes.Equal(got, inner) {
			t.Errorf("gopacket's packet (%d options, % x): Decap = %d, % x, %v; want %d and the inner frame", len(g.Options), pkt, vni, got, err, g.VNI)
		}
	}

	pkt := make([]byte, HeaderLen+len(inner))
	Encap(pkt, 4242)
	copy(pkt[HeaderLen:], inner)
	p := gopacket.NewPacket(pkt, layers.LayerTypeGeneve, gopacket.Default)
	g, _ := p.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
	if g == nil || g.VNI != 4242 || g.Version != 0 || g.OptionsLength != 0 || g.CriticalOption || g.OAMPacket ||
		g.Protocol != layers.EthernetTypeTransparentEthernetBridging || p.Layer(layers.LayerTypeEthernet) == nil {
		t.Errorf("gopacket decodes our packet as %+v (%v)", g, p)
	}
}

// TestDecapRefuses: each malformed or unforwardable packet gets its
// error; a critical option is encap.ErrCritical, counted apart.
func TestDecapRefuses(t *testing.T) {
	valid := serialize(t, &layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: 7,
		Options: []*layers.GeneveOption{{Class: 1, Type: 1, Length: 8, Data: []byte{0, 0, 0, 0}}}})
	edit := func(f func(b []byte)) []byte {
		b := bytes.Clone(valid)
		f(b)
		return b
	}
	for _, tt := range []struct {
		name string
		pkt  []byte
		want error
	}{
		{"empty", nil, ErrShort},
		{"seven bytes", valid[:7], ErrShort},
		{"options past the end", valid[:HeaderLen+2], ErrShort},
		{"version 1", edit(func(b []byte) { b[0] |= 0x40 }), ErrVersion},
		{"critical", edit(func(b []byte) { b[1] |= flagCritical }), encap.ErrCritical},
		{"OAM", edit(func(b []byte) { b[1] |= flagOAM }), ErrOAM},
		{"IPv4 payload", edit(func(b []byte) { b[2], b[3] = 0x08, 0x00 }), ErrProtocol},
	} {
		vni, got, err := Decap(tt.pkt)
		if !errors.Is(err, tt.want) || vni != 0 || got != nil {
			t.Errorf("%s: Decap = %d, % x, %v; want %v", tt.name, vni, got, err, tt.want)
		}
	}
	// Reserved bits are ignored.
	r := edit(func(b []byte) { b[1] |= 0x3f; b[7] = 0xff })
	if vni, got, err := Decap(r); err != nil || vni != 7 || !bytes.Equal(got, inner) {
		t.Errorf("reserved bits set: Decap = %d, % x, %v", vni, got, err)
	}
}

func FuzzDecap(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0x65, 0x58, 0, 0, 0x2a, 0})
	f.Add([]byte{1, 0, 0x65, 0x58, 0, 0, 0x2a, 0, 0, 1, 1, 1, 0xde, 0xad})
	f.Add([]byte{0x3f, 0, 0x65, 0x58, 0, 0, 0x2a, 0, 1})
	f.Add([]byte{0, 0x40, 0x65, 0x58, 0, 0, 0x2a, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		vni, got, err := Decap(pkt)
		if err != nil {
			if vni != 0 || got != nil {
				t.Fatalf("Decap error %v with vni %d inner %v", err, vni, got)
			}
			return
		}
		n := HeaderLen + int(pkt[0]&0x3f)*4
		if pkt[0]>>6 != 0 || pkt[1]&(flagCritical|flagOAM) != 0 || pkt[2] != 0x65 || pkt[3] != 0x58 {
			t.Fatalf("Decap accepted % x", pkt[:HeaderLen])
		}
		if len(got) != len(pkt)-n || (len(got) > 0 && &got[0] != &pkt[n]) {
			t.Fatalf("inner is not pkt[%d:]", n)
		}
		if vni > MaxVNI {
			t.Fatalf("VNI %#x exceeds 24 bits", vni)
		}
		hdr := make([]byte, HeaderLen)
		Encap(hdr, vni)
		if vni2, rest, err := Decap(hdr); err != nil || vni2 != vni || len(rest) != 0 {
			t.Fatalf("Decap(Encap(%d)) = %d, %d bytes, %v", vni, vni2, len(rest), err)
		}
	})
}
