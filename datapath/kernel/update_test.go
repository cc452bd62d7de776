package kernel

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/encap/vxlan"
	"overlaynet/ether"
	"overlaynet/proxy"
)

// inNetNS marks the test process that runs in its own network namespace.
const inNetNS = "OVERLAYNET_KERNEL_TEST_NETNS"

// TestMain runs the tests, as root, in a network namespace of their own:
// the whole process, so that every thread the data path's netlink and
// nftables sockets are opened on sees the same, throwaway namespace, and
// nothing is left behind whatever happens.
func TestMain(m *testing.M) {
	if os.Geteuid() == 0 && os.Getenv(inNetNS) == "" {
		cmd := exec.Command(os.Args[0], os.Args[1:]...)
		cmd.Env = append(os.Environ(), inNetNS+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		err := cmd.Run()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "cannot run the tests in a network namespace of their own:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Getenv(inNetNS) == "" {
		t.Skip("needs root: the kernel data path makes vxlan devices, bridges, veth pairs and nftables chains")
	}
}

// missHandler answers every miss at once, as the lookup engine does.
type missHandler struct {
	ov     atomic.Pointer[datapath.Overlay]
	misses atomic.Uint64
	dest   encap.Dest
}

func (h *missHandler) Miss(mac ether.MAC, vlan uint16) {
	h.misses.Add(1)
	if ov := h.ov.Load(); ov != nil {
		go (*ov).SetTarget(mac, h.dest)
	}
}
func (h *missHandler) Proxy(uint16, proxy.Kind, []byte) {}
func (h *missHandler) MissIP(uint16, netip.Addr)        {}

// underlay gives this namespace an address to listen on.
func underlay(t *testing.T) netip.Addr {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		err = netlink.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatal(err)
	}
	// A veth pair: this kernel has no dummy devices.
	d := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "und0"}, PeerName: "und1"}
	if err := netlink.LinkAdd(d); err != nil && !errors.Is(err, unix.EEXIST) {
		t.Fatal(err)
	}
	if peer, err := netlink.LinkByName("und1"); err != nil || netlink.LinkSetUp(peer) != nil {
		t.Fatalf("underlay peer: %v", err)
	}
	addr, _ := netlink.ParseAddr("192.0.2.1/24")
	if err := netlink.AddrReplace(d, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	return netip.MustParseAddr("192.0.2.1")
}

// newNetNS makes a guest's network namespace, held by a process as a
// container's is.
func newNetNS(t *testing.T) netns.NsHandle {
	t.Helper()
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	g, err := netns.GetFromPid(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// rawSocket sends frames out of an interface.
func rawSocket(t *testing.T, ifname string) func(frame []byte) error {
	t.Helper()
	l, err := netlink.LinkByName(ifname)
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	sa := &unix.SockaddrLinklayer{Ifindex: l.Attrs().Index, Halen: 6}
	return func(frame []byte) error { return unix.Sendto(fd, frame, 0, sa) }
}

func frame(dst, src net.HardwareAddr) []byte {
	f := make([]byte, 60)
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x88b5) // local experimental
	return f
}

func mtuOf(t *testing.T, h *netlink.Handle, name string) int {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("find %s: %v", name, err)
	}
	return l.Attrs().MTU
}

// ourVxlans lists the overlay's vxlan devices.
func ourVxlans(t *testing.T, name string) []*netlink.Vxlan {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []*netlink.Vxlan
	for _, l := range links {
		if vx, ok := l.(*netlink.Vxlan); ok && l.Attrs().Alias == aliasOverlay+name {
			out = append(out, vx)
		}
	}
	return out
}

// TestUpdateDuringLookupStorm changes a dynamic kernel overlay again and
// again (the vnetid, the port, the listen address, the MTU) while a guest
// sends to ever new MACs (each a miss, answered with a forwarding entry)
// and other goroutines use the overlay (Stats, Targets, SetTarget,
// SetNeighbor, RemoveTarget). Under -race this fails on any
// unsynchronised access to the overlay's objects. After every change the
// miss watcher must hear the new device's misses; the known destinations
// are carried over unless the vnetid changed; counters never go
// backwards; an entry removed while the device was being replaced stays
// removed. At the end the VNICs, one of them moved into a guest
// namespace, have the overlay's MTU and exactly one vxlan device is left,
// with the last configuration.
func TestUpdateDuringLookupStorm(t *testing.T) {
	needRoot(t)
	listen := underlay(t)
	listen2 := secondAddress(t)
	dov, cfg, h := dynamicOverlay(t, "race0", 100, netip.AddrPortFrom(listen, 4789))
	macA, _ := net.ParseMAC("02:08:20:00:00:01")
	macB, _ := net.ParseMAC("02:08:20:00:00:02")
	for _, v := range []datapath.VNICConfig{{Name: "vrA", MAC: ether.MAC(macA), NoSpoof: true}, {Name: "vrB", MAC: ether.MAC(macB), NoSpoof: true}} {
		if err := dov.AddVNIC(v); err != nil {
			t.Fatal(err)
		}
	}
	guest := newNetNS(t)
	lb, err := netlink.LinkByName("vrB")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetNsFd(lb, int(guest)); err != nil {
		t.Fatal(err)
	}
	gh, err := netlink.NewHandleAt(guest)
	if err != nil {
		t.Fatal(err)
	}
	defer gh.Close()
	must(t, noIPv6("vrA"))
	send := rawSocket(t, "vrA")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the storm: every frame to a MAC never seen
		defer wg.Done()
		for i := uint32(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			dst := net.HardwareAddr{0x02, 0x99, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
			send(frame(dst, macA))
			if i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for r := range 3 {
		wg.Add(1)
		go func() { // users, as the lookup engine and the admin API are
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				switch i % 4 {
				case 0:
					dov.Stats()
				case 1:
					dov.Targets()
				case 2:
					dov.SetTarget(ether.MAC{0x02, 0x77, 0, 0, byte(r), byte(i)}, h.dest)
				case 3:
					dov.(*overlay).SetNeighbor(netip.AddrFrom4([4]byte{10, 0, byte(r), byte(i)}), ether.MAC{0x02, 0x77, 0, 0, byte(r), byte(i)})
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // entries set and taken back: none may outlive its removal
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			m := ether.MAC{0x02, 0x66, 0, 0, 0, byte(i)}
			dov.SetTarget(m, h.dest)
			dov.RemoveTarget(m)
		}
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		close(stop)
		wg.Wait()
		out, _ := exec.Command("ip", "-d", "link").CombinedOutput()
		t.Logf("%s", out)
		t.Fatalf(format, args...)
	}

	sentinel := ether.MAC{0x02, 0x55, 0, 0, 0, 1}
	const rounds = 9
	for i := 1; i <= rounds; i++ {
		// In turn: a new vnetid (another network: nothing carried over),
		// a new port and a new listen address (the same network: the
		// known destinations carried over, the second with the old
		// device deleted first).
		var what string
		switch i % 3 {
		case 1:
			what = "vnetid"
			cfg.VNetID++
		case 2:
			what = "port"
			cfg.Listen = netip.AddrPortFrom(cfg.Listen.Addr(), 4789+uint16(i))
		case 0:
			what = "listen address"
			a := listen
			if cfg.Listen.Addr() == listen {
				a = listen2
			}
			cfg.Listen = netip.AddrPortFrom(a, cfg.Listen.Port())
		}
		cfg.MTU = 1300 + (i%4)*50
		dov.SetTarget(sentinel, h.dest)
		s0 := dov.Stats()
		if err := dov.Update(cfg); err != nil {
			fail("round %d (%s): Update: %v", i, what, err)
		}
		s1 := dov.Stats()
		for _, c := range []datapath.Counter{datapath.Encapsulated, datapath.DropNoTarget, datapath.Decapsulated} {
			if a, b := s0.Get(c.String()), s1.Get(c.String()); b < a {
				fail("round %d (%s): counter %s went back from %d to %d", i, what, c, a, b)
			}
		}
		carried := hasTarget(dov, sentinel)
		if what == "vnetid" && carried {
			fail("round %d: a forwarding entry of vnetid %d was carried over to vnetid %d", i, cfg.VNetID-1, cfg.VNetID)
		}
		if what != "vnetid" && !carried {
			fail("round %d (%s): a known destination was lost with the old vxlan device", i, what)
		}
		// Lookups go on against the new device.
		before := h.misses.Load()
		deadline := time.Now().Add(5 * time.Second)
		for h.misses.Load() < before+10 {
			if time.Now().After(deadline) {
				fail("round %d (%s): no misses heard from the new vxlan device (vnetid %d, %s) within 5 s", i, what, cfg.VNetID, cfg.Listen)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()

	for _, tg := range dov.Targets() {
		if tg.MAC[0] == 0x02 && tg.MAC[1] == 0x66 {
			t.Errorf("forwarding entry %s outlived its RemoveTarget (carried over by an Update)", net.HardwareAddr(tg.MAC[:]))
		}
	}
	vxs := ourVxlans(t, "race0")
	if len(vxs) != 1 || !matches(vxs[0], cfg) {
		var got []string
		for _, vx := range vxs {
			got = append(got, fmt.Sprintf("%s vnetid %d %s:%d", vx.Name, vx.VxlanId, vx.SrcAddr, vx.Port))
		}
		t.Errorf("vxlan devices of the overlay: %s; want one, vnetid %d %s", strings.Join(got, ", "), cfg.VNetID, cfg.Listen)
	}
	if len(vxs) > 0 && vxs[0].MTU != cfg.MTU {
		t.Errorf("vxlan device MTU %d, want %d", vxs[0].MTU, cfg.MTU)
	}
	if n := len(dov.Targets()); n == 0 {
		t.Error("no forwarding entries on the last device")
	}
	own := netlink.Handle{}
	if m := mtuOf(t, &own, "vrA"); m != cfg.MTU {
		t.Errorf("VNIC vrA (overlayd's namespace) has MTU %d, want the overlay's %d", m, cfg.MTU)
	}
	if m := mtuOf(t, gh, "vrB"); m != cfg.MTU {
		t.Errorf("VNIC vrB (moved into a guest namespace) has MTU %d, want the overlay's %d", m, cfg.MTU)
	}
	if m := mtuOf(t, &own, shortName("ovp", "vrB")); m != cfg.MTU {
		t.Errorf("vrB's bridge port has MTU %d, want %d", m, cfg.MTU)
	}
}

// TestUpdateRollback: an Update whose new vxlan device cannot be made
// leaves the overlay as it was, with its device, its configuration, its
// known destinations and its miss watcher, both where the old device had
// to go first (same vnetid and port) and where it stayed beside.
func TestUpdateRollback(t *testing.T) {
	needRoot(t)
	listen := underlay(t)
	listen2 := secondAddress(t)
	dov, cfg, h := dynamicOverlay(t, "back0", 300, netip.AddrPortFrom(listen, 4791))
	macA, _ := net.ParseMAC("02:08:20:00:03:01")
	must(t, dov.AddVNIC(datapath.VNICConfig{Name: "vbA", MAC: ether.MAC(macA)}))
	must(t, noIPv6("vbA"))
	send := rawSocket(t, "vbA")
	known := ether.MAC{0x02, 0x55, 0, 0, 3, 1}
	dov.SetTarget(known, h.dest)

	t.Cleanup(func() { createVxlan = newVxlan })
	createVxlan = func(string, datapath.OverlayConfig) (*netlink.Vxlan, error) {
		return nil, errors.New("no vxlan device today")
	}
	for i, next := range []datapath.OverlayConfig{
		withListen(cfg, netip.AddrPortFrom(listen2, 4791)), // the old device goes first
		withVNetID(cfg, 301), // the old device stays beside
	} {
		err := dov.Update(next)
		if err == nil || !strings.Contains(err.Error(), "no vxlan device today") {
			t.Fatalf("case %d: Update with a failing vxlan device: err %v, want the creation's error", i, err)
		}
		if got := dov.(*overlay).st.Load().cfg; got.VNetID != cfg.VNetID || got.Listen != cfg.Listen {
			t.Errorf("case %d: after a failed Update the overlay has vnetid %d %s, want the old %d %s", i, got.VNetID, got.Listen, cfg.VNetID, cfg.Listen)
		}
		if vxs := ourVxlans(t, "back0"); len(vxs) != 1 || !matches(vxs[0], cfg) {
			t.Errorf("case %d: after a failed Update the overlay has %d vxlan devices, want the old one", i, len(vxs))
		}
		if !hasTarget(dov, known) {
			t.Errorf("case %d: a known destination was lost with a failed Update", i)
		}
		before := h.misses.Load()
		deadline := time.Now().Add(5 * time.Second)
		for j := uint32(0); h.misses.Load() == before; j++ {
			if time.Now().After(deadline) {
				t.Fatalf("case %d: no misses heard after a failed Update", i)
			}
			send(frame(net.HardwareAddr{0x02, 0x98, byte(i), 0, byte(j >> 8), byte(j)}, macA))
			time.Sleep(10 * time.Millisecond)
		}
	}
	// And with the device back, the same Update goes through.
	createVxlan = newVxlan
	next := withVNetID(cfg, 301)
	must(t, dov.Update(next))
	if vxs := ourVxlans(t, "back0"); len(vxs) != 1 || !matches(vxs[0], next) {
		t.Errorf("after a good Update the overlay has %d vxlan devices, want one with vnetid 301", len(vxs))
	}
}

// dynamicOverlay makes a dynamic kernel overlay whose misses are
// answered at once, deleted when the test ends.
func dynamicOverlay(t *testing.T, name string, vnetid uint32, listen netip.AddrPort) (datapath.Overlay, datapath.OverlayConfig, *missHandler) {
	t.Helper()
	h := &missHandler{dest: encap.Dest{IP: netip.MustParseAddr("192.0.2.9"), Port: 4789}}
	dp := New(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	cfg := datapath.OverlayConfig{Name: name, VNetID: vnetid, Encap: vxlan.Plugin{}, Listen: listen, MTU: 1400, Handler: h}
	dov, err := dp.CreateOverlay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.ov.Store(&dov)
	t.Cleanup(func() { dov.(*overlay).Delete() })
	return dov, cfg, h
}

func withListen(c datapath.OverlayConfig, l netip.AddrPort) datapath.OverlayConfig {
	c.Listen = l
	return c
}

func withVNetID(c datapath.OverlayConfig, id uint32) datapath.OverlayConfig {
	c.VNetID = id
	return c
}

func hasTarget(ov datapath.Overlay, mac ether.MAC) bool {
	for _, t := range ov.Targets() {
		if t.MAC == mac {
			return true
		}
	}
	return false
}

// secondAddress gives the underlay a second address to listen on.
func secondAddress(t *testing.T) netip.Addr {
	t.Helper()
	addr, _ := netlink.ParseAddr("192.0.2.2/24")
	if err := netlink.AddrReplace(mustLink(t, "und0"), addr); err != nil {
		t.Fatal(err)
	}
	return netip.MustParseAddr("192.0.2.2")
}

// TestNoSpoofKernel: a frame from a VNIC with another source MAC than
// its own is dropped by the bridge rule and counted; with the check off
// it passes; an honest frame always passes.
func TestNoSpoofKernel(t *testing.T) {
	needRoot(t)
	listen := underlay(t)
	h := &missHandler{}
	dp := New(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	dov, err := dp.CreateOverlay(datapath.OverlayConfig{Name: "spoof0", VNetID: 200, Encap: vxlan.Plugin{},
		Listen: netip.AddrPortFrom(listen, 4790), MTU: 1400, Handler: h})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dov.(*overlay).Delete() })
	macA, _ := net.ParseMAC("02:08:20:00:01:01")
	macB, _ := net.ParseMAC("02:08:20:00:01:02")
	for _, v := range []datapath.VNICConfig{{Name: "vsA", MAC: ether.MAC(macA), NoSpoof: true}, {Name: "vsB", MAC: ether.MAC(macB), NoSpoof: true}} {
		if err := dov.AddVNIC(v); err != nil {
			t.Fatal(err)
		}
	}
	// Without IPv6 neither end says anything of its own to vsB.
	must(t, noIPv6("vsA"))
	must(t, noIPv6("vsB"))
	send := rawSocket(t, "vsA")
	netlink.LinkSetUp(mustLink(t, "vsB"))
	// What reaches vsB is counted from a packet socket on it, by source
	// MAC, so that nothing else the kernel sends there under load counts.
	fake, _ := net.ParseMAC("02:08:20:00:01:99")
	rx := testFrames(t, "vsB")
	var fromVsA uint64 // frames sent by vsA, honest or spoofed
	received := func() uint64 {
		for _, f := range rx() {
			if src := f[6:12]; bytes.Equal(src, macA) || bytes.Equal(src, fake) {
				fromVsA++
			}
		}
		return fromVsA
	}
	spoofed := func() uint64 { return dov.Stats().Get(datapath.DropSpoofed.String()) }
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 3 s (drop-spoofed %d, vsB received %d)", what, spoofed(), received())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	// Honest: reaches vsB.
	r0 := received()
	must(t, send(frame(macB, macA)))
	wait("an honest frame reaching vsB", func() bool { return received() > r0 })
	// Spoofed: dropped and counted, nothing reaches vsB.
	r1, s1 := received(), spoofed()
	for range 5 {
		must(t, send(frame(macB, fake)))
	}
	wait("five spoofed frames counted", func() bool { return spoofed() >= s1+5 })
	must(t, send(frame(macB, macA))) // a marker: once it is in, the spoofed ones would be too
	wait("the marker reaching vsB", func() bool { return received() > r1 })
	if got := received() - r1; got != 1 {
		t.Errorf("vsB received %d frames, want only the honest marker (spoofed frames got through)", got)
	}
	// Off: the spoofed frames pass, and are not counted.
	must(t, dov.SetNoSpoof("vsA", false))
	r2, s2 := received(), spoofed()
	for range 5 {
		must(t, send(frame(macB, fake)))
	}
	wait("spoofed frames reaching vsB with the check off", func() bool { return received() >= r2+5 })
	if s := spoofed(); s != s2 {
		t.Errorf("drop-spoofed rose from %d to %d with the check off", s2, s)
	}
	// On again: the counter carries on from where it was.
	must(t, dov.SetNoSpoof("vsA", true))
	must(t, send(frame(macB, fake)))
	wait("the check back on", func() bool { return spoofed() == s2+1 })
}

// testFrames returns a function that returns the frames of the test
// EtherType (frame) that ifname received since it was last called.
func testFrames(t *testing.T, ifname string) func() [][]byte {
	t.Helper()
	proto := int(htons(0x88b5))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: mustLink(t, ifname).Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	return func() [][]byte {
		var out [][]byte
		for {
			b := make([]byte, 2048)
			n, from, err := unix.Recvfrom(fd, b, 0)
			if err != nil {
				return out
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if n >= 14 {
				out = append(out, b[:n])
			}
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func mustLink(t *testing.T, name string) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
