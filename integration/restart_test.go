package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// TestRestartAfterKill: overlays (direct and files) and VNICs come back
// after kill -9 of overlayd, show-overlay and show-vnic print what they
// printed before, the guests kept their interfaces and traffic flows
// again; temporary objects are gone.
func TestRestartAfterKill(t *testing.T) {
	need(t, "ping")
	l, d1, d2 := twoDaemons(t)
	mapPath := filepath.Join(l.Dir, "map.json")
	must(t, os.WriteFile(mapPath, []byte(`{
  "2:8:20:0:1:1": {"ip": "198.18.0.1", "port": 4789, "arp": "10.6.0.1"},
  "2:8:20:0:1:2": {"ip": "198.18.0.2", "port": 4789, "arp": "10.6.0.2"}
}`), 0o644))
	for _, d := range []struct {
		d           *netlab.Daemon
		self, other string
		n           string
	}{{d1, netlab.Host1IP, netlab.Host2IP, "1"}, {d2, netlab.Host2IP, netlab.Host1IP, "2"}} {
		must(t, d.d.DirectOverlay("ov0", 42, d.self, d.other))
		must(t, d.d.FilesOverlay("ovf", 43, d.self, mapPath))
		_, err := d.d.Adm("create-vnic", "-l", "ov0", "vnic"+d.n)
		must(t, err)
		_, err = d.d.Adm("create-vnic", "-l", "ovf", "-m", "2:8:20:0:1:"+d.n, "-p", "mtu=1300", "vf"+d.n)
		must(t, err)
	}
	// Temporary objects on host 1.
	must(t, d1.DirectOverlay("ovt", 44, netlab.Host1IP, netlab.Host2IP, "-t"))
	_, err := d1.Adm("create-vnic", "-t", "-l", "ov0", "vtmp")
	must(t, err)
	_, err = d1.Adm("create-vnic", "-l", "ovt", "vtmp2") // temporary: its overlay is
	must(t, err)
	_, err = d1.Adm("set-linkprop", "-p", "mtu=1380", "ov0")
	must(t, err)

	g1, err := d1.Guest("g1", "vnic1", "10.9.0.1/24")
	must(t, err)
	_, err = d2.Guest("g2", "vnic2", "10.9.0.2/24")
	must(t, err)
	gf1, err := d1.Guest("gf1", "vf1", "10.6.0.1/24")
	must(t, err)
	_, err = d2.Guest("gf2", "vf2", "10.6.0.2/24")
	must(t, err)
	must(t, g1.PingAll("10.9.0.2", 2))
	must(t, gf1.PingAll("10.6.0.2", 2))

	show := func(d *netlab.Daemon) string {
		t.Helper()
		a, err := d.Adm("show-overlay")
		must(t, err)
		b, err := d.Adm("show-vnic")
		must(t, err)
		return a + b
	}
	before := show(d1)
	var want []string
	for _, line := range strings.Split(before, "\n") {
		if !strings.Contains(line, "ovt ") && !strings.HasPrefix(line, "vtmp") {
			want = append(want, line)
		}
	}

	d1.Kill()
	// The guests keep their interfaces while overlayd is down.
	out, err := g1.IP("-o", "link", "show", "vnic1")
	must(t, err)
	t.Logf("while overlayd is down: %s", strings.TrimSpace(out))
	start := time.Now()
	d1, err = d1.Restart()
	must(t, err)
	for {
		if got, _ := g1.Ping("10.9.0.2", 1); got == 1 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("traffic did not resume within 10 s of the restart")
		}
	}
	t.Logf("traffic flowed %v after the restart began", time.Since(start).Round(time.Millisecond))
	if after := show(d1); after != strings.Join(want, "\n") {
		t.Errorf("after the restart show-overlay/show-vnic print:\n%s\nwant:\n%s", after, strings.Join(want, "\n"))
	}
	must(t, g1.PingAll("10.9.0.2", 3))
	must(t, gf1.PingAll("10.6.0.2", 3))
	// The temporary VNICs went with the daemon.
	for _, name := range []string{"vtmp", "vtmp2"} {
		if _, err := d1.Host.IP("link", "show", name); err == nil {
			t.Errorf("temporary VNIC %s survived the restart", name)
		}
	}
	// Deleting a restored VNIC deletes its interface, in the guest too.
	_, err = d1.Adm("delete-vnic", "vf1")
	must(t, err)
	if _, err := gf1.IP("link", "show", "vf1"); err == nil {
		t.Error("delete-vnic left the interface in the guest")
	}
}

// TestSecondDaemonRefused: a second overlayd on the same state directory,
// or on the same socket, refuses to start and says why.
func TestSecondDaemonRefused(t *testing.T) {
	mainPassOnly(t)
	l, d1, _ := twoDaemons(t)
	for i, c := range []struct {
		socket, stateDir, want string
	}{
		{filepath.Join(l.Dir, "other.sock"), filepath.Join(l.Dir, "h1.state"), "already using state directory"},
		{d1.Socket, filepath.Join(l.Dir, "other.state"), "another overlayd is already serving " + d1.Socket},
	} {
		p, err := l.Start(d1.Host, fmt.Sprintf("overlayd-dup%d", i), filepath.Join(l.Bin, "overlayd"),
			"--socket", c.socket, "--state-dir", c.stateDir)
		must(t, err)
		for i := 0; i < 100 && !p.Exited(); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if !p.Exited() || !strings.Contains(p.Output(), c.want) {
			t.Errorf("second overlayd: exited %v, said %q, want %q", p.Exited(), p.Output(), c.want)
		}
		if p.Cmd.ProcessState != nil && p.Cmd.ProcessState.ExitCode() == 0 {
			t.Error("the refused overlayd exited 0")
		}
	}
	// The first one is unharmed.
	_, err := d1.Adm("show-overlay")
	must(t, err)
}

// TestStateRecovery: a crash between writing the new state and renaming
// it into place, and a truncated state file, are detected and reported,
// and the last good state is used.
func TestStateRecovery(t *testing.T) {
	mainPassOnly(t)
	l, d1, _ := twoDaemons(t)
	must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP))
	d1.Proc.Stop()

	// Crash while saving ov1.
	d, err := l.StartDaemonEnv(d1.Host, []string{"OVERLAYD_FAULT=after-write"})
	must(t, err)
	if err := d.DirectOverlay("ov1", 43, netlab.Host1IP, netlab.Host2IP); err == nil {
		t.Fatal("create-overlay succeeded although overlayd stopped while saving")
	}
	<-waitExit(d)
	if _, err := os.Stat(filepath.Join(d.StateDir(), "state.json.tmp")); err != nil {
		t.Fatalf("the injected crash left no temporary file: %v", err)
	}
	d, err = d.Restart()
	must(t, err)
	out, err := d.Adm("show-overlay", "-p", "-o", "link", "-f")
	must(t, err)
	if out != "ov0\n" {
		t.Errorf("after the crash: overlays %q, want ov0 only (the last complete state)", out)
	}
	if !strings.Contains(d.Proc.Output(), "did not finish") {
		t.Errorf("the interrupted save was not reported:\n%s", d.Proc.Output())
	}
	d.Proc.Stop()

	// Truncate the state file.
	p := filepath.Join(d.StateDir(), "state.json")
	data, err := os.ReadFile(p)
	must(t, err)
	must(t, os.WriteFile(p, data[:len(data)/2], 0o600))
	d, err = d.Restart()
	must(t, err)
	out, err = d.Adm("show-overlay", "-p", "-o", "link", "-f")
	must(t, err)
	if out != "ov0\n" {
		t.Errorf("after truncation: overlays %q, want ov0 from the last good state", out)
	}
	if log := d.Proc.Output(); !strings.Contains(log, "is damaged") || !strings.Contains(log, "last good state") {
		t.Errorf("the damaged file was not reported:\n%s", log)
	}
	// The next save repairs the file.
	must(t, d.DirectOverlay("ov2", 44, netlab.Host1IP, netlab.Host2IP))
	d.Proc.Stop()
	d, err = d.Restart()
	must(t, err)
	if out, _ := d.Adm("show-overlay", "-p", "-o", "link", "-f"); out != "ov0\nov2\n" {
		t.Errorf("after a good save: %q", out)
	}
	if strings.Contains(d.Proc.Output(), "damaged") {
		t.Errorf("still reported damaged after a good save:\n%s", d.Proc.Output())
	}
}

func waitExit(d *netlab.Daemon) <-chan struct{} {
	ch := make(chan struct{})
	go func() {
		for !d.Proc.Exited() {
			time.Sleep(20 * time.Millisecond)
		}
		close(ch)
	}()
	return ch
}
