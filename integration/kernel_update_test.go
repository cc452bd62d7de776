package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/netlab"
)

var mtuRE = regexp.MustCompile(`\bmtu (\d+)\b`)

// guestMTU is the MTU of ifname in ns.
func guestMTU(t *testing.T, ns *netlab.NS, ifname string) int {
	t.Helper()
	out, err := ns.IP("-o", "link", "show", ifname)
	must(t, err)
	m := mtuRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no mtu in %q", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestKernelUpdateDuringStorm: on a files overlay on the kernel data
// path, the vnetid and the MTU change (set-linkprop, on both hosts) while
// a guest sends to thousands of unknown MACs, each a lookup. overlayd
// survives, the guests' VNICs, moved into their own namespaces, take the
// new MTU, and the guests talk again over the new vnetid. The daemons
// keep their privileges: entering a guest's namespace to set its end's
// MTU needs CAP_SYS_ADMIN (README, kernel path). The data path's own
// concurrency is checked under -race by datapath/kernel's
// TestUpdateDuringLookupStorm, which drives it from the test process.
func TestKernelUpdateDuringStorm(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	f := &filesNet{l: newLab(t), entries: map[string]map[string]any{}}
	var err error
	f.hosts, err = f.l.Hosts(2)
	must(t, err)
	f.path = filepath.Join(f.l.Dir, "overlay0.json")
	f.write(t)
	for i, h := range f.hosts {
		d, err := f.l.StartDaemon(h, "--keep-privileges")
		must(t, err)
		must(t, d.FilesOverlay("ov0", 42, netlab.HostIP(i+1), f.path, "-p", "datapath=kernel"))
		f.ds = append(f.ds, d)
	}
	g1 := f.vnic(t, 0, 1, "10.7.0.1", "")
	g2 := f.vnic(t, 1, 2, "10.7.0.2", "")
	f.publish(t)
	must(t, g1.PingAll("10.7.0.2", 3))

	src, err := ether.ParseMAC(guestMAC(1))
	must(t, err)
	storm := make(chan error, 1)
	go func() { storm <- g1.SendFrames("vn1", netlab.StormFrames(src, 20000), 4000) }() // 5 s

	for round, c := range []struct{ vnetid, mtu int }{{43, 1300}, {44, 1450}, {45, 1200}} {
		for _, d := range f.ds {
			_, err := d.Adm("set-linkprop", "-p", fmt.Sprintf("vnetid=%d,mtu=%d", c.vnetid, c.mtu), "ov0")
			must(t, err)
		}
		for i, g := range []*netlab.NS{g1, g2} {
			if m := guestMTU(t, g, fmt.Sprintf("vn%d", i+1)); m != c.mtu {
				t.Errorf("round %d: guest %d's VNIC has MTU %d, want the overlay's new %d", round, i+1, m, c.mtu)
			}
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if n, _ := g1.Ping("10.7.0.2", 1); n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no ping over vnetid %d within 10 s", round, c.vnetid)
			}
		}
		for i, d := range f.ds {
			if d.Proc.Exited() {
				t.Fatalf("round %d: overlayd on host %d exited: %s", round, i+1, d.Proc.Output())
			}
		}
	}
	must(t, <-storm)
	if n, err := f.ds[0].Stat("ov0", "lookups-started"); err != nil || n < 100 {
		out, _ := f.ds[0].Adm("show-overlay", "-s", "ov0")
		links, _ := f.ds[0].Host.IP("-s", "link")
		glinks, _ := g1.IP("-s", "link")
		t.Errorf("lookups-started %d (%v): the storm did not storm\n%s\n%s\n%s", n, err, out, links, glinks)
	}
	must(t, g1.PingAll("10.7.0.2", 3))
	must(t, g2.PingAll("10.7.0.1", 3))
}
