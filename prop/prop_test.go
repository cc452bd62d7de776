package prop

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestTypeString(t *testing.T) {
	tests := []struct {
		t    Type
		want string
	}{
		{Int, "INT"},
		{Uint, "UINT"},
		{IP, "IP"},
		{String, "STRING"},
		{Type(0), "Type(0)"},
		{Type(9), "Type(9)"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("Type(%d).String() = %q, want %q", int(tt.t), got, tt.want)
		}
	}
}

func TestPermString(t *testing.T) {
	if got := ReadOnly.String(); got != "r-" {
		t.Errorf("ReadOnly.String() = %q, want %q", got, "r-")
	}
	if got := ReadWrite.String(); got != "rw" {
		t.Errorf("ReadWrite.String() = %q, want %q", got, "rw")
	}
}

func TestParseUint(t *testing.T) {
	plain := Desc{Name: "varpd/id", Type: Uint}
	ranged := Desc{Name: "mtu", Type: Uint, HasRange: true, Min: 576, Max: 8900}
	vnetid := Desc{Name: "vnetid", Type: Uint, HasRange: true, Min: 0, Max: 16777215}
	tests := []struct {
		name    string
		d       Desc
		in      string
		want    string
		wantErr string // substring of the reason; "" means success
	}{
		{"zero", plain, "0", "0", ""},
		{"plain", plain, "42", "42", ""},
		{"leading zeros", plain, "0042", "42", ""},
		{"all zeros", plain, "0000", "0", ""},
		{"max uint64", plain, "18446744073709551615", "18446744073709551615", ""},
		{"overflow uint64", plain, "18446744073709551616", "", "not an unsigned decimal integer"},
		{"negative", plain, "-1", "", "not an unsigned decimal integer"},
		{"plus sign", plain, "+1", "", "not an unsigned decimal integer"},
		{"empty", plain, "", "", "not an unsigned decimal integer"},
		{"space", plain, " 1", "", "not an unsigned decimal integer"},
		{"trailing space", plain, "1 ", "", "not an unsigned decimal integer"},
		{"hex", plain, "0x10", "", "not an unsigned decimal integer"},
		{"underscore", plain, "1_000", "", "not an unsigned decimal integer"},
		{"word", plain, "many", "", "not an unsigned decimal integer"},
		{"float", plain, "1.5", "", "not an unsigned decimal integer"},
		{"range min", ranged, "576", "576", ""},
		{"range max", ranged, "8900", "8900", ""},
		{"range inside canonical", ranged, "01400", "1400", ""},
		{"below min", ranged, "575", "", "out of range 576-8900"},
		{"above max", ranged, "8901", "", "out of range 576-8900"},
		{"far above max", ranged, "18446744073709551615", "", "out of range 576-8900"},
		{"vnetid zero", vnetid, "0", "0", ""},
		{"vnetid max", vnetid, "16777215", "16777215", ""},
		{"vnetid too big", vnetid, "16777216", "", "out of range 0-16777215"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, tt.d, tt.in, tt.want, tt.wantErr)
		})
	}
}

func TestParseInt(t *testing.T) {
	plain := Desc{Name: "offset", Type: Int}
	ranged := Desc{Name: "delta", Type: Int, HasRange: true, Min: -10, Max: 10}
	tests := []struct {
		name    string
		d       Desc
		in      string
		want    string
		wantErr string
	}{
		{"zero", plain, "0", "0", ""},
		{"negative zero", plain, "-0", "0", ""},
		{"positive", plain, "42", "42", ""},
		{"plus sign", plain, "+42", "42", ""},
		{"leading zeros", plain, "0042", "42", ""},
		{"negative leading zeros", plain, "-0042", "-42", ""},
		{"min int64", plain, "-9223372036854775808", "-9223372036854775808", ""},
		{"max int64", plain, "9223372036854775807", "9223372036854775807", ""},
		{"overflow", plain, "9223372036854775808", "", "not a decimal integer"},
		{"empty", plain, "", "", "not a decimal integer"},
		{"word", plain, "ten", "", "not a decimal integer"},
		{"hex", plain, "0x1", "", "not a decimal integer"},
		{"range min", ranged, "-10", "-10", ""},
		{"range max", ranged, "10", "10", ""},
		{"range middle", ranged, "-3", "-3", ""},
		{"below min", ranged, "-11", "", "out of range -10-10"},
		{"above max", ranged, "11", "", "out of range -10-10"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, tt.d, tt.in, tt.want, tt.wantErr)
		})
	}
}

func TestParseIP(t *testing.T) {
	plain := Desc{Name: "direct/dest_ip", Type: IP}
	underlay := Desc{Name: "vxlan/listen_ip", Type: IP, Check: CheckUnderlayIP}
	tests := []struct {
		name    string
		d       Desc
		in      string
		want    string
		wantErr string
	}{
		{"ipv4", plain, "192.0.2.1", "192.0.2.1", ""},
		{"ipv4 any", plain, "0.0.0.0", "0.0.0.0", ""},
		{"ipv6", plain, "2001:db8::1", "2001:db8::1", ""},
		{"ipv6 upper case long form", plain, "2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1", ""},
		{"ipv6 any", plain, "::", "::", ""},
		{"ipv4-mapped is ipv4", plain, "::ffff:192.0.2.1", "192.0.2.1", ""},
		{"ipv4-mapped hex", plain, "::ffff:c000:201", "192.0.2.1", ""},
		{"multicast allowed without check", plain, "239.1.1.1", "239.1.1.1", ""},
		{"empty", plain, "", "", "not an IPv4 or IPv6 address"},
		{"host name", plain, "example.com", "", "not an IPv4 or IPv6 address"},
		{"ipv4 leading zeros", plain, "192.000.002.001", "", "not an IPv4 or IPv6 address"},
		{"ipv4 short", plain, "192.0.2", "", "not an IPv4 or IPv6 address"},
		{"with port", plain, "192.0.2.1:4789", "", "not an IPv4 or IPv6 address"},
		{"prefix", plain, "192.0.2.0/24", "", "not an IPv4 or IPv6 address"},
		{"zoned", plain, "fe80::1%eth0", "", "not an IPv4 or IPv6 address"},
		{"bracketed", plain, "[2001:db8::1]", "", "not an IPv4 or IPv6 address"},
		{"underlay ipv4", underlay, "192.0.2.1", "192.0.2.1", ""},
		{"underlay ipv6", underlay, "2001:db8::1", "2001:db8::1", ""},
		{"underlay any v6", underlay, "::", "::", ""},
		{"underlay any v4", underlay, "0.0.0.0", "0.0.0.0", ""},
		{"underlay mapped", underlay, "::ffff:192.0.2.1", "192.0.2.1", ""},
		{"underlay v4 multicast", underlay, "224.0.0.1", "", "multicast addresses are not allowed"},
		{"underlay v6 multicast", underlay, "ff02::1", "", "multicast addresses are not allowed"},
		{"underlay mapped multicast", underlay, "::ffff:239.1.1.1", "", "multicast addresses are not allowed"},
		{"underlay v4-compatible", underlay, "::192.0.2.1", "", "IPv4-compatible IPv6 addresses are not allowed"},
		{"underlay 6to4", underlay, "2002:c000:201::1", "", "6to4 addresses are not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, tt.d, tt.in, tt.want, tt.wantErr)
		})
	}
}

func TestParseString(t *testing.T) {
	free := Desc{Name: "svp/host", Type: String}
	search := Desc{Name: "search", Type: String, Possible: []string{"direct", "files", "svp"}}
	tests := []struct {
		name    string
		d       Desc
		in      string
		want    string
		wantErr string
	}{
		{"free text", free, "portolan.example.com", "portolan.example.com", ""},
		{"free text kept verbatim", free, " Mixed Case ", " Mixed Case ", ""},
		{"free empty", free, "", "", ""},
		{"possible first", search, "direct", "direct", ""},
		{"possible last", search, "svp", "svp", ""},
		{"not possible", search, "multicast", "", "must be one of direct, files, svp"},
		{"case matters", search, "Direct", "", "must be one of direct, files, svp"},
		{"no trimming", search, " svp", "", "must be one of direct, files, svp"},
		{"empty not possible", search, "", "", "must be one of direct, files, svp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkParse(t, tt.d, tt.in, tt.want, tt.wantErr)
		})
	}
}

func TestParseUnknownType(t *testing.T) {
	d := Desc{Name: "weird", Type: Type(7)}
	checkParse(t, d, "x", "", "property has unknown type Type(7)")
}

func TestParseCheck(t *testing.T) {
	var seen []string
	abs := func(v string) error {
		seen = append(seen, v)
		if !strings.HasPrefix(v, "/") {
			return errors.New("must be an absolute path")
		}
		return nil
	}
	files := Desc{Name: "files/config", Type: String, Check: abs}
	checkParse(t, files, "/etc/overlay.json", "/etc/overlay.json", "")
	checkParse(t, files, "overlay.json", "", "must be an absolute path")

	// Check sees the canonical value, not the text.
	even := Desc{Name: "n", Type: Uint, Check: func(v string) error {
		seen = append(seen, v)
		if v != "42" {
			return errors.New("want 42")
		}
		return nil
	}}
	checkParse(t, even, "0042", "42", "")
	// checkParse parses a canonical result a second time.
	want := []string{"/etc/overlay.json", "/etc/overlay.json", "overlay.json", "42", "42"}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("Check saw %q, want %q", seen, want)
	}

	// Check is not called when the type check already failed.
	seen = nil
	checkParse(t, even, "x", "", "not an unsigned decimal integer")
	if len(seen) != 0 {
		t.Errorf("Check called with %q after a type error", seen)
	}
}

// checkParse parses in with d and checks the canonical result or that the
// error is a *Error naming the property, the value and the reason.
func checkParse(t *testing.T, d Desc, in, want, wantReason string) {
	t.Helper()
	got, err := d.Parse(in)
	if wantReason == "" {
		if err != nil {
			t.Fatalf("%s: Parse(%q) error %v, want %q", d.Name, in, err, want)
		}
		if got != want {
			t.Fatalf("%s: Parse(%q) = %q, want %q", d.Name, in, got, want)
		}
		// A canonical value parses to itself.
		again, err := d.Parse(got)
		if err != nil || again != got {
			t.Fatalf("%s: Parse(canonical %q) = %q, %v; want it unchanged", d.Name, got, again, err)
		}
		return
	}
	if err == nil {
		t.Fatalf("%s: Parse(%q) = %q, want error containing %q", d.Name, in, got, wantReason)
	}
	if got != "" {
		t.Errorf("%s: Parse(%q) returned %q with an error, want \"\"", d.Name, in, got)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("%s: Parse(%q) error %T %v, want *Error", d.Name, in, err, err)
	}
	if pe.Prop != d.Name || pe.Value != in {
		t.Errorf("%s: Parse(%q) error Prop=%q Value=%q, want %q, %q", d.Name, in, pe.Prop, pe.Value, d.Name, in)
	}
	if !strings.Contains(pe.Reason, wantReason) {
		t.Errorf("%s: Parse(%q) reason %q, want it to contain %q", d.Name, in, pe.Reason, wantReason)
	}
	msg := err.Error()
	if !strings.Contains(msg, d.Name) || !strings.Contains(msg, wantReason) {
		t.Errorf("%s: Parse(%q) error %q does not name the property and the reason", d.Name, in, msg)
	}
	if in != "" && !strings.Contains(msg, in) {
		t.Errorf("%s: Parse(%q) error %q does not name the value", d.Name, in, msg)
	}
}

func TestErrorText(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{Prop: "mtu", Value: "99", Reason: "out of range 576-8900"},
			`property mtu: invalid value "99": out of range 576-8900`},
		{Error{Prop: "vxlan/listen_ip", Value: "224.0.0.1", Reason: "multicast addresses are not allowed"},
			`property vxlan/listen_ip: invalid value "224.0.0.1": multicast addresses are not allowed`},
		{Error{Prop: "nosuch", Reason: "no such property"},
			`property nosuch: no such property`},
		{Error{Prop: "p", Value: `a"b`, Reason: "bad"},
			`property p: invalid value "a\"b": bad`},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestParseErrorMessages(t *testing.T) {
	tests := []struct {
		d    Desc
		in   string
		want string
	}{
		{Desc{Name: "mtu", Type: Uint, HasRange: true, Min: 576, Max: 8900}, "9000",
			`property mtu: invalid value "9000": out of range 576-8900`},
		{Desc{Name: "vnetid", Type: Uint}, "abc",
			`property vnetid: invalid value "abc": not an unsigned decimal integer`},
		{Desc{Name: "vxlan/listen_ip", Type: IP, Check: CheckUnderlayIP}, "::192.0.2.1",
			`property vxlan/listen_ip: invalid value "::192.0.2.1": IPv4-compatible IPv6 addresses are not allowed; use the IPv4 address`},
		{Desc{Name: "direct/dest_ip", Type: IP, Check: CheckUnderlayIP}, "2002::1",
			`property direct/dest_ip: invalid value "2002::1": 6to4 addresses are not allowed`},
		{Desc{Name: "encap", Type: String, Possible: []string{"vxlan"}}, "geneve",
			`property encap: invalid value "geneve": must be one of vxlan`},
	}
	for _, tt := range tests {
		_, err := tt.d.Parse(tt.in)
		if err == nil {
			t.Errorf("%s: Parse(%q) succeeded, want %q", tt.d.Name, tt.in, tt.want)
			continue
		}
		if got := err.Error(); got != tt.want {
			t.Errorf("%s: Parse(%q) error %q, want %q", tt.d.Name, tt.in, got, tt.want)
		}
	}
}

func TestPossibleText(t *testing.T) {
	tests := []struct {
		d    Desc
		want string
	}{
		{Desc{Type: Uint, HasRange: true, Min: 1, Max: 65535}, "1-65535"},
		{Desc{Type: Uint, HasRange: true, Min: 0, Max: 16777215}, "0-16777215"},
		{Desc{Type: Int, HasRange: true, Min: -5, Max: 5}, "-5-5"},
		{Desc{Type: String, Possible: []string{"direct", "files", "svp"}}, "direct,files,svp"},
		{Desc{Type: String, Possible: []string{"vxlan"}}, "vxlan"},
		{Desc{Type: String}, ""},
		{Desc{Type: Uint}, ""},
		{Desc{Type: IP}, ""},
	}
	for _, tt := range tests {
		if got := tt.d.PossibleText(); got != tt.want {
			t.Errorf("PossibleText(%+v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestParseIPFunc(t *testing.T) {
	tests := []struct {
		in      string
		want    netip.Addr
		wantErr bool
	}{
		{"192.0.2.1", netip.MustParseAddr("192.0.2.1"), false},
		{"::ffff:192.0.2.1", netip.MustParseAddr("192.0.2.1"), false},
		{"2001:db8::1", netip.MustParseAddr("2001:db8::1"), false},
		{"::", netip.IPv6Unspecified(), false},
		{"fe80::1%eth0", netip.Addr{}, true},
		{"", netip.Addr{}, true},
		{"nonsense", netip.Addr{}, true},
	}
	for _, tt := range tests {
		got, err := ParseIP(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseIP(%q) error %v, wantErr %v", tt.in, err, tt.wantErr)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseIP(%q) = %v, want %v", tt.in, got, tt.want)
		}
		if !tt.wantErr && got.Is4In6() {
			t.Errorf("ParseIP(%q) = %v is still IPv4-mapped", tt.in, got)
		}
	}
}

func TestCheckUnderlayIP(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // "" means accepted
	}{
		// Accepted.
		{"192.0.2.1", ""},
		{"10.0.0.1", ""},
		{"0.0.0.0", ""},
		{"127.0.0.1", ""},
		{"255.255.255.255", ""},
		{"2001:db8::1", ""},
		{"fe80::1", ""},
		{"::", ""},
		{"::1", ""},
		{"::ffff:192.0.2.1", ""},
		{"2001::1", ""},
		{"2003::1", ""},
		{"1:2::3", ""},
		{"::1:0:0:1", ""}, // not all-zero in the first 12 bytes
		// Multicast.
		{"224.0.0.1", "multicast"},
		{"239.255.255.255", "multicast"},
		{"ff02::1", "multicast"},
		{"ff05::1:3", "multicast"},
		{"::ffff:224.0.0.1", "multicast"},
		// IPv4-compatible.
		{"::192.0.2.1", "IPv4-compatible"},
		{"::10.0.0.1", "IPv4-compatible"},
		{"::0.0.0.2", "IPv4-compatible"},
		{"::1:0", "IPv4-compatible"},
		{"::255.255.255.255", "IPv4-compatible"},
		// 6to4.
		{"2002::", "6to4"},
		{"2002::1", "6to4"},
		{"2002:c000:201::1", "6to4"},
		{"2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "6to4"},
		// Not an address at all.
		{"", "ParseAddr"},
		{"bogus", "ParseAddr"},
	}
	for _, tt := range tests {
		err := CheckUnderlayIP(tt.in)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("CheckUnderlayIP(%q) = %v, want nil", tt.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("CheckUnderlayIP(%q) = nil, want error containing %q", tt.in, tt.wantErr)
		} else if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("CheckUnderlayIP(%q) = %v, want error containing %q", tt.in, err, tt.wantErr)
		}
	}
}

func testDescs() ([]Desc, []Desc) {
	generic := []Desc{
		{Name: "encap", Type: String, Perm: ReadOnly, Required: true, Possible: []string{"vxlan"}},
		{Name: "search", Type: String, Perm: ReadOnly, Required: true, Possible: []string{"direct", "files", "svp"}},
		{Name: "vnetid", Type: Uint, Perm: ReadWrite, Required: true, HasRange: true, Min: 0, Max: 16777215},
		{Name: "mtu", Type: Uint, Perm: ReadWrite, Default: "1400", HasRange: true, Min: 576, Max: 8900},
	}
	plugin := []Desc{
		{Name: "vxlan/listen_ip", Type: IP, Perm: ReadWrite, Required: true, Check: CheckUnderlayIP},
		{Name: "vxlan/listen_port", Type: Uint, Perm: ReadWrite, Required: true, Default: "4789", HasRange: true, Min: 1, Max: 65535},
		{Name: "comment", Type: String, Perm: ReadWrite},
	}
	return generic, plugin
}

func TestSetDescs(t *testing.T) {
	g, p := testDescs()
	s := NewSet(g, p)
	var names []string
	for _, d := range s.Descs() {
		names = append(names, d.Name)
	}
	want := []string{"encap", "search", "vnetid", "mtu", "vxlan/listen_ip", "vxlan/listen_port", "comment"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("Descs() names = %q, want %q", names, want)
	}
	for _, n := range want {
		d, ok := s.Desc(n)
		if !ok || d.Name != n {
			t.Errorf("Desc(%q) = %q, %v", n, d.Name, ok)
		}
	}
	if d, ok := s.Desc("nosuch"); ok || d.Name != "" {
		t.Errorf("Desc(nosuch) = %+v, %v; want zero, false", d, ok)
	}
	if d, _ := s.Desc("mtu"); d.Default != "1400" || d.Min != 576 || d.Max != 8900 {
		t.Errorf("Desc(mtu) = %+v", d)
	}

	empty := NewSet()
	if len(empty.Descs()) != 0 || len(empty.Values()) != 0 || len(empty.Missing()) != 0 {
		t.Errorf("NewSet() not empty: %v %v %v", empty.Descs(), empty.Values(), empty.Missing())
	}
}

func TestSetSetGet(t *testing.T) {
	g, p := testDescs()
	tests := []struct {
		name    string
		prop    string
		text    string
		want    string // Get after a successful Set
		wantErr string
	}{
		{"uint canonical", "vnetid", "0042", "42", ""},
		{"uint range", "mtu", "9000", "", `property mtu: invalid value "9000": out of range 576-8900`},
		{"ip mapped", "vxlan/listen_ip", "::ffff:192.0.2.1", "192.0.2.1", ""},
		{"ip multicast", "vxlan/listen_ip", "224.0.0.1", "", `property vxlan/listen_ip: invalid value "224.0.0.1": multicast addresses are not allowed`},
		{"string possible", "search", "svp", "svp", ""},
		{"string not possible", "encap", "geneve", "", `property encap: invalid value "geneve": must be one of vxlan`},
		{"no such property", "nosuch", "1", "", "property nosuch: no such property"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSet(g, p)
			err := s.Set(tt.prop, tt.text)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Set(%q, %q) succeeded, want %q", tt.prop, tt.text, tt.wantErr)
				}
				if err.Error() != tt.wantErr {
					t.Errorf("Set(%q, %q) error %q, want %q", tt.prop, tt.text, err, tt.wantErr)
				}
				var pe *Error
				if !errors.As(err, &pe) || pe.Prop != tt.prop {
					t.Errorf("Set(%q, %q) error %#v, want *Error for the property", tt.prop, tt.text, err)
				}
				if _, ok := s.Value(tt.prop); ok {
					t.Errorf("failed Set(%q) stored a value", tt.prop)
				}
				if len(s.Values()) != 0 {
					t.Errorf("failed Set stored values %v", s.Values())
				}
				return
			}
			if err != nil {
				t.Fatalf("Set(%q, %q) = %v", tt.prop, tt.text, err)
			}
			if got := s.Get(tt.prop); got != tt.want {
				t.Errorf("Get(%q) = %q, want %q", tt.prop, got, tt.want)
			}
			if v, ok := s.Value(tt.prop); !ok || v != tt.want {
				t.Errorf("Value(%q) = %q, %v; want %q, true", tt.prop, v, ok, tt.want)
			}
		})
	}
}

func TestSetFailedSetKeepsOldValue(t *testing.T) {
	g, p := testDescs()
	s := NewSet(g, p)
	if err := s.Set("mtu", "1500"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("mtu", "100000"); err == nil {
		t.Fatal("Set(mtu, 100000) succeeded")
	}
	if got := s.Get("mtu"); got != "1500" {
		t.Errorf("Get(mtu) after failed Set = %q, want 1500", got)
	}
	if err := s.Set("mtu", "9000"); err == nil {
		t.Fatal("Set(mtu, 9000) succeeded")
	}
	if err := s.Set("mtu", "8900"); err != nil {
		t.Fatal(err)
	}
	if got := s.Get("mtu"); got != "8900" {
		t.Errorf("Get(mtu) after overwrite = %q, want 8900", got)
	}
}

func TestSetDefaults(t *testing.T) {
	g, p := testDescs()
	s := NewSet(g, p)
	tests := []struct {
		prop      string
		want      string
		wantValue bool
	}{
		{"mtu", "1400", false},
		{"vxlan/listen_port", "4789", false},
		{"vnetid", "", false},
		{"vxlan/listen_ip", "", false},
		{"nosuch", "", false},
	}
	for _, tt := range tests {
		if got := s.Get(tt.prop); got != tt.want {
			t.Errorf("Get(%q) = %q, want default %q", tt.prop, got, tt.want)
		}
		if v, ok := s.Value(tt.prop); ok != tt.wantValue || v != "" {
			t.Errorf("Value(%q) = %q, %v; want \"\", false (defaults are not values)", tt.prop, v, ok)
		}
	}
	if got := s.Uint("mtu"); got != 1400 {
		t.Errorf("Uint(mtu) = %d, want 1400", got)
	}
	if got := s.Uint("vnetid"); got != 0 {
		t.Errorf("Uint(vnetid) unset = %d, want 0", got)
	}
	if got := s.Uint("nosuch"); got != 0 {
		t.Errorf("Uint(nosuch) = %d, want 0", got)
	}
	if got := s.IP("vxlan/listen_ip"); got.IsValid() {
		t.Errorf("IP(unset) = %v, want the zero Addr", got)
	}

	// An explicit value overrides the default.
	if err := s.Set("mtu", "1500"); err != nil {
		t.Fatal(err)
	}
	if got := s.Uint("mtu"); got != 1500 {
		t.Errorf("Uint(mtu) = %d, want 1500", got)
	}
	if err := s.Set("vxlan/listen_ip", "2001:db8::7"); err != nil {
		t.Fatal(err)
	}
	if got, want := s.IP("vxlan/listen_ip"), netip.MustParseAddr("2001:db8::7"); got != want {
		t.Errorf("IP(listen_ip) = %v, want %v", got, want)
	}
	// An explicitly set empty string counts as a value and hides the default.
	if err := s.Set("comment", ""); err != nil {
		t.Fatal(err)
	}
	if v, ok := s.Value("comment"); !ok || v != "" {
		t.Errorf("Value(comment) = %q, %v; want \"\", true", v, ok)
	}
}

func TestSetCanonical(t *testing.T) {
	s := NewSet([]Desc{{Name: "varpd/id", Type: Uint, Perm: ReadOnly}})
	// SetCanonical does not parse, so it stores even what Set would refuse.
	s.SetCanonical("varpd/id", "7")
	if got := s.Uint("varpd/id"); got != 7 {
		t.Errorf("Uint(varpd/id) = %d, want 7", got)
	}
	s.SetCanonical("undeclared", "x")
	if v, ok := s.Value("undeclared"); !ok || v != "x" {
		t.Errorf("Value(undeclared) = %q, %v; want x, true", v, ok)
	}
	if got := s.Get("undeclared"); got != "x" {
		t.Errorf("Get(undeclared) = %q, want x", got)
	}
}

func TestSetMissing(t *testing.T) {
	g, p := testDescs()
	s := NewSet(g, p)
	steps := []struct {
		prop, text string
		want       []string
	}{
		{"", "", []string{"encap", "search", "vnetid", "vxlan/listen_ip"}},
		{"vnetid", "0", []string{"encap", "search", "vxlan/listen_ip"}},
		{"encap", "vxlan", []string{"search", "vxlan/listen_ip"}},
		{"vxlan/listen_ip", "192.0.2.1", []string{"search"}},
		{"search", "direct", nil},
	}
	for _, st := range steps {
		if st.prop != "" {
			if err := s.Set(st.prop, st.text); err != nil {
				t.Fatal(err)
			}
		}
		if got := s.Missing(); !reflect.DeepEqual(got, st.want) {
			t.Errorf("after setting %q: Missing() = %q, want %q", st.prop, got, st.want)
		}
	}

	// A required property with a default is never missing; one whose
	// explicit value is empty is.
	s2 := NewSet([]Desc{
		{Name: "a", Type: String, Required: true, Default: "d"},
		{Name: "b", Type: String, Required: true},
		{Name: "c", Type: String},
	})
	s2.SetCanonical("b", "")
	if got, want := s2.Missing(), []string{"b"}; !reflect.DeepEqual(got, want) {
		t.Errorf("Missing() = %q, want %q", got, want)
	}
}

func TestSetValuesAndClone(t *testing.T) {
	g, p := testDescs()
	s := NewSet(g, p)
	for _, kv := range [][2]string{{"encap", "vxlan"}, {"vnetid", "042"}, {"vxlan/listen_ip", "::ffff:10.0.0.1"}} {
		if err := s.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"encap": "vxlan", "vnetid": "42", "vxlan/listen_ip": "10.0.0.1"}
	vals := s.Values()
	if !reflect.DeepEqual(vals, want) {
		t.Fatalf("Values() = %v, want %v", vals, want)
	}
	// Values is a copy: changing it changes nothing in the set.
	vals["encap"] = "changed"
	vals["mtu"] = "1"
	delete(vals, "vnetid")
	if got := s.Values(); !reflect.DeepEqual(got, want) {
		t.Errorf("Values() after mutating a copy = %v, want %v", got, want)
	}

	c := s.Clone()
	if got := c.Values(); !reflect.DeepEqual(got, want) {
		t.Errorf("Clone().Values() = %v, want %v", got, want)
	}
	if len(c.Descs()) != len(s.Descs()) {
		t.Errorf("Clone has %d descs, want %d", len(c.Descs()), len(s.Descs()))
	}
	if got := c.Get("mtu"); got != "1400" {
		t.Errorf("Clone().Get(mtu) = %q, want default 1400", got)
	}
	// Changes to the clone do not reach the original, and back.
	if err := c.Set("vnetid", "7"); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("mtu", "1500"); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("search", "svp"); err != nil {
		t.Fatal(err)
	}
	if got := s.Get("vnetid"); got != "42" {
		t.Errorf("original vnetid = %q after changing the clone, want 42", got)
	}
	if _, ok := s.Value("mtu"); ok {
		t.Errorf("original has mtu after setting it on the clone")
	}
	if _, ok := c.Value("search"); ok {
		t.Errorf("clone has search after setting it on the original")
	}
	if got := c.Get("vnetid"); got != "7" {
		t.Errorf("clone vnetid = %q, want 7", got)
	}
	// The clone still validates with the shared descriptions.
	if err := c.Set("mtu", "1"); err == nil {
		t.Errorf("clone accepted an out-of-range mtu")
	}
	if err := c.Set("nosuch", "1"); err == nil {
		t.Errorf("clone accepted an unknown property")
	}
}

func TestParseAssignments(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    [][2]string
		wantErr string
	}{
		{"none", nil, nil, ""},
		{"empty arg", []string{""}, nil, ""},
		{"one", []string{"mtu=1500"}, [][2]string{{"mtu", "1500"}}, ""},
		{"two in one", []string{"a=1,b=2"}, [][2]string{{"a", "1"}, {"b", "2"}}, ""},
		{"repeated args keep order", []string{"a=1,b=2", "c=3"},
			[][2]string{{"a", "1"}, {"b", "2"}, {"c", "3"}}, ""},
		{"same name twice", []string{"a=1", "a=2"}, [][2]string{{"a", "1"}, {"a", "2"}}, ""},
		{"empty value", []string{"a="}, [][2]string{{"a", ""}}, ""},
		{"value with equals", []string{"a=b=c"}, [][2]string{{"a", "b=c"}}, ""},
		{"ipv6 value", []string{"vxlan/listen_ip=2001:db8::1"}, [][2]string{{"vxlan/listen_ip", "2001:db8::1"}}, ""},
		{"stray commas skipped", []string{",a=1,,b=2,"}, [][2]string{{"a", "1"}, {"b", "2"}}, ""},
		{"no equals", []string{"noequals"}, nil, `invalid property assignment "noequals": expected <prop>=<value>`},
		{"empty name", []string{"=x"}, nil, `invalid property assignment "=x": expected <prop>=<value>`},
		{"bad in second arg", []string{"a=1", "b=2,oops"}, nil, `invalid property assignment "oops"`},
		{"bad in middle", []string{"a=1,=2,c=3"}, nil, `invalid property assignment "=2"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAssignments(tt.args)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseAssignments(%q) = %q, want error %q", tt.args, got, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ParseAssignments(%q) error %q, want %q", tt.args, err, tt.wantErr)
				}
				if got != nil {
					t.Errorf("ParseAssignments(%q) returned %q with an error", tt.args, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseAssignments(%q) error %v", tt.args, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ParseAssignments(%q) = %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}
