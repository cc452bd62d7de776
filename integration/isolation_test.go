package integration

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"overlaynet/netlab"
)

// TestIsolation: two overlays with different vnetids share one listen
// address on each host; traffic of one never reaches the other, and
// packets with an unknown VNI, a bad header or too few bytes are dropped
// and counted.
func TestIsolation(t *testing.T) {
	forEachDataPath(t, testIsolation)
}

func testIsolation(t *testing.T, dp string) {
	need(t, "ping")
	_, d1, d2 := twoDaemons(t)
	h1 := d1.Host
	var err error
	for _, ov := range []struct {
		name   string
		vnetid int
	}{{"ova", 100}, {"ovb", 200}} {
		must(t, d1.DirectOverlay(ov.name, ov.vnetid, netlab.Host1IP, netlab.Host2IP, "-p", "datapath="+dp))
		must(t, d2.DirectOverlay(ov.name, ov.vnetid, netlab.Host2IP, netlab.Host1IP, "-p", "datapath="+dp))
	}
	// One subnet on both overlays, so that only the VNI keeps them apart.
	type guest struct {
		d           *netlab.Daemon
		overlay     string
		vnic, short string
		addr        string
		ns          *netlab.NS
	}
	guests := []*guest{
		{d: d1, overlay: "ova", vnic: "va1", short: "ga1", addr: "10.7.0.1"},
		{d: d2, overlay: "ova", vnic: "va2", short: "ga2", addr: "10.7.0.2"},
		{d: d1, overlay: "ovb", vnic: "vb1", short: "gb1", addr: "10.7.0.11"},
		{d: d2, overlay: "ovb", vnic: "vb2", short: "gb2", addr: "10.7.0.12"},
	}
	for _, g := range guests {
		_, err := g.d.Adm("create-vnic", "-l", g.overlay, g.vnic)
		must(t, err)
		g.ns, err = g.d.Guest(g.short, g.vnic, g.addr+"/24")
		must(t, err)
	}
	ga1, gb1 := guests[0].ns, guests[2].ns

	// New kernel interfaces say a word or two as they come up (IPv6 on
	// the hosts' side, before overlayd turns it off): the count starts
	// once ovb has been quiet for two seconds, not after a guessed delay.
	// That chatter (MLD reports, router solicitations) comes up to about
	// a second apart, so a shorter silence does not mean it is over.
	quietFor := time.Duration(0)
	if dp == "kernel" {
		quietFor = 2 * time.Second
	}
	bDecap, err := d2.Stat("ovb", "decapsulated")
	must(t, err)
	for quiet, deadline := time.Now(), time.Now().Add(20*time.Second); time.Since(quiet) < quietFor; time.Sleep(50 * time.Millisecond) {
		n, err := d2.Stat("ovb", "decapsulated")
		must(t, err)
		if n != bDecap {
			bDecap, quiet = n, time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("ovb on host 2 kept receiving frames for 20 s before the test began (%d)", n)
		}
	}
	must(t, ga1.PingAll("10.7.0.2", 3))
	if got, _ := ga1.Ping("10.7.0.12", 3); got != 0 {
		t.Errorf("overlay ova reached a guest of overlay ovb (%d replies)", got)
	}
	if after, _ := d2.Stat("ovb", "decapsulated"); after != bDecap {
		t.Errorf("ovb on host 2 received %d frames of ova's traffic", after-bDecap)
	}
	must(t, gb1.PingAll("10.7.0.12", 3))
	if got, _ := gb1.Ping("10.7.0.2", 3); got != 0 {
		t.Errorf("overlay ovb reached a guest of overlay ova (%d replies)", got)
	}

	if dp == "kernel" {
		return // the kernel drops junk silently: nothing of ours to count it
	}
	// Hand-made packets from host 1 to host 2's listen address.
	before := map[string]uint64{}
	for _, c := range []string{"drop-unknown-vni", "drop-bad-header", "drop-short"} {
		before[c], err = d2.ListenerStat(c)
		must(t, err)
	}
	frame := make([]byte, 8+60)
	binary.BigEndian.PutUint32(frame[0:], 0x08000000)
	binary.BigEndian.PutUint32(frame[4:], 999<<8) // VNI 999: nobody's
	noIFlag := append([]byte{}, frame...)
	noIFlag[0] = 0
	binary.BigEndian.PutUint32(noIFlag[4:], 100<<8)
	must(t, h1.Do(func() error {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(netlab.Host2IP+":4789")))
		if err != nil {
			return err
		}
		defer c.Close()
		for _, p := range [][]byte{frame, noIFlag, {1, 2, 3}} {
			if _, err := c.Write(p); err != nil {
				return err
			}
		}
		return nil
	}))
	want := map[string]uint64{"drop-unknown-vni": 1, "drop-bad-header": 1, "drop-short": 1}
	for c, n := range want {
		var after uint64
		for i := 0; i < 100; i++ {
			if after, err = d2.ListenerStat(c); err == nil && after-before[c] >= n {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if after-before[c] != n {
			t.Errorf("%s rose by %d, want %d", c, after-before[c], n)
		}
	}
	// The overlays still work after the junk.
	must(t, ga1.PingAll("10.7.0.2", 1))
}
