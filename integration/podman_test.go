package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// podmanHost is podman on a simulated host, with storage, runtime state
// and CNI network configurations of its own, and the overlay-cni plugin
// of this build.
type podmanHost struct {
	t    *testing.T
	ns   *netlab.NS
	dir  string
	conf string // containers.conf
}

func newPodmanHost(t *testing.T, l *netlab.Lab, ns *netlab.NS, image string) *podmanHost {
	t.Helper()
	p := &podmanHost{t: t, ns: ns, dir: filepath.Join(l.Dir, "podman-"+filepath.Base(ns.Name))}
	must(t, os.MkdirAll(filepath.Join(p.dir, "net.d"), 0o755))
	p.conf = filepath.Join(p.dir, "containers.conf")
	must(t, os.WriteFile(p.conf, fmt.Appendf(nil, `[network]
network_backend = "cni"
cni_plugin_dirs = [%q, "/usr/lib/cni"]
network_config_dir = %q

[engine]
events_logger = "file"
`, l.Bin, filepath.Join(p.dir, "net.d")), 0o644))
	t.Cleanup(func() {
		// Containers first: their network namespaces, mounts and
		// conmon processes go with them.
		p.podman("rm", "-af", "-t", "0")
	})
	if out, err := p.podman("import", image, "localhost/bb:test"); err != nil {
		t.Fatalf("podman import: %v: %s", err, out)
	}
	return p
}

// podman runs podman in the host's namespace, as a runtime there would.
func (p *podmanHost) podman(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"podman", "--root", filepath.Join(p.dir, "root"), "--runroot", filepath.Join(p.dir, "run"),
		"--storage-driver", "vfs", "--runtime", "runc", "--cgroup-manager", "cgroupfs"}
	// nsenter, not ip netns exec: that mounts a sysfs of the namespace
	// over /sys, which hides the cgroup file system runc needs.
	cmd := exec.CommandContext(ctx, "nsenter", append([]string{"--net=/run/netns/" + p.ns.Name}, append(base, args...)...)...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+p.conf)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// network writes a CNI network configuration for podman.
func (p *podmanHost) network(name, plugin string) {
	p.t.Helper()
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, name, plugin)
	must(p.t, os.WriteFile(filepath.Join(p.dir, "net.d", name+".conflist"), []byte(conf), 0o644))
}

// run runs a container on network with args; detached ones keep running.
func (p *podmanHost) run(network string, args ...string) (string, error) {
	return p.podman(append([]string{"run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000",
		"--cap-add", "NET_RAW", "--network", network}, args...)...)
}

// busyboxImage makes a root file system of Debian's busybox-static and
// returns it as a tar file for podman import: nothing from a registry.
func busyboxImage(t *testing.T, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "bb-root")
	must(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	out, err := exec.Command("cp", "/bin/busybox", filepath.Join(root, "bin")).CombinedOutput()
	if err != nil {
		t.Fatalf("copy busybox: %v: %s", err, out)
	}
	for _, c := range []string{"sh", "ping", "sleep", "ip"} {
		must(t, os.Symlink("busybox", filepath.Join(root, "bin", c)))
	}
	tar := filepath.Join(dir, "bb.tar")
	if out, err := exec.Command("tar", "-C", root, "-cf", tar, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	return tar
}

// TestPodman: containers run by podman (CNI backend) on two simulated
// hosts, attached by overlay-cni to a files overlay and to an svp
// overlay, ping each other; removing a container removes its VNIC and
// its portolan mapping.
func TestPodman(t *testing.T) {
	need(t, "podman", "runc", "nsenter")
	if out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "busybox-static").CombinedOutput(); err != nil || !strings.Contains(string(out), "install ok installed") {
		t.Fatalf("Debian's busybox-static is not installed (scripts/install-deps installs it): %s", out)
	}
	l := newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	pl := startAPIPortolan(t, l, h1)
	token := pl.token
	// The files overlay's map: each host's container, its MAC (fixed in
	// the network configuration) and its address.
	filesMap := filepath.Join(l.Dir, "files.json")
	must(t, os.WriteFile(filesMap, fmt.Appendf(nil, `{
		"2:8:20:0:51:1": {"ip": %q, "port": 4789, "arp": "10.51.0.11"},
		"2:8:20:0:51:2": {"ip": %q, "port": 4789, "arp": "10.51.0.12"}}`, netlab.Host1IP, netlab.Host2IP), 0o644))
	image := busyboxImage(t, l.Dir)
	var ps []*podmanHost
	var ds []*netlab.Daemon
	for i, h := range []*netlab.NS{h1, h2} {
		n := i + 1
		d, err := l.StartDaemon(h)
		must(t, err)
		must(t, d.FilesOverlay("fov", 51, netlab.HostIP(n), filesMap))
		must(t, d.SVPOverlay("sov", 42, netlab.HostIP(n), netlab.Host1IP))
		p := newPodmanHost(t, l, h, image)
		p.network("ovfiles", fmt.Sprintf(`{"type": "overlay-cni", "overlay": "fov", "socket": %q, "mac": "02:08:20:00:51:%02x",
			"ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.51.0.0/24", "rangeStart": "10.51.0.1%d", "rangeEnd": "10.51.0.1%d"}]]}}`,
			d.Socket, n, filepath.Join(p.dir, "ipam"), n, n))
		p.network("ovsvp", fmt.Sprintf(`{"type": "overlay-cni", "overlay": "sov", "socket": %q,
			"portolan": {"url": "http://%s:1297", "tokenFile": %q, "host": "h%d"},
			"ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.42.0.0/24", "rangeStart": "10.42.0.%d0", "rangeEnd": "10.42.0.%d9"}]]}}`,
			d.Socket, netlab.Host1IP, token, n, filepath.Join(p.dir, "ipam"), n, n))
		ps = append(ps, p)
		ds = append(ds, d)
	}
	mappings := func() []string { return pl.mappings(t) }

	// Containers on host 2, waiting.
	for _, net := range []string{"ovfiles", "ovsvp"} {
		if out, err := ps[1].run(net, "-d", "--name", net, "localhost/bb:test", "sleep", "600"); err != nil {
			t.Fatalf("podman run on %s: %v: %s", net, err, out)
		}
	}
	if got, want := mappings(), []string{"h2:10.42.0.20"}; !slices.Equal(got, want) {
		t.Errorf("portolan's mappings with host 2's container: %v, want %v", got, want)
	}
	// From host 1, over each overlay.
	for net, addr := range map[string]string{"ovfiles": "10.51.0.12", "ovsvp": "10.42.0.20"} {
		if out, err := ps[0].run(net, "--rm", "localhost/bb:test", "ping", "-c", "3", "-W", "2", addr); err != nil {
			t.Errorf("ping %s from a container on host 1 over %s: %v: %s", addr, net, err, out)
		}
	}
	// The containers that pinged are gone (--rm): so are their VNIC and
	// mapping.
	if out, err := ds[0].Adm("show-vnic", "-p", "-o", "link"); err != nil || out != "" {
		t.Errorf("VNICs on host 1 after its containers were removed: %q %v", out, err)
	}
	if out, err := ps[1].podman("rm", "-f", "-t", "0", "ovsvp"); err != nil {
		t.Fatalf("podman rm: %v: %s", err, out)
	}
	if got := mappings(); len(got) != 0 {
		t.Errorf("portolan's mappings after the svp containers were removed: %v", got)
	}
	out, err := ds[1].Adm("show-vnic", "-p", "-o", "link,over")
	must(t, err)
	if lines := strings.Fields(out); len(lines) != 1 || !strings.HasSuffix(lines[0], ":fov") {
		t.Errorf("VNICs on host 2 with only its files container left: %q", out)
	}
}
