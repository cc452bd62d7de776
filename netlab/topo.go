package netlab

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
)

// Underlay addresses of the two-host topology.
const (
	Host1IP = "198.18.0.1"
	Host2IP = "198.18.0.2"
)

// TwoHosts makes two host namespaces joined by a veth underlay named
// "ul0" (Host1IP and Host2IP, /24).
func (l *Lab) TwoHosts() (h1, h2 *NS, err error) {
	if h1, err = l.Namespace("h1"); err != nil {
		return nil, nil, err
	}
	if h2, err = l.Namespace("h2"); err != nil {
		return nil, nil, err
	}
	if err = l.Link(h1, Host1IP+"/24", h2, Host2IP+"/24", "ul0"); err != nil {
		return nil, nil, err
	}
	return h1, h2, nil
}

// DirectOverlay creates a VXLAN overlay with the direct plugin on d,
// listening on listenIP:4789 and sending to peerIP:4789; or, with "-e",
// "geneve" or "nvgre" in extra, an overlay of that encapsulation on its
// own port (Geneve's 6081) or none (NVGRE's).
func (d *Daemon) DirectOverlay(name string, vnetid int, listenIP, peerIP string, extra ...string) error {
	// extra may choose another encapsulation ("-e", "geneve"): the
	// listen and destination properties follow it.
	enc := "vxlan"
	for i, a := range extra {
		if a == "-e" && i+1 < len(extra) {
			enc = extra[i+1]
			extra = append(slices.Clone(extra[:i]), extra[i+2:]...)
			break
		}
	}
	dest := "direct/dest_ip=" + peerIP
	if port, ok := map[string]int{"vxlan": 4789, "geneve": 6081}[enc]; ok {
		dest += fmt.Sprintf(",direct/dest_port=%d", port)
	}
	args := []string{"create-overlay", "-e", enc, "-s", "direct", "-v", fmt.Sprint(vnetid),
		"-p", enc + "/listen_ip=" + listenIP, "-p", dest}
	args = append(args, extra...)
	_, err := d.Adm(append(args, name)...)
	return err
}

// Pair is the smallest overlay between the two hosts of TwoHosts: see
// DirectPair.
type Pair struct {
	D1, D2 *Daemon // overlayd on host 1 and host 2
	G1, G2 *NS     // the guests holding vnic1 (10.9.0.1/24) and vnic2 (10.9.0.2/24)
}

// DirectPair starts overlayd on h1 and h2 (with daemonArgs), creates on
// each a direct overlay ov0 (vnetid 42, overlayArgs added to
// create-overlay) aimed at the other, a VNIC (vnic1 on h1, vnic2 on h2)
// and a guest namespace holding it, addressed 10.9.0.1/24 and 10.9.0.2/24.
func (l *Lab) DirectPair(h1, h2 *NS, daemonArgs []string, overlayArgs ...string) (*Pair, error) {
	p := &Pair{}
	var err error
	if p.D1, err = l.StartDaemon(h1, daemonArgs...); err != nil {
		return nil, err
	}
	if p.D2, err = l.StartDaemon(h2, daemonArgs...); err != nil {
		return nil, err
	}
	for i, h := range []struct {
		d           *Daemon
		self, other string
		g           **NS
	}{{p.D1, Host1IP, Host2IP, &p.G1}, {p.D2, Host2IP, Host1IP, &p.G2}} {
		n := i + 1
		if err := h.d.DirectOverlay("ov0", 42, h.self, h.other, overlayArgs...); err != nil {
			return nil, err
		}
		if _, err := h.d.Adm("create-vnic", "-l", "ov0", fmt.Sprintf("vnic%d", n)); err != nil {
			return nil, err
		}
		if *h.g, err = h.d.Guest(fmt.Sprintf("g%d", n), fmt.Sprintf("vnic%d", n), fmt.Sprintf("10.9.0.%d/24", n)); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// HostIP returns the underlay address of host i (1-based) in a Hosts
// topology.
func HostIP(i int) string { return fmt.Sprintf("198.18.0.%d", i) }

// Hosts makes n host namespaces on one underlay segment: a switch
// namespace holds a bridge, and each host joins it with a veth named
// "ul0" carrying HostIP(i)/24.
func (l *Lab) Hosts(n int) ([]*NS, error) {
	sw, err := l.Namespace("sw")
	if err != nil {
		return nil, err
	}
	if _, err := sw.IP("link", "add", "br0", "type", "bridge"); err != nil {
		return nil, err
	}
	if _, err := sw.IP("link", "set", "br0", "up"); err != nil {
		return nil, err
	}
	var hosts []*NS
	for i := 1; i <= n; i++ {
		h, err := l.Namespace(fmt.Sprintf("h%d", i))
		if err != nil {
			return nil, err
		}
		port := fmt.Sprintf("p%d", i)
		for _, args := range [][]string{
			{"link", "add", "ul0", "type", "veth", "peer", "name", port, "netns", sw.Name},
			{"addr", "add", HostIP(i) + "/24", "dev", "ul0"},
			{"link", "set", "ul0", "up"},
		} {
			if _, err := h.IP(args...); err != nil {
				return nil, err
			}
		}
		if _, err := sw.IP("link", "set", port, "master", "br0", "up"); err != nil {
			return nil, err
		}
		hosts = append(hosts, h)
	}
	l.Switch = sw
	return hosts, nil
}

// FilesOverlay creates a VXLAN overlay with the files plugin on d,
// listening on listenIP:4789 and reading the map from path.
func (d *Daemon) FilesOverlay(name string, vnetid int, listenIP, path string, extra ...string) error {
	args := []string{"create-overlay", "-e", "vxlan", "-s", "files", "-v", fmt.Sprint(vnetid),
		"-p", "vxlan/listen_ip=" + listenIP, "-p", "files/config=" + path}
	_, err := d.Adm(append(append(args, extra...), name)...)
	return err
}

// SwitchPort joins ns to the underlay switch of Hosts with a veth named
// "ul0" carrying addr (CIDR).
func (l *Lab) SwitchPort(ns *NS, addr string) error {
	l.mu.Lock()
	l.ports++
	port := fmt.Sprintf("x%d", l.ports)
	l.mu.Unlock()
	for _, args := range [][]string{
		{"link", "add", "ul0", "type", "veth", "peer", "name", port, "netns", l.Switch.Name},
		{"addr", "add", addr, "dev", "ul0"},
		{"link", "set", "ul0", "up"},
	} {
		if _, err := ns.IP(args...); err != nil {
			return err
		}
	}
	_, err := l.Switch.IP("link", "set", port, "master", "br0", "up")
	return err
}

// HostsFile gives processes run in ns (through ip netns exec) their own
// /etc/hosts, for names that resolve to lab addresses.
func (n *NS) HostsFile(content string) error {
	dir := filepath.Join("/etc/netns", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "hosts"), []byte(content), 0o644)
}
