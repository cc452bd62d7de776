package integration

import (
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// TestKernelPathDirect: a direct overlay on the kernel data path carries
// the guests' traffic, and deleting it removes every kernel object it made.
func TestKernelPathDirect(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	_, d1, _, g1, g2 := twoHostsDirect(t, "-p", "datapath=kernel")
	must(t, g1.PingAll("10.9.0.2", 3))
	must(t, g2.PingAll("10.9.0.1", 3))
	out, err := d1.Adm("show-overlay", "-p", "-o", "property,value", "ov0")
	must(t, err)
	if !strings.Contains(out, "datapath:kernel") {
		t.Errorf("show-overlay does not show the data path:\n%s", out)
	}
	if n, _ := d1.Stat("ov0", "encapsulated"); n == 0 {
		t.Error("no kernel counters")
	}
	// Counters the kernel path does not keep read "--", not 0.
	out, err = d1.Adm("show-overlay", "-s", "ov0")
	must(t, err)
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) == 3 && (f[1] == "in-frames" || f[1] == "drop-mtu") && f[2] != "--" {
			t.Errorf("a counter the kernel path does not have: %q, want --", line)
		}
	}
	out, err = d1.Adm("show-overlay", "-s", "-p", "-o", "statistic,value", "ov0")
	must(t, err)
	if o := "\n" + out; !strings.Contains(o, "\nin-frames:\n") || strings.Contains(o, "\nencapsulated:\n") {
		t.Errorf("show-overlay -s -p: want in-frames empty and encapsulated counted:\n%s", out)
	}
	// A userspace overlay cannot share the kernel overlay's port.
	err = d1.DirectOverlay("ov1", 43, netlab.Host1IP, netlab.Host2IP)
	if err == nil || !strings.Contains(err.Error(), "held by overlay ov0 on the kernel data path") {
		t.Errorf("port conflict: %v", err)
	}
	// VLANs need what this kernel lacks.
	if _, err := d1.Adm("create-vnic", "-l", "ov0", "-v", "5", "vnic3"); err == nil || !strings.Contains(err.Error(), "datapath=userspace") {
		t.Errorf("VLAN on the kernel path: %v", err)
	}
	_, err = d1.Adm("delete-vnic", "vnic1")
	must(t, err)
	_, err = d1.Adm("delete-overlay", "ov0")
	must(t, err)
	links, err := d1.Host.IP("-o", "link", "show")
	must(t, err)
	if strings.Contains(links, "overlayd") {
		t.Errorf("objects left after delete-overlay:\n%s", links)
	}
}

// TestKernelPathRestart: kill -9 of overlayd while a ping runs over a
// kernel-path overlay loses no ping; after the restart show-overlay and
// show-vnic print what they printed before, no kernel object is
// duplicated or leaked, and temporary objects are gone.
func TestKernelPathRestart(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	_, d1, _, g1, _ := twoHostsDirect(t, "-p", "datapath=kernel")
	_, err := d1.Adm("create-vnic", "-t", "-l", "ov0", "vtmp")
	must(t, err)
	must(t, d1.DirectOverlay("ovt", 43, netlab.Host1IP, netlab.Host2IP, "-p", "datapath=kernel", "-t"))
	must(t, g1.PingAll("10.9.0.2", 2))
	show := func(d *netlab.Daemon) string {
		a, err := d.Adm("show-overlay", "ov0")
		must(t, err)
		b, err := d.Adm("show-vnic", "vnic1")
		must(t, err)
		return a + b
	}
	links := func() string {
		out, err := d1.Host.IP("-o", "link", "show")
		must(t, err)
		var ours []string
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "alias overlayd") {
				ours = append(ours, strings.Fields(l)[1])
			}
		}
		return strings.Join(ours, " ")
	}
	before := show(d1)

	ping, err := g1.StartPing("10.9.0.2", 40, 0.1) // 4 s
	must(t, err)
	defer ping.Stop()
	must(t, ping.WaitReplies(3, 5*time.Second))
	d1.Kill()
	// Not a readiness wait: the time overlayd stays dead, during which
	// the kernel objects it left must go on forwarding on their own.
	time.Sleep(time.Second)
	if !ping.Running() {
		t.Fatal("the pings ended before overlayd was restarted")
	}
	d1, err = d1.Restart()
	must(t, err)
	if got, out, err := ping.Wait(); err != nil || got != 40 {
		t.Errorf("%d of 40 pings answered across kill -9 and restart (%v):\n%s", got, err, out)
	}
	if after := show(d1); after != before {
		t.Errorf("after the restart:\n%s\nbefore:\n%s", after, before)
	}
	if l := links(); strings.Count(l, "ovx") != 1 || strings.Count(l, "ovb") != 1 || strings.Count(l, "ovp") != 1 {
		t.Errorf("kernel objects after the restart: %s (want one vxlan, one bridge, one VNIC port)", l)
	}
	if _, err := d1.Adm("show-overlay", "ovt"); err == nil {
		t.Error("the temporary overlay came back")
	}
	must(t, g1.PingAll("10.9.0.2", 2))
}

// TestDataPathInterop: a kernel-path host and a userspace-path host on
// the same overlay ping each other both ways.
func TestDataPathInterop(t *testing.T) {
	need(t, "ping")
	_, d1, d2 := twoDaemons(t)
	must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP, "-p", "datapath=kernel"))
	must(t, d2.DirectOverlay("ov0", 42, netlab.Host2IP, netlab.Host1IP, "-p", "datapath=userspace"))
	_, err := d1.Adm("create-vnic", "-l", "ov0", "vnic1")
	must(t, err)
	_, err = d2.Adm("create-vnic", "-l", "ov0", "vnic2")
	must(t, err)
	g1, err := d1.Guest("g1", "vnic1", "10.9.0.1/24", "fd00:9::1/64")
	must(t, err)
	g2, err := d2.Guest("g2", "vnic2", "10.9.0.2/24", "fd00:9::2/64")
	must(t, err)
	must(t, g1.PingAll("10.9.0.2", 3))
	must(t, g2.PingAll("10.9.0.1", 3))
	must(t, g1.PingAll("fd00:9::2", 3))
	must(t, g2.PingAll("fd00:9::1", 3))
}

// TestKernelPathTargets: on the kernel data path the target table is the
// vxlan forwarding database: the files map is installed up front, and
// modify-overlay sets, deletes and flushes entries.
func TestKernelPathTargets(t *testing.T) {
	mainPassOnly(t)
	f := newFilesNet(t, 1, "-p", "datapath=kernel")
	f.entries[guestMAC(2)] = map[string]any{"ip": "198.18.0.2", "port": 4789}
	f.publish(t)
	d := f.ds[0]
	show := func() string {
		out, err := d.Adm("show-overlay", "-t", "-p", "-o", "target,destination", "ov0")
		must(t, err)
		return out
	}
	if got := show(); got != `2\:8\:20\:0\:0\:2:198.18.0.2\:4789`+"\n" {
		t.Errorf("preloaded table: %q", got)
	}
	_, err := d.Adm("modify-overlay", "-s", "2:8:20:0:0:7=198.18.0.7:4790", "ov0") // another port than ours
	must(t, err)
	if got := show(); !strings.Contains(got, `2\:8\:20\:0\:0\:7:198.18.0.7\:4790`) {
		t.Errorf("after -s: %q", got)
	}
	_, err = d.Adm("modify-overlay", "-d", "2:8:20:0:0:2", "ov0")
	must(t, err)
	if got := show(); strings.Contains(got, `0\:2:`) {
		t.Errorf("after -d: %q", got)
	}
	// What is not there, or not a destination, is an error that says
	// what is wrong, and changes nothing.
	before := show()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "2:8:20:0:0:2"}, "overlay ov0 has no target entry for 2:8:20:0:0:2 (show-overlay -t ov0 lists them)"},
		{[]string{"-s", "2:8:20:0:0:8=198.18.0.7:70000"}, `port "70000" is not a number from 1 to 65535`},
		{[]string{"-s", "2:8:20:0:0:8=198.18.0.300:4789"}, `"198.18.0.300" is not an IP address`},
	} {
		_, err := d.Adm(append(append([]string{"modify-overlay"}, tc.args...), "ov0")...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("modify-overlay %q: %v, want an error saying %q", tc.args, err, tc.want)
		}
	}
	if got := show(); got != before {
		t.Errorf("failed modify-overlay changed the table: %q, was %q", got, before)
	}
	_, err = d.Adm("modify-overlay", "-f", "ov0")
	must(t, err)
	if got := show(); got != "" {
		t.Errorf("after -f: %q", got)
	}
}
