package integration

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
	"overlaynet/pgtemp"
)

const portolanIP = "198.18.0.100"

// svpNet is an svp overlay "ov0" (vnetid 42) over n hosts, with portolan
// servers on the same underlay holding every mapping.
type svpNet struct {
	l      *netlab.Lab
	hosts  []*netlab.NS
	ds     []*netlab.Daemon
	dsn    string
	server string // svp/host
	ps     []*netlab.Portolan
}

// newSVPNet builds the hosts and one portolan at portolanIP over a SQLite
// store; with dsn set, servers more servers can share it (addServer).
func newSVPNet(t *testing.T, n int, dsn string, servers int, extra ...string) *svpNet {
	t.Helper()
	f := &svpNet{l: newLab(t), dsn: dsn, server: portolanIP}
	var err error
	f.hosts, err = f.l.Hosts(n)
	must(t, err)
	if f.dsn == "" {
		f.dsn = "sqlite:" + filepath.Join(f.l.Dir, "portolan.db")
	}
	for i := 0; i < n; i++ {
		_, err := f.l.PortolanAdm(f.dsn, "add-host", fmt.Sprintf("h%d", i+1), netlab.HostIP(i+1))
		must(t, err)
	}
	var hostsFile strings.Builder
	for i := 0; i < servers; i++ {
		ns, err := f.l.Namespace(fmt.Sprintf("ps%d", i))
		must(t, err)
		ip := fmt.Sprintf("198.18.0.%d", 100+i)
		must(t, f.l.SwitchPort(ns, ip+"/24"))
		p, err := f.l.StartPortolan(ns, fmt.Sprint(i), ip+":1296", f.dsn)
		must(t, err)
		f.ps = append(f.ps, p)
		fmt.Fprintf(&hostsFile, "%s portolan.lab\n", ip)
	}
	if servers > 1 {
		f.server = "portolan.lab" // resolves to every server
	}
	for i, h := range f.hosts {
		must(t, h.HostsFile(hostsFile.String()))
		d, err := f.l.StartDaemon(h)
		must(t, err)
		must(t, d.SVPOverlay("ov0", 42, netlab.HostIP(i+1), f.server, extra...))
		f.ds = append(f.ds, d)
	}
	return f
}

// vnic creates a VNIC with guest i's MAC on host (0-based), in a guest
// namespace with the addresses, and maps it in portolan when mapped.
func (f *svpNet) vnic(t *testing.T, host, i int, v4, v6 string, mapped bool) *netlab.NS {
	t.Helper()
	name := fmt.Sprintf("vn%d", i)
	_, err := f.ds[host].Adm("create-vnic", "-l", "ov0", "-m", guestMAC(i), name)
	must(t, err)
	addrs := []string{v4 + "/24"}
	args := []string{"add-vnic", "--vnetid", "42", "--mac", guestMAC(i), "--host", fmt.Sprintf("h%d", host+1), "--ip", v4}
	if v6 != "" {
		addrs = append(addrs, v6+"/64")
		args = append(args, "--ip", v6)
	}
	g, err := f.ds[host].Guest(fmt.Sprintf("g%d-%d", i, host), name, addrs...)
	must(t, err)
	if mapped {
		_, err = f.l.PortolanAdm(f.dsn, args...)
		must(t, err)
	}
	return g
}

// TestSVPThreeHosts: three hosts and one portolan; VNICs ping each other
// over IPv4 and IPv6 with their mappings held only in portolan.
func TestSVPThreeHosts(t *testing.T) {
	forEachDataPath(t, testSVPThreeHosts)
}

func testSVPThreeHosts(t *testing.T, dp string) {
	need(t, "ping")
	f := newSVPNet(t, 3, "", 1, "-p", "datapath="+dp)
	var guests []*netlab.NS
	for i := 1; i <= 3; i++ {
		guests = append(guests, f.vnic(t, i-1, i, fmt.Sprintf("10.8.0.%d", i), fmt.Sprintf("fd00:8::%d", i), true))
	}
	for _, d := range f.ds {
		waitStatus(t, d, "ONLINE")
	}
	for i, g := range guests {
		for j := range guests {
			if i == j {
				continue
			}
			if dp == "kernel" {
				// The kernel drops the frame that caused a miss; the
				// guest's retry finds the answer installed.
				g.Exec("ping", "-c", "1", "-W", "3", fmt.Sprintf("10.8.0.%d", j+1))
				g.Exec("ping", "-c", "1", "-W", "3", fmt.Sprintf("fd00:8::%d", j+1))
			}
			must(t, g.PingAll(fmt.Sprintf("10.8.0.%d", j+1), 2))
			must(t, g.PingAll(fmt.Sprintf("fd00:8::%d", j+1), 2))
		}
	}
	out, err := f.ds[0].Adm("show-overlay", "-t", "-p", "-o", "target,destination", "ov0")
	must(t, err)
	if !strings.Contains(out, `2\:8\:20\:0\:0\:2:198.18.0.2\:4789`) {
		t.Errorf("target table:\n%s", out)
	}
	// An address portolan does not know gets no answer.
	if got, _ := guests[0].Ping("10.8.0.9", 1); got != 0 {
		t.Error("an unmapped address answered")
	}
}

// TestSVPMigration: moving a VNIC to another host with portolan move-vnic
// re-routes traffic to it, through the hosts' logs.
func TestSVPMigration(t *testing.T) {
	need(t, "ping")
	f := newSVPNet(t, 3, "", 1)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "", true)
	f.vnic(t, 1, 2, "10.8.0.2", "", true)
	// Guest 2's twin on host 3: same MAC and address, not mapped yet.
	_, err := f.ds[2].Adm("create-vnic", "-l", "ov0", "-m", guestMAC(2), "vn2b")
	must(t, err)
	_, err = f.ds[2].Guest("g2b", "vn2b", "10.8.0.2/24")
	must(t, err)
	must(t, g1.PingAll("10.8.0.2", 2))

	for i, to := range []string{"h3", "h2", "h3"} {
		d := f.ds[1]
		if to == "h3" {
			d = f.ds[2]
		}
		before, _ := d.Stat("ov0", "out-frames")
		start := time.Now()
		_, err := f.l.PortolanAdm(f.dsn, "move-vnic", "--vnetid", "42", "--mac", guestMAC(2), "--host", to)
		must(t, err)
		// Ping until the new host delivers the frames.
		for {
			g1.Ping("10.8.0.2", 1)
			if after, _ := d.Stat("ov0", "out-frames"); after > before {
				break
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("move %d to %s: traffic did not follow within 5 s", i+1, to)
			}
		}
		t.Logf("move %d to %s: traffic followed in %v", i+1, to, time.Since(start).Round(time.Millisecond))
		must(t, g1.PingAll("10.8.0.2", 2))
	}
}

// TestSVPServerDown: with portolan stopped the overlays are DEGRADED but
// traffic to cached destinations keeps flowing; restarting portolan clears
// the state.
func TestSVPServerDown(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	f := newSVPNet(t, 2, "", 1)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "", true)
	f.vnic(t, 1, 2, "10.8.0.2", "", true)
	must(t, g1.PingAll("10.8.0.2", 2))
	waitStatus(t, f.ds[0], "ONLINE")

	f.ps[0].Proc.Stop()
	details := waitStatus(t, f.ds[0], "DEGRADED", "cannot reach any mapping server", portolanIP)
	t.Logf("while portolan is down: %s", strings.TrimSpace(details))
	must(t, g1.PingAll("10.8.0.2", 5)) // cached: ARP in the guests, targets in overlayd

	p, err := f.l.StartPortolan(f.ps[0].NS, "again", portolanIP+":1296", f.dsn)
	must(t, err)
	f.ps[0] = p
	waitStatus(t, f.ds[0], "ONLINE")
	waitStatus(t, f.ds[1], "ONLINE")
	_, err = f.ds[0].Adm("modify-overlay", "-f", "ov0") // look it up afresh
	must(t, err)
	must(t, g1.PingAll("10.8.0.2", 2))
}

// TestSVPTwoServersPostgres: two portolan servers share one PostgreSQL
// store; killing one loses no lookup: requests in flight on it fail at
// once and are retried on the other.
func TestSVPTwoServersPostgres(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	pg, err := pgtemp.Start()
	must(t, err)
	t.Cleanup(pg.Stop)
	f := newSVPNet(t, 2, pg.DSN, 2)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "", true)
	f.vnic(t, 1, 2, "10.8.0.2", "", true)
	must(t, g1.PingAll("10.8.0.2", 2))

	// Every ping needs a fresh lookup: host 1 forgets its targets all the
	// time.
	stop := make(chan struct{})
	flushed := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				flushed <- n
				return
			case <-time.After(20 * time.Millisecond):
				if _, err := f.ds[0].Adm("modify-overlay", "-f", "ov0"); err == nil {
					n++
				}
			}
		}
	}()
	const count = 60
	ping, err := g1.StartPing("10.8.0.2", count, 0.1)
	must(t, err)
	defer ping.Stop()
	// The server is killed once pings (each a fresh lookup) are seen to
	// be answered, with most of the run still to go.
	must(t, ping.WaitReplies(10, 10*time.Second))
	timedOutBefore, _ := f.ds[0].Stat("ov0", "lookups-timed-out")
	f.ps[0].Proc.Cmd.Process.Kill()
	if r := ping.Replies(); r > count/2 {
		t.Fatalf("the server was killed after %d of %d pings", r, count)
	}
	got, out, err := ping.Wait()
	close(stop)
	t.Logf("flushed the target table %d times; %d of %d pings answered", <-flushed, got, count)
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if got != count {
		t.Errorf("lost %d pings across the loss of a server", count-got)
	}
	started, _ := f.ds[0].Stat("ov0", "lookups-started")
	dropped, _ := f.ds[0].Stat("ov0", "lookups-dropped")
	timedOut, _ := f.ds[0].Stat("ov0", "lookups-timed-out")
	t.Logf("lookups started %d, dropped %d, timed out %d", started, dropped, timedOut)
	if dropped != 0 || timedOut != timedOutBefore {
		t.Errorf("lookups lost: %d dropped, %d timed out", dropped, timedOut-timedOutBefore)
	}
	// One server left: the overlay stays ONLINE.
	waitStatus(t, f.ds[0], "ONLINE")
}

// TestSVPAddressMoves: when portolan moves an address to another VNIC,
// the hosts' logs carry a VL3 entry and the svp plugin announces the new
// owner to local guests (gratuitous ARP, unsolicited neighbour
// advertisement), so their caches follow at once.
func TestSVPAddressMoves(t *testing.T) {
	need(t, "ping")
	f := newSVPNet(t, 3, "", 1)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "fd00:8::1", true)
	f.vnic(t, 1, 2, "10.8.0.2", "fd00:8::2", true)
	must(t, g1.PingAll("10.8.0.2", 1))
	must(t, g1.PingAll("fd00:8::2", 1))
	// The addresses move to a new VNIC (MAC 3) on host 3.
	f.vnic(t, 2, 3, "10.8.0.2", "fd00:8::2", false)
	_, err := f.l.PortolanAdm(f.dsn, "remove-vnic", "--vnetid", "42", "--mac", guestMAC(2))
	must(t, err)
	_, err = f.l.PortolanAdm(f.dsn, "add-vnic", "--vnetid", "42", "--mac", guestMAC(3), "--host", "h3",
		"--ip", "10.8.0.2", "--ip", "fd00:8::2")
	must(t, err)
	want := "02:08:20:00:00:03"
	for _, addr := range []string{"10.8.0.2", "fd00:8::2"} {
		var out string
		for i := 0; i < 40; i++ {
			out, _ = g1.IP("neigh", "show", addr)
			if strings.Contains(out, want) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(out, want) {
			t.Errorf("guest 1's neighbour entry for %s did not follow the move: %q", addr, out)
		}
	}
	must(t, g1.PingAll("10.8.0.2", 2))
	must(t, g1.PingAll("fd00:8::2", 2))
}
