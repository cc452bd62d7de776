package integration

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"overlaynet/bench"
	"overlaynet/netlab"
)

// TestRestartBenchForeignVNIC: `overlaybench restart` (bench.Restart)
// completes, a few rounds, while another overlayd's persistent VNIC of
// the same name as the bench's (vnic1) lies in a network namespace that
// a restarting overlayd looks through before the bench's own. That is
// what a second lab on the same machine leaves around, running or
// aborted: a restarted overlayd must take over the VNIC it made, never
// one another daemon made. Both kinds are tried: a TAP another overlayd
// still holds, and one left by an overlayd killed with -9.
func TestRestartBenchForeignVNIC(t *testing.T) {
	need(t, "ping")
	for _, c := range []struct {
		name string
		kill bool
	}{{"held by a running overlayd", false}, {"left by a killed overlayd", true}} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			foreign := foreignVNIC(t, "vnic1", c.kill)
			before := linkDetails(t, foreign, "vnic1")
			r, err := bench.Restart(bench.RestartOptions{Rounds: 3, Bin: binDir(t), Log: testLog{t}})
			if err != nil {
				t.Fatalf("overlaybench restart: %v", err)
			}
			if r.Rounds != 3 || r.Max <= 0 {
				t.Errorf("restart bench: %+v, want 3 timed rounds", r)
			}
			// The other daemon's VNIC is as it was: still there, with its
			// alias, and never attached to (attaching sets vnet_hdr).
			if after := linkDetails(t, foreign, "vnic1"); after != before {
				t.Errorf("the foreign VNIC changed during the bench:\nbefore: %s\nafter:  %s", before, after)
			}
		})
	}
}

// foreignVNIC makes, with an overlayd of a lab of its own, a persistent
// VNIC named name and moves it into a namespace named to sort before
// every lab namespace this process makes (overlayd looks through
// /run/netns in name order); with kill, that overlayd is then killed
// with -9. It returns the namespace.
func foreignVNIC(t *testing.T, name string, kill bool) string {
	t.Helper()
	l := newLab(t)
	h1, _, err := l.TwoHosts()
	must(t, err)
	d, err := l.StartDaemon(h1, "--offloads=false")
	must(t, err)
	must(t, d.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP))
	_, err = d.Adm("create-vnic", "-l", "ov0", name)
	must(t, err)
	// The lab prefixes are nl<pid>-<n>- with n from 1: "0" sorts first.
	ns := fmt.Sprintf("nl%d-0-foreign", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	_, err = h1.IP("link", "set", name, "netns", ns)
	must(t, err)
	if kill {
		d.Kill()
	}
	return ns
}

// linkDetails returns `ip -d link show` of link in namespace ns, without
// the counters that change by themselves.
func linkDetails(t *testing.T, ns, link string) string {
	t.Helper()
	out, err := exec.Command("ip", "-n", ns, "-d", "-o", "link", "show", link).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s link show %s: %v: %s", ns, link, err, out)
	}
	s := strings.TrimSpace(string(out))
	if !strings.Contains(s, "persist on") || !strings.Contains(s, "alias overlayd vnic "+link) {
		t.Fatalf("%s in %s is not a persistent overlayd VNIC: %s", link, ns, s)
	}
	return s
}

// testLog writes the bench's progress lines to the test log.
type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestRestartTakesOverUntaggedVNIC: a persistent VNIC made by an overlayd
// older than the owner tag (its alias is "overlayd vnic NAME" alone) is
// still taken over after the upgrade, in the guest it was moved to, and
// gets the tag of the state directory; a tagged VNIC is tagged with that
// identity. Another untagged vnic1 with another MAC, left by a killed
// overlayd in a namespace looked through first, is left alone: only the
// VNIC's saved MAC makes an untagged TAP ours.
func TestRestartTakesOverUntaggedVNIC(t *testing.T) {
	need(t, "ping")
	_, d1, _, g1, _ := twoHostsDirect(t)
	id, err := os.ReadFile(d1.StateDir() + "/id")
	must(t, err)
	want := "overlayd vnic vnic1 of " + strings.TrimSpace(string(id))
	alias := func() string {
		t.Helper()
		out, err := g1.IP("-o", "link", "show", "vnic1")
		must(t, err)
		_, a, _ := strings.Cut(strings.TrimSpace(out), "alias ")
		return a
	}
	if a := alias(); a != want {
		t.Fatalf("vnic1's alias is %q, want %q", a, want)
	}
	d1.Kill()
	_, err = g1.IP("link", "set", "vnic1", "alias", "overlayd vnic vnic1")
	must(t, err)
	// Someone else's untagged vnic1, not held by any process.
	foreign := foreignVNIC(t, "vnic1", true)
	const foreignMAC = "02:08:20:ee:ee:02"
	for _, args := range [][]string{{"alias", "overlayd vnic vnic1"}, {"address", foreignMAC}} {
		if out, err := exec.Command("ip", append([]string{"-n", foreign, "link", "set", "vnic1"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip -n %s link set vnic1 %v: %v: %s", foreign, args, err, out)
		}
	}
	before := linkDetails(t, foreign, "vnic1")
	if !strings.Contains(before, foreignMAC) || !strings.HasSuffix(before, "alias overlayd vnic vnic1") {
		t.Fatalf("the foreign vnic1 is not untagged with MAC %s: %s", foreignMAC, before)
	}
	d1, err = d1.Restart()
	must(t, err)
	if out, _ := d1.Adm("show-vnic", "-p", "-o", "link", "vnic1"); strings.TrimSpace(out) != "vnic1" {
		t.Fatalf("vnic1 was not restored: show-vnic says %q; log:\n%s", out, d1.Proc.Output())
	}
	if after := linkDetails(t, foreign, "vnic1"); after != before {
		t.Errorf("the foreign untagged vnic1 (another MAC) changed across the restart:\nbefore: %s\nafter:  %s", before, after)
	}
	must(t, g1.PingAll("10.9.0.2", 3))
	if a := alias(); a != want {
		t.Errorf("after taking it over, vnic1's alias is %q, want %q", a, want)
	}
	if _, err := d1.Host.IP("link", "show", "vnic1"); err == nil {
		t.Error("the restarted overlayd made a new vnic1 instead of taking over the guest's")
	}
}
