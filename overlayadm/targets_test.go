package overlayadm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// filesOverlay creates overlay ov1 (vnetid 43) with the files plugin over
// a map file in a temporary directory and returns the file's path.
func (h *harness) filesOverlay() string {
	h.t.Helper()
	path := filepath.Join(h.t.TempDir(), "map.json")
	if err := os.WriteFile(path, []byte(`{"2:8:20:0:0:1": {"ip": "192.0.2.11", "port": 4789}}`), 0o644); err != nil {
		h.t.Fatal(err)
	}
	h.ok("create-overlay", "-e", "vxlan", "-s", "files", "-v", "43",
		"-p", "vxlan/listen_ip="+listenIP, "-p", "files/config="+path, "ov1")
	return path
}

func TestModifyOverlay(t *testing.T) {
	h := newHarness(t)
	h.populate()
	h.filesOverlay()
	h.ok("modify-overlay", "-s", "2:8:20:aa:bb:1=192.0.2.7:4789", "ov1")
	h.ok("modify-overlay", "--set", "02:08:20:aa:bb:02=192.0.2.8:4790", "ov1")
	h.ok("modify-overlay", "-s", "2:8:20:aa:bb:3=DROP", "ov1")
	got := h.ok("show-overlay", "-t", "-p", "-o", "target,destination", "ov1")
	// The map's own entry is installed up front.
	want := `2\:8\:20\:0\:0\:1:192.0.2.11\:4789
2\:8\:20\:aa\:bb\:1:192.0.2.7\:4789
2\:8\:20\:aa\:bb\:2:192.0.2.8\:4790
2\:8\:20\:aa\:bb\:3:drop
`
	if got != want {
		t.Errorf("show-overlay -t:\n%s\nwant:\n%s", got, want)
	}
	h.ok("modify-overlay", "-d", "2:8:20:aa:bb:1", "ov1")
	if got := h.ok("show-overlay", "-t", "-p", "-o", "target", "ov1"); strings.Contains(got, "aa:bb:1\n") {
		t.Errorf("-d left the entry: %q", got)
	}
	// Removing what is not there is an error, and so is a destination
	// that is not one; either names what is wrong.
	h.fails([]string{"overlay ov1 has no target entry for 2:8:20:aa:bb:1", "show-overlay -t ov1"}, "modify-overlay", "-d", "2:8:20:aa:bb:1", "ov1")
	h.fails([]string{`port "70000" is not a number from 1 to 65535`}, "modify-overlay", "-s", "2:8:20:aa:bb:7=198.18.1.7:70000", "ov1")
	h.fails([]string{`"198.18.1.700" is not an IP address`}, "modify-overlay", "-s", "2:8:20:aa:bb:7=198.18.1.700:4789", "ov1")
	h.ok("modify-overlay", "--flush", "ov1")
	if got := h.ok("show-overlay", "-t", "ov1"); strings.Join(strings.Fields(got), " ") != "LINK TARGET DESTINATION" {
		t.Errorf("table after -f: %q", got)
	}

	h.fails([]string{"ov0", "point-mode", "direct"}, "modify-overlay", "-f", "ov0")
	h.fails([]string{"nosuch"}, "modify-overlay", "-f", "nosuch")
	h.fails([]string{"2:8:20:zz:0:1", "MAC"}, "modify-overlay", "-d", "2:8:20:zz:0:1", "ov1")
	h.fails([]string{"invalid target", "<mac>=<ip>:<port>"}, "modify-overlay", "-s", "2:8:20:0:0:9", "ov1")
	h.fails([]string{"invalid destination", "192.0.2.7"}, "modify-overlay", "-s", "2:8:20:0:0:9=192.0.2.7", "ov1")
	h.fails([]string{"invalid destination", "2001:db8::7:4789"}, "modify-overlay", "-s", "2:8:20:0:0:9=2001:db8::7:4789", "ov1")
	h.fails([]string{"port"}, "modify-overlay", "-s", "2:8:20:0:0:9=192.0.2.7:0", "ov1")
	h.fails([]string{"multicast"}, "modify-overlay", "-s", "2:8:20:0:0:9=224.0.0.1:4789", "ov1")
	h.fails([]string{"IPv6", "IPv4"}, "modify-overlay", "-s", "2:8:20:0:0:9=[2001:db8::1]:4789", "ov1")
	h.usage([]string{"one of -d, -f and -s"}, "modify-overlay", "ov1")

	// IPv6 destinations, on an overlay that listens on IPv6.
	path := filepath.Join(t.TempDir(), "map6.json")
	os.WriteFile(path, []byte(`{}`), 0o644)
	h.ok("create-overlay", "-e", "vxlan", "-s", "files", "-v", "44",
		"-p", "vxlan/listen_ip=2001:db8::1", "-p", "files/config="+path, "ov6")
	h.ok("modify-overlay", "-s", "2:8:20:aa:bb:2=[2001:db8::7]:4790", "ov6")
	if got := h.ok("show-overlay", "-t", "-p", "-o", "destination", "ov6"); got != "[2001:db8::7]:4790\n" {
		t.Errorf("IPv6 destination shown as %q", got)
	}
	h.usage([]string{"only one of"}, "modify-overlay", "-f", "-d", "2:8:20:0:0:1", "ov1")
	h.usage([]string{"overlay"}, "modify-overlay", "-f")
}

func TestRefreshOverlay(t *testing.T) {
	h := newHarness(t)
	h.populate()
	path := h.filesOverlay()
	h.ok("refresh-overlay", "ov1")
	h.ok("refresh-overlay") // every overlay that can; direct has nothing to refresh
	h.fails([]string{"ov0", "direct", "no configuration to refresh"}, "refresh-overlay", "ov0")
	h.fails([]string{"nosuch"}, "refresh-overlay", "nosuch")

	if err := os.WriteFile(path, []byte("{\n  \"2:8:20:0:0:1\": {\"ip\": \"192.0.2.11\"}\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.fails([]string{path + ":2:19:", `"2:8:20:0:0:1"`, `missing "port"`}, "refresh-overlay", "ov1")
	status := h.ok("show-overlay", "-f", "-p", "-o", "status", "ov1")
	if status != "DEGRADED\n" {
		t.Errorf("status after a bad file: %q", status)
	}
	details := h.ok("show-overlay", "-f", "-p", "-o", "details", "ov1")
	if !strings.Contains(details, "previous map kept") || !strings.Contains(details, path) {
		t.Errorf("details: %q", details)
	}
	if err := os.WriteFile(path, []byte(`{}`), 0o644); err != nil {
		t.Fatal(err)
	}
	h.ok("refresh-overlay", "ov1")
	if status := h.ok("show-overlay", "-f", "-p", "-o", "status", "ov1"); status != "ONLINE\n" {
		t.Errorf("status after a good file: %q", status)
	}
}

func TestCreateFilesOverlayErrors(t *testing.T) {
	h := newHarness(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"2:8:20:0:0:1": {"ip": "192.0.2.11", "port": "4789"}}`), 0o644)
	base := []string{"create-overlay", "-e", "vxlan", "-s", "files", "-v", "43", "-p", "vxlan/listen_ip=" + listenIP}
	h.fails([]string{"files/config", "absolute"}, append(base, "-p", "files/config=map.json", "ov1")...)
	h.fails([]string{"files/config", "no such file"}, append(base, "-p", "files/config="+filepath.Join(dir, "none.json"), "ov1")...)
	h.fails([]string{bad + ":1:", `"port"`}, append(base, "-p", "files/config="+bad, "ov1")...)
	h.fails([]string{"missing required property files/config"}, append(base, "ov1")...)
	h.fails([]string{"direct/dest_ip", "direct", "files"}, append(base, "-p", "files/config=/x.json", "-p", "direct/dest_ip=192.0.2.2", "ov1")...)
}

// TestVNICMTUFollowsOverlay: a VNIC without its own mtu follows the
// overlay's; one with its own caps how low the overlay's may go.
func TestVNICMTUFollowsOverlay(t *testing.T) {
	h := newHarness(t)
	h.populate()
	h.ok("create-vnic", "-l", "ov0", "-p", "mtu=1300", "vnic1")
	h.ok("set-linkprop", "-p", "mtu=1350", "ov0")
	if got := h.ok("show-vnic", "-p", "-o", "link,mtu"); got != "vnic0:1350\nvnic1:1300\n" {
		t.Errorf("show-vnic after the overlay mtu changed: %q", got)
	}
	h.fails([]string{"vnic1", "mtu 1300", "1000"}, "set-linkprop", "-p", "mtu=1000", "ov0")
}
