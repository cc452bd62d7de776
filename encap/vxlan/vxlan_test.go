package vxlan

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"unsafe"

	"overlaynet/encap"
	"overlaynet/prop"
)

func TestEncapDecapRoundTrip(t *testing.T) {
	payload := []byte("inner ethernet frame")
	for _, vni := range []uint32{0, 1, 42, 0xff, 0x100, 0xabcdef, MaxVNI - 1, MaxVNI} {
		pkt := make([]byte, HeaderLen+len(payload))
		Encap(pkt, vni)
		copy(pkt[HeaderLen:], payload)
		gotVNI, inner, err := Decap(pkt)
		if err != nil {
			t.Fatalf("VNI %d: Decap error %v", vni, err)
		}
		if gotVNI != vni {
			t.Errorf("VNI %d: Decap VNI = %d", vni, gotVNI)
		}
		if !bytes.Equal(inner, payload) {
			t.Errorf("VNI %d: inner = %q, want %q", vni, inner, payload)
		}
	}
}

func TestEncapHeaderBytes(t *testing.T) {
	tests := []struct {
		vni  uint32
		want []byte
	}{
		{0, []byte{0x08, 0, 0, 0, 0x00, 0x00, 0x00, 0}},
		{1, []byte{0x08, 0, 0, 0, 0x00, 0x00, 0x01, 0}},
		{42, []byte{0x08, 0, 0, 0, 0x00, 0x00, 0x2a, 0}},
		{0x0100, []byte{0x08, 0, 0, 0, 0x00, 0x01, 0x00, 0}},
		{0x123456, []byte{0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0}},
		{MaxVNI, []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0}},
	}
	for _, tt := range tests {
		// Start from garbage: Encap must write every header byte,
		// including the reserved ones, and nothing after the header.
		buf := bytes.Repeat([]byte{0xa5}, HeaderLen+4)
		Encap(buf, tt.vni)
		if !bytes.Equal(buf[:HeaderLen], tt.want) {
			t.Errorf("Encap(VNI %d) = % x, want % x", tt.vni, buf[:HeaderLen], tt.want)
		}
		if !bytes.Equal(buf[HeaderLen:], []byte{0xa5, 0xa5, 0xa5, 0xa5}) {
			t.Errorf("Encap(VNI %d) wrote past the header: % x", tt.vni, buf[HeaderLen:])
		}
		// The plugin method writes the same bytes.
		buf2 := make([]byte, HeaderLen)
		Plugin{}.Encap(buf2, tt.vni)
		if !bytes.Equal(buf2, tt.want) {
			t.Errorf("Plugin.Encap(VNI %d) = % x, want % x", tt.vni, buf2, tt.want)
		}
	}
}

func TestEncapShortBufferPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Encap into a 7-byte buffer did not panic")
		}
	}()
	Encap(make([]byte, HeaderLen-1), 1)
}

func TestDecap(t *testing.T) {
	tests := []struct {
		name      string
		pkt       []byte
		wantVNI   uint32
		wantInner []byte
		wantErr   error
	}{
		{"nil", nil, 0, nil, ErrShort},
		{"empty", []byte{}, 0, nil, ErrShort},
		{"one byte", []byte{0x08}, 0, nil, ErrShort},
		{"seven bytes", []byte{0x08, 0, 0, 0, 0, 0, 42}, 0, nil, ErrShort},
		{"header only", []byte{0x08, 0, 0, 0, 0, 0, 42, 0}, 42, []byte{}, nil},
		{"with payload", []byte{0x08, 0, 0, 0, 0, 0, 42, 0, 1, 2, 3}, 42, []byte{1, 2, 3}, nil},
		{"max vni", []byte{0x08, 0, 0, 0, 0xff, 0xff, 0xff, 0, 9}, MaxVNI, []byte{9}, nil},
		{"reserved bits set", []byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x2a, 0xff, 7}, 42, []byte{7}, nil},
		{"reserved flags around I", []byte{0xf7 | 0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0x78}, 0x123456, []byte{}, nil},
		{"last reserved byte ignored", []byte{0x08, 0, 0, 0, 0, 0, 1, 0xff}, 1, []byte{}, nil},
		{"no I flag", []byte{0x00, 0, 0, 0, 0, 0, 42, 0, 1}, 0, nil, ErrNoIFlag},
		{"other flags but no I", []byte{0xf7, 0xff, 0xff, 0xff, 0, 0, 42, 0xff}, 0, nil, ErrNoIFlag},
		{"I flag in wrong byte", []byte{0x00, 0x08, 0, 0, 0, 0, 42, 0}, 0, nil, ErrNoIFlag},
		{"gpe-like flags without I", []byte{0x04, 0, 0, 0x03, 0, 0, 42, 0}, 0, nil, ErrNoIFlag},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vni, inner, err := Decap(tt.pkt)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Decap(% x) error %v, want %v", tt.pkt, err, tt.wantErr)
			}
			if err != nil {
				if vni != 0 || inner != nil {
					t.Errorf("Decap(% x) = %d, %q with error, want 0, nil", tt.pkt, vni, inner)
				}
				return
			}
			if vni != tt.wantVNI {
				t.Errorf("Decap(% x) VNI = %#x, want %#x", tt.pkt, vni, tt.wantVNI)
			}
			if !bytes.Equal(inner, tt.wantInner) || inner == nil {
				t.Errorf("Decap(% x) inner = %v, want %v", tt.pkt, inner, tt.wantInner)
			}
			// The plugin method agrees.
			pvni, pinner, perr := Plugin{}.Decap(tt.pkt)
			if pvni != vni || !bytes.Equal(pinner, inner) || perr != err {
				t.Errorf("Plugin.Decap differs: %d %v %v", pvni, pinner, perr)
			}
		})
	}
}

func TestDecapErrorsDistinct(t *testing.T) {
	if ErrShort == ErrNoIFlag || ErrShort.Error() == ErrNoIFlag.Error() {
		t.Fatal("ErrShort and ErrNoIFlag must be distinguishable")
	}
}

func TestDecapReturnsSubSlice(t *testing.T) {
	pkt := make([]byte, HeaderLen+4, HeaderLen+16)
	Encap(pkt, 42)
	copy(pkt[HeaderLen:], "abcd")
	_, inner, err := Decap(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.SliceData(inner) != &pkt[HeaderLen] {
		t.Errorf("inner does not start at pkt[%d]: it is a copy", HeaderLen)
	}
	if len(inner) != 4 || cap(inner) != cap(pkt)-HeaderLen {
		t.Errorf("inner len %d cap %d, want 4, %d", len(inner), cap(inner), cap(pkt)-HeaderLen)
	}
	// Writes through either slice are seen by the other.
	pkt[HeaderLen] = 'X'
	if inner[0] != 'X' {
		t.Errorf("inner[0] = %q after writing pkt[%d], want 'X'", inner[0], HeaderLen)
	}
	inner[3] = 'Y'
	if pkt[HeaderLen+3] != 'Y' {
		t.Errorf("pkt[%d] = %q after writing inner[3], want 'Y'", HeaderLen+3, pkt[HeaderLen+3])
	}

	// A header-only packet still gives a sub-slice (empty, not nil).
	hdr := make([]byte, HeaderLen, HeaderLen+2)
	Encap(hdr, 1)
	_, inner, err = Decap(hdr)
	if err != nil {
		t.Fatal(err)
	}
	if inner == nil || len(inner) != 0 || cap(inner) != 2 {
		t.Errorf("header-only inner = %v len %d cap %d, want empty sub-slice with cap 2", inner, len(inner), cap(inner))
	}
}

func TestDecapDoesNotModify(t *testing.T) {
	pkt := []byte{0xff, 0xee, 0xdd, 0xcc, 0x12, 0x34, 0x56, 0xbb, 1, 2}
	orig := bytes.Clone(pkt)
	if _, _, err := Decap(pkt); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pkt, orig) {
		t.Errorf("Decap modified the packet: % x, was % x", pkt, orig)
	}
}

func TestConstants(t *testing.T) {
	if HeaderLen != 8 {
		t.Errorf("HeaderLen = %d, want 8", HeaderLen)
	}
	if DefaultPort != 4789 {
		t.Errorf("DefaultPort = %d, want 4789", DefaultPort)
	}
	if MaxVNI != 16777215 {
		t.Errorf("MaxVNI = %d, want 16777215", MaxVNI)
	}
}

func TestPlugin(t *testing.T) {
	var p encap.Plugin = Plugin{}
	if p.Name() != "vxlan" {
		t.Errorf("Name() = %q, want vxlan", p.Name())
	}
	if p.Dest() != encap.DestIP|encap.DestPort {
		t.Errorf("Dest() = %v, want ip+port", p.Dest())
	}
	if got := p.Dest().String(); got != "ip+port" {
		t.Errorf("Dest().String() = %q, want ip+port", got)
	}
	if p.HeaderLen() != 8 {
		t.Errorf("HeaderLen() = %d, want 8", p.HeaderLen())
	}
	if p.MaxVNetID() != 16777215 {
		t.Errorf("MaxVNetID() = %d, want 16777215", p.MaxVNetID())
	}
	reg, ok := encap.Lookup("vxlan")
	if !ok {
		t.Fatal("vxlan is not registered")
	}
	if reg.Name() != "vxlan" {
		t.Errorf("registered plugin is %q", reg.Name())
	}
	found := false
	for _, n := range encap.Names() {
		found = found || n == "vxlan"
	}
	if !found {
		t.Errorf("Names() = %q lacks vxlan", encap.Names())
	}
}

func TestProps(t *testing.T) {
	descs := Plugin{}.Props()
	if len(descs) != 2 {
		t.Fatalf("Props() has %d entries, want 2", len(descs))
	}
	want := []struct {
		name     string
		typ      prop.Type
		perm     prop.Perm
		def      string
		possible string
	}{
		{PropListenIP, prop.IP, prop.ReadWrite, "", ""},
		{PropListenPort, prop.Uint, prop.ReadWrite, "4789", "1-65535"},
	}
	for i, w := range want {
		d := descs[i]
		if d.Name != w.name || d.Type != w.typ || d.Perm != w.perm || !d.Required ||
			d.Default != w.def || d.PossibleText() != w.possible {
			t.Errorf("Props()[%d] = %+v, want %+v (required)", i, d, w)
		}
		if d.Help == "" {
			t.Errorf("Props()[%d] (%s) has no help", i, d.Name)
		}
	}

	s := prop.NewSet(descs)
	tests := []struct {
		prop, text string
		ok         bool
	}{
		{PropListenIP, "192.0.2.1", true},
		{PropListenIP, "2001:db8::1", true},
		{PropListenIP, "::", true},
		{PropListenIP, "224.0.0.1", false},
		{PropListenIP, "::192.0.2.1", false},
		{PropListenIP, "2002::1", false},
		{PropListenPort, "1", true},
		{PropListenPort, "65535", true},
		{PropListenPort, "0", false},
		{PropListenPort, "65536", false},
	}
	for _, tt := range tests {
		err := s.Set(tt.prop, tt.text)
		if (err == nil) != tt.ok {
			t.Errorf("Set(%s, %q) = %v, want ok=%v", tt.prop, tt.text, err, tt.ok)
		}
	}
}

func TestListen(t *testing.T) {
	tests := []struct {
		name    string
		vals    map[string]string
		want    netip.AddrPort
		wantErr bool
	}{
		{"missing ip", nil, netip.AddrPort{}, true},
		{"missing ip with port", map[string]string{PropListenPort: "5000"}, netip.AddrPort{}, true},
		{"default port", map[string]string{PropListenIP: "192.0.2.1"},
			netip.MustParseAddrPort("192.0.2.1:4789"), false},
		{"explicit port", map[string]string{PropListenIP: "2001:db8::1", PropListenPort: "5000"},
			netip.MustParseAddrPort("[2001:db8::1]:5000"), false},
		{"mapped ip", map[string]string{PropListenIP: "::ffff:10.1.2.3", PropListenPort: "04789"},
			netip.MustParseAddrPort("10.1.2.3:4789"), false},
		{"any", map[string]string{PropListenIP: "::"},
			netip.MustParseAddrPort("[::]:4789"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := prop.NewSet(Plugin{}.Props())
			for _, k := range []string{PropListenIP, PropListenPort} {
				if v, ok := tt.vals[k]; ok {
					if err := s.Set(k, v); err != nil {
						t.Fatal(err)
					}
				}
			}
			got, err := Plugin{}.Listen(s)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Listen() = %v, want error", got)
				}
				if !bytes.Contains([]byte(err.Error()), []byte(PropListenIP)) {
					t.Errorf("Listen() error %q does not name %s", err, PropListenIP)
				}
				return
			}
			if err != nil {
				t.Fatalf("Listen() error %v", err)
			}
			if got != tt.want {
				t.Errorf("Listen() = %v, want %v", got, tt.want)
			}
		})
	}
}

func BenchmarkEncap(b *testing.B) {
	hdr := make([]byte, HeaderLen)
	b.ReportAllocs()
	b.SetBytes(HeaderLen)
	var vni uint32
	for b.Loop() {
		Encap(hdr, vni&MaxVNI)
		vni++
	}
}

func BenchmarkDecap(b *testing.B) {
	pkt := make([]byte, HeaderLen+1450)
	Encap(pkt, 42)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, _, err := Decap(pkt); err != nil {
			b.Fatal(err)
		}
	}
}

func TestEncapDecapDoNotAllocate(t *testing.T) {
	pkt := make([]byte, HeaderLen+64)
	allocs := testing.AllocsPerRun(100, func() {
		Encap(pkt, 42)
		if _, _, err := Decap(pkt); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Encap+Decap allocate %v times per run, want 0", allocs)
	}
}
