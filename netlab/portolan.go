package netlab

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Portolan is a portolan server running in a lab namespace.
type Portolan struct {
	NS     *NS
	Listen string
	Store  string
	Proc   *Proc
}

// StartPortolan starts "portolan serve" in ns on listen (ip:port) over the
// store dsn, with extra arguments, and waits until it accepts connections.
func (l *Lab) StartPortolan(ns *NS, name, listen, dsn string, extra ...string) (*Portolan, error) {
	// serve refuses a store that does not exist: a lab's may be new.
	if out, err := exec.Command(filepath.Join(l.Bin, "portolan"), "init", "--store", dsn).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("portolan init --store %s: %v: %s", dsn, err, out)
	}
	p, err := l.Start(ns, "portolan-"+name, append([]string{filepath.Join(l.Bin, "portolan"), "serve",
		"--listen", listen, "--store", dsn, "--log-level", "debug"}, extra...)...)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		err = ns.Do(func() error {
			c, err := net.DialTimeout("tcp", listen, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return &Portolan{NS: ns, Listen: listen, Store: dsn, Proc: p}, nil
		}
		if p.Exited() {
			return nil, fmt.Errorf("portolan exited: %s", p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("portolan did not listen on %s: %s", listen, p.Output())
}

// PortolanAdm runs a portolan administration subcommand on the store dsn.
func (l *Lab) PortolanAdm(dsn string, args ...string) (string, error) {
	cmd := exec.Command(filepath.Join(l.Bin, "portolan"), append(args, "--store", dsn)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("portolan %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// SVPOverlay creates a VXLAN overlay with the svp plugin on d, listening
// on listenIP:4789 and asking server (a host name or IP) for mappings.
func (d *Daemon) SVPOverlay(name string, vnetid int, listenIP, server string, extra ...string) error {
	args := []string{"create-overlay", "-e", "vxlan", "-s", "svp", "-v", fmt.Sprint(vnetid),
		"-p", "vxlan/listen_ip=" + listenIP, "-p", "svp/host=" + server, "-p", "svp/underlay_ip=" + listenIP}
	_, err := d.Adm(append(append(args, extra...), name)...)
	return err
}
