package nvgre

import (
	"bytes"
	"errors"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"overlaynet/encap"
)

var inner = []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0, 0, 20}

// TestEncapHeaderBytes: the key bit, protocol 0x6558, VSID << 8 with
// FlowID 0; every header byte written.
func TestEncapHeaderBytes(t *testing.T) {
	for _, tt := range []struct {
		vsid uint32
		want []byte
	}{
		{42, []byte{0x20, 0, 0x65, 0x58, 0, 0, 0x2a, 0}},
		{MaxVSID, []byte{0x20, 0, 0x65, 0x58, 0xff, 0xff, 0xff, 0}},
	} {
		buf := bytes.Repeat([]byte{0xa5}, HeaderLen+2)
		Plugin{}.Encap(buf, tt.vsid)
		if !bytes.Equal(buf[:HeaderLen], tt.want) || buf[HeaderLen] != 0xa5 {
			t.Errorf("Encap(VSID %d) = % x, want % x", tt.vsid, buf, tt.want)
		}
	}
	if (Plugin{}).Dest() != encap.DestIP {
		t.Errorf("Dest() = %v, want ip alone", Plugin{}.Dest())
	}
	var p encap.Plugin = Plugin{}
	if ipp, ok := p.(encap.IPProtocol); !ok || ipp.IPProto() != 47 {
		t.Error("NVGRE does not say it rides on IP protocol 47")
	}
}

// TestGopacketInterop: GRE packets gopacket builds (with a FlowID)
// decode in ours; ours decode in gopacket as GRE with the key.
func TestGopacketInterop(t *testing.T) {
	buf := gopacket.NewSerializeBuffer()
	g := &layers.GRE{KeyPresent: true, Key: 0xabcdef<<8 | 0x5a, Protocol: layers.EthernetTypeTransparentEthernetBridging}
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{}, g, gopacket.Payload(inner)); err != nil {
		t.Fatal(err)
	}
	if vsid, got, err := Decap(buf.Bytes()); err != nil || vsid != 0xabcdef || !bytes.Equal(got, inner) {
		t.Errorf("gopacket's packet % x: Decap = %#x, % x, %v", buf.Bytes(), vsid, got, err)
	}

	pkt := make([]byte, HeaderLen+len(inner))
	Encap(pkt, 4242)
	copy(pkt[HeaderLen:], inner)
	p := gopacket.NewPacket(pkt, layers.LayerTypeGRE, gopacket.Default)
	d, _ := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
	if d == nil || !d.KeyPresent || d.Key != 4242<<8 || d.ChecksumPresent || d.SeqPresent || d.Version != 0 ||
		d.Protocol != layers.EthernetTypeTransparentEthernetBridging || p.Layer(layers.LayerTypeEthernet) == nil {
		t.Errorf("gopacket decodes our packet as %+v", d)
	}
}

// TestDecapRefuses: what RFC 7637 rules out is refused.
func TestDecapRefuses(t *testing.T) {
	valid := make([]byte, HeaderLen+len(inner))
	Encap(valid, 7)
	copy(valid[HeaderLen:], inner)
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
		{"short", valid[:7], ErrShort},
		{"no key", edit(func(b []byte) { b[0] = 0 }), ErrFlags},
		{"checksum", edit(func(b []byte) { b[0] |= 0x80 }), ErrFlags},
		{"sequence", edit(func(b []byte) { b[0] |= 0x10 }), ErrFlags},
		{"version 1", edit(func(b []byte) { b[1] = 1 }), ErrFlags},
		{"routing (RFC 1701)", edit(func(b []byte) { b[0] |= 0x40 }), ErrFlags},
		{"IPv4 payload", edit(func(b []byte) { b[2], b[3] = 0x08, 0 }), ErrProtocol},
	} {
		if vsid, got, err := Decap(tt.pkt); !errors.Is(err, tt.want) || vsid != 0 || got != nil {
			t.Errorf("%s: Decap = %d, % x, %v; want %v", tt.name, vsid, got, err, tt.want)
		}
	}
}

func FuzzDecap(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0x2a, 0})
	f.Add([]byte{0x20, 0, 0x65, 0x58, 0, 0, 0x2a, 0x11, 1, 2, 3})
	f.Add([]byte{0xb0, 0, 0x65, 0x58, 0, 0, 0x2a, 0, 0, 0, 0, 0})
	f.Add([]byte{0x20, 0, 0x08, 0x00, 0, 0, 0x2a, 0})
	f.Fuzz(func(t *testing.T, pkt []byte) {
		vsid, got, err := Decap(pkt)
		if err != nil {
			if vsid != 0 || got != nil {
				t.Fatalf("Decap error %v with vsid %d inner %v", err, vsid, got)
			}
			return
		}
		if flags := uint16(pkt[0])<<8 | uint16(pkt[1]); flags&0xfc07 != 0x2000 || pkt[2] != 0x65 || pkt[3] != 0x58 {
			t.Fatalf("Decap accepted % x", pkt[:HeaderLen])
		}
		if len(got) != len(pkt)-HeaderLen || (len(got) > 0 && &got[0] != &pkt[HeaderLen]) {
			t.Fatal("inner is not pkt[8:]")
		}
		hdr := make([]byte, HeaderLen)
		Encap(hdr, vsid)
		if v2, rest, err := Decap(hdr); err != nil || v2 != vsid || len(rest) != 0 {
			t.Fatalf("Decap(Encap(%d)) = %d, %d bytes, %v", vsid, v2, len(rest), err)
		}
	})
}
