package integration

import (
	"context"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"overlaynet/netlab"
)

// TestWorkers: with several workers the userspace data path gives every
// TAP one queue per worker and carries several TCP flows; a restart with
// another worker count takes the persistent TAPs over as they were made
// (multi-queue or not) and traffic flows again.
func TestWorkers(t *testing.T) {
	need(t, "ping", "iperf3")
	if strings.Contains(os.Getenv(netlab.ExtraArgsEnv), "--workers") {
		t.Skipf("%s sets the worker count this test varies", netlab.ExtraArgsEnv)
	}
	l := newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	p, err := l.DirectPair(h1, h2, []string{"--workers", "2"})
	must(t, err)
	d1, g1, g2 := p.D1, p.G1, p.G2

	out, err := g1.IP("-d", "link", "show", "vnic1")
	must(t, err)
	if !strings.Contains(out, "multi_queue") {
		t.Errorf("with --workers 2 the TAP is not multi-queue: %s", out)
	}
	must(t, g1.PingAll("10.9.0.2", 3))
	must(t, g2.PingAll("10.9.0.1", 3))

	// Four TCP flows at once.
	_, err = l.Start(g2, "iperf3-server", "iperf3", "-s")
	must(t, err)
	iperfBytes(t, g1, "10.9.0.2", 4)

	// One worker: the multi-queue TAP is taken over with one queue. A
	// VNIC made now is single-queue.
	d1.Kill()
	d1, err = d1.Restart("--workers", "1")
	must(t, err)
	must(t, g1.PingAll("10.9.0.2", 3))
	_, err = d1.Adm("create-vnic", "-l", "ov0", "vnic5")
	must(t, err)
	g5, err := d1.Guest("g5", "vnic5", "10.9.0.5/24")
	must(t, err)
	must(t, g5.PingAll("10.9.0.2", 3))

	// Three workers: three queues of the multi-queue TAP, and the
	// single-queue TAP as it is.
	d1.Kill()
	d1, err = d1.Restart("--workers", "3")
	must(t, err)
	must(t, g1.PingAll("10.9.0.2", 3))
	must(t, g5.PingAll("10.9.0.2", 3))
	out, err = d1.Adm("show-vnic", "-p", "-o", "link")
	must(t, err)
	if got := strings.Fields(out); len(got) != 2 || got[0] != "vnic1" || got[1] != "vnic5" {
		t.Errorf("show-vnic after the restarts lists %q, want vnic1 and vnic5", got)
	}
	out, err = g5.IP("-d", "link", "show", "vnic5")
	must(t, err)
	if strings.Contains(out, "multi_queue") {
		t.Errorf("the single-queue TAP became multi-queue: %s", out)
	}
}

// TestWorkersPortTaken: a listen port held by another program is refused
// with several workers too, although their sockets share a port among
// themselves (SO_REUSEPORT); also when that program's socket would let
// others share it (another overlayd with several workers, say).
func TestWorkersPortTaken(t *testing.T) {
	mainPassOnly(t)
	l := newLab(t)
	h1, _, err := l.TwoHosts()
	must(t, err)
	d1, err := l.StartDaemon(h1, "--workers", "2")
	must(t, err)
	var holder net.PacketConn
	must(t, h1.Do(func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) })
		}}
		holder, err = lc.ListenPacket(context.Background(), "udp4", netlab.Host1IP+":4789")
		return err
	}))
	defer holder.Close()
	err = d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP)
	if err == nil || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("an overlay on a port another program holds: %v, want address already in use", err)
	}
}
