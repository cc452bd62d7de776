package integration

import (
	"testing"

	"overlaynet/netlab"
)

// TestVLANs: VNICs with a VLAN id talk to VNICs of the same VLAN on the
// same overlay, on other hosts and locally, and never to other VLANs or to
// untagged VNICs, although all share one subnet.
func TestVLANs(t *testing.T) {
	need(t, "ping")
	_, d1, d2 := twoDaemons(t)
	must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP))
	must(t, d2.DirectOverlay("ov0", 42, netlab.Host2IP, netlab.Host1IP))
	guest := func(d *netlab.Daemon, vnic, vid, addr string) *netlab.NS {
		t.Helper()
		args := []string{"create-vnic", "-l", "ov0"}
		if vid != "" {
			args = append(args, "-v", vid)
		}
		_, err := d.Adm(append(args, vnic)...)
		must(t, err)
		g, err := d.Guest("g-"+vnic, vnic, addr+"/24")
		must(t, err)
		return g
	}
	a1 := guest(d1, "a1", "100", "10.5.0.1")
	guest(d2, "a2", "100", "10.5.0.2")
	a3 := guest(d1, "a3", "100", "10.5.0.3") // same host as a1
	b1 := guest(d1, "b1", "200", "10.5.0.11")
	guest(d2, "b2", "200", "10.5.0.12")
	u1 := guest(d1, "u1", "", "10.5.0.21")
	guest(d2, "u2", "", "10.5.0.22")

	must(t, a1.PingAll("10.5.0.2", 3))  // VLAN 100 across hosts
	must(t, a3.PingAll("10.5.0.1", 3))  // VLAN 100 locally
	must(t, b1.PingAll("10.5.0.12", 3)) // VLAN 200 across hosts
	must(t, u1.PingAll("10.5.0.22", 3)) // untagged across hosts
	for _, c := range []struct {
		from *netlab.NS
		to   string
	}{{a1, "10.5.0.12"}, {a1, "10.5.0.11"}, {a1, "10.5.0.22"}, {b1, "10.5.0.2"}, {u1, "10.5.0.2"}, {u1, "10.5.0.11"}} {
		if got, _ := c.from.Ping(c.to, 2); got != 0 {
			t.Errorf("%s reached %s across VLANs (%d replies)", c.from.Name, c.to, got)
		}
	}
	out, err := d1.Adm("show-vnic", "-p", "-o", "link,vid", "a1")
	must(t, err)
	if out != "a1:100\n" {
		t.Errorf("show-vnic a1: %q, want a1:100", out)
	}
}
