package integration

import (
	"fmt"
	"strings"
	"testing"

	"overlaynet/netlab"
)

// TestMulticastInterop: three hosts on one underlay switch. overlayd on
// hosts 1 and 2 runs a multicast overlay (-s multicast), and host 3 has
// the Linux kernel's vxlan driver in group mode on the same group, VNI and
// port. Guests and host 3 ping each other both ways from empty ARP caches:
// the ARP broadcasts cross by the group, the replies by what each side
// learned. IPv4 and IPv6 underlays and groups, on both data paths; then
// overlayd's target table shows what it learned, and the group.
func TestMulticastInterop(t *testing.T) {
	need(t, "ping")
	for _, fam := range []struct {
		name, group string
		addr        func(i int) string
	}{
		{"ipv4", "239.1.1.1", netlab.HostIP},
		{"ipv6", "ff05::1:3", func(i int) string { return fmt.Sprintf("fd00::%d", i) }},
	} {
		t.Run(fam.name, func(t *testing.T) {
			forEachDataPath(t, func(t *testing.T, dp string) {
				if dp == "kernel" || fam.name == "ipv6" {
					mainPassOnly(t)
				}
				l := newLab(t)
				hs, err := l.Hosts(3)
				must(t, err)
				if fam.name == "ipv6" {
					for i, h := range hs {
						_, err := h.IP("addr", "add", fam.addr(i+1)+"/64", "dev", "ul0", "nodad")
						must(t, err)
					}
				}
				var guests []*netlab.NS
				var ds []*netlab.Daemon
				for i, h := range hs[:2] {
					d, err := l.StartDaemon(h)
					must(t, err)
					ds = append(ds, d)
					_, err = d.Adm("create-overlay", "-e", "vxlan", "-s", "multicast", "-v", "42",
						"-p", "vxlan/listen_ip="+fam.addr(i+1), "-p", "multicast/dest_ip="+fam.group, "-p", "datapath="+dp, "ov0")
					must(t, err)
					_, err = d.Adm("create-vnic", "-l", "ov0", "vnic0")
					must(t, err)
					g, err := d.Guest(fmt.Sprintf("g%d", i+1), "vnic0", fmt.Sprintf("10.9.0.%d/24", i+1))
					must(t, err)
					guests = append(guests, g)
					t.Cleanup(func() {
						if t.Failed() {
							out, _ := d.Adm("show-overlay", "-t", "ov0")
							t.Logf("host %d's target table:\n%s", i+1, out)
						}
					})
				}
				h3 := hs[2]
				for _, args := range [][]string{
					{"link", "add", "vx0", "type", "vxlan", "id", "42", "group", fam.group, "dev", "ul0",
						"dstport", "4789", "local", fam.addr(3)},
					{"link", "set", "vx0", "mtu", "1400"},
					{"addr", "add", "10.9.0.3/24", "dev", "vx0"},
					{"link", "set", "vx0", "up"},
				} {
					_, err := h3.IP(args...)
					must(t, err)
				}

				for _, p := range []struct {
					from *netlab.NS
					to   string
				}{{guests[0], "10.9.0.2"}, {guests[0], "10.9.0.3"}, {h3, "10.9.0.2"}, {guests[1], "10.9.0.1"}, {h3, "10.9.0.1"}} {
					if err := p.from.PingAll(p.to, 3); err != nil {
						t.Errorf("%s to %s: %v", p.from.Name, p.to, err)
					}
				}
				out, err := ds[0].Adm("show-overlay", "-t", "-p", "-o", "target,destination", "ov0")
				must(t, err)
				if !strings.Contains(out, strings.ReplaceAll(fam.addr(3), ":", `\:`)) || !strings.Contains(out, strings.ReplaceAll(fam.group, ":", `\:`)) {
					t.Errorf("host 1's target table shows neither host 3 learned nor the group:\n%s", out)
				}
			})
		})
	}
}
