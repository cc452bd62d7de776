package cli

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"overlaynet/portolan/store"
)

// newDSN returns a fresh SQLite store in the test's directory.
// newDSN returns a new store, created (the commands but init and the
// adding ones refuse a store that does not exist).
func newDSN(t *testing.T) string {
	t.Helper()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "portolan.db")
	if code, _, errs := run(t, "init", "--store", dsn); code != 0 {
		t.Fatalf("init: exit %d, %s", code, errs)
	}
	return dsn
}

// run runs portolan with args and returns its exit status and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

// cmd runs a subcommand on the store dsn: sub --store dsn args...
func cmd(t *testing.T, dsn, sub string, args ...string) (int, string, string) {
	t.Helper()
	return run(t, append([]string{sub, "--store", dsn}, args...)...)
}

// ok runs a subcommand that must succeed silently on stderr, and returns
// its output.
func ok(t *testing.T, dsn, sub string, args ...string) string {
	t.Helper()
	code, out, errs := cmd(t, dsn, sub, args...)
	if code != 0 || errs != "" {
		t.Fatalf("%s %q: exit %d, stderr %q", sub, args, code, errs)
	}
	return out
}

// fails checks a failed request: exit 1 and one line on stderr,
// "portolan: " then a message containing want.
func fails(t *testing.T, args []string, want string) {
	t.Helper()
	code, out, errs := run(t, args...)
	if code != 1 {
		t.Errorf("%q: exit %d, want 1 (stderr %q)", args, code, errs)
	}
	if out != "" {
		t.Errorf("%q: stdout %q", args, out)
	}
	if !strings.HasPrefix(errs, "portolan: ") || strings.Count(errs, "\n") != 1 || !strings.HasSuffix(errs, "\n") {
		t.Errorf("%q: stderr %q, want one line starting \"portolan: \"", args, errs)
	}
	if !strings.Contains(errs, want) {
		t.Errorf("%q: stderr %q does not say %q", args, errs, want)
	}
}

// misused checks a usage error: exit 2, "portolan: " and the problem,
// then "usage: portolan SUB ...".
func misused(t *testing.T, args []string, want string) {
	t.Helper()
	code, out, errs := run(t, args...)
	if code != 2 {
		t.Errorf("%q: exit %d, want 2 (stderr %q)", args, code, errs)
	}
	if out != "" {
		t.Errorf("%q: stdout %q", args, out)
	}
	lines := strings.Split(strings.TrimSuffix(errs, "\n"), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "portolan: ") || !strings.HasPrefix(lines[1], "usage: portolan "+args[0]+" ") {
		t.Errorf("%q: stderr %q, want \"portolan: ...\" then \"usage: portolan %s ...\"", args, errs, args[0])
		return
	}
	if !strings.Contains(lines[0], want) {
		t.Errorf("%q: %q does not say %q", args, lines[0], want)
	}
}

func TestHosts(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "h1", "198.18.0.1")
	ok(t, dsn, "add-host", "--port", "4790", "h2", "fd00:100::2")
	ok(t, dsn, "add-host", "h3", "::ffff:198.18.0.3") // the IPv4 address
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host,ip,port"); out != "h1:198.18.0.1:4789\nh2:fd00\\:100\\:\\:2:4790\nh3:198.18.0.3:4789\n" {
		t.Errorf("show-hosts -p:\n%s", out)
	}
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "ip"); out != "198.18.0.1\nfd00:100::2\n198.18.0.3\n" {
		t.Errorf("show-hosts -p -o ip:\n%s", out)
	}
	out := ok(t, dsn, "show-hosts")
	if lines := strings.Split(out, "\n"); len(lines) != 5 || strings.Join(strings.Fields(lines[0]), " ") != "HOST IP PORT SOURCES" ||
		strings.Join(strings.Fields(lines[2]), " ") != "h2 fd00:100::2 4790 --" {
		t.Errorf("show-hosts:\n%s", out)
	}

	// Adding an existing host changes its address, and its VNICs' hosts
	// are told.
	ok(t, dsn, "add-vnic", "--vnetid", "7", "--mac", "2:8:20:0:0:1", "--host", "h1")
	ok(t, dsn, "add-vnic", "--vnetid", "7", "--mac", "2:8:20:0:0:2", "--host", "h2")
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	drain := func(ip string) []store.LogEntry {
		es, err := st.Log(context.Background(), netip.MustParseAddr(ip), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		var ids [][16]byte
		for _, e := range es {
			ids = append(ids, e.ID)
		}
		if err := st.RemoveLog(context.Background(), ids); err != nil {
			t.Fatal(err)
		}
		return es
	}
	drain("fd00:100::2")
	ok(t, dsn, "add-host", "--port", "4791", "h1", "198.18.0.11")
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host,ip,port"); !strings.HasPrefix(out, "h1:198.18.0.11:4791\n") {
		t.Errorf("after the change:\n%s", out)
	}
	if es := drain("fd00:100::2"); len(es) != 1 || es[0].Type != store.LogVL2 || es[0].MAC != [6]byte{2, 8, 0x20, 0, 0, 1} {
		t.Errorf("h2's log after h1 moved: %+v", es)
	}
	h, found, err := st.VL2(context.Background(), 7, [6]byte{2, 8, 0x20, 0, 0, 1})
	if err != nil || !found || h.IP != netip.MustParseAddr("198.18.0.11") || h.Port != 4791 {
		t.Errorf("VL2 after the change: %+v %v %v", h, found, err)
	}
	ok(t, dsn, "add-host", "--port", "4791", "h1", "198.18.0.11") // no change, no error

	fails(t, []string{"add-host", "--store", dsn, "h4", "198.18.0.11"}, "198.18.0.11 is already host h1's")
	fails(t, []string{"remove-host", "--store", dsn, "h1"}, "h1 still holds 1 VNIC")
	ok(t, dsn, "remove-vnic", "--vnetid", "7", "--mac", "2:8:20:0:0:1")
	ok(t, dsn, "remove-host", "h1")
	fails(t, []string{"remove-host", "--store", dsn, "h1"}, "host h1: not found")
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host"); out != "h2\nh3\n" {
		t.Errorf("after remove-host:\n%s", out)
	}
}

func TestVNICs(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "h1", "198.18.0.1")
	ok(t, dsn, "add-host", "h2", "198.18.0.2")
	ok(t, dsn, "add-vnic", "--vnetid", "42", "--mac", "02:08:20:aa:bb:01", "--host", "h1",
		"--ip", "10.0.0.1", "--ip", "fd00::1", "--vlan", "7")
	ok(t, dsn, "add-vnic", "--vnetid", "43", "--mac", "2:8:20:aa:bb:1", "--host", "h2", "--ip", "::ffff:10.0.0.1")

	all := "vnetid,mac,vlan,host,ips"
	if out := ok(t, dsn, "show-vnics", "-p", "-o", all); out != "42:2\\:8\\:20\\:aa\\:bb\\:1:7:h1:10.0.0.1,fd00\\:\\:1\n43:2\\:8\\:20\\:aa\\:bb\\:1:0:h2:10.0.0.1\n" {
		t.Errorf("show-vnics -p:\n%s", out)
	}
	if out := ok(t, dsn, "show-vnics", "--vnetid", "43", "-p", "-o", "host"); out != "h2\n" {
		t.Errorf("show-vnics --vnetid 43:\n%s", out)
	}
	if out := ok(t, dsn, "show-vnics", "--vnetid", "44"); strings.Join(strings.Fields(out), " ") != "VNETID MAC VLAN HOST IPS" {
		t.Errorf("show-vnics of an empty vnetid:\n%s", out)
	}
	out := ok(t, dsn, "show-vnics")
	if lines := strings.Split(out, "\n"); len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "VNETID MAC VLAN HOST IPS" ||
		strings.Join(strings.Fields(lines[1]), " ") != "42 2:8:20:aa:bb:1 7 h1 10.0.0.1,fd00::1" {
		t.Errorf("show-vnics:\n%s", out)
	}

	ok(t, dsn, "move-vnic", "--vnetid", "42", "--mac", "2:8:20:aa:bb:1", "--host", "h2")
	if out := ok(t, dsn, "show-vnics", "--vnetid", "42", "-p", "-o", "host,ips"); out != "h2:10.0.0.1,fd00\\:\\:1\n" {
		t.Errorf("after move-vnic:\n%s", out)
	}
	ok(t, dsn, "remove-vnic", "--vnetid", "42", "--mac", "2:8:20:aa:bb:1")
	if out := ok(t, dsn, "show-vnics", "-p", "-o", "vnetid"); out != "43\n" {
		t.Errorf("after remove-vnic:\n%s", out)
	}
	// The removed VNIC's addresses are free again.
	ok(t, dsn, "add-vnic", "--vnetid", "42", "--mac", "2:8:20:aa:bb:2", "--host", "h1", "--ip", "10.0.0.1")
}

// TestErrors: failed requests exit 1 with one line saying what is wrong.
func TestErrors(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "h1", "198.18.0.1")
	ok(t, dsn, "add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:1", "--host", "h1", "--ip", "10.0.0.1")
	vnic := func(sub string, args ...string) []string {
		return append([]string{sub, "--store", dsn}, args...)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:2", "--host", "nosuch"), "host nosuch: not found"},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:1", "--host", "h1"), "VNIC 2:8:20:0:0:1 on vnetid 42: already exists"},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:2", "--host", "h1", "--ip", "10.0.0.1"), "address 10.0.0.1 on vnetid 42 is already VNIC 2:8:20:0:0:1's (on host h1)"},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:2", "--host", "h1", "--ip", "::ffff:10.0.0.1"), "address 10.0.0.1 on vnetid 42 is already VNIC 2:8:20:0:0:1's (on host h1)"},
		{vnic("remove-host", "h1"), "host h1 still holds 1 VNIC"},
		{vnic("remove-host", "nosuch"), "host nosuch: not found"},
		{vnic("move-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:1", "--host", "nosuch"), "host nosuch: not found"},
		{vnic("move-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:9", "--host", "h1"), "VNIC 2:8:20:0:0:9 on vnetid 42: not found"},
		{vnic("remove-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:9"), "VNIC 2:8:20:0:0:9 on vnetid 42: not found"},
		{vnic("remove-vnic", "--vnetid", "43", "--mac", "2:8:20:0:0:1"), "VNIC 2:8:20:0:0:1 on vnetid 43: not found"},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0", "--host", "h1"), `--mac: invalid MAC address "2:8:20:0:0"`},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:xy", "--host", "h1"), `--mac: invalid MAC address "2:8:20:0:0:xy"`},
		{vnic("remove-vnic", "--vnetid", "42", "--mac", "zz"), `--mac: invalid MAC address "zz"`},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "3:8:20:0:0:1", "--host", "h1"), "--mac 3:8:20:0:0:1 is not a unicast address"},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "ff:ff:ff:ff:ff:ff", "--host", "h1"), "is not a unicast address"},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:2", "--host", "h1", "--ip", "10.0.0.300"), `--ip "10.0.0.300" is not an IP address`},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:2", "--host", "h1", "--ip", "fe80::1%eth0"), `--ip "fe80::1%eth0" is not an IP address`},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:2", "--host", "h1", "--ip", "10.0.0.2", "--ip", "::ffff:10.0.0.2"), "--ip 10.0.0.2 given twice"},
		{vnic("add-vnic", "--vnetid", "16777216", "--mac", "2:8:20:0:0:2", "--host", "h1"), "--vnetid 16777216 out of range 0-16777215"},
		{vnic("move-vnic", "--vnetid", "4294967295", "--mac", "2:8:20:0:0:2", "--host", "h1"), "--vnetid 4294967295 out of range"},
		{vnic("add-vnic", "--vnetid", "42", "--mac", "2:8:20:0:0:2", "--host", "h1", "--vlan", "4095"), "--vlan 4095 out of range 0-4094"},
		{vnic("add-host", "h2", "198.18.0"), `invalid underlay address "198.18.0"`},
		{vnic("add-host", "h2", "224.0.0.1"), "underlay address 224.0.0.1: multicast addresses are not allowed"},
		{vnic("add-host", "h2", "fe80::1%eth0"), `invalid underlay address "fe80::1%eth0"`},
		{[]string{"show-hosts", "--store", "mysql://x"}, `store "mysql://x": want sqlite:PATH or a postgres:// URL`},
		{[]string{"add-host", "--store", "sqlite:", "h2", "198.18.0.2"}, "needs a file path"},
	} {
		fails(t, tc.args, tc.want)
	}
	// Nothing above changed the store.
	if out := ok(t, dsn, "show-vnics", "-p", "-o", "vnetid,mac,host,ips"); out != "42:2\\:8\\:20\\:0\\:0\\:1:h1:10.0.0.1\n" {
		t.Errorf("the store changed:\n%s", out)
	}
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host"); out != "h1\n" {
		t.Errorf("the hosts changed:\n%s", out)
	}
}

// TestHostSources: add-host --source registers the other addresses a
// host's connections come from; show-hosts lists them; adding the host
// again replaces them; bad ones are refused with the field named, exit 1,
// and nothing created or changed.
func TestHostSources(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "--source", "10.99.0.1", "--source", "::ffff:10.99.0.2", "--source", "fd00:99::1", "h1", "198.18.0.1")
	ok(t, dsn, "add-host", "h2", "198.18.0.2")
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host,sources"); out != "h1:10.99.0.1,10.99.0.2,fd00\\:99\\:\\:1\nh2:\n" {
		t.Errorf("show-hosts -p -o host,sources:\n%s", out)
	}
	out := ok(t, dsn, "show-hosts")
	if lines := strings.Split(out, "\n"); len(lines) != 4 || strings.Join(strings.Fields(lines[1]), " ") != "h1 198.18.0.1 4789 10.99.0.1,10.99.0.2,fd00:99::1" {
		t.Errorf("show-hosts:\n%s", out)
	}
	st, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	actsFor := func(src string) string {
		t.Helper()
		hs, err := st.HostsFrom(context.Background(), netip.MustParseAddr(src))
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, h := range hs {
			ids = append(ids, h.ID)
		}
		return strings.Join(ids, ",")
	}
	if got := actsFor("10.99.0.2"); got != "h1" {
		t.Errorf("a connection from 10.99.0.2 acts for %q, want h1", got)
	}

	// Bad sources: the field named, exit 1, the store unchanged.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--source", "10.99.0.300"}, `--source "10.99.0.300" is not an IP address`},
		{[]string{"--source", ""}, `--source "" is not an IP address`},
		{[]string{"--source", "fe80::1%eth0"}, `--source "fe80::1%eth0" is not an IP address`},
		{[]string{"--source", "10.99.0.0/24"}, `--source "10.99.0.0/24" is not an IP address`},
		{[]string{"--source", "0.0.0.0"}, "--source 0.0.0.0: no connection comes from an unspecified or multicast address"},
		{[]string{"--source", "ff02::1"}, "--source ff02::1: no connection comes from"},
		{[]string{"--source", "10.99.0.5", "--source", "::ffff:10.99.0.5"}, "--source 10.99.0.5 given twice"},
		{[]string{"--source", "198.18.0.3"}, "--source 198.18.0.3 is the underlay address"},
	} {
		for _, host := range []string{"h1", "h3"} { // a change and a creation
			args := append(append([]string{"add-host", "--store", dsn}, tc.args...), host, map[string]string{"h1": "198.18.0.9", "h3": "198.18.0.3"}[host])
			if host == "h1" && strings.Contains(tc.want, "underlay address") {
				continue
			}
			fails(t, args, tc.want)
		}
	}
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host,ip,sources"); out != "h1:198.18.0.1:10.99.0.1,10.99.0.2,fd00\\:99\\:\\:1\nh2:198.18.0.2:\n" {
		t.Errorf("the bad add-hosts changed the store:\n%s", out)
	}

	// Adding the host again sets its sources to those given: another
	// list, then none.
	ok(t, dsn, "add-host", "--source", "10.99.0.7", "h1", "198.18.0.1")
	ok(t, dsn, "add-host", "--source", "10.99.0.7", "h2", "198.18.0.2") // one address, two hosts
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host,sources"); out != "h1:10.99.0.7\nh2:10.99.0.7\n" {
		t.Errorf("after replacing the sources:\n%s", out)
	}
	if got := actsFor("10.99.0.7"); got != "h1,h2" {
		t.Errorf("a connection from 10.99.0.7 acts for %q, want h1,h2", got)
	}
	if got := actsFor("10.99.0.1"); got != "" {
		t.Errorf("a replaced source still acts for %q", got)
	}
	ok(t, dsn, "add-host", "h1", "198.18.0.1")
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host,sources"); out != "h1:\nh2:10.99.0.7\n" {
		t.Errorf("after add-host without --source:\n%s", out)
	}
	// Removing a host removes its sources.
	ok(t, dsn, "remove-host", "h2")
	if got := actsFor("10.99.0.7"); got != "" {
		t.Errorf("a removed host's source still acts for %q", got)
	}
}

// TestUsage: usage errors exit 2 and show the subcommand's usage.
func TestUsage(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"add-vnic", "--store", dsn, "--vnetid", "1", "--host", "h1"}, `required flag(s) "mac" not set`},
		{[]string{"add-vnic", "--store", dsn, "--mac", "2:8:20:0:0:1"}, `required flag(s) "host", "vnetid" not set`},
		{[]string{"move-vnic", "--store", dsn, "--vnetid", "1", "--mac", "2:8:20:0:0:1"}, `required flag(s) "host" not set`},
		{[]string{"remove-vnic", "--store", dsn, "--vnetid", "1"}, `required flag(s) "mac" not set`},
		{[]string{"add-host", "--store", dsn, "h1"}, "want <host> <underlay-ip>, got 1 operands"},
		{[]string{"add-host", "--store", dsn, "h1", "198.18.0.1", "x"}, "want <host> <underlay-ip>, got 3 operands"},
		{[]string{"remove-host", "--store", dsn}, "want <host>, got 0 operands"},
		{[]string{"remove-host", "--store", dsn, "h1", "h2"}, "want <host>, got 2 operands"},
		{[]string{"show-hosts", "--store", dsn, "extra"}, `unexpected operand "extra"`},
		{[]string{"show-vnics", "--store", dsn, "extra"}, `unexpected operand "extra"`},
		{[]string{"add-vnic", "--store", dsn, "--vnetid", "1", "--mac", "2:8:20:0:0:1", "--host", "h1", "extra"}, `unexpected operand "extra"`},
		{[]string{"remove-vnic", "--store", dsn, "--vnetid", "1", "--mac", "2:8:20:0:0:1", "extra"}, `unexpected operand "extra"`},
		{[]string{"move-vnic", "--store", dsn, "--vnetid", "1", "--mac", "2:8:20:0:0:1", "--host", "h1", "extra"}, `unexpected operand "extra"`},
		{[]string{"serve", "--store", dsn, "extra"}, `unexpected operand "extra"`},
		{[]string{"show-hosts", "--store", dsn, "--bogus"}, "unknown flag: --bogus"},
		{[]string{"add-vnic", "--store", dsn, "-x"}, "unknown shorthand flag: 'x' in -x"},
		{[]string{"add-host", "--store", dsn, "--port", "70000", "h1", "198.18.0.1"}, `invalid argument "70000" for "--port"`},
		{[]string{"add-host", "--store", dsn, "--port", "0", "h1", "198.18.0.1"}, "--port 0: a host receives VXLAN on a UDP port from 1 to 65535"},
		{[]string{"add-vnic", "--store", dsn, "--vnetid", "-1", "--mac", "2:8:20:0:0:1", "--host", "h1"}, `invalid argument "-1" for "--vnetid"`},
		{[]string{"add-vnic", "--store", dsn, "--vnetid", "1", "--mac", "2:8:20:0:0:1", "--host", "h1", "--vlan", "x"}, `invalid argument "x" for "--vlan"`},
		{[]string{"show-vnics", "--store", dsn, "--vnetid", "x"}, `invalid argument "x" for "--vnetid"`},
		{[]string{"show-hosts", "--store", dsn, "-p"}, "-p needs -o"},
		{[]string{"show-vnics", "--store", dsn, "-p", "-o", "mac,bogus"}, `unknown output field "bogus"`},
		{[]string{"serve", "--store", dsn, "--log-format", "xml"}, `--log-format "xml": want text or json`},
		{[]string{"serve", "--store", dsn, "--log-level", "loud"}, `--log-level "loud"`},
		{[]string{"serve", "--store", dsn, "--log-hold", "6s"}, `--log-hold 6s: want 0 (answer at once) to 5s`},
		{[]string{"serve", "--store", dsn, "--log-hold", "-1s"}, `--log-hold -1s`},
	} {
		misused(t, tc.args, tc.want)
	}
	// Nothing of it reached the store.
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host"); out != "" {
		t.Errorf("usage errors left hosts: %q", out)
	}
	// Unknown subcommands have no usage line of their own.
	code, _, errs := run(t, "bogus")
	if code != 2 || errs != "portolan: unknown command \"bogus\" for \"portolan\"\n" {
		t.Errorf("bogus: exit %d, stderr %q", code, errs)
	}
}

// TestStoreEnv: $PORTOLAN_STORE is the store when --store is absent.
func TestStoreEnv(t *testing.T) {
	dsn := newDSN(t)
	t.Setenv(StoreEnv, dsn)
	if code, _, errs := run(t, "add-host", "h1", "198.18.0.1"); code != 0 {
		t.Fatalf("add-host with %s set: exit %d, %s", StoreEnv, code, errs)
	}
	if out := ok(t, dsn, "show-hosts", "-p", "-o", "host"); out != "h1\n" {
		t.Errorf("the host did not go to $%s: %q", StoreEnv, out)
	}
	// --store wins over the environment.
	other := newDSN(t)
	ok(t, other, "add-host", "h2", "198.18.0.2")
	if code, out, _ := run(t, "show-hosts", "-p", "-o", "host"); code != 0 || out != "h1\n" {
		t.Errorf("show-hosts from $%s: exit %d, %q", StoreEnv, code, out)
	}
	t.Setenv(StoreEnv, "mysql://x")
	if out := ok(t, other, "show-hosts", "-p", "-o", "host"); out != "h2\n" {
		t.Errorf("--store with a bad $%s: %q", StoreEnv, out)
	}
	fails(t, []string{"show-hosts"}, `store "mysql://x"`)
}

// TestHelp: --help of every subcommand prints its help on stdout and
// exits 0, touching no store.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"serve", "init", "add-host", "remove-host", "show-hosts", "add-vnic", "remove-vnic", "move-vnic", "show-vnics", "check"} {
		for _, flag := range []string{"--help", "-h"} {
			code, out, errs := run(t, sub, flag, "--store", "mysql://x")
			if code != 0 || errs != "" || !strings.Contains(out, "Usage:\n  portolan "+sub) || !strings.Contains(out, "--store") {
				t.Errorf("%s %s: exit %d, stderr %q, stdout:\n%s", sub, flag, code, errs, out)
			}
		}
	}
	for sub, flags := range map[string][]string{
		"serve":    {"--no-ownership-check", "--admin", "--log-hold", "/metrics", "LimitNOFILE"},
		"add-host": {"--source"},
		"check":    {"--dump", "http://"},
	} {
		_, out, _ := run(t, sub, "--help")
		for _, flag := range flags {
			if !strings.Contains(out, flag) {
				t.Errorf("%s --help does not document %s:\n%s", sub, flag, out)
			}
		}
	}
	code, out, errs := run(t, "--help")
	if code != 0 || errs != "" || !strings.Contains(out, "add-vnic") || !strings.Contains(out, StoreEnv) {
		t.Errorf("--help: exit %d, stderr %q, stdout:\n%s", code, errs, out)
	}
}

// TestStoreMustExist: serve and the commands that read or remove refuse a
// store that does not exist, creating nothing; init and the adding
// commands create it and say so.
func TestStoreMustExist(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "nonexistent-dir")
	missing := "sqlite:" + filepath.Join(dir, "x.db")
	for _, args := range [][]string{
		{"show-hosts"}, {"show-vnics"}, {"check"}, {"remove-host", "h1"},
		{"remove-vnic", "--vnetid", "1", "--mac", "2:8:20:0:0:1"},
		{"move-vnic", "--vnetid", "1", "--mac", "2:8:20:0:0:1", "--host", "h1"},
		{"add-vnic", "--vnetid", "1", "--mac", "2:8:20:0:0:1", "--host", "h1"},
		{"serve", "--listen", "127.0.0.1:0"},
	} {
		fails(t, append([]string{args[0], "--store", missing}, args[1:]...),
			"store "+missing+": no such store: the file "+filepath.Join(dir, "x.db")+" does not exist (portolan init --store "+missing+" creates it)")
		if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s on a missing store created %s (%v)", args[0], dir, err)
		}
	}
	// A file that is not a store (here empty) is refused too, unchanged.
	empty := filepath.Join(t.TempDir(), "empty.db")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fails(t, []string{"show-hosts", "--store", "sqlite:" + empty}, "no such store: no portolan tables in the file "+empty+" (if it is the right store, portolan init --store sqlite:"+empty+" adds them)")
	if fi, err := os.Stat(empty); err != nil || fi.Size() != 0 {
		t.Errorf("show-hosts changed the file that is not a store: %v, %v", fi, err)
	}

	// init creates it, once.
	code, out, errs := run(t, "init", "--store", missing)
	if code != 0 || out != "" || errs != "portolan: created a new store: "+missing+"\n" {
		t.Errorf("init: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, out, errs = run(t, "init", "--store", missing)
	if code != 0 || out != "the store exists: "+missing+"\n" || errs != "" {
		t.Errorf("init again: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	ok(t, missing, "show-hosts")

	// add-host creates a new store, and says so.
	other := "sqlite:" + filepath.Join(t.TempDir(), "sub", "y.db")
	code, _, errs = run(t, "add-host", "--store", other, "h1", "198.18.0.1")
	if code != 0 || errs != "portolan: created a new store: "+other+"\n" {
		t.Errorf("add-host on a new store: exit %d, stderr %q", code, errs)
	}
	if out := ok(t, other, "show-hosts", "-p", "-o", "host"); out != "h1\n" {
		t.Errorf("show-hosts after add-host: %q", out)
	}
}
