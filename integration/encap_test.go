package integration

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"overlaynet/netlab"
)

// TestTsharkDecodesGeneve: guests ping across a Geneve overlay on the
// userspace data path, and tshark's Geneve dissector reads what overlayd
// sends: version 0, no options, neither O nor C, protocol 0x6558, the
// VNI, the guests' ICMP inside, and a source port from the flow-entropy
// range. The kernel data path refuses Geneve, naming the kernel device
// this kernel lacks and pointing at the userspace path.
func TestTsharkDecodesGeneve(t *testing.T) {
	need(t, "ping", "tshark")
	l, _, d2, g1, _ := twoHostsDirect(t, "-e", "geneve", "-p", "datapath=userspace")
	must(t, g1.PingAll("10.9.0.2", 3))
	rows := tsharkFields(t, d2.Host, filepath.Join(l.Dir, "geneve.pcap"), "udp port 6081", g1,
		"geneve.version", "geneve.flags.oam", "geneve.flags.critical", "geneve.proto_type",
		"geneve.vni", "geneve.options", "ip.src", "icmp.type", "udp.srcport", "_ws.malformed")
	for _, f := range rows {
		line := strings.Join(f, "|")
		if f[0] != "0" || !isFalse(f[1]) || !isFalse(f[2]) || f[3] != "0x6558" || (f[4] != "42" && f[4] != "0x00002a") || f[5] != "" {
			t.Errorf("Geneve header: version %s O %s C %s protocol %s VNI %s options %q; want 0, unset, unset, 0x6558, 42, none: %q",
				f[0], f[1], f[2], f[3], f[4], f[5], line)
		}
		if !strings.Contains(f[6], "10.9.0.") || (f[7] != "8" && f[7] != "0") {
			t.Errorf("no inner ICMP echo from the guests: %q", line)
		}
		if p, _ := strconv.Atoi(strings.Split(f[8], ",")[0]); p < 49152 {
			t.Errorf("UDP source port %s, want one of the flow-entropy range 49152-65535: %q", f[8], line)
		}
		if f[9] != "" {
			t.Errorf("tshark flags the packet malformed: %q", line)
		}
	}

	// The kernel data path: refused, with the reason and the way out.
	_, err := d2.Adm("create-overlay", "-e", "geneve", "-s", "direct", "-v", "43", "-p", "geneve/listen_ip="+netlab.Host2IP+",geneve/listen_port=6082",
		"-p", "direct/dest_ip="+netlab.Host1IP+",direct/dest_port=6081", "-p", "datapath=kernel", "ovk")
	if err == nil || !strings.Contains(err.Error(), "geneve device") || !strings.Contains(err.Error(), "datapath=userspace") {
		t.Errorf("a Geneve overlay on the kernel data path: %v, want a refusal naming the geneve device and the userspace path", err)
	}
}

// isFalse is tshark's rendering of an unset flag.
func isFalse(s string) bool { return s == "False" || s == "0" }

// TestTsharkDecodesNVGRE: guests ping across an NVGRE overlay (a direct
// destination with no port) on the userspace data path, and tshark's GRE
// dissector reads what overlayd sends: the key bit alone, protocol
// 0x6558, the key VSID << 8 | FlowID, and the guests' ICMP inside. The
// kernel data path refuses NVGRE, naming the gretap device this kernel
// lacks.
func TestTsharkDecodesNVGRE(t *testing.T) {
	need(t, "ping", "tshark")
	l, _, d2, g1, _ := twoHostsDirect(t, "-e", "nvgre", "-p", "datapath=userspace")
	must(t, g1.PingAll("10.9.0.2", 3))
	rows := tsharkFields(t, d2.Host, filepath.Join(l.Dir, "nvgre.pcap"), "ip proto 47", g1,
		"gre.flags_and_version", "gre.proto", "gre.key", "ip.src", "icmp.type", "_ws.malformed")
	for _, f := range rows {
		line := strings.Join(f, "|")
		key, _ := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 32)
		if f[0] != "0x2000" || f[1] != "0x6558" || key>>8 != 42 {
			t.Errorf("GRE flags %s protocol %s key %s; want 0x2000 (key only), 0x6558, VSID 42 << 8: %q", f[0], f[1], f[2], line)
		}
		if !strings.Contains(f[3], "10.9.0.") || (f[4] != "8" && f[4] != "0") {
			t.Errorf("no inner ICMP echo from the guests: %q", line)
		}
		if f[5] != "" {
			t.Errorf("tshark flags the packet malformed: %q", line)
		}
	}

	_, err := d2.Adm("create-overlay", "-e", "nvgre", "-s", "direct", "-v", "43", "-p", "nvgre/listen_ip="+netlab.Host2IP,
		"-p", "direct/dest_ip="+netlab.Host1IP, "-p", "datapath=kernel", "ovk")
	if err == nil || !strings.Contains(err.Error(), "gretap device") || !strings.Contains(err.Error(), "datapath=userspace") {
		t.Errorf("an NVGRE overlay on the kernel data path: %v, want a refusal naming the gretap device and the userspace path", err)
	}
}
