package encap

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"overlaynet/prop"
)

type fakePlugin struct{ name string }

func (p fakePlugin) Name() string                           { return p.name }
func (fakePlugin) Dest() DestType                           { return DestEthernet }
func (fakePlugin) HeaderLen() int                           { return 4 }
func (fakePlugin) MaxVNetID() uint32                        { return 255 }
func (fakePlugin) Props() []prop.Desc                       { return nil }
func (fakePlugin) Listen(*prop.Set) (netip.AddrPort, error) { return netip.AddrPort{}, nil }
func (fakePlugin) Encap([]byte, uint32)                     {}
func (fakePlugin) Decap(pkt []byte) (uint32, []byte, error) { return 0, pkt, nil }

func TestDestTypeString(t *testing.T) {
	tests := []struct {
		t    DestType
		want string
	}{
		{0, ""},
		{DestEthernet, "ethernet"},
		{DestIP, "ip"},
		{DestPort, "port"},
		{DestIP | DestPort, "ip+port"},
		{DestEthernet | DestIP | DestPort, "ethernet+ip+port"},
		{DestEthernet | 0x80, "ethernet"},
	}
	for _, tt := range tests {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("DestType(%#x).String() = %q, want %q", uint8(tt.t), got, tt.want)
		}
	}
}

func TestDest(t *testing.T) {
	tests := []struct {
		d    Dest
		want string
	}{
		{Dest{IP: netip.MustParseAddr("192.0.2.1"), Port: 4789}, "192.0.2.1:4789"},
		{Dest{IP: netip.MustParseAddr("2001:db8::1"), Port: 4789}, "[2001:db8::1]:4789"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("Dest.String() = %q, want %q", got, tt.want)
		}
		if got := tt.d.AddrPort(); got.Addr() != tt.d.IP || got.Port() != tt.d.Port {
			t.Errorf("Dest.AddrPort() = %v", got)
		}
	}
}

func TestRegistry(t *testing.T) {
	Register(fakePlugin{"zzz-test"})
	Register(fakePlugin{"aaa-test"})
	p, ok := Lookup("zzz-test")
	if !ok || p.Name() != "zzz-test" {
		t.Errorf("Lookup(zzz-test) = %v, %v", p, ok)
	}
	if p, ok := Lookup("nosuch"); ok || p != nil {
		t.Errorf("Lookup(nosuch) = %v, %v; want nil, false", p, ok)
	}
	names := Names()
	var ours []string
	for _, n := range names {
		if strings.HasSuffix(n, "-test") {
			ours = append(ours, n)
		}
	}
	if want := []string{"aaa-test", "zzz-test"}; !reflect.DeepEqual(ours, want) {
		t.Errorf("Names() = %q, want %q among them, sorted", names, want)
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] >= names[i] {
			t.Errorf("Names() not sorted: %q", names)
		}
	}
	func() {
		defer func() {
			r := recover()
			if r == nil {
				t.Fatal("registering a name twice did not panic")
			}
			if !strings.Contains(r.(string), `"zzz-test"`) {
				t.Errorf("panic %v does not name the plugin", r)
			}
		}()
		Register(fakePlugin{"zzz-test"})
	}()
}
