package integration

import (
	"path/filepath"
	"regexp"
	"testing"

	"overlaynet/netlab"
)

// TestDHCPProxy: a VNIC whose map entry has dhcp-proxy gets a DHCP lease
// over the overlay from a real DHCP server (dnsmasq) on another host's
// VNIC, although a dynamic overlay never floods broadcasts: the client's
// broadcasts are redirected to the server's MAC.
func TestDHCPProxy(t *testing.T) {
	forEachDataPath(t, testDHCPProxy)
}

func testDHCPProxy(t *testing.T, dp string) {
	need(t, "dnsmasq", "udhcpc")
	f := newFilesNet(t, 2, "-p", "datapath="+dp)
	// The server: guest 2 on host 2.
	server := f.vnic(t, 1, 2, "10.8.0.2", "")
	// The client: guest 1 on host 1, no address yet.
	_, err := f.ds[0].Adm("create-vnic", "-l", "ov0", "-m", guestMAC(1), "vn1")
	must(t, err)
	client, err := f.ds[0].Guest("g1", "vn1")
	must(t, err)
	f.entries[guestMAC(1)] = map[string]any{"ip": netlab.HostIP(1), "port": 4789, "dhcp-proxy": guestMAC(2)}
	f.publish(t)

	leases := filepath.Join(f.l.Dir, "dnsmasq.leases")
	_, err = f.l.Start(server, "dnsmasq", "dnsmasq", "--no-daemon", "--conf-file=/dev/null",
		"--port=0", "--no-resolv", "--no-hosts", "--no-ping", "--log-dhcp",
		"--interface=vn2", "--bind-interfaces",
		"--dhcp-range=10.8.0.100,10.8.0.150,255.255.255.0,1h",
		"--dhcp-leasefile="+leases, "--pid-file="+filepath.Join(f.l.Dir, "dnsmasq.pid"))
	must(t, err)
	waitUDPListen(t, server, 67)

	// udhcpc reports on standard error.
	out, err := client.Exec("sh", "-c", "udhcpc -i vn1 -f -q -n -t 5 -T 1 -s /bin/true 2>&1")
	if err != nil {
		t.Fatalf("no lease: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`lease of (10\.8\.0\.\d+) obtained`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("udhcpc did not report a lease:\n%s", out)
	}
	t.Logf("client leased %s", m[1])
	if n, _ := f.ds[0].Stat("ov0", "proxy-dhcp"); n == 0 && dp == "userspace" {
		t.Errorf("host 1 redirected no DHCP broadcast (proxy-dhcp 0)")
	}
}
