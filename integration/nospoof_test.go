package integration

import (
	"strings"
	"testing"
	"time"
)

// TestNoSpoof, on each data path: a guest that changes its interface's MAC
// (sending from a MAC that is not its VNIC's) reaches nothing on the other
// host while its VNIC has protection=mac-nospoof (the default), and
// drop-spoofed counts its frames; an honest guest beside it keeps working.
// With protection=none (set-linkprop, live) its frames get through, and
// the setting survives a restart of overlayd.
func TestNoSpoof(t *testing.T) {
	need(t, "ping")
	forEachDataPath(t, func(t *testing.T, dp string) {
		_, d1, _, g1, g2 := twoHostsDirect(t, "-p", "datapath="+dp)
		_, err := d1.Adm("create-vnic", "-l", "ov0", "vnic3")
		must(t, err)
		g3, err := d1.Guest("g3", "vnic3", "10.9.0.3/24")
		must(t, err)
		must(t, g1.PingAll("10.9.0.2", 2))
		must(t, g3.PingAll("10.9.0.2", 2))
		if out, err := d1.Adm("show-vnic", "-p", "-o", "protection", "vnic1"); err != nil || out != "mac-nospoof\n" {
			t.Fatalf("default protection: %q, %v", out, err)
		}

		const spoofMAC = "02:08:20:ee:ee:01"
		_, err = g1.IP("link", "set", "vnic1", "address", spoofMAC)
		must(t, err)
		_, err = g2.IP("neigh", "flush", "all")
		must(t, err)
		// g2 learns the MAC of whoever asks it for its address: the
		// spoofed MAC there means a spoofed frame arrived.
		arrived := func() bool {
			out, _ := g2.IP("neigh", "show", "10.9.0.1")
			return strings.Contains(out, spoofMAC)
		}
		spoofed := func() uint64 {
			n, err := d1.Stat("ov0", "drop-spoofed")
			must(t, err)
			return n
		}
		before := spoofed()
		if got, _ := g1.Ping("10.9.0.2", 10); got != 0 {
			t.Errorf("the spoofing guest got %d of 10 pings answered", got)
		}
		if arrived() {
			t.Error("a frame from the spoofed MAC reached the other host's guest")
		}
		if after := spoofed(); after <= before {
			t.Errorf("drop-spoofed stayed at %d while the guest sent from %s", after, spoofMAC)
		}
		must(t, g3.PingAll("10.9.0.2", 3)) // the honest guest is unaffected

		// Off, live: the spoofed frames go through.
		_, err = d1.Adm("set-linkprop", "-p", "protection=none", "vnic1")
		must(t, err)
		if out, _ := d1.Adm("show-vnic", "-p", "-o", "protection", "vnic1"); out != "none\n" {
			t.Errorf("show-vnic after set-linkprop: %q", out)
		}
		counted := spoofed()
		deadline := time.Now().Add(10 * time.Second)
		for !arrived() {
			if time.Now().After(deadline) {
				t.Fatal("with protection=none, no frame from the spoofed MAC reached the other host within 10 s")
			}
			g1.Ping("10.9.0.2", 1)
		}
		if n := spoofed(); n != counted {
			t.Errorf("drop-spoofed rose from %d to %d with protection=none", counted, n)
		}

		// Persisted: a restarted overlayd keeps protection=none.
		d1.Kill()
		d1, err = d1.Restart()
		must(t, err)
		if out, _ := d1.Adm("show-vnic", "-p", "-o", "protection", "vnic1"); out != "none\n" {
			t.Errorf("show-vnic after a restart: %q, want none", out)
		}
		must(t, g3.PingAll("10.9.0.2", 3))

		// On again: dropped again.
		_, err = d1.Adm("set-linkprop", "-p", "protection=mac-nospoof", "vnic1")
		must(t, err)
		_, err = g2.IP("neigh", "flush", "all")
		must(t, err)
		before = spoofed()
		if got, _ := g1.Ping("10.9.0.2", 10); got != 0 {
			t.Errorf("after protection=mac-nospoof again the spoofing guest got %d of 10 pings answered", got)
		}
		if arrived() {
			t.Error("after protection=mac-nospoof again a spoofed frame reached the other host")
		}
		if spoofed() <= before {
			t.Error("after protection=mac-nospoof again drop-spoofed did not rise")
		}
	})
}
