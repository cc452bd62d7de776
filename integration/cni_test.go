package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"overlaynet/netlab"
)

// hostExec runs CNI plugins inside a simulated host's network namespace,
// where its overlayd makes VNICs, as a runtime on that host would.
type hostExec struct{ ns string }

func (e hostExec) ExecPlugin(ctx context.Context, plugin string, stdin []byte, environ []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", e.ns, plugin)
	cmd.Env = environ
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		var cniErr types.Error
		if json.Unmarshal(stdout.Bytes(), &cniErr) == nil && cniErr.Msg != "" {
			return nil, &cniErr
		}
		return nil, fmt.Errorf("%s: %v: %s%s", plugin, err, stdout.String(), stderr.String())
	}
	return stdout.Bytes(), nil
}

func (e hostExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (e hostExec) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

// cniHost is a simulated host with overlayd and a CNI runtime of sorts.
type cniHost struct {
	t    *testing.T
	d    *netlab.Daemon
	cni  *libcni.CNIConfig
	list *libcni.NetworkConfigList
}

// newCNIHost points a libcni runtime at d's overlay ov0, with host-local
// addresses from first to last in 10.9.0.0/24.
func newCNIHost(t *testing.T, l *netlab.Lab, d *netlab.Daemon, first, last string) *cniHost {
	t.Helper()
	conf := fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "tenant", "plugins": [{"type": "overlay-cni", "overlay": "ov0", "socket": %q,
		"ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": %q, "rangeEnd": %q}]]}}]}`,
		d.Socket, filepath.Join(l.Dir, filepath.Base(d.Socket)+".ipam"), first, last)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	must(t, err)
	return &cniHost{t: t, d: d, list: list,
		cni: libcni.NewCNIConfigWithCacheDir([]string{l.Bin}, filepath.Join(l.Dir, "cni-cache-"+d.Host.Name), hostExec{d.Host.Name})}
}

func (h *cniHost) rt(id string, c *netlab.NS) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: "/run/netns/" + c.Name, IfName: "eth0"}
}

// add attaches container c (id) and returns its address.
func (h *cniHost) add(id string, c *netlab.NS) string {
	h.t.Helper()
	r, err := h.cni.AddNetworkList(context.Background(), h.list, h.rt(id, c))
	if err != nil {
		h.t.Fatalf("ADD %s: %v", id, err)
	}
	res, err := current.NewResultFromResult(r)
	must(h.t, err)
	if len(res.IPs) != 1 || res.IPs[0].Interface == nil || *res.IPs[0].Interface >= len(res.Interfaces) {
		h.t.Fatalf("ADD %s: result %+v", id, res)
	}
	if i := res.Interfaces[*res.IPs[0].Interface]; i.Name != "eth0" || i.Sandbox != h.rt(id, c).NetNS {
		h.t.Fatalf("ADD %s: the address is on interface %+v, want eth0 in the container", id, i)
	}
	return res.IPs[0].Address.IP.String()
}

// vnics lists the VNICs overlayd has.
func (h *cniHost) vnics() []string {
	h.t.Helper()
	out, err := h.d.Adm("show-vnic", "-p", "-o", "link")
	must(h.t, err)
	return strings.Fields(out)
}

// cniCode is the CNI error code of err, or -1.
func cniCode(err error) int {
	var e *types.Error
	if errors.As(err, &e) {
		return int(e.Code)
	}
	return -1
}

// TestCNI: containers attached by the CNI plugin to two hosts' overlay
// ping each other; every verb works as the spec says, including a second
// DEL, a DEL after the container's namespace is gone and after overlayd
// restarted, GC, STATUS with overlayd down, and the errors of bad
// configurations.
func TestCNI(t *testing.T) {
	need(t, "ping")
	// On the kernel path a VNIC is a veth whose end moves into the
	// container; on the userspace path a TAP.
	forEachDataPath(t, func(t *testing.T, dp string) {
		if dp == "kernel" {
			mainPassOnly(t)
		}
		testCNI(t, dp)
	})
}

func testCNI(t *testing.T, dp string) {
	l := newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	d1, err := l.StartDaemon(h1)
	must(t, err)
	d2, err := l.StartDaemon(h2)
	must(t, err)
	must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP, "-p", "datapath="+dp))
	must(t, d2.DirectOverlay("ov0", 42, netlab.Host2IP, netlab.Host1IP, "-p", "datapath="+dp))
	r1 := newCNIHost(t, l, d1, "10.9.0.10", "10.9.0.19")
	r2 := newCNIHost(t, l, d2, "10.9.0.20", "10.9.0.29")
	ctx := context.Background()

	// VERSION.
	vi, err := r1.cni.GetVersionInfo(ctx, "overlay-cni")
	must(t, err)
	if got := vi.SupportedVersions(); !slices.Contains(got, "1.0.0") || !slices.Contains(got, "1.1.0") {
		t.Errorf("VERSION: %v, want 1.0.0 and 1.1.0", got)
	}

	// ADD on both hosts: the containers ping each other.
	c1, err := l.Namespace("c1")
	must(t, err)
	c2, err := l.Namespace("c2")
	must(t, err)
	ip1 := r1.add("ctr1", c1)
	ip2 := r2.add("ctr2", c2)
	if err := c1.PingAll(ip2, 3); err != nil {
		t.Errorf("container on host 1 to the one on host 2 (%s): %v", ip2, err)
	}
	if err := c2.PingAll(ip1, 3); err != nil {
		t.Errorf("container on host 2 to the one on host 1 (%s): %v", ip1, err)
	}

	// CHECK, STATUS.
	if err := r1.cni.CheckNetworkList(ctx, r1.list, r1.rt("ctr1", c1)); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := r1.cni.GetStatusNetworkList(ctx, r1.list); err != nil {
		t.Errorf("STATUS: %v", err)
	}
	// CHECK sees the interface's address gone.
	must(t, c1.Do(func() error {
		_, err := exec.Command("ip", "addr", "flush", "dev", "eth0").CombinedOutput()
		return err
	}))
	if err := r1.cni.CheckNetworkList(ctx, r1.list, r1.rt("ctr1", c1)); err == nil {
		t.Error("CHECK passed with the container's address removed")
	}

	// DEL, twice; then the VNIC is gone and CHECK fails.
	before := len(r1.vnics())
	for i := range 2 {
		if err := r1.cni.DelNetworkList(ctx, r1.list, r1.rt("ctr1", c1)); err != nil {
			t.Errorf("DEL %d: %v", i+1, err)
		}
	}
	if n := len(r1.vnics()); n != before-1 {
		t.Errorf("%d VNICs after DEL, want %d", n, before-1)
	}

	// DEL after the container's namespace is gone.
	c3, err := l.Namespace("c3")
	must(t, err)
	r1.add("ctr3", c3)
	rt3 := r1.rt("ctr3", c3)
	must(t, exec.Command("ip", "netns", "delete", c3.Name).Run())
	if err := r1.cni.DelNetworkList(ctx, r1.list, rt3); err != nil {
		t.Errorf("DEL with the namespace gone: %v", err)
	}
	if vs := r1.vnics(); len(vs) != 0 {
		t.Errorf("VNICs left after DEL with the namespace gone: %v", vs)
	}

	// DEL after overlayd restarted.
	c4, err := l.Namespace("c4")
	must(t, err)
	r1.add("ctr4", c4)
	d1.Kill()
	d1, err = d1.Restart()
	must(t, err)
	r1.d = d1
	if err := r1.cni.DelNetworkList(ctx, r1.list, r1.rt("ctr4", c4)); err != nil {
		t.Errorf("DEL after overlayd restarted: %v", err)
	}
	if vs := r1.vnics(); len(vs) != 0 {
		t.Errorf("VNICs left after DEL across a restart: %v", vs)
	}

	// GC removes the VNICs of attachments no longer valid, and only
	// those. ctr5 is added through a runtime with a cache of its own,
	// so that libcni, which DELs what its cache holds beyond the valid
	// attachments, does not know it: the plugin's GC alone removes it.
	c5, err := l.Namespace("c5")
	must(t, err)
	other := *r2
	other.cni = libcni.NewCNIConfigWithCacheDir([]string{l.Bin}, filepath.Join(l.Dir, "cni-cache-other"), hostExec{d2.Host.Name})
	other.add("ctr5", c5)
	if err := r2.cni.GCNetworkList(ctx, r2.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "ctr2", IfName: "eth0"}}}); err != nil {
		t.Errorf("GC: %v", err)
	}
	if vs := r2.vnics(); len(vs) != 1 {
		t.Errorf("VNICs after GC: %v, want ctr2's alone", vs)
	}
	if err := c2.PingAll(ip1, 1); err == nil {
		t.Error("ctr2 still reaches ctr1's address after ctr1 was deleted")
	}

	// Errors: overlayd down, a missing overlay, a bad field, an old spec.
	d1.Kill()
	c6, err := l.Namespace("c6")
	must(t, err)
	_, err = r1.cni.AddNetworkList(ctx, r1.list, r1.rt("ctr6", c6))
	if cniCode(err) != int(types.ErrTryAgainLater) || !strings.Contains(err.Error(), "overlayd") {
		t.Errorf("ADD with overlayd down: %v (code %d), want code 11 naming overlayd", err, cniCode(err))
	}
	err = r1.cni.GetStatusNetworkList(ctx, r1.list)
	if cniCode(err) != 50 {
		t.Errorf("STATUS with overlayd down: %v (code %d), want 50", err, cniCode(err))
	}
	for _, tc := range []struct {
		conf string
		code int
		want string
	}{
		{`{"cniVersion": "1.1.0", "name": "x", "type": "overlay-cni", "overlay": "nosuch", "socket": %q}`, 7, "nosuch"},
		{`{"cniVersion": "1.1.0", "name": "x", "type": "overlay-cni", "socket": %q}`, 7, `"overlay"`},
		{`{"cniVersion": "1.1.0", "name": "x", "type": "overlay-cni", "overlay": "ov0", "mtu": 9, "socket": %q}`, 7, `"mtu"`},
		{`{"cniVersion": "1.1.0", "name": "x", "type": "overlay-cni", "overlay": "ov0", "mac": "ff:ff:ff:ff:ff:ff", "socket": %q}`, 7, `"mac"`},
		{`{"cniVersion": "0.4.0", "name": "x", "type": "overlay-cni", "overlay": "ov0", "socket": %q}`, 1, "0.4.0"},
	} {
		conf, err := libcni.NetworkPluginConfFromBytes(fmt.Appendf(nil, tc.conf, d2.Socket))
		must(t, err)
		_, err = r2.cni.AddNetwork(ctx, conf, r2.rt("bad", c6))
		if cniCode(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ADD with %s: %v (code %d), want code %d naming %s", tc.conf, err, cniCode(err), tc.code, tc.want)
		}
	}
	if vs := r2.vnics(); len(vs) != 1 {
		t.Errorf("VNICs after the refused ADDs: %v, want ctr2's alone", vs)
	}
	if _, err := os.Stat("/run/netns/" + c6.Name); err != nil {
		t.Errorf("the container's namespace is gone after refused ADDs: %v", err)
	}
}

// TestCNIPortolan: on an svp overlay, ADD registers the container's MAC
// and address with portolan's network API, so that the other host's
// container reaches it with nothing more done; DEL removes the mapping;
// a wrong token refuses ADD and leaves nothing behind.
func TestCNIPortolan(t *testing.T) {
	need(t, "ping")
	l := newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	pl := startAPIPortolan(t, l, h1)
	token := pl.token
	var rs []*cniHost
	for i, h := range []*netlab.NS{h1, h2} {
		d, err := l.StartDaemon(h)
		must(t, err)
		must(t, d.SVPOverlay("ov0", 42, netlab.HostIP(i+1), netlab.Host1IP))
		r := newCNIHost(t, l, d, fmt.Sprintf("10.9.0.%d0", i+1), fmt.Sprintf("10.9.0.%d9", i+1))
		r.list.Plugins[0] = withPortolan(t, r.list.Plugins[0], "http://"+netlab.Host1IP+":1297", token, fmt.Sprintf("h%d", i+1))
		rs = append(rs, r)
	}
	mappings := func() []string { return pl.mappings(t) }

	c1, err := l.Namespace("c1")
	must(t, err)
	c2, err := l.Namespace("c2")
	must(t, err)
	ip1 := rs[0].add("ctr1", c1)
	ip2 := rs[1].add("ctr2", c2)
	if got, want := mappings(), []string{"h1:" + ip1, "h2:" + ip2}; !slices.Equal(got, want) {
		t.Errorf("portolan's mappings after ADD: %v, want %v", got, want)
	}
	if err := c1.PingAll(ip2, 3); err != nil {
		t.Errorf("container on host 1 to the one on host 2 over svp: %v", err)
	}

	ctx := context.Background()
	must(t, rs[1].cni.DelNetworkList(ctx, rs[1].list, rs[1].rt("ctr2", c2)))
	if got, want := mappings(), []string{"h1:" + ip1}; !slices.Equal(got, want) {
		t.Errorf("portolan's mappings after DEL: %v, want %v", got, want)
	}

	// GC of an attachment the runtime no longer lists removes its
	// mapping with its VNIC (added through a runtime with a cache of its
	// own: libcni would DEL what its own cache holds).
	c4, err := l.Namespace("c4")
	must(t, err)
	other := *rs[1]
	other.cni = libcni.NewCNIConfigWithCacheDir([]string{l.Bin}, filepath.Join(l.Dir, "cni-cache-other"), hostExec{h2.Name})
	ip4 := other.add("ctr4", c4)
	if got, want := mappings(), []string{"h1:" + ip1, "h2:" + ip4}; !slices.Equal(got, want) {
		t.Errorf("portolan's mappings after ADD of ctr4: %v, want %v", got, want)
	}
	must(t, rs[1].cni.GCNetworkList(ctx, rs[1].list, &libcni.GCArgs{}))
	if got, want := mappings(), []string{"h1:" + ip1}; !slices.Equal(got, want) {
		t.Errorf("portolan's mappings after GC: %v, want %v", got, want)
	}
	if vs := rs[1].vnics(); len(vs) != 0 {
		t.Errorf("VNICs on host 2 after GC: %v", vs)
	}

	// A gateway (isGateway) on host 1 is registered like a container,
	// once, so that host 2's containers find it: host 2's container
	// pings it.
	rs[0].list.Plugins[0] = editPlugin(t, rs[0].list.Plugins[0], func(m map[string]any) {
		m["isGateway"] = true
		m["ipam"].(map[string]any)["ranges"].([]any)[0].([]any)[0].(map[string]any)["gateway"] = "10.9.0.1"
	})
	c5, err := l.Namespace("c5")
	must(t, err)
	c6, err := l.Namespace("c6")
	must(t, err)
	rs[0].add("ctr5", c5)
	rs[0].add("ctr6", c6)
	ip2 = rs[1].add("ctr2", c2)
	if got, want := mappings(), []string{"h1:10.9.0.1", "h1:" + ip1, "h1:10.9.0.11", "h1:10.9.0.12", "h2:" + ip2}; !slices.Equal(got, sorted(want)) {
		t.Errorf("portolan's mappings with the gateway: %v, want %v", got, sorted(want))
	}
	if err := c2.PingAll("10.9.0.1", 2); err != nil {
		t.Errorf("container on host 2 to host 1's gateway over svp: %v", err)
	}
	// The gateway deleted by hand, or its mapping lost: the next ADD
	// makes both again, with the same MAC.
	var gw string
	for _, v := range rs[0].vnics() {
		if v[0] == 'g' {
			gw = v
		}
	}
	gwMAC := func() string {
		out, err := rs[0].d.Adm("show-vnic", "-p", "-o", "macaddress", gw)
		must(t, err)
		return strings.TrimSpace(out)
	}
	mac := gwMAC()
	_, err = rs[0].d.Adm("delete-vnic", gw)
	must(t, err)
	c7, err := l.Namespace("c7")
	must(t, err)
	rs[0].add("ctr7", c7)
	_, err = pl.l.PortolanAdm(pl.dsn, "remove-vnic", "--vnetid", "42", "--mac", mac)
	must(t, err)
	c8, err := l.Namespace("c8")
	must(t, err)
	rs[0].add("ctr8", c8)
	if got := gwMAC(); got != mac {
		t.Errorf("the gateway made again has MAC %s, was %s", got, mac)
	}
	if got, want := mappings(), []string{"h1:10.9.0.1", "h1:" + ip1, "h1:10.9.0.11", "h1:10.9.0.12", "h1:10.9.0.13", "h1:10.9.0.14", "h2:" + ip2}; !slices.Equal(got, sorted(want)) {
		t.Errorf("portolan's mappings with the gateway made again: %v, want %v", got, sorted(want))
	}
	if err := c2.PingAll("10.9.0.1", 2); err != nil {
		t.Errorf("container on host 2 to host 1's gateway made again: %v", err)
	}
	for _, c := range []struct {
		id string
		ns *netlab.NS
	}{{"ctr7", c7}, {"ctr8", c8}} {
		must(t, rs[0].cni.DelNetworkList(ctx, rs[0].list, rs[0].rt(c.id, c.ns)))
	}
	must(t, rs[1].cni.DelNetworkList(ctx, rs[1].list, rs[1].rt("ctr2", c2)))

	// A wrong token: ADD is refused, and neither a VNIC nor a mapping is
	// left.
	bad := filepath.Join(l.Dir, "bad.token")
	must(t, os.WriteFile(bad, []byte("wrong"), 0o600))
	rs[1].list.Plugins[0] = withPortolan(t, rs[1].list.Plugins[0], "http://"+netlab.Host1IP+":1297", bad, "h2")
	c3, err := l.Namespace("c3")
	must(t, err)
	_, err = rs[1].cni.AddNetworkList(ctx, rs[1].list, rs[1].rt("ctr3", c3))
	if cniCode(err) != int(types.ErrInvalidNetworkConfig) || !strings.Contains(err.Error(), "portolan") {
		t.Errorf("ADD with a wrong token: %v (code %d), want code 7 naming portolan", err, cniCode(err))
	}
	if vs := rs[1].vnics(); len(vs) != 0 {
		t.Errorf("VNICs left after the refused ADD: %v", vs)
	}
	if got, want := mappings(), []string{"h1:10.9.0.1", "h1:" + ip1, "h1:10.9.0.11", "h1:10.9.0.12"}; !slices.Equal(got, sorted(want)) {
		t.Errorf("portolan's mappings after the refused ADD: %v, want %v", got, sorted(want))
	}
}

// withPortolan returns the plugin configuration p with a portolan
// section.
func withPortolan(t *testing.T, p *libcni.PluginConfig, url, tokenFile, host string) *libcni.PluginConfig {
	t.Helper()
	return editPlugin(t, p, func(m map[string]any) {
		m["portolan"] = map[string]string{"url": url, "tokenFile": tokenFile, "host": host}
	})
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// editPlugin returns the plugin configuration p as edit leaves it.
func editPlugin(t *testing.T, p *libcni.PluginConfig, edit func(map[string]any)) *libcni.PluginConfig {
	t.Helper()
	var m map[string]any
	must(t, json.Unmarshal(p.Bytes, &m))
	edit(m)
	b, err := json.Marshal(m)
	must(t, err)
	np, err := libcni.NetworkPluginConfFromBytes(b)
	must(t, err)
	return np
}

// TestCNITool: the README's cnitool example works as written, but for
// the lab's socket and the IPAM's data directory.
func TestCNITool(t *testing.T) {
	need(t, "ping")
	mainPassOnly(t)
	l := newLab(t)
	h1, _, err := l.TwoHosts()
	must(t, err)
	d, err := l.StartDaemon(h1)
	must(t, err)
	must(t, d.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP))
	netd := filepath.Join(l.Dir, "net.d")
	must(t, os.MkdirAll(netd, 0o755))
	must(t, os.WriteFile(filepath.Join(netd, "10-tenant-a.conf"), fmt.Appendf(nil, `{"cniVersion": "1.0.0", "name": "tenant-a", "type": "overlay-cni", "overlay": "ov0", "socket": %q,
  "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.9.0.0/24"}]]}}`, d.Socket, filepath.Join(l.Dir, "ipam")), 0o644))
	c, err := l.Namespace("ctr1")
	must(t, err)
	cnitool := func(verb string) string {
		t.Helper()
		out, err := h1.Exec("env", "CNI_PATH="+l.Bin+":/usr/lib/cni", "NETCONFPATH="+netd,
			filepath.Join(l.Bin, "cnitool"), verb, "tenant-a", "/var/run/netns/"+c.Name)
		if err != nil {
			t.Fatalf("cnitool %s: %v: %s", verb, err, out)
		}
		return out
	}
	if out := cnitool("add"); !strings.Contains(out, `"10.9.0.2/24"`) {
		t.Errorf("cnitool add printed %s, want the address 10.9.0.2/24", out)
	}
	if out, err := c.IP("-br", "addr", "show", "eth0"); err != nil || !strings.Contains(out, "10.9.0.2/24") {
		t.Errorf("the container's eth0: %q %v", out, err)
	}
	cnitool("check")
	cnitool("del")
	if out, _ := d.Adm("show-vnic", "-p", "-o", "link"); out != "" {
		t.Errorf("VNICs after cnitool del: %q", out)
	}
}

// apiPortolan is portolan on host 1 of TwoHosts, with its network API
// on port 1297 and the hosts h1 and h2 registered.
type apiPortolan struct {
	l     *netlab.Lab
	dsn   string
	token string // the API token's file
}

func startAPIPortolan(t *testing.T, l *netlab.Lab, h1 *netlab.NS) *apiPortolan {
	t.Helper()
	p := &apiPortolan{l: l, dsn: "sqlite:" + filepath.Join(l.Dir, "portolan.db"), token: filepath.Join(l.Dir, "api.token")}
	must(t, os.WriteFile(p.token, []byte("s3cret\n"), 0o600))
	_, err := l.StartPortolan(h1, "p", netlab.Host1IP+":1296", p.dsn, "--api", netlab.Host1IP+":1297", "--api-token-file", p.token)
	must(t, err)
	for i, ip := range []string{netlab.Host1IP, netlab.Host2IP} {
		_, err := l.PortolanAdm(p.dsn, "add-host", fmt.Sprintf("h%d", i+1), ip)
		must(t, err)
	}
	return p
}

// mappings lists portolan's VNICs as host:ips, sorted.
func (p *apiPortolan) mappings(t *testing.T) []string {
	t.Helper()
	out, err := p.l.PortolanAdm(p.dsn, "show-vnics", "-p", "-o", "host,ips")
	must(t, err)
	m := strings.Fields(out)
	slices.Sort(m)
	return m
}
