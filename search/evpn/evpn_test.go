package evpn

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
)

// fakeHost records what the instance tells the overlay.
type fakeHost struct {
	targets  map[ether.MAC]encap.Dest
	flood    []encap.Dest
	degraded string
}

func (h *fakeHost) Invalidate(m ether.MAC)                 { delete(h.targets, m) }
func (h *fakeHost) Learn(a search.Answer)                  { h.targets[a.MAC] = a.Dest }
func (h *fakeHost) Announce(uint16, netip.Addr, ether.MAC) {}
func (h *fakeHost) Degrade(r string)                       { h.degraded = r }
func (h *fakeHost) Restore()                               { h.degraded = "" }
func (h *fakeHost) SetFlood(d []encap.Dest) bool           { h.flood = d; return true }

func newTest(t *testing.T, extra ...[2]string) (*instance, *fakeHost) {
	t.Helper()
	s := prop.NewSet([]prop.Desc{{Name: "vxlan/listen_ip", Type: prop.IP}, {Name: "vxlan/listen_port", Type: prop.Uint, Default: "4789"}}, props(0))
	for _, kv := range append([][2]string{{"vxlan/listen_ip", "192.0.2.1"}, {PropASN, "65000"}, {PropPeers, "192.0.2.10"}}, extra...) {
		if err := s.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	h := &fakeHost{targets: map[ether.MAC]encap.Dest{}}
	in, err := newInstance(search.Config{Props: s, Dest: encap.DestIP | encap.DestPort, VNetID: 42, Host: h})
	if err != nil {
		t.Fatal(err)
	}
	return in.(*instance), h
}

// TestDefaults: RD and RT as FRR derives them, the router id from the
// listen address, iBGP by default.
func TestDefaults(t *testing.T) {
	in, _ := newTest(t)
	c := in.cfg
	if c.rd != "192.0.2.1:42" || c.rt != [2]uint32{65000, 42} || c.speaker.routerID.String() != "192.0.2.1" ||
		c.speaker.peerASN != 65000 || c.speaker.hold != 9 || c.port != 4789 {
		t.Errorf("config %+v", c)
	}
}

// TestBadProperties: each bad value is refused naming the property.
func TestBadProperties(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{PropPeers, "192.0.2.10,192.0.2.11", "join several with '+'"},
		{PropRT, "65000", "ASN:N"},
		{PropRD, "x:1", "ASN:N or IP:N"},
		{PropHoldTime, "1", "range"},
	} {
		s := prop.NewSet(props(0))
		if err := s.Set(tc.name, tc.value); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s=%s: %v, want an error naming it and %q", tc.name, tc.value, err, tc.want)
		}
	}
	for _, tc := range []struct{ listen, want string }{{"0.0.0.0", "specific"}} {
		s := prop.NewSet([]prop.Desc{{Name: "vxlan/listen_ip", Type: prop.IP}}, props(0))
		s.Set("vxlan/listen_ip", tc.listen)
		s.Set(PropASN, "65000")
		s.Set(PropPeers, "192.0.2.10")
		s.Set(PropRouterID, "192.0.2.1")
		if _, err := newInstance(search.Config{Props: s, Dest: encap.DestIP | encap.DestPort, VNetID: 42}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("listen %s: %v, want %q", tc.listen, err, tc.want)
		}
	}
	u := prop.NewSet([]prop.Desc{{Name: "vxlan/listen_ip", Type: prop.IP}, {Name: "underlay_netns", Type: prop.String}}, props(0))
	u.Set("vxlan/listen_ip", "192.0.2.1")
	u.Set("underlay_netns", "ul")
	u.Set(PropASN, "65000")
	u.Set(PropPeers, "192.0.2.10")
	if _, err := newInstance(search.Config{Props: u, Dest: encap.DestIP | encap.DestPort, VNetID: 42}); err == nil || !strings.Contains(err.Error(), "underlay_netns") {
		t.Errorf("with underlay_netns: %v, want a refusal naming it", err)
	}
	g := prop.NewSet([]prop.Desc{{Name: "geneve/listen_ip", Type: prop.IP}}, props(0))
	g.Set("geneve/listen_ip", "192.0.2.1")
	g.Set(PropASN, "65000")
	g.Set(PropPeers, "192.0.2.10")
	if _, err := newInstance(search.Config{Props: g, Dest: encap.DestIP | encap.DestPort, VNetID: 42}); err == nil || !strings.Contains(err.Error(), "VXLAN only") {
		t.Errorf("a Geneve overlay: %v, want a refusal", err)
	}
	s := prop.NewSet([]prop.Desc{{Name: "vxlan/listen_ip", Type: prop.IP}}, props(0))
	s.Set("vxlan/listen_ip", "2001:db8::1")
	s.Set(PropASN, "65000")
	s.Set(PropPeers, "2001:db8::10")
	if _, err := newInstance(search.Config{Props: s, Dest: encap.DestIP | encap.DestPort, VNetID: 42}); err == nil || !strings.Contains(err.Error(), PropRouterID) {
		t.Errorf("an IPv6 listen address without a router id: %v", err)
	}
}

// TestRoutes: type-2 routes become targets (the highest sequence number
// winning a move, then the lower VTEP), withdrawals take them back, and
// type-3 routes make the flood list.
func TestRoutes(t *testing.T) {
	in, h := newTest(t)
	mac := ether.MAC{2, 8, 32, 0, 0, 1}
	a, b := netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")
	in.heardMAC("rd-a", mac, macRoute{vtep: a}, false)
	if d := h.targets[mac]; d.IP != a || d.Port != 4789 {
		t.Errorf("after a's route: %v", d)
	}
	in.heardMAC("rd-b", mac, macRoute{vtep: b, seq: 1, ips: []netip.Addr{netip.MustParseAddr("10.9.0.5")}}, false)
	if d := h.targets[mac]; d.IP != b {
		t.Errorf("after a move to b (seq 1): %v", d)
	}
	if m, err := in.ResolveIP(context.Background(), 0, netip.MustParseAddr("10.9.0.5")); err != nil || m != mac {
		t.Errorf("ResolveIP: %v %v", m, err)
	}
	in.heardMAC("rd-b", mac, macRoute{}, true)
	if d := h.targets[mac]; d.IP != a {
		t.Errorf("after b's withdrawal: %v, want a again", d)
	}
	if _, err := in.ResolveIP(context.Background(), 0, netip.MustParseAddr("10.9.0.5")); err == nil {
		t.Error("the withdrawn route's address still resolves")
	}
	in.heardMAC("rd-a", mac, macRoute{}, true)
	if _, ok := h.targets[mac]; ok {
		t.Error("a target left after every route was withdrawn")
	}
	// Equal sequence numbers: the lower VTEP address.
	in.heardMAC("rd-b", mac, macRoute{vtep: b}, false)
	in.heardMAC("rd-a", mac, macRoute{vtep: a}, false)
	if d := h.targets[mac]; d.IP != a {
		t.Errorf("a tie: %v, want the lower VTEP", d)
	}

	in.heardIMET("rd-a", a, false)
	in.heardIMET("rd-b", b, false)
	want := []encap.Dest{{IP: a, Port: 4789}, {IP: b, Port: 4789}}
	got := slices.Clone(h.flood)
	slices.SortFunc(got, func(x, y encap.Dest) int { return x.IP.Compare(y.IP) })
	if !slices.Equal(got, want) {
		t.Errorf("flood list %v, want %v", got, want)
	}
	in.heardIMET("rd-a", a, true)
	if len(h.flood) != 1 || h.flood[0].IP != b {
		t.Errorf("flood list after a's withdrawal: %v", h.flood)
	}

	// A VTEP's MAC-alone and MAC/IP routes: all its addresses resolve.
	m2 := ether.MAC{2, 8, 32, 0, 0, 2}
	v4, v6 := netip.MustParseAddr("10.9.0.7"), netip.MustParseAddr("fd00::7")
	in.heardMAC("rd-a/", m2, macRoute{vtep: a}, false)
	in.heardMAC("rd-a/"+v4.String(), m2, macRoute{vtep: a, ips: []netip.Addr{v4}}, false)
	in.heardMAC("rd-a/"+v6.String(), m2, macRoute{vtep: a, ips: []netip.Addr{v6}}, false)
	for _, ip := range []netip.Addr{v4, v6} {
		if m, err := in.ResolveIP(context.Background(), 0, ip); err != nil || m != m2 {
			t.Errorf("ResolveIP(%s) = %v, %v", ip, m, err)
		}
	}
	// A local MAC's remote route is held back, and counts once the VNIC
	// goes.
	in.local[m2] = &localVNIC{ips: map[netip.Addr]bool{}}
	in.heardMAC("rd-a/", m2, macRoute{vtep: a}, false)
	delete(h.targets, m2)
	in.VNICDown(0, m2)
	if d := h.targets[m2]; d.IP != a {
		t.Errorf("after the local VNIC went: %v, want the remote route", d)
	}

	in.sessions(map[netip.Addr]string{netip.MustParseAddr("192.0.2.10"): "active"})
	if !strings.Contains(h.degraded, "192.0.2.10 (active)") {
		t.Errorf("degraded %q, want the peer and its state", h.degraded)
	}
	in.sessions(map[netip.Addr]string{netip.MustParseAddr("192.0.2.10"): "established"})
	if h.degraded != "" {
		t.Errorf("still degraded with a session up: %q", h.degraded)
	}
}
