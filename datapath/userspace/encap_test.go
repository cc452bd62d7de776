package userspace

import (
	"bytes"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"overlaynet/encap/geneve"
)

// TestSwitchGeneve: on a Geneve overlay, guests' frames leave in Geneve
// with the VNI; received packets reach the guest with their options
// skipped; a packet with the critical bit is dropped and counted under
// drop-critical-option, a control (OAM) packet under drop-bad-header.
func TestSwitchGeneve(t *testing.T) {
	s := newSwitchEncap(t, true, false, geneve.Plugin{})
	a := s.addVNIC("a", macA, 0)

	ar := frame(macR, macA, 1, 100)
	s.guest("a", ar)
	sent := s.io.takeSent()
	if len(sent) != 1 || sent[0].dest != swPeer.AddrPort() {
		t.Fatalf("sent %d packets, want one to %v", len(sent), swPeer)
	}
	if vni, inner, err := geneve.Decap(sent[0].data); err != nil || vni != swVNI || !bytes.Equal(inner, ar) {
		t.Fatalf("sent packet: VNI %d, %v; want VNI %d and the guest's frame", vni, err, swVNI)
	}

	// From the underlay, as another implementation builds it: options.
	ra := frame(macA, macR, 2, 100)
	pkt := func(critical, oam bool) []byte {
		buf := gopacket.NewSerializeBuffer()
		g := &layers.Geneve{Protocol: layers.EthernetTypeTransparentEthernetBridging, VNI: swVNI,
			CriticalOption: critical, OAMPacket: oam,
			Options: []*layers.GeneveOption{{Class: 0x0102, Type: 0x80, Length: 8, Data: []byte{1, 2, 3, 4}}}}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true}, g, gopacket.Payload(ra)); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	s.underlay(fakeRead{data: pkt(false, false)})
	wantFrames(t, "a", a.received(), ra)

	for _, tc := range []struct {
		name, counter string
		critical, oam bool
	}{{"critical option", "listener drop-critical-option", true, false}, {"control packet", "listener drop-bad-header", false, true}} {
		before := s.counters()
		s.underlay(fakeRead{data: pkt(tc.critical, tc.oam)})
		wantFrames(t, "a", a.received())
		after := s.counters()
		for name, v := range after {
			want := before[name]
			if name == tc.counter {
				want++
			}
			if name == "listener decapsulated" || name == "listener decap-bytes" {
				continue
			}
			if v != want {
				t.Errorf("%s: counter %s = %d, want %d", tc.name, name, v, want)
			}
		}
	}
}
