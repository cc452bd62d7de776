package userspace

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"overlaynet/ether"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const testOwner = "0123456789abcdef"

var (
	macVNIC  = net.HardwareAddr{0x02, 0x08, 0x20, 0x01, 0x02, 0x03}
	macOther = net.HardwareAddr{0x02, 0x08, 0x20, 0x0a, 0x0b, 0x0c}
)

// TestClassifyTAP: a tagged TAP is told by its tag alone; an untagged
// one (an older overlayd's alias) is ours only with the VNIC's MAC; any
// other interface is foreign.
func TestClassifyTAP(t *testing.T) {
	const name = "vn0"
	for _, tc := range []struct {
		desc, kind, alias, owner string
		mac                      net.HardwareAddr
		want                     tapOwnership
	}{
		{"tagged ours", "tuntap", vnicAlias(name, testOwner), testOwner, macVNIC, tapOurs},
		{"tagged ours, MAC changed", "tuntap", vnicAlias(name, testOwner), testOwner, macOther, tapOurs},
		{"untagged, the VNIC's MAC", "tuntap", aliasPrefix + name, testOwner, macVNIC, tapLegacy},
		{"untagged, another MAC", "tuntap", aliasPrefix + name, testOwner, macOther, tapForeign},
		{"untagged, no MAC", "tuntap", aliasPrefix + name, testOwner, nil, tapForeign},
		{"another overlayd's tag", "tuntap", vnicAlias(name, "fedcba9876543210"), testOwner, macVNIC, tapForeign},
		{"another VNIC's alias", "tuntap", aliasPrefix + "vn1", testOwner, macVNIC, tapForeign},
		{"no alias", "tuntap", "", testOwner, macVNIC, tapForeign},
		{"not a TAP", "veth", vnicAlias(name, testOwner), testOwner, macVNIC, tapForeign},
		{"no owner: the untagged alias is the tag", "tuntap", aliasPrefix + name, "", macOther, tapOurs},
	} {
		if got := classifyTAP(tc.kind, tc.alias, tc.mac, name, tc.owner, ether.MAC(macVNIC)); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.desc, got, tc.want)
		}
	}
}

// TestForeignTAPError: the refusal names the device, its MAC and the
// VNIC's, where it is, and the ways out.
func TestForeignTAPError(t *testing.T) {
	msg := foreignTAPError("vn0", aliasPrefix+"vn0", macOther, testOwner, ether.MAC(macVNIC), "net:[4026532000]").Error()
	for _, want := range []string{"TAP vn0", macOther.String(), macVNIC.String(), "net:[4026532000]", "ip link delete vn0", "ip link set vn0 name", "another name"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q does not say %q", msg, want)
		}
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes TAP devices")
	}
}

// makeTAP makes a persistent TAP, held by no one, with a name no other
// test or daemon uses, and deletes it when the test ends, however it ends.
func makeTAP(t *testing.T, mac net.HardwareAddr, alias func(name string) string) netlink.Link {
	t.Helper()
	var b [5]byte
	rand.Read(b[:])
	name := "ovt" + hex.EncodeToString(b[:])
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := netlink.LinkAdd(&netlink.Tuntap{LinkAttrs: la, Mode: netlink.TUNTAP_MODE_TAP}); err != nil {
		t.Fatalf("make TAP %s: %v", name, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(name); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete TAP %s: %v", name, err)
			}
		}
	})
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{netlink.LinkSetHardwareAddr(l, mac), netlink.LinkSetMTU(l, 1280), netlink.LinkSetAlias(l, alias(name))} {
		if err != nil {
			t.Fatalf("set up TAP %s: %v", name, err)
		}
	}
	if l, err = netlink.LinkByName(name); err != nil {
		t.Fatal(err)
	}
	return l
}

// makeNetns makes a named network namespace (/run/netns), as ip netns
// add does, and deletes it, with whatever is in it, when the test ends.
func makeNetns(t *testing.T) (netns.NsHandle, string) {
	t.Helper()
	var b [5]byte
	rand.Read(b[:])
	name := "ovt" + hex.EncodeToString(b[:])
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// NewNamed moves the thread into the new namespace: lock it and
		// let it die with the goroutine rather than go back to the pool.
		runtime.LockOSThread()
		ns, err := netns.NewNamed(name)
		ch <- result{ns, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("make network namespace %s: %v", name, r.err)
	}
	t.Cleanup(func() {
		r.ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete network namespace %s: %v", name, err)
		}
	})
	return r.ns, name
}

// inNetns runs f on a thread in ns; /dev/net/tun makes its TAPs in the
// namespace of the thread that opens it. The thread is thrown away.
func inNetns(t *testing.T, ns netns.NsHandle, f func()) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		defer func() { done <- nil }()
		f()
	}()
	if err := <-done; err != nil {
		t.Fatalf("enter network namespace: %v", err)
	}
}

// TestOpenTAPRefusesForeignUntagged: an untagged TAP with the VNIC's name
// but another MAC is neither taken over (restoring a saved VNIC) nor
// reused (making one), and is left as it was; with the VNIC's MAC it is
// taken over and tagged.
func TestOpenTAPRefusesForeignUntagged(t *testing.T) {
	needRoot(t)
	untagged := func(name string) string { return aliasPrefix + name }
	for _, adopt := range []bool{true, false} {
		t.Run(map[bool]string{true: "restore", false: "create"}[adopt], func(t *testing.T) {
			before := makeTAP(t, macOther, untagged)
			name := before.Attrs().Name
			tp, err := openTAP(name, testOwner, ether.MAC(macVNIC), 1400, true, adopt, false, 1)
			if err == nil {
				tp.close()
				t.Fatalf("someone else's untagged TAP %s (MAC %s) was taken for a VNIC with MAC %s", name, macOther, macVNIC)
			}
			t.Log(err)
			for _, want := range []string{name, macOther.String(), "ip link delete " + name, "another name"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			after, lerr := netlink.LinkByName(name)
			if lerr != nil {
				t.Fatalf("the refused TAP is gone: %v", lerr)
			}
			a, b := before.Attrs(), after.Attrs()
			if a.Index != b.Index || a.Alias != b.Alias || !bytes.Equal(a.HardwareAddr, b.HardwareAddr) || a.MTU != b.MTU || a.Flags != b.Flags {
				t.Errorf("the refused TAP was changed: before %+v, after %+v", a, b)
			}
			if tt, ok := after.(*netlink.Tuntap); !ok || tt.Queues != 0 {
				t.Errorf("the refused TAP is held open (%T %+v)", after, after)
			}
		})
	}
	t.Run("restore, in another namespace", func(t *testing.T) {
		ns, nsName := makeNetns(t)
		var before netlink.Link
		inNetns(t, ns, func() { before = makeTAP(t, macOther, untagged) })
		name := before.Attrs().Name
		tp, err := openTAP(name, testOwner, ether.MAC(macVNIC), 1400, true, true, false, 1)
		if err == nil {
			tp.destroy() // made in overlayd's namespace, or taken
			t.Fatalf("someone else's untagged TAP %s in netns %s: restoring the VNIC did not refuse it", name, nsName)
		}
		t.Log(err)
		if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "network namespace "+nsName+" ") {
			t.Errorf("error %q does not name the TAP %s and its namespace", err, name)
		}
		h, herr := netlink.NewHandleAt(ns)
		if herr != nil {
			t.Fatal(herr)
		}
		defer h.Close()
		after, lerr := h.LinkByName(name)
		if lerr != nil {
			t.Fatalf("the refused TAP is gone: %v", lerr)
		}
		if after.Attrs().Alias != before.Attrs().Alias || !bytes.Equal(after.Attrs().HardwareAddr, macOther) {
			t.Errorf("the refused TAP was changed: before %+v, after %+v", before.Attrs(), after.Attrs())
		}
		if _, err := netlink.LinkByName(name); err == nil {
			t.Errorf("a TAP %s was made in overlayd's namespace beside the refused one", name)
		}
	})
	t.Run("legacy", func(t *testing.T) {
		before := makeTAP(t, macVNIC, untagged)
		name := before.Attrs().Name
		tp, err := openTAP(name, testOwner, ether.MAC(macVNIC), 1400, true, true, false, 1)
		if err != nil {
			t.Fatalf("an older overlayd's TAP with the VNIC's MAC was not taken over: %v", err)
		}
		defer tp.close()
		after, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if after.Attrs().Index != before.Attrs().Index || after.Attrs().Alias != vnicAlias(name, testOwner) {
			t.Errorf("taken over: index %d alias %q, want index %d (the same TAP) and alias %q",
				after.Attrs().Index, after.Attrs().Alias, before.Attrs().Index, vnicAlias(name, testOwner))
		}
	})
}
