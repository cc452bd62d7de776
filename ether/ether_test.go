package ether

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

func TestParseMAC(t *testing.T) {
	want := MAC{0x02, 0x08, 0x20, 0xaa, 0xbb, 0x01}
	tests := []struct {
		in   string
		want MAC
	}{
		{"02:08:20:aa:bb:01", want},
		{"2:8:20:aa:bb:1", want},
		{"2-8-20-aa-bb-1", want},
		{"02-08-20-aa-bb-01", want},
		{"02:08:20:AA:BB:01", want},
		{"2:8:20:Aa:bB:1", want},
		{"0:0:0:0:0:0", MAC{0, 0, 0, 0, 0, 0}},
		{"00:00:00:00:00:00", MAC{0, 0, 0, 0, 0, 0}},
		{"ff:ff:ff:ff:ff:ff", MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
		{"1:80:c2:0:0:e", MAC{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}},
		{"a:b:c:d:e:f", MAC{0xa, 0xb, 0xc, 0xd, 0xe, 0xf}},
	}
	for _, tt := range tests {
		got, err := ParseMAC(tt.in)
		if err != nil {
			t.Errorf("ParseMAC(%q) error %v", tt.in, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseMAC(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseMACErrors(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"", "want six groups"},
		{"02:08:20:aa:bb", "want six groups"},
		{"02:08:20:aa:bb:01:02", "want six groups"},
		{"2-8-20-aa-bb", "want six groups"},
		{"2-8-20-aa-bb-1-2", "want six groups"},
		{"020820aabb01", "want six groups"},
		{"0208.20aa.bb01", "want six groups"},
		{"02:08:20-aa-bb-01", "want six groups"}, // mixed separators
		{"02 08 20 aa bb 01", "want six groups"},
		{"002:08:20:aa:bb:01", "group 1 must have one or two hex digits"},
		{"02:08:20:aa:bb:001", "group 6 must have one or two hex digits"},
		{"02:08:20:aa:bb:100", "group 6 must have one or two hex digits"},
		{"02::20:aa:bb:01", "group 2 must have one or two hex digits"},
		{":08:20:aa:bb:01", "group 1 must have one or two hex digits"},
		{"02:08:20:aa:bb:", "group 6 must have one or two hex digits"},
		{"::::::", "want six groups"},
		{":::::", "group 1 must have one or two hex digits"},
		{"02-08--aa-bb-01", "group 3 must have one or two hex digits"},
		{"g2:08:20:aa:bb:01", "group 1 is not hexadecimal"},
		{"02:08:20:aa:bb:zz", "group 6 is not hexadecimal"},
		{"02:08:20:aa:bb:+1", "group 6 is not hexadecimal"},
		{"02:08:20:aa:bb:-1", "group 6 is not hexadecimal"},
		{"02:08:20:aa:bb: 1", "group 6 is not hexadecimal"},
		{" 2:08:20:aa:bb:01", "group 1 is not hexadecimal"},
		{"02:08:20:aa:bb:1 ", "group 6 is not hexadecimal"},
		{"0x:08:20:aa:bb:01", "group 1 is not hexadecimal"},
		{"02:08:20:aa:bb:é", "group 6 is not hexadecimal"}, // two bytes
		{"02:08:20:aa:bb:éé", "group 6 must have one or two hex digits"},
	}
	for _, tt := range tests {
		got, err := ParseMAC(tt.in)
		if err == nil {
			t.Errorf("ParseMAC(%q) = %v, want error %q", tt.in, got, tt.wantErr)
			continue
		}
		if got != (MAC{}) {
			t.Errorf("ParseMAC(%q) returned %v with an error", tt.in, got)
		}
		msg := err.Error()
		if !strings.Contains(msg, tt.wantErr) {
			t.Errorf("ParseMAC(%q) error %q, want it to contain %q", tt.in, msg, tt.wantErr)
		}
		if want := fmt.Sprintf("invalid MAC address %q: ", tt.in); !strings.HasPrefix(msg, want) {
			t.Errorf("ParseMAC(%q) error %q, want it to start with %q", tt.in, msg, want)
		}
	}
}

func TestShort(t *testing.T) {
	tests := []struct {
		mac  MAC
		want string
	}{
		{MAC{0x02, 0x08, 0x20, 0xaa, 0xbb, 0x01}, "2:8:20:aa:bb:1"},
		{MAC{0, 0, 0, 0, 0, 0}, "0:0:0:0:0:0"},
		{MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "ff:ff:ff:ff:ff:ff"},
		{MAC{0x10, 0x0a, 0xa0, 0x01, 0x00, 0xf0}, "10:a:a0:1:0:f0"},
		{MAC{0xAB, 0xCD, 0xEF, 0x12, 0x34, 0x56}, "ab:cd:ef:12:34:56"},
	}
	for _, tt := range tests {
		if got := Short(tt.mac); got != tt.want {
			t.Errorf("Short(%v) = %q, want %q", tt.mac, got, tt.want)
		}
		back, err := ParseMAC(Short(tt.mac))
		if err != nil || back != tt.mac {
			t.Errorf("ParseMAC(Short(%v)) = %v, %v", tt.mac, back, err)
		}
	}
}

func TestIsUnicast(t *testing.T) {
	tests := []struct {
		mac  MAC
		want bool
	}{
		{MAC{0x02, 0x08, 0x20, 0xaa, 0xbb, 0x01}, true},
		{MAC{0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, true},
		{MAC{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff}, true},
		{MAC{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01}, false},
		{MAC{0x33, 0x33, 0x00, 0x00, 0x00, 0x01}, false},
		{MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false},
		{MAC{0x03, 0x08, 0x20, 0xaa, 0xbb, 0x01}, false},
	}
	for _, tt := range tests {
		if got := IsUnicast(tt.mac); got != tt.want {
			t.Errorf("IsUnicast(%v) = %v, want %v", tt.mac, got, tt.want)
		}
	}
}

func TestIsZero(t *testing.T) {
	tests := []struct {
		mac  MAC
		want bool
	}{
		{MAC{0, 0, 0, 0, 0, 0}, true},
		{MAC{0, 0, 0, 0, 0, 1}, false},
		{MAC{1, 0, 0, 0, 0, 0}, false},
		{MAC{0, 0, 0x80, 0, 0, 0}, false},
		{MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, false},
	}
	for _, tt := range tests {
		if got := IsZero(tt.mac); got != tt.want {
			t.Errorf("IsZero(%v) = %v, want %v", tt.mac, got, tt.want)
		}
	}
}

func TestRandomMAC(t *testing.T) {
	tests := []struct {
		name   string
		prefix []byte
	}{
		{"default prefix", DefaultPrefix},
		{"one byte", []byte{0x02}},
		{"oui", []byte{0x00, 0x16, 0x3e}},
		{"five bytes", []byte{0x02, 0x08, 0x20, 0xaa, 0xbb}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := bytes.Clone(tt.prefix)
			seen := map[string]bool{}
			for range 50 {
				mac := RandomMAC(tt.prefix)
				if !bytes.HasPrefix(mac[:], tt.prefix) {
					t.Fatalf("RandomMAC(% x) = %v lost its prefix", tt.prefix, mac)
				}
				if !IsUnicast(mac) {
					t.Fatalf("RandomMAC(% x) = %v is not unicast", tt.prefix, mac)
				}
				seen[Long(mac)] = true
			}
			if !bytes.Equal(tt.prefix, saved) {
				t.Errorf("RandomMAC changed its prefix argument to % x", tt.prefix)
			}
			// One random byte gives 256 values; 50 draws all equal
			// would mean it is not random.
			if len(seen) < 2 {
				t.Errorf("RandomMAC(% x) returned the same address 50 times", tt.prefix)
			}
		})
	}
	if !bytes.Equal(DefaultPrefix, []byte{0x02, 0x08, 0x20}) {
		t.Errorf("DefaultPrefix = % x, want 02 08 20", DefaultPrefix)
	}
}

func TestRandomMACNoPrefix(t *testing.T) {
	for _, prefix := range [][]byte{nil, {}} {
		seen := map[string]bool{}
		firstBytes := map[byte]bool{}
		for range 200 {
			mac := RandomMAC(prefix)
			if mac[0]&0x01 != 0 {
				t.Fatalf("RandomMAC(nil) = %v is a group address", mac)
			}
			if mac[0]&0x02 == 0 {
				t.Fatalf("RandomMAC(nil) = %v is not locally administered", mac)
			}
			if IsZero(mac) {
				t.Fatalf("RandomMAC(nil) = %v is zero", mac)
			}
			seen[Long(mac)] = true
			firstBytes[mac[0]] = true
		}
		if len(seen) < 190 {
			t.Errorf("RandomMAC(nil) gave only %d distinct addresses in 200", len(seen))
		}
		// The other bits of the first byte are random too.
		if len(firstBytes) < 8 {
			t.Errorf("RandomMAC(nil) first byte took only %d values", len(firstBytes))
		}
	}
}

func FuzzParseMAC(f *testing.F) {
	for _, s := range []string{
		"02:08:20:aa:bb:01", "2:8:20:aa:bb:1", "2-8-20-aa-bb-1", "FF:FF:FF:FF:FF:FF",
		"", ":::::", "02:08:20:aa:bb", "02:08:20:aa:bb:01:02", "002:8:20:aa:bb:1",
		"g:0:0:0:0:0", "0-0-0-0-0:0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		mac, err := ParseMAC(s)
		if err != nil {
			if mac != (MAC{}) {
				t.Fatalf("ParseMAC(%q) returned %v with error %v", s, mac, err)
			}
			if !strings.Contains(err.Error(), "invalid MAC address") {
				t.Fatalf("ParseMAC(%q) error %q", s, err)
			}
			return
		}
		short := Short(mac)
		back, err := ParseMAC(short)
		if err != nil {
			t.Fatalf("ParseMAC(Short(%v) = %q) error %v", mac, short, err)
		}
		if back != mac {
			t.Fatalf("ParseMAC(Short(%v) = %q) = %v", mac, short, back)
		}
		// The colon form of the standard library parses the same way.
		if std, err := ParseMAC(Long(mac)); err != nil || std != mac {
			t.Fatalf("ParseMAC(%q) = %v, %v; want %v", Long(mac), std, err, mac)
		}
		if Short(back) != short {
			t.Fatalf("Short is not stable: %q vs %q", Short(back), short)
		}
	})
}
