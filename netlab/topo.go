package netlab

import "fmt"

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
// listening on listenIP:4789 and sending to peerIP:4789.
func (d *Daemon) DirectOverlay(name string, vnetid int, listenIP, peerIP string, extra ...string) error {
	args := []string{"create-overlay", "-e", "vxlan", "-s", "direct", "-v", fmt.Sprint(vnetid),
		"-p", "vxlan/listen_ip=" + listenIP,
		"-p", "direct/dest_ip=" + peerIP + ",direct/dest_port=4789"}
	args = append(args, extra...)
	_, err := d.Adm(append(args, name)...)
	return err
}
