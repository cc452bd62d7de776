package underlayns

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
}

// tempNS makes a named network namespace for the test.
func tempNS(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("uns%d-%s", os.Getpid(), t.Name())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	return name
}

// TestSocketsAndDevices: a socket made with Do is in the namespace (it
// binds an address only that namespace has); a vxlan device made from
// the namespace into ours is here, with its link in the namespace.
func TestSocketsAndDevices(t *testing.T) {
	needRoot(t)
	name := tempNS(t)
	if out, err := exec.Command("ip", "-n", name, "addr", "add", "192.0.2.77/32", "dev", "lo").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	exec.Command("ip", "-n", name, "link", "set", "lo", "up").Run()
	ns, err := Get(name)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := Get("/run/netns/" + name); again != ns {
		t.Error("the same namespace by its path got another thread")
	}
	if _, err := net.ListenPacket("udp4", "192.0.2.77:0"); err == nil {
		t.Fatal("the namespace's address is bindable here: the test proves nothing")
	}
	err = ns.Do(func() error {
		c, err := net.ListenPacket("udp4", "192.0.2.77:0")
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Errorf("bind the namespace's address from its thread: %v", err)
	}

	own, err := Own()
	if err != nil {
		t.Fatal(err)
	}
	vxName := fmt.Sprintf("uvx%d", os.Getpid()%100000)
	vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: vxName, Namespace: netlink.NsFd(own)}, VxlanId: 42, Port: 4789}
	if err := ns.Do(func() error { return netlink.LinkAdd(vx) }); err != nil {
		t.Fatal(err)
	}
	l, err := netlink.LinkByName(vxName)
	if err != nil {
		t.Fatalf("the vxlan device is not here: %v", err)
	}
	defer netlink.LinkDel(l)
	if l.Attrs().NetNsID < 0 {
		t.Errorf("the device's link namespace is ours (NetNsID %d), want the underlay's", l.Attrs().NetNsID)
	}
}

func TestPath(t *testing.T) {
	for ref, want := range map[string]string{"ul": "/run/netns/ul", "/proc/1/ns/net": "/proc/1/ns/net", "a.b-c_d": "/run/netns/a.b-c_d"} {
		if got, err := Path(ref); err != nil || got != want {
			t.Errorf("Path(%q) = %q, %v; want %q", ref, got, err, want)
		}
	}
	for _, bad := range []string{"a/b", "..", "", "x y"} {
		if _, err := Path(bad); err == nil {
			t.Errorf("Path(%q) accepted", bad)
		}
	}
}
