package integration

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// waitFor polls cond every 100 ms until it holds or d passes, and
// returns the last error cond gave.
func waitFor(d time.Duration, cond func() error) error {
	var err error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = cond(); err == nil {
			return nil
		}
	}
	return err
}

// TestEVPNWithFRR: three hosts on one underlay switch. Hosts 1 and 2 run
// overlayd with an evpn overlay (VNI 42); host 3 runs FRR (bgpd and
// zebra) as their route reflector and as a VTEP itself, over the kernel's
// vxlan driver and a bridge (advertise-all-vni). FRR lists our type-2
// and type-3 routes; guests on all three hosts ping each other from empty
// ARP caches; bgpd stopped makes our overlays DEGRADED naming the peer,
// and started again, ONLINE with the routes back.
func TestEVPNWithFRR(t *testing.T) {
	need(t, "ping", "vtysh", "/usr/lib/frr/bgpd")
	forEachDataPath(t, func(t *testing.T, dp string) {
		if dp == "kernel" {
			mainPassOnly(t)
		}
		testEVPNWithFRR(t, dp)
	})
}

func testEVPNWithFRR(t *testing.T, dp string) {
	l := newLab(t)
	hs, err := l.Hosts(3)
	must(t, err)
	h3 := hs[2]

	// Host 3: the kernel VTEP, then FRR.
	g3, err := l.Namespace("g3")
	must(t, err)
	for _, args := range [][]string{
		{"link", "add", "br42", "type", "bridge"},
		{"link", "add", "vx42", "type", "vxlan", "id", "42", "local", netlab.HostIP(3), "dstport", "4789", "nolearning"},
		{"link", "set", "vx42", "master", "br42"},
		{"link", "add", "v3", "type", "veth", "peer", "name", "eth0", "netns", g3.Name},
		{"link", "set", "v3", "master", "br42"},
		{"link", "set", "vx42", "mtu", "1400"},
		{"link", "set", "br42", "up"},
		{"link", "set", "vx42", "up"},
		{"link", "set", "v3", "up"},
	} {
		_, err := h3.IP(args...)
		must(t, err)
	}
	for _, args := range [][]string{{"link", "set", "eth0", "mtu", "1400"}, {"addr", "add", "10.9.0.3/24", "dev", "eth0"},
		{"addr", "add", "fd00:9::3/64", "dev", "eth0", "nodad"}, {"link", "set", "eth0", "up"}} {
		_, err := g3.IP(args...)
		must(t, err)
	}
	// FRR: the route reflector of hosts 1 and 2, and a VTEP itself.
	frr, err := l.StartFRR(h3, netlab.ReflectorConf(netlab.HostIP(3), true, netlab.HostIP(1), netlab.HostIP(2)))
	must(t, err)

	var ds []*netlab.Daemon
	var guests []*netlab.NS
	macs := map[string]string{}
	for i, h := range hs[:2] {
		d, err := l.StartDaemon(h)
		must(t, err)
		ds = append(ds, d)
		_, err = d.Adm("create-overlay", "-e", "vxlan", "-s", "evpn", "-v", "42", "-p", "vxlan/listen_ip="+netlab.HostIP(i+1),
			"-p", "evpn/asn=65000,evpn/peers="+netlab.HostIP(3), "-p", "datapath="+dp, "ov0")
		must(t, err)
		_, err = d.Adm("create-vnic", "-l", "ov0", "vnic0")
		must(t, err)
		mac, err := d.Adm("show-vnic", "-p", "-o", "macaddress", "vnic0")
		must(t, err)
		macs[netlab.HostIP(i+1)] = strings.TrimSpace(mac)
		g, err := d.Guest(fmt.Sprintf("g%d", i+1), "vnic0", fmt.Sprintf("10.9.0.%d/24", i+1), fmt.Sprintf("fd00:9::%d/64", i+1))
		must(t, err)
		guests = append(guests, g)
	}
	for _, d := range ds {
		waitStatusFor(t, d, 30*time.Second, "ONLINE") // a BGP session with FRR
	}
	// FRR has our routes: a type-2 per VNIC, a type-3 per host.
	ourRoutes := func() error {
		out, err := frr.Vtysh("show bgp l2vpn evpn route")
		if err != nil {
			return err
		}
		for ip, mac := range macs {
			if !strings.Contains(out, "[2]:[0]:[48]:["+longMAC(mac)+"]") {
				return fmt.Errorf("no type-2 route for %s (host %s):\n%s", mac, ip, out)
			}
			if !strings.Contains(out, "[3]:[0]:[32]:["+ip+"]") {
				return fmt.Errorf("no type-3 route from %s:\n%s", ip, out)
			}
		}
		return nil
	}
	if err := waitFor(15*time.Second, ourRoutes); err != nil {
		t.Fatal(err)
	}

	// BGP converges in the background (FRR's zebra installs what it
	// hears into the kernel a moment after bgpd has it): each pair pings
	// once within a bound, then three times without loss.
	for _, p := range []struct {
		from *netlab.NS
		to   string
	}{{guests[0], "10.9.0.2"}, {guests[1], "10.9.0.1"}, {guests[0], "10.9.0.3"}, {g3, "10.9.0.2"}, {g3, "10.9.0.1"},
		{guests[0], "fd00:9::2"}, {guests[1], "fd00:9::3"}, {g3, "fd00:9::1"}} {
		if err := pingConverged(p.from, p.to); err != nil {
			t.Errorf("%s to %s: %v", p.from.Name, p.to, err)
		}
	}

	// The addresses our guests use, seen in their ARP requests and
	// neighbour solicitations, are advertised with their MACs (on the
	// userspace path, where those reach overlayd).
	if dp == "userspace" {
		err := waitFor(15*time.Second, func() error {
			out, err := frr.Vtysh("show bgp l2vpn evpn route")
			if err != nil {
				return err
			}
			for _, want := range []string{"[" + longMAC(macs[netlab.HostIP(1)]) + "]:[32]:[10.9.0.1]", "[" + longMAC(macs[netlab.HostIP(2)]) + "]:[128]:[fd00:9::2]"} {
				if !strings.Contains(out, want) {
					return fmt.Errorf("no MAC/IP route %s:\n%s", want, out)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}

	// A move: host 1's VNIC goes, and one with its MAC comes on host 2,
	// into a guest with its addresses. Host 2 advertises it with the next
	// mobility sequence number; FRR and host 1 follow.
	_, err = ds[0].Adm("delete-vnic", "vnic0")
	must(t, err)
	start := time.Now()
	_, err = ds[1].Adm("create-vnic", "-l", "ov0", "-m", macs[netlab.HostIP(1)], "vnicm")
	must(t, err)
	_, err = ds[1].Guest("gm", "vnicm", "10.9.0.1/24", "fd00:9::1/64")
	must(t, err)
	if err := pingConverged(g3, "10.9.0.1"); err != nil {
		t.Errorf("host 3's guest to the moved guest: %v", err)
	}
	t.Logf("move: FRR's guest reached the moved guest %v after the VNIC was made on host 2", time.Since(start).Round(time.Millisecond))
	out, err := frr.Vtysh("show evpn mac vni 42 mac " + longMAC(macs[netlab.HostIP(1)]))
	must(t, err)
	if !strings.Contains(out, netlab.HostIP(2)) {
		t.Errorf("FRR does not place the moved MAC on host 2:\n%s", out)
	}
	// The test's further checks use host 1's guest: bring one back.
	_, err = ds[1].Adm("delete-vnic", "vnicm")
	must(t, err)
	_, err = ds[0].Adm("create-vnic", "-l", "ov0", "-m", macs[netlab.HostIP(1)], "vnic0")
	must(t, err)
	guests[0], err = ds[0].Guest("g1b", "vnic0", "10.9.0.1/24", "fd00:9::1/64")
	must(t, err)

	// bgpd gone: DEGRADED, naming it; back: ONLINE, routes back.
	frr.StopBGP()
	for _, d := range ds {
		waitStatusFor(t, d, 30*time.Second, "DEGRADED", netlab.HostIP(3))
	}
	must(t, frr.StartBGP())
	for _, d := range ds {
		waitStatusFor(t, d, 60*time.Second, "ONLINE")
	}
	if err := waitFor(30*time.Second, ourRoutes); err != nil {
		t.Errorf("routes after bgpd came back: %v", err)
	}
	if err := pingConverged(guests[0], "10.9.0.3"); err != nil {
		t.Errorf("guest 1 to host 3's after bgpd came back: %v", err)
	}
}

// pingConverged waits up to 20 s for one reply from to, then wants three
// in a row.
func pingConverged(from *netlab.NS, to string) error {
	if err := waitFor(20*time.Second, func() error { return from.PingAll(to, 1) }); err != nil {
		return fmt.Errorf("no reply in 20 s: %w", err)
	}
	return from.PingAll(to, 3)
}

// longMAC is a MAC as FRR prints it: two hex digits per byte.
func longMAC(mac string) string {
	parts := strings.Split(mac, ":")
	for i, p := range parts {
		if len(p) == 1 {
			parts[i] = "0" + p
		}
	}
	return strings.Join(parts, ":")
}
