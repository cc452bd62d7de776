package integration

import (
	"strings"
	"testing"

	"overlaynet/netlab"
)

// TestUnderlayNetNS: overlayd runs in a namespace of its own on host 1,
// with its overlay's underlay in the sibling namespace that holds the
// host's underlay address (underlay_netns, entered at startup with
// --underlay-netns); guests on both hosts ping each other, on both data
// paths. show-listener names the namespace; after a kill -9 and a
// restart without the flag the overlay comes back there (restored
// overlays' namespaces are entered before privileges drop); a namespace
// not entered at startup is refused once privileges are dropped, with
// the way out.
func TestUnderlayNetNS(t *testing.T) {
	need(t, "ping")
	forEachDataPath(t, func(t *testing.T, dp string) {
		l := newLab(t)
		h1, h2, err := l.TwoHosts()
		must(t, err)
		o1, err := l.Namespace("o1") // overlayd's own, beside h1's underlay
		must(t, err)
		d1, err := l.StartDaemon(o1, "--underlay-netns", h1.Name)
		must(t, err)
		d2, err := l.StartDaemon(h2)
		must(t, err)
		must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP, "-p", "datapath="+dp, "-p", "underlay_netns="+h1.Name))
		must(t, d2.DirectOverlay("ov0", 42, netlab.Host2IP, netlab.Host1IP, "-p", "datapath="+dp))
		for _, d := range []*netlab.Daemon{d1, d2} {
			_, err := d.Adm("create-vnic", "-l", "ov0", "vnic0")
			must(t, err)
		}
		g1, err := d1.Guest("g1", "vnic0", "10.9.0.1/24")
		must(t, err)
		g2, err := d2.Guest("g2", "vnic0", "10.9.0.2/24")
		must(t, err)
		if err := g1.PingAll("10.9.0.2", 3); err != nil {
			t.Errorf("guest of the overlayd whose underlay is in %s to host 2's: %v", h1.Name, err)
		}
		if err := g2.PingAll("10.9.0.1", 3); err != nil {
			t.Errorf("host 2's guest back: %v", err)
		}
		out, err := d1.Adm("show-listener", "-p", "-o", "listen,netns")
		must(t, err)
		if !strings.Contains(out, `198.18.0.1\:4789:/run/netns/`+h1.Name) {
			t.Errorf("show-listener does not name the underlay's namespace:\n%s", out)
		}

		d1.Kill()
		d1, err = d1.Restart()
		must(t, err)
		if err := g1.PingAll("10.9.0.2", 3); err != nil {
			t.Errorf("after a restart without --underlay-netns: %v", err)
		}

		other, err := l.Namespace("other")
		must(t, err)
		_, err = d1.Adm("create-overlay", "-e", "vxlan", "-s", "direct", "-v", "43", "-p", "vxlan/listen_ip=127.0.0.1,vxlan/listen_port=4800",
			"-p", "direct/dest_ip=127.0.0.2,direct/dest_port=4800", "-p", "datapath="+dp, "-p", "underlay_netns="+other.Name, "ov1")
		if err == nil || !strings.Contains(err.Error(), "--underlay-netns "+other.Name) {
			t.Errorf("an underlay namespace not entered at startup: %v, want a refusal naming --underlay-netns", err)
		}
	})
}
