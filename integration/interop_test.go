package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// TestKernelVXLANInterop: overlayd on host 1, the Linux kernel's vxlan
// driver on host 2, same VNI and port; ping works both ways.
func TestKernelVXLANInterop(t *testing.T) {
	forEachDataPath(t, testKernelVXLANInterop)
}

func testKernelVXLANInterop(t *testing.T, dp string) {
	need(t, "ping")
	l := newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	d1, err := l.StartDaemon(h1)
	must(t, err)
	must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP, "-p", "datapath="+dp))
	_, err = d1.Adm("create-vnic", "-l", "ov0", "vnic1")
	must(t, err)
	g1, err := d1.Guest("g1", "vnic1", "10.9.0.1/24")
	must(t, err)
	for _, args := range [][]string{
		{"link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", "4789",
			"remote", netlab.Host1IP, "local", netlab.Host2IP, "dev", "ul0"},
		{"link", "set", "vx0", "mtu", "1400"},
		{"addr", "add", "10.9.0.2/24", "dev", "vx0"},
		{"link", "set", "vx0", "up"},
	} {
		_, err := h2.IP(args...)
		must(t, err)
	}
	must(t, g1.PingAll("10.9.0.2", 5))
	must(t, h2.PingAll("10.9.0.1", 5))
}

// TestTsharkDecodesVXLAN: packets overlayd puts on the underlay decode in
// tshark as VXLAN (flags with the I bit, the VNI, an inner Ethernet frame
// carrying the guests' ICMP) with no malformed-packet warnings.
func TestTsharkDecodesVXLAN(t *testing.T) {
	need(t, "ping", "tshark")
	l, _, d2, g1, _ := twoHostsDirect(t)
	must(t, g1.PingAll("10.9.0.2", 1)) // ARP settled: the capture sees ICMP
	pcap := filepath.Join(l.Dir, "ul0.pcap")
	rows := tsharkFields(t, d2.Host, pcap, "udp port 4789", g1,
		"vxlan.flags", "vxlan.flag_i", "vxlan.vni", "eth.type", "ip.src", "icmp.type", "_ws.malformed")
	for _, f := range rows {
		line := strings.Join(f, "|")
		flags, vniFlag, vni, etypes, srcs, icmp, malformed := f[0], f[1], f[2], f[3], f[4], f[5], f[6]
		if flags != "0x08000000" && flags != "0x0800" {
			t.Errorf("VXLAN flags %s, want the I bit only (0x0800): %q", flags, line)
		}
		if vniFlag != "True" && vniFlag != "1" {
			t.Errorf("VNI flag not set: %q", line)
		}
		if vni != "42" {
			t.Errorf("VNI %s, want 42: %q", vni, line)
		}
		// Outer and inner Ethernet, outer and inner IPv4.
		if etypes != "0x0800,0x0800" {
			t.Errorf("ethertypes %s, want outer and inner IPv4: %q", etypes, line)
		}
		if !strings.Contains(srcs, "10.9.0.") {
			t.Errorf("no inner IPv4 from the guests: %q", line)
		}
		if icmp != "8" && icmp != "0" {
			t.Errorf("inner ICMP type %q, want echo request or reply: %q", icmp, line)
		}
		if malformed != "" {
			t.Errorf("tshark flags the packet malformed: %q", line)
		}
	}
	if t.Failed() {
		full, _ := d2.Host.Exec("tshark", "-r", pcap, "-V", "-c", "1")
		fmt.Fprintln(os.Stderr, full)
	}
}

// tsharkFields captures six packets matching filter on host's ul0 into
// pcap while guest pings 10.9.0.2, and returns the fields tshark decodes
// of each, one row per packet.
func tsharkFields(t *testing.T, host *netlab.NS, pcap, filter string, guest *netlab.NS, fields ...string) [][]string {
	t.Helper()
	tsharkCapture(t, host, pcap, filter, 6, func() error { _, err := guest.Ping("10.9.0.2", 2); return err })
	args := []string{"tshark", "-r", pcap, "-T", "fields", "-E", "separator=|"}
	for _, f := range fields {
		args = append(args, "-e", f)
	}
	out, err := host.Exec(args...)
	must(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 6 {
		t.Fatalf("captured %d packets, want 6:\n%s", len(lines), out)
	}
	var rows [][]string
	for _, line := range lines {
		f := strings.Split(line, "|")
		if len(f) != len(fields) {
			t.Fatalf("unexpected tshark line %q", line)
		}
		rows = append(rows, f)
	}
	return rows
}

// tsharkCapture captures n packets matching filter on host's ul0 into
// pcap, running traffic until tshark has them (its "Capturing on" comes
// before its filter is in place: rather than guess how long that takes,
// traffic runs until tshark has its packets and exits).
func tsharkCapture(t *testing.T, host *netlab.NS, pcap, filter string, n int, traffic func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	capture := host.Command(ctx, "tshark", "-q", "-i", "ul0", "-f", filter, "-c", fmt.Sprint(n), "-w", pcap)
	errPipe, err := capture.StderrPipe()
	must(t, err)
	must(t, capture.Start())
	ready := make(chan struct{})
	stderrDone := make(chan string, 1)
	go func() {
		var all strings.Builder
		started := false
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			all.WriteString(sc.Text() + "\n")
			if !started && strings.Contains(sc.Text(), "Capturing on") {
				started = true
				close(ready)
			}
		}
		stderrDone <- all.String()
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		t.Fatal("tshark did not start capturing")
	}
	var stderr string
	for deadline := time.Now().Add(20 * time.Second); stderr == ""; {
		select {
		case stderr = <-stderrDone:
			continue
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("tshark did not capture %d packets (%s) in 20 s", n, filter)
		}
		if err := traffic(); err != nil {
			t.Fatal(err)
		}
	}
	if err := capture.Wait(); err != nil {
		t.Fatalf("tshark capture: %v: %s", err, stderr)
	}
}
