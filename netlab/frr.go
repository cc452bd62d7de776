package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// FRR is an FRR instance (zebra and bgpd) of a lab host, in the host's
// network namespace and its own path space (-N, after the namespace), as
// ../shared/spec/reference/linux-facts.md runs it. The daemons run in the
// foreground, as lab processes: the lab stops them.
type FRR struct {
	Host  *NS
	conf  string
	zebra *Proc
	bgpd  *Proc
}

// ReflectorConf is the frr.conf of an EVPN route reflector of AS 65000
// with router id routerID, for clients (iBGP); with vtep, it is a VTEP
// itself, advertising its kernel's VNIs (advertise-all-vni).
func ReflectorConf(routerID string, vtep bool, clients ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "frr defaults datacenter\nrouter bgp 65000\n bgp router-id %s\n no bgp default ipv4-unicast\n", routerID)
	for _, c := range clients {
		fmt.Fprintf(&b, " neighbor %s remote-as internal\n", c)
	}
	b.WriteString(" address-family l2vpn evpn\n")
	for _, c := range clients {
		fmt.Fprintf(&b, "  neighbor %s activate\n  neighbor %s route-reflector-client\n", c, c)
	}
	if vtep {
		b.WriteString("  advertise-all-vni\n")
	}
	b.WriteString(" exit-address-family\n")
	return b.String()
}

// StartFRR writes conf (frr.conf syntax) for host and starts zebra, then
// bgpd, waiting until vtysh answers.
func (l *Lab) StartFRR(host *NS, conf string) (*FRR, error) {
	dir := filepath.Join("/etc/frr", host.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	l.cleanup(func() {
		os.RemoveAll(dir)
		os.RemoveAll(filepath.Join("/var/run/frr", host.Name))
	})
	path := filepath.Join(dir, "frr.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "vtysh.conf"), nil, 0o644); err != nil {
		return nil, err
	}
	exec.Command("chown", "-R", "frr:frr", dir).Run()
	f := &FRR{Host: host, conf: path}
	return f, f.Start()
}

// Start starts zebra and bgpd (again, after Stop).
func (f *FRR) Start() error {
	l := f.Host.lab
	var err error
	if f.zebra, err = l.Start(f.Host, "zebra-"+f.Host.Name, "/usr/lib/frr/zebra", "-N", f.Host.Name, "-f", f.conf, "--log", "stdout"); err != nil {
		return err
	}
	if err := f.wait("zebra", f.zebra); err != nil {
		return err
	}
	if f.bgpd, err = l.Start(f.Host, "bgpd-"+f.Host.Name, "/usr/lib/frr/bgpd", "-N", f.Host.Name, "-f", f.conf, "--log", "stdout"); err != nil {
		return err
	}
	return f.wait("bgpd", f.bgpd)
}

// wait waits until vtysh reaches the daemon.
func (f *FRR) wait(daemon string, p *Proc) error {
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if p.Exited() {
			return fmt.Errorf("%s in %s exited: %s", daemon, f.Host.Name, p.Output())
		}
		if _, err := exec.Command("vtysh", "-N", f.Host.Name, "-d", daemon, "-c", "show version").CombinedOutput(); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s in %s did not answer vtysh in 15 s: %s", daemon, f.Host.Name, p.Output())
}

// StopBGP stops bgpd, as a crash would (zebra stays).
func (f *FRR) StopBGP() {
	f.bgpd.Cmd.Process.Kill()
	<-f.bgpd.done
}

// StartBGP starts bgpd again after StopBGP.
func (f *FRR) StartBGP() error {
	var err error
	if f.bgpd, err = f.Host.lab.Start(f.Host, "bgpd-"+f.Host.Name, "/usr/lib/frr/bgpd", "-N", f.Host.Name, "-f", f.conf, "--log", "stdout"); err != nil {
		return err
	}
	return f.wait("bgpd", f.bgpd)
}

// Vtysh runs one vtysh command and returns its output.
func (f *FRR) Vtysh(cmd string) (string, error) {
	out, err := exec.Command("vtysh", "-N", f.Host.Name, "-c", cmd).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("vtysh -N %s -c %q: %v: %s", f.Host.Name, cmd, err, out)
	}
	return string(out), nil
}
