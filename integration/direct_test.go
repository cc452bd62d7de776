package integration

import (
	"overlaynet/netlab"
	"strings"
	"testing"
)

// TestDirectTwoHosts: VNICs on two hosts talk as if on one switch (ping
// both ways, an iperf3 TCP transfer), and a second VNIC on host 1 reaches
// the first locally with nothing sent on the underlay.
func TestDirectTwoHosts(t *testing.T) {
	forEachDataPath(t, testDirectTwoHosts)
}

func testDirectTwoHosts(t *testing.T, dp string) {
	need(t, "ping", "iperf3")
	l, d1, _, g1, g2 := twoHostsDirect(t, "-p", "datapath="+dp)

	must(t, g1.PingAll("10.9.0.2", 5))
	must(t, g2.PingAll("10.9.0.1", 5))

	// iperf3 TCP through the overlay.
	srv, err := l.Start(g2, "iperf3-server", "iperf3", "-s", "-1")
	must(t, err)
	t.Logf("iperf3 moved %d bytes", iperfBytes(t, g1, "10.9.0.2", 1))
	srv.Stop()

	// A second VNIC on host 1, with neighbour entries set by hand so that
	// no ARP broadcast (which direct sends to the peer) is needed.
	_, err = d1.Adm("create-vnic", "-l", "ov0", "vnic3")
	must(t, err)
	g3, err := d1.Guest("g3", "vnic3", "10.9.0.3/24")
	must(t, err)
	mac1, err := d1.VNICMAC("vnic1")
	must(t, err)
	mac3, err := d1.VNICMAC("vnic3")
	must(t, err)
	_, err = g3.IP("neigh", "replace", "10.9.0.1", "lladdr", mac1, "dev", "vnic3", "nud", "permanent")
	must(t, err)
	_, err = g1.IP("neigh", "replace", "10.9.0.3", "lladdr", mac3, "dev", "vnic1", "nud", "permanent")
	must(t, err)
	// The kernel's bridge does not count what it switches locally: the
	// kernel path shows local-switched as "--".
	local := func() uint64 {
		if dp == "kernel" {
			return 0
		}
		n, err := d1.Stat("ov0", "local-switched")
		must(t, err)
		return n
	}
	encBefore, err := d1.Stat("ov0", "encapsulated")
	must(t, err)
	localBefore := local()
	must(t, g3.PingAll("10.9.0.1", 5))
	encAfter, err := d1.Stat("ov0", "encapsulated")
	must(t, err)
	localAfter := local()
	if encAfter != encBefore {
		t.Errorf("local traffic went on the underlay: encapsulated %d -> %d", encBefore, encAfter)
	}
	if dp == "userspace" && localAfter-localBefore < 10 {
		t.Errorf("local-switched rose by %d, want at least 10 (5 requests, 5 replies)", localAfter-localBefore)
	}
}

// TestMTU: VNICs get the overlay MTU; a frame larger than it is dropped
// and counted.
func TestMTU(t *testing.T) {
	need(t, "ping")
	_, d1, _, g1, _ := twoHostsDirect(t)
	out, err := g1.IP("-o", "link", "show", "vnic1")
	must(t, err)
	if !strings.Contains(out, "mtu 1400 ") {
		t.Fatalf("vnic1 should have mtu 1400: %s", out)
	}
	must(t, g1.PingAll("10.9.0.2", 1))
	// The guest raises its own MTU; overlayd must still refuse the frame.
	_, err = g1.IP("link", "set", "vnic1", "mtu", "1500")
	must(t, err)
	before, err := d1.Stat("ov0", "drop-mtu")
	must(t, err)
	// 1450 bytes of ICMP payload make a 1478-byte IP packet, above 1400.
	// Not one may come back (ping then exits non-zero, hence no must).
	out, _ = g1.Exec("ping", "-c", "2", "-i", "0.1", "-W", "1", "-M", "do", "-s", "1450", "10.9.0.2")
	if !strings.Contains(out, " 0 received") {
		t.Errorf("pings above the overlay MTU were answered:\n%s", out)
	}
	after, err := d1.Stat("ov0", "drop-mtu")
	must(t, err)
	if after-before < 2 {
		t.Fatalf("drop-mtu rose by %d, want 2", after-before)
	}
	// Frames within the MTU still pass.
	must(t, g1.PingAll("10.9.0.2", 2))
}

// TestSetLinkpropRetarget: set-linkprop moves a running overlay to another
// listen address and peer; traffic follows.
func TestSetLinkpropRetarget(t *testing.T) {
	need(t, "ping")
	l, d1, _, g1, _ := twoHostsDirect(t)
	// A third host takes over 10.9.0.2's role once host 1 points at it.
	h3, err := l.Namespace("h3")
	must(t, err)
	must(t, l.Link(d1.Host, "198.18.1.1/24", h3, "198.18.1.3/24", "ul1"))
	d3, err := l.StartDaemon(h3)
	must(t, err)
	must(t, d3.DirectOverlay("ov0", 42, "198.18.1.3", "198.18.1.1"))
	_, err = d3.Adm("create-vnic", "-l", "ov0", "vnic4")
	must(t, err)
	_, err = d3.Guest("g4", "vnic4", "10.9.0.4/24")
	must(t, err)
	if got, _ := g1.Ping("10.9.0.4", 2); got != 0 {
		t.Fatalf("10.9.0.4 answered before host 1 pointed at host 3")
	}
	_, err = d1.Adm("set-linkprop", "-p", "vxlan/listen_ip=198.18.1.1,direct/dest_ip=198.18.1.3", "ov0")
	must(t, err)
	must(t, g1.PingAll("10.9.0.4", 3))
	out, err := d1.Adm("show-overlay", "-p", "-o", "property,value", "ov0")
	must(t, err)
	if !strings.Contains(out, `direct/dest_ip:198.18.1.3`) {
		t.Fatalf("show-overlay does not show the new destination:\n%s", out)
	}
}

// TestMTUIntoGuest: set-linkprop -p mtu= on an overlay whose VNIC is in a
// guest namespace. Without the privilege to enter it, overlayd makes the
// change, says which VNIC kept which MTU and why (exit status non-zero),
// and show-vnic shows the interface's real MTU beside the wanted one;
// with --keep-privileges it applies the MTU in the guest.
func TestMTUIntoGuest(t *testing.T) {
	need(t, "ping")
	forEachDataPath(t, func(t *testing.T, dp string) {
		guestMTU := func(g *netlab.NS) string {
			out, err := g.IP("-o", "link", "show", "vnic1")
			must(t, err)
			f := strings.Fields(out)
			for i := range f {
				if f[i] == "mtu" && i+1 < len(f) {
					return f[i+1]
				}
			}
			t.Fatalf("no mtu in %q", out)
			return ""
		}
		t.Run("dropped privileges", func(t *testing.T) {
			_, d1, _, g1, _ := twoHostsDirect(t, "-p", "datapath="+dp)
			_, err := d1.Adm("set-linkprop", "-p", "mtu=1300", "ov0")
			if err == nil {
				t.Fatal("set-linkprop -p mtu=1300 succeeded silently although vnic1 is in a guest overlayd may not enter")
			}
			for _, want := range []string{"mtu set to 1300", "VNIC vnic1 keeps mtu 1400", "keep-privileges"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("set-linkprop error %q does not say %q", err, want)
				}
			}
			if got := guestMTU(g1); got != "1400" {
				t.Errorf("guest's vnic1 mtu %s, want 1400 (unchanged)", got)
			}
			out, err := d1.Adm("show-vnic", "vnic1")
			must(t, err)
			if !strings.Contains(out, "1400(want 1300)") {
				t.Errorf("show-vnic does not show the real and the wanted MTU:\n%s", out)
			}
			out, err = d1.Adm("show-vnic", "-p", "-o", "mtu", "vnic1")
			must(t, err)
			if out != "1400\n" {
				t.Errorf("show-vnic -p -o mtu: %q, want the interface's 1400", out)
			}
			// Traffic within the real MTU still flows.
			must(t, g1.PingAll("10.9.0.2", 2))
		})
		t.Run("keep-privileges", func(t *testing.T) {
			l := newLab(t)
			h1, h2, err := l.TwoHosts()
			must(t, err)
			p, err := l.DirectPair(h1, h2, []string{"--keep-privileges"}, "-p", "datapath="+dp)
			must(t, err)
			_, err = p.D1.Adm("set-linkprop", "-p", "mtu=1300", "ov0")
			must(t, err)
			if got := guestMTU(p.G1); got != "1300" {
				t.Errorf("guest's vnic1 mtu %s, want 1300", got)
			}
			out, err := p.D1.Adm("show-vnic", "-p", "-o", "mtu", "vnic1")
			must(t, err)
			if out != "1300\n" {
				t.Errorf("show-vnic -p -o mtu: %q, want 1300", out)
			}
			must(t, p.G1.PingAll("10.9.0.2", 2))
		})
	})
}
