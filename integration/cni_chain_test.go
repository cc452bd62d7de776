package integration

import (
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"overlaynet/netlab"
)

// chainedConf is the README's Kubernetes-style conflist: overlay-cni with
// a gateway, then portmap and bandwidth, for a host's overlayd (socket)
// and its host-local addresses from first to last.
func chainedConf(socket, dataDir, first, last string) string {
	return fmt.Sprintf(`{"cniVersion": "1.1.0", "name": "chained", "plugins": [
		{"type": "overlay-cni", "overlay": "ov0", "socket": %q, "isGateway": true,
		 "ipam": {"type": "host-local", "dataDir": %q,
		          "ranges": [[{"subnet": "10.9.0.0/24", "rangeStart": %q, "rangeEnd": %q, "gateway": "10.9.0.1"}]],
		          "routes": [{"dst": "0.0.0.0/0"}]}},
		{"type": "portmap", "capabilities": {"portMappings": true}, "backend": "nftables"},
		{"type": "bandwidth", "capabilities": {"bandwidth": true}}]}`, socket, dataDir, first, last)
}

// TestCNIChained: the README's conflist with portmap and bandwidth
// chained after overlay-cni, as Kubernetes runs them. A port of host 1
// reaches a container's server through the gateway VNIC; on the kernel
// data path the bandwidth plugin shapes the host's end of the
// container's veth; DEL takes the port mapping and the shaping away and
// leaves the gateway.
func TestCNIChained(t *testing.T) {
	need(t, "nft")
	forEachDataPath(t, func(t *testing.T, dp string) {
		if dp == "kernel" {
			mainPassOnly(t)
		}
		testCNIChained(t, dp)
	})
}

func testCNIChained(t *testing.T, dp string) {
	l := newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	d1, err := l.StartDaemon(h1)
	must(t, err)
	must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP, "-p", "datapath="+dp))
	list, err := libcni.ConfListFromBytes([]byte(chainedConf(d1.Socket, filepath.Join(l.Dir, "chained.ipam"), "10.9.0.10", "10.9.0.19")))
	must(t, err)
	cni := libcni.NewCNIConfigWithCacheDir([]string{l.Bin}, filepath.Join(l.Dir, "cni-cache"), hostExec{h1.Name})
	ctx := context.Background()

	c1, err := l.Namespace("c1")
	must(t, err)
	rt := &libcni.RuntimeConf{ContainerID: "ctr1", NetNS: "/run/netns/" + c1.Name, IfName: "eth0",
		CapabilityArgs: map[string]any{
			"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
		}}
	const ingress, egress = 8_000_000, 16_000_000 // bits/s
	shaped := dp == "kernel"
	if shaped {
		rt.CapabilityArgs["bandwidth"] = map[string]any{"ingressRate": ingress, "ingressBurst": 800_000, "egressRate": egress, "egressBurst": 800_000}
	}

	// A server in the container, at 10.9.0.x:80.
	var ln net.Listener
	must(t, c1.Do(func() (err error) { ln, err = net.Listen("tcp4", ":80"); return err }))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from the container")
			c.Close()
		}
	}()

	r, err := cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		t.Fatalf("ADD: %v", err)
	}
	res, err := current.NewResultFromResult(r)
	must(t, err)
	ip := res.IPs[0].Address.IP.String()

	// The host reaches the container through the gateway VNIC, and
	// host 2 reaches its server through host 1's port 8080.
	if err := h1.PingAll(ip, 2); err != nil {
		t.Errorf("host 1 to its container (%s) through the gateway: %v", ip, err)
	}
	if got, err := fetch(h2, netlab.Host1IP+":8080"); err != nil || got != "hello from the container" {
		t.Errorf("host 2 to host 1's port 8080: %q, %v; want the container's server", got, err)
	}
	err = cni.CheckNetworkList(ctx, list, rt)
	switch {
	case shaped && err != nil:
		t.Errorf("CHECK: %v", err)
	case !shaped && (err == nil || !strings.Contains(err.Error(), "veth peer")):
		// bandwidth's CHECK looks for the veth first, limits or not:
		// the README says to leave it out on the userspace path.
		t.Errorf("CHECK on the userspace path: %v, want the bandwidth plugin's refusal", err)
	}

	if shaped {
		// The host's end of the veth is in the result, and shaped.
		var host *current.Interface
		for _, i := range res.Interfaces {
			if i.Sandbox == "" && host == nil { // then bandwidth's ifb
				host = i
			}
		}
		if host == nil {
			t.Fatalf("ADD's result has no host interface: %+v", res.Interfaces)
		}
		if got := tbfRates(t, h1, func(l netlink.Link) bool { return l.Attrs().Name == host.Name }); !slices.Equal(got, []uint64{ingress / 8}) {
			t.Errorf("TBF rates on %s: %v, want [%d] (ingressRate)", host.Name, got, ingress/8)
		}
		if got := tbfRates(t, h1, isIFB); !slices.Equal(got, []uint64{egress / 8}) {
			t.Errorf("TBF rates on ifb devices: %v, want [%d] (egressRate)", got, egress/8)
		}
	}

	if err := cni.DelNetworkList(ctx, list, rt); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if got, err := fetch(h2, netlab.Host1IP+":8080"); err == nil {
		t.Errorf("host 1's port 8080 still answers after DEL: %q", got)
	}
	if shaped {
		if got := tbfRates(t, h1, isIFB); len(got) != 0 {
			t.Errorf("ifb shaping left after DEL: %v", got)
		}
	}
	out, err := d1.Adm("show-vnic", "-p", "-o", "link")
	must(t, err)
	if vs := strings.Fields(out); len(vs) != 1 || vs[0][0] != 'g' {
		t.Errorf("VNICs after DEL: %v, want the gateway alone", vs)
	}

	if !shaped {
		// The userspace data path's VNICs are TAPs, with no host end
		// to shape: the bandwidth plugin refuses, as the README says.
		rt.CapabilityArgs["bandwidth"] = map[string]any{"ingressRate": ingress, "ingressBurst": 800_000}
		if _, err := cni.AddNetworkList(ctx, list, rt); err == nil || !strings.Contains(err.Error(), "veth peer") {
			t.Errorf("ADD with bandwidth limits on the userspace path: %v, want the bandwidth plugin's refusal", err)
		}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			t.Errorf("DEL after the failed ADD: %v", err)
		}
	}
}

// fetch reads what a TCP server at addr says, from inside ns.
func fetch(ns *netlab.NS, addr string) (string, error) {
	var got []byte
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp4", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		got, err = io.ReadAll(c)
		return err
	})
	return string(got), err
}

func isIFB(l netlink.Link) bool { return l.Type() == "ifb" }

// tbfRates lists the rates (bytes/s) of the TBF qdiscs on ns's links
// that match.
func tbfRates(t *testing.T, ns *netlab.NS, match func(netlink.Link) bool) []uint64 {
	t.Helper()
	var rates []uint64
	must(t, ns.Do(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if !match(l) {
				continue
			}
			qs, err := netlink.QdiscList(l)
			if err != nil {
				return err
			}
			for _, q := range qs {
				if tbf, ok := q.(*netlink.Tbf); ok {
					rates = append(rates, tbf.Rate)
				}
			}
		}
		return nil
	}))
	return rates
}
