package integration

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// filesNet is a files-plugin overlay "ov0" over n hosts, one daemon each,
// all reading one map file.
type filesNet struct {
	l     *netlab.Lab
	hosts []*netlab.NS
	ds    []*netlab.Daemon
	path  string
	// entries is the map file's content, keyed by MAC.
	entries map[string]map[string]any
}

func newFilesNet(t *testing.T, n int, extra ...string) *filesNet {
	t.Helper()
	f := &filesNet{l: newLab(t), entries: map[string]map[string]any{}}
	var err error
	f.hosts, err = f.l.Hosts(n)
	must(t, err)
	f.path = filepath.Join(f.l.Dir, "overlay0.json")
	f.write(t)
	for i, h := range f.hosts {
		d, err := f.l.StartDaemon(h)
		must(t, err)
		must(t, d.FilesOverlay("ov0", 42, netlab.HostIP(i+1), f.path, extra...))
		f.ds = append(f.ds, d)
	}
	return f
}

// guestMAC is the MAC of the VNIC for guest number i.
func guestMAC(i int) string { return fmt.Sprintf("2:8:20:0:0:%x", i) }

// vnic creates a VNIC with guest i's MAC on host (0-based), moves it into
// a guest namespace with the given addresses, and lists it in the map at
// that host (the file is not rewritten).
func (f *filesNet) vnic(t *testing.T, host, i int, v4, v6 string) *netlab.NS {
	t.Helper()
	name := fmt.Sprintf("vn%d", i)
	_, err := f.ds[host].Adm("create-vnic", "-l", "ov0", "-m", guestMAC(i), name)
	must(t, err)
	addrs := []string{v4 + "/24"}
	if v6 != "" {
		addrs = append(addrs, v6+"/64")
	}
	g, err := f.ds[host].Guest(fmt.Sprintf("g%d-%d", i, host), name, addrs...)
	must(t, err)
	e := map[string]any{"ip": netlab.HostIP(host + 1), "port": 4789, "arp": v4}
	if v6 != "" {
		e["ndp"] = v6
	}
	f.entries[guestMAC(i)] = e
	return g
}

// publish writes the map and has every daemon reread it at once, rather
// than wait for each to notice the change.
func (f *filesNet) publish(t *testing.T) {
	t.Helper()
	f.write(t)
	for _, d := range f.ds {
		_, err := d.Adm("refresh-overlay", "ov0")
		must(t, err)
	}
}

// write replaces the map file atomically, as a configuration manager
// would.
func (f *filesNet) write(t *testing.T) {
	t.Helper()
	data, err := json.MarshalIndent(f.entries, "", "  ")
	must(t, err)
	writeFile(t, f.path, data)
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	must(t, os.WriteFile(tmp, data, 0o644))
	must(t, os.Rename(tmp, path))
}

// waitStatus waits until show-overlay -f of ov0 on d shows status and its
// details contain every word in want, and returns the details.
func waitStatus(t *testing.T, d *netlab.Daemon, status string, want ...string) string {
	t.Helper()
	return waitStatusFor(t, d, 10*time.Second, status, want...)
}

// waitStatusFor is waitStatus waiting up to timeout.
func waitStatusFor(t *testing.T, d *netlab.Daemon, timeout time.Duration, status string, want ...string) string {
	t.Helper()
	var got, details string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); {
		var err error
		got, err = d.Adm("show-overlay", "-f", "-p", "-o", "status", "ov0")
		must(t, err)
		details, err = d.Adm("show-overlay", "-f", "-p", "-o", "details", "ov0")
		must(t, err)
		ok := strings.TrimSpace(got) == status
		for _, w := range want {
			ok = ok && strings.Contains(details, w)
		}
		if ok {
			return details
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: overlay status %q (%q) after %v, want %s with %q", d.Host.Name, got, details, timeout, status, want)
	return ""
}

// TestFilesThreeHosts: three hosts, the files plugin, one VNIC each with
// an IPv4 and an IPv6 address; every pair pings over both from empty
// neighbour caches, answered by proxy ARP and NDP, and nothing broadcast
// or multicast is ever encapsulated onto the underlay.
func TestFilesThreeHosts(t *testing.T) {
	forEachDataPath(t, testFilesThreeHosts)
}

func testFilesThreeHosts(t *testing.T, dp string) {
	need(t, "ping", "tshark")
	f := newFilesNet(t, 3, "-p", "datapath="+dp)
	var guests []*netlab.NS
	for i := 1; i <= 3; i++ {
		guests = append(guests, f.vnic(t, i-1, i, fmt.Sprintf("10.8.0.%d", i), fmt.Sprintf("fd00:8::%d", i)))
	}
	f.publish(t)

	stop := captureUnderlay(t, f.l, f.ds[0].Host)
	for i, g := range guests {
		_, err := g.IP("neigh", "flush", "all")
		must(t, err)
		for j := range guests {
			if i == j {
				continue
			}
			must(t, g.PingAll(fmt.Sprintf("10.8.0.%d", j+1), 2))
			must(t, g.PingAll(fmt.Sprintf("fd00:8::%d", j+1), 2))
		}
	}
	pkts := stop()
	if pkts.total == 0 {
		t.Fatal("the capture saw no VXLAN packet")
	}
	if len(pkts.group) > 0 {
		t.Errorf("%d of %d encapsulated frames had a broadcast or multicast destination, e.g. %s",
			len(pkts.group), pkts.total, pkts.group[0])
	}
	for _, d := range f.ds {
		if dp == "kernel" {
			break // the kernel answers from the neighbour entries overlayd installed
		}
		arp, _ := d.Stat("ov0", "proxy-arp")
		ndp, _ := d.Stat("ov0", "proxy-ndp")
		if arp == 0 || ndp == 0 {
			t.Errorf("%s answered %d ARP and %d NDP requests by proxy, want some of each", d.Host.Name, arp, ndp)
		}
	}
	out, err := f.ds[0].Adm("show-overlay", "-t", "-p", "-o", "target,destination", "ov0")
	must(t, err)
	for _, want := range []string{`2\:8\:20\:0\:0\:2:198.18.0.2\:4789`, `2\:8\:20\:0\:0\:3:198.18.0.3\:4789`} {
		if !strings.Contains(out, want) {
			t.Errorf("show-overlay -t lacks %s:\n%s", want, out)
		}
	}
}

// VNIs of captureUnderlay's probes: nobody's.
const probeStart, probeEnd = 998, 999

// capture is what captureUnderlay saw.
type capture struct {
	total int
	group []string // inner destinations that were group addresses
}

// captureUnderlay captures VXLAN on the underlay switch until the
// returned function is called. tshark's "Capturing on" comes before its
// filter is in place, and frames reach its file late: so a probe (VXLAN
// for a VNI nobody uses, sent from host from to host 2) is sent until the
// file shows it, once before the capture counts as started and once
// before it is stopped. Probes are not counted.
func captureUnderlay(t *testing.T, l *netlab.Lab, from *netlab.NS) func() capture {
	t.Helper()
	pcap := filepath.Join(l.Dir, "underlay.pcap")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := l.Switch.Command(ctx, "tshark", "-q", "-i", "br0", "-f", "udp port 4789", "-w", pcap)
	errPipe, err := cmd.StderrPipe()
	must(t, err)
	must(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
		}
	}()
	probe := func(vni uint32) {
		t.Helper()
		frame := make([]byte, 8+60)
		binary.BigEndian.PutUint32(frame[0:], 0x08000000)
		binary.BigEndian.PutUint32(frame[4:], vni<<8)
		copy(frame[8:], []byte{2, 0, 0, 0, 0x99, 0x99, 2, 0, 0, 0, 0x99, 0x98, 0x08, 0x00}) // unicast
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			must(t, from.Do(func() error {
				c, err := net.Dial("udp4", netlab.HostIP(2)+":4789")
				if err != nil {
					return err
				}
				defer c.Close()
				_, err = c.Write(frame)
				return err
			}))
			out, _ := l.Switch.Exec("tshark", "-r", pcap, "-Y", fmt.Sprintf("vxlan.vni == %d", vni), "-T", "fields", "-e", "frame.number")
			if strings.TrimSpace(out) != "" {
				return
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("tshark on the underlay did not capture a probe for VNI %d in 10 s", vni)
			}
		}
	}
	probe(probeStart)
	return func() capture {
		probe(probeEnd)
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		cancel()
		out, err := l.Switch.Exec("tshark", "-r", pcap, "-Y", fmt.Sprintf("!(vxlan.vni in {%d, %d})", probeStart, probeEnd),
			"-T", "fields", "-e", "eth.dst.ig", "-e", "eth.dst")
		must(t, err)
		var c capture
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			c.total++
			ig, dsts, _ := strings.Cut(line, "\t")
			igs := strings.Split(ig, ",")
			if len(igs) < 2 {
				t.Fatalf("no inner Ethernet header in %q", line)
			}
			if inner := igs[len(igs)-1]; inner == "1" || inner == "True" {
				c.group = append(c.group, dsts)
			}
		}
		return c
	}
}
