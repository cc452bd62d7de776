package overlayadm

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"overlaynet/admin"
	"overlaynet/datapath"
	"overlaynet/datapath/memory"
	"overlaynet/ether"
	"overlaynet/overlay"
	_ "overlaynet/plugins"
)

// failListen is the underlay address the memory data path cannot bind.
var failListen = netip.MustParseAddrPort("192.0.2.99:4789")

// harness is one overlayd (a real admin server and manager over the
// memory data path) on its own socket.
type harness struct {
	t      *testing.T
	socket string
	dp     *memory.DataPath
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	socket := filepath.Join(dir, "overlayd.sock")
	if len(socket) > 100 { // sun_path is 108 bytes
		d, err := os.MkdirTemp("", "adm")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		socket = filepath.Join(d, "s")
	}
	log := slog.New(slog.DiscardHandler)
	dp := memory.New(memory.Options{Refuse: func(cfg datapath.OverlayConfig) error {
		if cfg.Listen == failListen {
			return fmt.Errorf("listen udp %s: bind: address already in use", cfg.Listen)
		}
		return nil
	}})
	mgr := overlay.NewManager(log, map[string]datapath.DataPath{memory.Name: dp}, memory.Name)
	ln, err := admin.Listen(socket, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := &admin.Server{Manager: mgr, Log: log}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		mgr.Close()
	})
	return &harness{t: t, socket: socket, dp: dp}
}

// run runs overlayadm against the harness's daemon.
func (h *harness) run(args ...string) (code int, stdout, stderr string) {
	return runAdm(append([]string{"--socket", h.socket}, args...)...)
}

func runAdm(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed silently on stderr and returns its
// standard output.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	code, out, errs := h.run(args...)
	if code != ExitOK || errs != "" {
		h.t.Fatalf("overlayadm %s: exit %d, stderr %q, stdout %q", strings.Join(args, " "), code, errs, out)
	}
	return out
}

// state is what must not change when a request fails.
func (h *harness) state() string {
	h.t.Helper()
	return h.ok("show-overlay", "-p", "-o", "link,property,value") +
		"--\n" + h.ok("show-vnic", "-p", "-o", "link,over")
}

// checkError checks the result of a failed command: the exit status, an
// error line naming every keyword, nothing on standard output.
func checkError(t *testing.T, args []string, code int, stdout, stderr string, wantCode, wantLines int, keywords []string) {
	t.Helper()
	cmd := "overlayadm " + strings.Join(args, " ")
	if code != wantCode {
		t.Errorf("%s: exit status %d, want %d (stderr %q)", cmd, code, wantCode, stderr)
	}
	if stdout != "" {
		t.Errorf("%s: unexpected standard output %q", cmd, stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if !strings.HasSuffix(stderr, "\n") || len(lines) != wantLines {
		t.Fatalf("%s: stderr has %d lines, want %d: %q", cmd, len(lines), wantLines, stderr)
	}
	if !strings.HasPrefix(lines[0], "overlayadm: ") {
		t.Errorf("%s: error line %q does not start with \"overlayadm: \"", cmd, lines[0])
	}
	for _, k := range keywords {
		if !strings.Contains(lines[0], k) {
			t.Errorf("%s: error line %q does not mention %q", cmd, lines[0], k)
		}
	}
}

// fails runs a command that the daemon (or overlayadm) must refuse with
// exit status 1 and one line naming every keyword, changing nothing.
func (h *harness) fails(keywords []string, args ...string) {
	h.t.Helper()
	before := h.state()
	code, out, errs := h.run(args...)
	checkError(h.t, args, code, out, errs, ExitError, 1, keywords)
	if after := h.state(); after != before {
		h.t.Errorf("overlayadm %s changed the state:\nbefore:\n%safter:\n%s", strings.Join(args, " "), before, after)
	}
}

// usage runs a command line that is wrong: exit status 2, an error line
// naming every keyword, then the subcommand's usage line; nothing changes.
func (h *harness) usage(keywords []string, args ...string) {
	h.t.Helper()
	before := h.state()
	code, out, errs := h.run(args...)
	checkError(h.t, args, code, out, errs, ExitUsage, 2, keywords)
	lines := strings.Split(errs, "\n")
	if len(lines) >= 2 && !strings.HasPrefix(lines[1], "usage: overlayadm "+args[0]+" ") {
		h.t.Errorf("overlayadm %s: second line %q is not the usage of %s", strings.Join(args, " "), lines[1], args[0])
	}
	if after := h.state(); after != before {
		h.t.Errorf("overlayadm %s changed the state:\nbefore:\n%safter:\n%s", strings.Join(args, " "), before, after)
	}
}

const (
	listenIP = "192.0.2.1"
	destIP   = "192.0.2.2"
)

// createArgs is a valid create-overlay command line with extra -p
// assignments appended.
func createArgs(name, vnetid string, props ...string) []string {
	args := []string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", vnetid,
		"-p", "vxlan/listen_ip=" + listenIP, "-p", "direct/dest_ip=" + destIP + ",direct/dest_port=4789"}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	return append(args, name)
}

// populate creates overlay ov0 (vnetid 42) with VNIC vnic0.
func (h *harness) populate() {
	h.t.Helper()
	h.ok(createArgs("ov0", "42")...)
	h.ok("create-vnic", "-l", "ov0", "vnic0")
}

// propValues returns show-overlay's property:value lines of one overlay.
func (h *harness) propValues(name string) map[string]string {
	h.t.Helper()
	vals := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(h.ok("show-overlay", "-p", "-o", "property,value", name)), "\n") {
		k, v, _ := strings.Cut(line, ":")
		vals[k] = strings.ReplaceAll(strings.ReplaceAll(v, `\:`, ":"), `\\`, `\`)
	}
	return vals
}

func TestRequestErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		keywords []string
		args     []string
	}{
		{"unknown encap", []string{"encapsulation", `"foo"`},
			[]string{"create-overlay", "-e", "foo", "-s", "direct", "-v", "7", "-p", "direct/dest_ip=" + destIP + ",direct/dest_port=4789", "ov1"}},
		{"unknown search", []string{"search plugin", `"foo"`},
			[]string{"create-overlay", "-e", "vxlan", "-s", "foo", "-v", "7", "-p", "vxlan/listen_ip=" + listenIP, "ov1"}},
		{"missing dest_ip", []string{"missing", "direct/dest_ip"},
			[]string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", "7", "-p", "vxlan/listen_ip=" + listenIP + ",direct/dest_port=4789", "ov1"}},
		{"missing dest_port", []string{"missing", "direct/dest_port"},
			[]string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", "7", "-p", "vxlan/listen_ip=" + listenIP + ",direct/dest_ip=" + destIP, "ov1"}},
		{"missing listen_ip", []string{"missing", "vxlan/listen_ip"},
			[]string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", "7", "-p", "direct/dest_ip=" + destIP + ",direct/dest_port=4789", "ov1"}},
		{"malformed listen_ip", []string{"vxlan/listen_ip", "1.2.3"}, createArgs("ov1", "7", "vxlan/listen_ip=1.2.3")},
		{"malformed dest_ip", []string{"direct/dest_ip", "notanip"}, createArgs("ov1", "7", "direct/dest_ip=notanip")},
		{"multicast dest_ip", []string{"direct/dest_ip", "239.1.1.1", "multicast"}, createArgs("ov1", "7", "direct/dest_ip=239.1.1.1")},
		{"listen_port 0", []string{"vxlan/listen_port", `"0"`, "range"}, createArgs("ov1", "7", "vxlan/listen_port=0")},
		{"listen_port 65536", []string{"vxlan/listen_port", "65536", "range"}, createArgs("ov1", "7", "vxlan/listen_port=65536")},
		{"dest_port 70000", []string{"direct/dest_port", "70000", "range"}, createArgs("ov1", "7", "direct/dest_port=70000")},
		{"mtu out of range", []string{"mtu", "9000", "range"}, createArgs("ov1", "7", "mtu=9000")},
		{"vnetid out of range", []string{"vnetid", "16777216", "range"}, createArgs("ov1", "16777216")},
		{"read-only at creation", []string{"encap", "read-only"}, createArgs("ov1", "7", "encap=vxlan")},
		{"unknown property at creation", []string{"unknown property", "bogus"}, createArgs("ov1", "7", "bogus=1")},
		{"bad overlay name", []string{"overlay name", `"1ov"`}, createArgs("1ov", "7")},
		{"family mismatch", []string{"2001:db8::2", "IPv6", listenIP}, createArgs("ov1", "7", "direct/dest_ip=2001:db8::2")},
		{"bind failure", []string{failListen.String()},
			createArgs("ov1", "7", "vxlan/listen_ip="+failListen.Addr().String())},
		{"duplicate overlay", []string{"overlay ov0", "already exists"}, createArgs("ov0", "7")},
		{"duplicate vnetid", []string{"vnetid 42", "overlay ov0"}, createArgs("ov1", "42", "vxlan/listen_port=4790")},

		{"geneve listen_port 0", []string{"geneve/listen_port", `"0"`, "range"},
			[]string{"create-overlay", "-e", "geneve", "-s", "direct", "-v", "7", "-p", "geneve/listen_ip=" + listenIP + ",geneve/listen_port=0",
				"-p", "direct/dest_ip=" + destIP + ",direct/dest_port=6081", "ov1"}},
		{"nvgre has no port", []string{"unknown property", "direct/dest_port"},
			[]string{"create-overlay", "-e", "nvgre", "-s", "direct", "-v", "7", "-p", "nvgre/listen_ip=" + listenIP,
				"-p", "direct/dest_ip=" + destIP + ",direct/dest_port=4789", "ov1"}},
		{"nvgre listen_ip missing", []string{"missing", "nvgre/listen_ip"},
			[]string{"create-overlay", "-e", "nvgre", "-s", "direct", "-v", "7", "-p", "direct/dest_ip=" + destIP, "ov1"}},
		{"multicast group not multicast", []string{"multicast/dest_ip", "192.0.2.9", "not a multicast address"},
			[]string{"create-overlay", "-e", "vxlan", "-s", "multicast", "-v", "7", "-p", "vxlan/listen_ip=" + listenIP, "-p", "multicast/dest_ip=192.0.2.9", "ov1"}},
		{"multicast group of another family", []string{"ff05::1", listenIP, "family"},
			[]string{"create-overlay", "-e", "vxlan", "-s", "multicast", "-v", "7", "-p", "vxlan/listen_ip=" + listenIP, "-p", "multicast/dest_ip=ff05::1", "ov1"}},
		{"multicast over nvgre", []string{"multicast plugin", "UDP encapsulation"},
			[]string{"create-overlay", "-e", "nvgre", "-s", "multicast", "-v", "7", "-p", "nvgre/listen_ip=" + listenIP, "-p", "multicast/dest_ip=239.1.1.1", "ov1"}},
		{"multicast ageing 0", []string{"multicast/ageing", `"0"`, "range"},
			[]string{"create-overlay", "-e", "vxlan", "-s", "multicast", "-v", "7", "-p", "vxlan/listen_ip=" + listenIP, "-p", "multicast/dest_ip=239.1.1.1,multicast/ageing=0", "ov1"}},
		{"underlay_netns bad", []string{"underlay_netns", "a/b"}, createArgs("ov1", "7", "underlay_netns=a/b")},
		{"underlay_netns missing", []string{"underlay_netns", "/run/netns/nosuchns"}, createArgs("ov1", "7", "underlay_netns=nosuchns")},

		{"duplicate VNIC", []string{"VNIC vnic0", "already exists"}, []string{"create-vnic", "-l", "ov0", "vnic0"}},
		{"VNIC on missing overlay", []string{"overlay nope", "does not exist"}, []string{"create-vnic", "-l", "nope", "vnic1"}},
		{"VNIC mtu above overlay", []string{"mtu", "1500", "576-1400"}, []string{"create-vnic", "-l", "ov0", "-p", "mtu=1500", "vnic1"}},
		{"VNIC unknown property", []string{"unknown property", "speed", "vnic1"}, []string{"create-vnic", "-l", "ov0", "-p", "speed=10", "vnic1"}},
		{"create-vnic bad VLAN", []string{"VLAN", "4095"}, []string{"create-vnic", "-l", "ov0", "-v", "4095", "vnic1"}},
		{"VNIC bad MAC", []string{"MAC", "2:8:20:aa:bb"}, []string{"create-vnic", "-l", "ov0", "-m", "2:8:20:aa:bb", "vnic1"}},
		{"VNIC multicast MAC", []string{"MAC", "1:0:5e:0:0:1", "unicast"}, []string{"create-vnic", "-l", "ov0", "-m", "1:0:5e:0:0:1", "vnic1"}},
		{"VNIC name too long", []string{"VNIC name", "abcdefghijklmnop"}, []string{"create-vnic", "-l", "ov0", "abcdefghijklmnop"}},

		{"delete overlay with VNICs", []string{"overlay ov0", "VNICs", "vnic0"}, []string{"delete-overlay", "ov0"}},
		{"delete missing overlay", []string{"overlay nope", "does not exist"}, []string{"delete-overlay", "nope"}},
		{"delete missing VNIC", []string{"VNIC nope", "does not exist"}, []string{"delete-vnic", "nope"}},

		{"set encap", []string{"encap", "read-only"}, []string{"set-linkprop", "-p", "encap=vxlan", "ov0"}},
		{"set search", []string{"search", "read-only"}, []string{"set-linkprop", "-p", "search=direct", "ov0"}},
		{"set varpd/id", []string{"varpd/id", "read-only"}, []string{"set-linkprop", "-p", "varpd/id=5", "ov0"}},
		{"set unknown property", []string{"unknown property", "bogus"}, []string{"set-linkprop", "-p", "bogus=1", "ov0"}},
		{"set on missing overlay", []string{"overlay nope", "does not exist"}, []string{"set-linkprop", "-p", "mtu=1300", "nope"}},
		{"set partly invalid", []string{"direct/dest_port", `"0"`}, []string{"set-linkprop", "-p", "mtu=1500,direct/dest_port=0", "ov0"}},
		{"set valid then read-only", []string{"varpd/id", "read-only"}, []string{"set-linkprop", "-p", "mtu=1500", "-p", "varpd/id=9", "ov0"}},
		{"set bind failure", []string{failListen.String()},
			[]string{"set-linkprop", "-p", "mtu=1500,vxlan/listen_ip=" + failListen.Addr().String(), "ov0"}},
		{"set malformed dest_ip", []string{"direct/dest_ip", "notanip"}, []string{"set-linkprop", "-p", "direct/dest_ip=notanip", "ov0"}},

		{"show missing overlay", []string{"overlay nope", "does not exist"}, []string{"show-overlay", "nope"}},
		{"show targets of missing overlay", []string{"overlay nope", "does not exist"}, []string{"show-overlay", "-t", "nope"}},
		{"show missing VNIC", []string{"VNIC nope", "does not exist"}, []string{"show-vnic", "nope"}},
		{"show VNICs of missing overlay", []string{"overlay nope", "does not exist"}, []string{"show-vnic", "-l", "nope"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.populate()
			h.fails(c.keywords, c.args...)
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		keywords []string
		args     []string
	}{
		{"missing -e", []string{"-e"}, []string{"create-overlay", "-s", "direct", "-v", "7", "ov1"}},
		{"missing -s", []string{"-s"}, []string{"create-overlay", "-e", "vxlan", "-v", "7", "ov1"}},
		{"missing -v", []string{"-v"}, []string{"create-overlay", "-e", "vxlan", "-s", "direct", "ov1"}},
		{"create-overlay no operand", []string{"missing", "overlay"}, []string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", "7"}},
		{"create-overlay two operands", []string{"only one overlay", "ov1 ov2"}, []string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", "7", "ov1", "ov2"}},
		{"create-overlay unknown flag", []string{"unknown flag", "--bogus"}, []string{"create-overlay", "--bogus", "ov1"}},
		{"create-overlay bad assignment", []string{"property assignment", "mtu"}, []string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", "7", "-p", "mtu", "ov1"}},
		{"delete-overlay no operand", []string{"missing", "overlay"}, []string{"delete-overlay"}},
		{"delete-overlay two operands", []string{"only one overlay"}, []string{"delete-overlay", "ov0", "ov1"}},
		{"set-linkprop no -p", []string{"no property"}, []string{"set-linkprop", "ov0"}},
		{"set-linkprop no operand", []string{"missing", "overlay"}, []string{"set-linkprop", "-p", "mtu=1300"}},
		{"set-linkprop two operands", []string{"only one overlay"}, []string{"set-linkprop", "-p", "mtu=1300", "ov0", "ov1"}},
		{"set-linkprop unknown flag", []string{"unknown shorthand flag", "x"}, []string{"set-linkprop", "-x", "ov0"}},
		{"create-vnic missing -l", []string{"-l"}, []string{"create-vnic", "vnic1"}},
		{"create-vnic no operand", []string{"missing", "VNIC"}, []string{"create-vnic", "-l", "ov0"}},
		{"create-vnic two operands", []string{"only one VNIC"}, []string{"create-vnic", "-l", "ov0", "vnic1", "vnic2"}},
		{"delete-vnic no operand", []string{"missing", "VNIC"}, []string{"delete-vnic"}},
		{"show-overlay two operands", []string{"only one overlay"}, []string{"show-overlay", "ov0", "ov1"}},
		{"show-overlay -p without -o", []string{"-p", "-o"}, []string{"show-overlay", "-p", "ov0"}},
		{"show-overlay -f and -t", []string{"-f", "-t"}, []string{"show-overlay", "-f", "-t"}},
		{"show-overlay unknown field", []string{"nosuch"}, []string{"show-overlay", "-p", "-o", "link,nosuch"}},
		{"show-vnic -p without -o", []string{"-p", "-o"}, []string{"show-vnic", "-p"}},
		{"show-vnic unknown flag", []string{"unknown flag", "--bogus"}, []string{"show-vnic", "--bogus"}},
		{"show-listener operand", []string{"show-listener"}, []string{"show-listener", "x"}},
		{"vnetid not a number", []string{"virtual network id (-v)", `"abc"`, "0 to 16777215"}, createArgs("ov1", "abc")},
		{"vnetid negative", []string{"virtual network id (-v)", `"-1"`, "0 to 16777215"}, createArgs("ov1", "-1")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.populate()
			h.usage(c.keywords, c.args...)
		})
	}
}

func TestUnknownSubcommand(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	code, out, errs := h.run("frobnicate")
	checkError(t, []string{"frobnicate"}, code, out, errs, ExitUsage, 2, []string{"frobnicate"})
}

func TestDaemonNotRunning(t *testing.T) {
	t.Parallel()
	live := newHarness(t)
	live.populate()
	before := live.state()

	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")

	// A socket file nobody listens on: a daemon that died.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	for _, socket := range []string{missing, stale} {
		for _, args := range [][]string{
			{"show-overlay"},
			{"show-vnic"},
			createArgs("ov1", "7"),
			{"create-vnic", "-l", "ov0", "vnic1"},
			{"delete-overlay", "ov0"},
			{"set-linkprop", "-p", "mtu=1300", "ov0"},
		} {
			full := append([]string{"--socket", socket}, args...)
			code, out, errs := runAdm(full...)
			checkError(t, full, code, out, errs, ExitError, 1, []string{socket, "overlayd", "running"})
		}
	}
	if after := live.state(); after != before {
		t.Errorf("state of another daemon changed:\nbefore:\n%safter:\n%s", before, after)
	}
}

func TestCreateAndShowOverlay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if out := h.ok(createArgs("ov0", "42")...); out != "" {
		t.Errorf("create-overlay printed %q", out)
	}
	if n := len(h.dp.Names()); n != 1 {
		t.Errorf("data path carries %d overlays, want 1", n)
	}

	out := h.ok("show-overlay", "ov0")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if got, want := strings.Fields(lines[0]), []string{"LINK", "PROPERTY", "PERM", "REQ", "VALUE", "DEFAULT", "POSSIBLE", "SOURCE"}; !slices.Equal(got, want) {
		t.Errorf("header %q, want fields %q", lines[0], want)
	}
	want := [][]string{
		{"ov0", "mtu", "rw", "-", "1400", "1400", "576-8900", "default"},
		{"ov0", "vnetid", "rw", "y", "42", "--", "0-16777215", "set"},
		{"ov0", "encap", "r-", "y", "vxlan", "--", "geneve,nvgre,vxlan", "--"},
		{"ov0", "varpd/id", "r-", "-", "1", "--", "--", "--"},
		{"ov0", "vxlan/listen_ip", "rw", "y", listenIP, "--", "--", "set"},
		{"ov0", "vxlan/listen_port", "rw", "y", "4789", "4789", "1-65535", "default"},
		{"ov0", "search", "r-", "y", "direct", "--", "direct,evpn,files,multicast,svp", "--"},
		{"ov0", "direct/dest_ip", "rw", "y", destIP, "--", "--", "set"},
		{"ov0", "direct/dest_port", "rw", "y", "4789", "--", "1-65535", "set"},
		{"ov0", "datapath", "r-", "-", "memory", "memory", "memory", "--"},
		{"ov0", "underlay_netns", "r-", "-", "--", "--", "--", "--"},
	}
	if len(lines)-1 != len(want) {
		t.Fatalf("show-overlay printed %d rows, want %d:\n%s", len(lines)-1, len(want), out)
	}
	for i, w := range want {
		if got := strings.Fields(lines[i+1]); !slices.Equal(got, w) {
			t.Errorf("row %d: %q, want fields %q", i+1, lines[i+1], w)
		}
	}
	// Columns line up under the header.
	for _, col := range []string{"PROPERTY", "PERM", "REQ", "VALUE"} {
		at := strings.Index(lines[0], col)
		for _, l := range lines[1:] {
			if len(l) <= at || l[at-1] != ' ' || l[at] == ' ' {
				t.Errorf("column %s (at %d) is not aligned in %q", col, at, l)
			}
		}
	}

	got := h.ok("show-overlay", "-p", "-o", "property,value", "ov0")
	wantP := "mtu:1400\nvnetid:42\nencap:vxlan\nvarpd/id:1\nvxlan/listen_ip:" + listenIP +
		"\nvxlan/listen_port:4789\nsearch:direct\ndirect/dest_ip:" + destIP + "\ndirect/dest_port:4789\ndatapath:memory\nunderlay_netns:\n"
	if got != wantP {
		t.Errorf("show-overlay -p -o property,value:\n%s\nwant:\n%s", got, wantP)
	}
	// Field names are case-insensitive; all overlays without an operand.
	if got2 := h.ok("show-overlay", "-p", "-o", "PROPERTY,Value"); got2 != wantP {
		t.Errorf("show-overlay -p -o PROPERTY,Value:\n%s\nwant:\n%s", got2, wantP)
	}

	out = h.ok("show-overlay", "-f", "ov0")
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0]), []string{"LINK", "STATUS", "DETAILS"}) ||
		!slices.Equal(strings.Fields(lines[1]), []string{"ov0", "ONLINE", "-"}) {
		t.Errorf("show-overlay -f:\n%s", out)
	}
	if got := h.ok("show-overlay", "-f", "-p", "-o", "status"); got != "ONLINE\n" {
		t.Errorf("show-overlay -f -p -o status: %q", got)
	}

	out = h.ok("show-overlay", "-t", "ov0")
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 || !slices.Equal(strings.Fields(lines[0]), []string{"LINK", "TARGET", "DESTINATION"}) ||
		!slices.Equal(strings.Fields(lines[1]), []string{"ov0", "*:*:*:*:*:*", destIP + ":4789"}) {
		t.Errorf("show-overlay -t:\n%s", out)
	}
	if got, want := h.ok("show-overlay", "-t", "-p", "-o", "link,target,destination"),
		`ov0:*\:*\:*\:*\:*\:*:`+strings.ReplaceAll(destIP+":4789", ":", `\:`)+"\n"; got != want {
		t.Errorf("show-overlay -t -p: %q, want %q", got, want)
	}

	out = h.ok("show-overlay", "-s", "-p", "-o", "statistic,value", "ov0")
	if !strings.Contains(out, "in-frames:0\n") || !strings.Contains(out, "drop-mtu:0\n") {
		t.Errorf("show-overlay -s:\n%s", out)
	}
}

func TestShowOverlayErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.populate()

	code, out, errs := h.run("show-overlay", "-p")
	checkError(t, []string{"show-overlay", "-p"}, code, out, errs, ExitUsage, 2, []string{"-o"})

	code, out, errs = h.run("show-overlay", "nope")
	checkError(t, []string{"show-overlay", "nope"}, code, out, errs, ExitError, 1, []string{"nope", "does not exist"})
	code, out, errs = h.run("show-overlay", "-f", "nope")
	checkError(t, []string{"show-overlay", "-f", "nope"}, code, out, errs, ExitError, 1, []string{"nope", "does not exist"})
}

func TestEmptyDaemon(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, args := range [][]string{
		{"show-overlay"}, {"show-overlay", "-f"}, {"show-overlay", "-t"}, {"show-overlay", "-s"},
		{"show-vnic"}, {"show-listener"},
	} {
		// The header alone, as dladm prints it: the table is empty, not
		// the command broken.
		if out := h.ok(args...); strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "LINK ") && !strings.HasPrefix(out, "LISTEN ") {
			t.Errorf("overlayadm %s on an empty daemon printed %q, want the header alone", strings.Join(args, " "), out)
		}
		if out := h.ok(append(args, "-p", "-o", "all")...); out != "" {
			t.Errorf("overlayadm %s -p -o all on an empty daemon printed %q", strings.Join(args, " "), out)
		}
	}
}

func TestSetLinkprop(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.populate()

	h.ok("set-linkprop", "-p", "mtu=1450", "ov0")
	h.ok("set-linkprop", "-p", "direct/dest_ip=192.0.2.3", "ov0")
	vals := h.propValues("ov0")
	if vals["mtu"] != "1450" || vals["direct/dest_ip"] != "192.0.2.3" {
		t.Errorf("after set-linkprop: mtu %q, direct/dest_ip %q", vals["mtu"], vals["direct/dest_ip"])
	}
	if vals["varpd/id"] != "1" || vals["encap"] != "vxlan" || vals["search"] != "direct" {
		t.Errorf("read-only properties changed: %v", vals)
	}
	out := h.ok("show-overlay", "-t", "-p", "-o", "destination", "ov0")
	if out != "192.0.2.3:4789\n" {
		t.Errorf("target after set-linkprop: %q", out)
	}

	// Several at once, comma-joined and repeated.
	h.ok("set-linkprop", "-p", "mtu=1460,direct/dest_port=4790", "-p", "vxlan/listen_port=4791", "ov0")
	vals = h.propValues("ov0")
	if vals["mtu"] != "1460" || vals["direct/dest_port"] != "4790" || vals["vxlan/listen_port"] != "4791" {
		t.Errorf("after set-linkprop of three: %v", vals)
	}
	if out := h.ok("show-overlay", "-t", "-p", "-o", "destination", "ov0"); out != "192.0.2.3:4790\n" {
		t.Errorf("target after set-linkprop: %q", out)
	}

	// A failing set changes none of the values, even the valid ones.
	before := h.propValues("ov0")
	h.fails([]string{"direct/dest_port"}, "set-linkprop", "-p", "mtu=1500,direct/dest_port=0", "ov0")
	if after := h.propValues("ov0"); after["mtu"] != "1460" || after["direct/dest_port"] != "4790" {
		t.Errorf("failed set-linkprop changed values: before %v, after %v", before, after)
	}
	// Nor does one the data path refuses.
	h.fails([]string{failListen.String()}, "set-linkprop", "-p", "mtu=1500,direct/dest_ip=192.0.2.4,vxlan/listen_port=4789,vxlan/listen_ip="+failListen.Addr().String(), "ov0")
	if out := h.ok("show-overlay", "-t", "-p", "-o", "destination", "ov0"); out != "192.0.2.3:4790\n" {
		t.Errorf("target after failed set-linkprop: %q", out)
	}
}

func TestVNICs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(createArgs("ov0", "42")...)

	h.ok("create-vnic", "-l", "ov0", "-m", "2:8:20:aa:bb:1", "-v", "100", "-p", "mtu=1300", "vnic0")
	h.ok("create-vnic", "-l", "ov0", "vnic1")
	if n := h.dp.VNICCount(); n != 2 {
		t.Errorf("data path carries %d VNICs, want 2", n)
	}

	out := h.ok("show-vnic")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 || !slices.Equal(strings.Fields(lines[0]), []string{"LINK", "OVER", "MACADDRESS", "VID", "MTU", "PROTECTION"}) {
		t.Fatalf("show-vnic:\n%s", out)
	}
	f := strings.Fields(lines[1])
	if len(f) != 6 || f[0] != "vnic0" || f[1] != "ov0" || f[3] != "100" || f[4] != "1300" || f[5] != "mac-nospoof" {
		t.Errorf("show-vnic row %q", lines[1])
	}
	if mac, err := ether.ParseMAC(f[2]); err != nil || ether.Short(mac) != "2:8:20:aa:bb:1" {
		t.Errorf("show-vnic MAC %q, want 2:8:20:aa:bb:1 (%v)", f[2], err)
	}
	f = strings.Fields(lines[2])
	if len(f) != 6 || f[0] != "vnic1" || f[1] != "ov0" || f[3] != "0" || f[4] != "1400" {
		t.Errorf("show-vnic row %q", lines[2])
	}
	if mac, err := ether.ParseMAC(f[2]); err != nil || !strings.HasPrefix(ether.Short(mac), "2:8:20:") {
		t.Errorf("random MAC %q lacks the 2:8:20 prefix (%v)", f[2], err)
	}

	if got := h.ok("show-vnic", "-p", "-o", "link,vid,mtu", "vnic0"); got != "vnic0:100:1300\n" {
		t.Errorf("show-vnic -p vnic0: %q", got)
	}
	if got := h.ok("show-vnic", "-p", "-o", "link", "-l", "ov0"); got != "vnic0\nvnic1\n" {
		t.Errorf("show-vnic -l ov0: %q", got)
	}
	if got := h.ok("show-overlay", "-p", "-o", "value", "ov0"); !strings.Contains(got, "1400\n") {
		t.Errorf("overlay mtu: %q", got)
	}

	// A VNIC's MTU may not exceed its overlay's.
	h.fails([]string{"mtu", "1401"}, "create-vnic", "-l", "ov0", "-p", "mtu=1401", "vnic2")

	// Delete in order: VNICs, then the overlay.
	h.fails([]string{"ov0", "vnic0", "vnic1"}, "delete-overlay", "ov0")
	h.ok("delete-vnic", "vnic0")
	h.ok("delete-vnic", "vnic1")
	if n := h.dp.VNICCount(); n != 0 {
		t.Errorf("data path still carries %d VNICs", n)
	}
	h.ok("delete-overlay", "ov0")
	if n := len(h.dp.Names()); n != 0 {
		t.Errorf("data path still carries %d overlays", n)
	}
	if st := h.state(); st != "--\n" {
		t.Errorf("state after deleting everything: %q", st)
	}
}

func TestVNetIDUniqueness(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(createArgs("ov0", "42")...)

	// Same vnetid: refused even on another listen address.
	h.fails([]string{"42", "ov0"}, createArgs("ov1", "42", "vxlan/listen_ip=192.0.2.5")...)

	// Different vnetids share one listen address.
	h.ok(createArgs("ov1", "43")...)
	vals := h.propValues("ov1")
	if vals["vnetid"] != "43" || vals["vxlan/listen_ip"] != listenIP || vals["vxlan/listen_port"] != "4789" {
		t.Errorf("ov1: %v", vals)
	}
	for _, line := range strings.Split(strings.TrimSuffix(h.ok("show-listener", "-p", "-o", "listen,overlays"), "\n"), "\n") {
		if want := strings.ReplaceAll(listenIP+":4789", ":", `\:`) + ":ov0,ov1"; line != want {
			t.Errorf("show-listener line %q, want %q", line, want)
		}
	}

	// set-linkprop may not take another overlay's vnetid either.
	h.fails([]string{"42", "ov0"}, "set-linkprop", "-p", "vnetid=42", "ov1")
	h.ok("set-linkprop", "-p", "vnetid=44", "ov1")
	if v := h.propValues("ov1")["vnetid"]; v != "44" {
		t.Errorf("ov1 vnetid %q after set-linkprop, want 44", v)
	}
	// The freed vnetid can be used again.
	h.ok(createArgs("ov2", "43")...)
}

func TestFailedCreateLeavesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fails([]string{failListen.String()}, createArgs("ov0", "42", "vxlan/listen_ip="+failListen.Addr().String())...)
	if n := len(h.dp.Names()); n != 0 {
		t.Errorf("data path carries %d overlays after a failed create", n)
	}
	// The name and vnetid are free, and the failed attempt used no id.
	h.ok(createArgs("ov0", "42")...)
	if v := h.propValues("ov0")["varpd/id"]; v != "1" {
		t.Errorf("varpd/id %q, want 1", v)
	}
}

// Not parallel: it sets an environment variable.
func TestSocketEnvironment(t *testing.T) {
	h := newHarness(t)
	h.populate()
	t.Setenv(admin.SocketEnv, h.socket)
	code, out, errs := runAdm("show-vnic", "-p", "-o", "link,over")
	if code != ExitOK || errs != "" || out != "vnic0:ov0\n" {
		t.Errorf("with $%s: exit %d, stdout %q, stderr %q", admin.SocketEnv, code, out, errs)
	}
	// --socket wins over the environment.
	other := filepath.Join(t.TempDir(), "other.sock")
	code, out, errs = runAdm("--socket", other, "show-vnic")
	checkError(t, []string{"--socket", other, "show-vnic"}, code, out, errs, ExitError, 1, []string{other})

	t.Setenv(admin.SocketEnv, other)
	code, out, errs = runAdm("show-overlay")
	checkError(t, []string{"show-overlay"}, code, out, errs, ExitError, 1, []string{other, "running"})
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"create-overlay", "delete-overlay", "show-overlay", "set-linkprop",
		"create-vnic", "delete-vnic", "show-vnic", "show-listener"} {
		code, out, errs := runAdm(sub, "--help")
		if code != ExitOK || errs != "" {
			t.Errorf("%s --help: exit %d, stderr %q", sub, code, errs)
		}
		if !strings.Contains(out, "overlayadm "+sub+" ") || !strings.Contains(out, "Usage:") {
			t.Errorf("%s --help does not print its usage:\n%s", sub, out)
		}
	}
	code, out, errs := runAdm("--help")
	if code != ExitOK || errs != "" || !strings.Contains(out, "create-overlay") {
		t.Errorf("--help: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
	// The help says what is accepted: every plugin's properties and the
	// data path at creation, and datapath among what cannot change.
	_, out, _ = runAdm("create-overlay", "--help")
	for _, want := range []string{"datapath=kernel|memory|userspace", "userspace: frames moved in Go", "vxlan/listen_ip=<ip>", "direct/dest_ip=<ip>",
		"files/config=", "svp/host=", "svp/underlay_ip=<ip>", "svp/port=<1-65535>", "default 1296", "svp asks a mapping server"} {
		if !strings.Contains(out, want) {
			t.Errorf("create-overlay --help does not say %q", want)
		}
	}
	_, out, _ = runAdm("set-linkprop", "--help")
	if !strings.Contains(out, "(encap, search, varpd/id, datapath)") {
		t.Errorf("set-linkprop --help does not list datapath as read-only:\n%s", out)
	}
}

// TestColumnsFit: a value wider than its column's default width widens
// the column: every row's values start where the header's do.
func TestColumnsFit(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.populate()
	for _, args := range [][]string{{"show-overlay", "-s"}, {"show-overlay"}, {"show-vnic"}} {
		out := h.ok(args...)
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		hdr := lines[0]
		var starts []int
		for i := range hdr {
			if hdr[i] != ' ' && (i == 0 || hdr[i-1] == ' ') {
				starts = append(starts, i)
			}
		}
		for _, l := range lines[1:] {
			for _, st := range starts[1:] {
				if st >= len(l) || l[st-1] != ' ' || l[st] == ' ' {
					t.Errorf("%s: %q does not have a value starting at column %d, under the header:\n%s", strings.Join(args, " "), l, st, out)
					break
				}
			}
		}
	}
	// -p -o all: every field, parsable.
	out := h.ok("show-vnic", "-p", "-o", "all")
	if strings.Count(out, "\n") != 1 || strings.Count(out, ":") < 5 {
		t.Errorf("show-vnic -p -o all: %q", out)
	}
}

// TestDaemonNotAnswering: a daemon that accepts but does not answer (a
// stopped one: the kernel still queues connections) is reported after
// --timeout, with the socket and the pid behind it, not as a raw I/O
// timeout after 30 s.
func TestDaemonNotAnswering(t *testing.T) {
	t.Parallel()
	d, err := os.MkdirTemp("", "adm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(d)
	socket := filepath.Join(d, "s")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, never answered
		}
	}()
	code, out, errs := runAdm("--socket", socket, "--timeout", "200ms", "show-overlay")
	want := fmt.Sprintf("overlayadm: overlayd (pid %d) at %s is not answering: no reply within 200ms (is it stopped or stuck? --timeout waits longer; a change asked for may still take effect: check before retrying)\n", os.Getpid(), socket)
	if code != ExitError || out != "" || errs != want {
		t.Errorf("exit %d, stdout %q, stderr %q; want exit %d and %q", code, out, errs, ExitError, want)
	}
}

// TestCompletion: the shell completion scripts and what they complete
// from the running daemon: overlay, VNIC and property names.
func TestCompletion(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.populate() // ov0 with vnic0
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"delete-overlay", ""}, []string{"ov0"}},
		{[]string{"show-vnic", ""}, []string{"vnic0"}},
		{[]string{"set-linkprop", ""}, []string{"ov0", "vnic0"}},
		{[]string{"set-linkprop", "ov0", "-p", ""}, []string{"mtu=", "vnetid=", "vxlan/listen_ip=", "direct/dest_ip="}},
		{[]string{"set-linkprop", "vnic0", "-p", ""}, []string{"protection=none"}},
		{[]string{"create-vnic", "-l", ""}, []string{"ov0"}},
		{[]string{"create-overlay", "-s", ""}, []string{"direct", "files", "svp"}},
	} {
		code, out, errs := h.run(append([]string{"__complete"}, tc.args...)...)
		if code != 0 {
			t.Errorf("__complete %q: exit %d, %s", tc.args, code, errs)
			continue
		}
		got := strings.Split(out, "\n")
		for _, w := range tc.want {
			if !slices.Contains(got, w) {
				t.Errorf("__complete %q: %q, want %q among them", tc.args, got, w)
			}
		}
	}
	for _, sh := range []string{"bash", "zsh"} {
		code, out, errs := h.run("completion", sh)
		if code != 0 || !strings.Contains(out, "overlayadm") || errs != "" {
			t.Errorf("completion %s: exit %d, %d bytes, stderr %q", sh, code, len(out), errs)
		}
	}
}

// TestSiteDefaults: show-defaults lists every plugin property with its
// built-in default; set-default refuses a bad value with the property's
// own error (exit 1, nothing set); a set default shows in show-defaults,
// and an overlay created without the property takes it, marked SOURCE
// site in show-overlay; reset-default takes it away.
func TestSiteDefaults(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	out := h.ok("show-defaults")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if got, want := strings.Fields(lines[0]), []string{"PROPERTY", "PLUGIN", "REQ", "DEFAULT", "SITE", "POSSIBLE"}; !slices.Equal(got, want) {
		t.Errorf("header %q, want %q", lines[0], want)
	}
	for _, w := range [][]string{
		{"mtu", "overlay", "-", "1400", "--", "576-8900"},
		{"geneve/listen_port", "encap", "geneve", "y", "6081", "--", "1-65535"},
		{"nvgre/listen_ip", "encap", "nvgre", "y", "--", "--", "--"},
		{"svp/port", "search", "svp", "y", "1296", "--", "1-65535"},
	} {
		if !slices.ContainsFunc(lines, func(l string) bool { return slices.Equal(strings.Fields(l), w) }) {
			t.Errorf("show-defaults has no row %q:\n%s", w, out)
		}
	}

	h.fails([]string{"mtu", "576-8900"}, "set-default", "-p", "mtu=100")
	h.fails([]string{"vnetid"}, "set-default", "-p", "vnetid=3")
	h.usage([]string{"no property"}, "set-default")
	h.usage([]string{"no property"}, "reset-default")
	if got := h.ok("show-defaults", "-p", "-o", "site"); strings.Trim(got, "\n") != "" {
		t.Errorf("a refused set-default set something: %q", got)
	}

	h.ok("set-default", "-p", "mtu=1300,vxlan/listen_port=4790")
	if got := h.ok("show-defaults", "-p", "-o", "property,site"); !strings.Contains(got, "mtu:1300\n") || !strings.Contains(got, "vxlan/listen_port:4790\n") {
		t.Errorf("show-defaults after set-default:\n%s", got)
	}
	h.ok(createArgs("ov0", "42")...)
	if got := h.ok("show-overlay", "-p", "-o", "property,value,source", "ov0"); !strings.Contains(got, "mtu:1300:site\n") ||
		!strings.Contains(got, "vxlan/listen_port:4790:site\n") || !strings.Contains(got, "vnetid:42:set\n") {
		t.Errorf("show-overlay of an overlay made with site defaults:\n%s", got)
	}
	h.ok("reset-default", "mtu", "vxlan/listen_port")
	h.ok(createArgs("ov1", "43")...)
	if got := h.ok("show-overlay", "-p", "-o", "property,value,source", "ov1"); !strings.Contains(got, "mtu:1400:default\n") {
		t.Errorf("show-overlay after reset-default:\n%s", got)
	}
}
