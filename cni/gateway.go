package cni

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"overlaynet/admin"
	"overlaynet/ether"
	"overlaynet/overlay"
)

// gatewayAddrs are the gateway addresses IPAM gave, each with its
// subnet's mask: what the gateway VNIC carries.
func gatewayAddrs(ips []*current.IPConfig) []*net.IPNet {
	var gws []*net.IPNet
	for _, ipc := range ips {
		if ipc.Gateway != nil {
			gws = append(gws, &net.IPNet{IP: ipc.Gateway, Mask: ipc.Address.Mask})
		}
	}
	return gws
}

// ensureGateway makes sure this host has the network's gateway VNIC, up,
// with IPAM's gateway addresses, and that the host forwards: what
// isGateway asks. The VNIC is the network's, shared by its containers:
// DEL leaves it, as the bridge plugin leaves its bridge. One ADD creates
// it; an ADD that finds it (another's, or one racing) adds to it only
// what is missing.
func ensureGateway(c *admin.Client, conf *NetConf, res *current.Result) error {
	gws := gatewayAddrs(res.IPs)
	if len(gws) == 0 {
		return configError(`"isGateway": IPAM plugin %s gave no gateway address: set one ("gateway" in a host-local range)`, conf.IPAM.Type)
	}
	name := gatewayName(conf.Name)
	created := false
	var vnics []overlay.VNICInfo
	err := c.Call(admin.MethodShowVNIC, admin.ShowVNICParams{Name: name}, &vnics)
	switch {
	case errors.Is(err, admin.ErrNotFound) || err == nil && len(vnics) == 0:
		req := overlay.CreateVNICRequest{Name: name, Overlay: conf.Overlay, VLAN: uint16(conf.VLAN)}
		if conf.MTU != 0 {
			req.Props = []overlay.Assignment{{Name: overlay.PropMTU, Value: strconv.Itoa(conf.MTU)}}
		}
		var info overlay.VNICInfo
		if err := c.Call(admin.MethodCreateVNIC, req, &info); err != nil {
			// Another ADD may have made it meanwhile.
			if e := c.Call(admin.MethodShowVNIC, admin.ShowVNICParams{Name: name}, &vnics); e != nil || len(vnics) != 1 {
				return adminError(fmt.Sprintf("create gateway VNIC %s on overlay %s", name, conf.Overlay), err)
			}
		} else {
			created = true
			vnics = []overlay.VNICInfo{info}
		}
	case err != nil:
		return adminError(fmt.Sprintf("show gateway VNIC %s", name), err)
	}
	if ov := vnics[0].Overlay; ov != overlayName(conf.Overlay) {
		return configError(`"isGateway": the gateway VNIC %s is on overlay %s, not %s: delete it (overlayadm delete-vnic %s) to have it made again`, name, ov, conf.Overlay, name)
	}
	fail := func(err error) error {
		if created {
			c.Call(admin.MethodDeleteVNIC, admin.NameParams{Name: name}, nil)
		}
		return types.NewError(types.ErrInternal, fmt.Sprintf("gateway VNIC %s: %v", name, err), "")
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fail(fmt.Errorf("its interface is not in this namespace: %w", err))
	}
	for _, gw := range gws {
		a := &netlink.Addr{IPNet: gw}
		if gw.IP.To4() == nil {
			// The address is this host's alone: no duplicate address
			// detection to wait out.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrReplace(link, a); err != nil {
			return fail(fmt.Errorf("add address %s: %w", gw, err))
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fail(fmt.Errorf("set up: %w", err))
	}
	if err := ip.EnableForward(res.IPs); err != nil {
		return fail(fmt.Errorf("turn on IP forwarding: %w", err))
	}
	if created && conf.Portolan != nil {
		// Others on the overlay find the gateway as they find
		// containers (proxy ARP asks portolan).
		mac, err := ether.ParseMAC(vnics[0].MAC)
		if err != nil {
			return fail(fmt.Errorf("overlayd's MAC %q: %w", vnics[0].MAC, err))
		}
		vnetid, err := vnetID(c, vnics[0].Overlay)
		if err == nil {
			var addrs []*current.IPConfig
			for _, gw := range gws {
				addrs = append(addrs, &current.IPConfig{Address: *gw})
			}
			err = register(conf, vnetid, mac, uint16(conf.VLAN), addrs)
		}
		if err != nil {
			fail(err)
			return err
		}
	}
	return nil
}

// checkGateway is CHECK's look at the gateway VNIC: there, up, with the
// gateway addresses of ADD's result.
func checkGateway(conf *NetConf, prev *current.Result) error {
	name := gatewayName(conf.Name)
	link, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("gateway VNIC %s is not on this host: %w", name, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("gateway VNIC %s is down", name)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("gateway VNIC %s: %w", name, err)
	}
	for _, gw := range gatewayAddrs(prev.IPs) {
		found := false
		for _, a := range addrs {
			found = found || a.IPNet.String() == gw.String()
		}
		if !found {
			return fmt.Errorf("gateway VNIC %s lacks address %s", name, gw)
		}
	}
	return nil
}

// overlayName is the name overlayd gives the overlay of a reference: a
// rule's is its rule and vnetid together ("rule/2233" is "rule2233").
func overlayName(ref string) string {
	return strings.Replace(ref, "/", "", 1)
}
