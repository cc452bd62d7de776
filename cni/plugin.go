package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ip"
	"github.com/containernetworking/plugins/pkg/ipam"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"overlaynet/admin"
	"overlaynet/ether"
	"overlaynet/overlay"
)

// ErrPluginNotAvailable is CNI's STATUS code for a plugin that cannot
// attach containers now (spec 1.1): overlayd does not answer.
const ErrPluginNotAvailable uint = 50

// Funcs are the plugin's verbs, for skel.PluginMainFuncs.
func Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus}
}

// Versions are the CNI spec versions the plugin speaks.
var Versions = version.PluginSupports("1.0.0", "1.1.0")

// adminError turns a failed overlayd request into a CNI error: overlayd
// not answering is worth trying again later; a refusal (an unknown
// overlay, a MAC in use) is the configuration's fault.
func adminError(what string, err error) *types.Error {
	var refused *admin.Error
	if errors.As(err, &refused) {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("%s: overlayd refused: %v", what, err), "")
	}
	return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s: %v", what, err), "")
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("container network namespace %s: %v", args.Netns, err), "")
	}
	defer netns.Close()
	c := &admin.Client{Socket: conf.Socket}
	name := vnicName(conf.Name, args.ContainerID, args.IfName)
	req := overlay.CreateVNICRequest{Name: name, Overlay: conf.Overlay, MAC: conf.mac(), VLAN: uint16(conf.VLAN)}
	if conf.MTU != 0 {
		req.Props = []overlay.Assignment{{Name: overlay.PropMTU, Value: strconv.Itoa(conf.MTU)}}
	}
	var info overlay.VNICInfo
	if err := c.Call(admin.MethodCreateVNIC, req, &info); err != nil {
		return adminError(fmt.Sprintf("create VNIC %s on overlay %s", name, conf.Overlay), err)
	}
	done := false
	defer func() {
		if !done {
			c.Call(admin.MethodDeleteVNIC, admin.NameParams{Name: name}, nil)
		}
	}()

	var res *current.Result
	if conf.IPAM.Type != "" {
		r, err := ipam.ExecAdd(conf.IPAM.Type, args.StdinData)
		if err != nil {
			return err
		}
		defer func() {
			if !done {
				ipam.ExecDel(conf.IPAM.Type, args.StdinData)
			}
		}()
		if res, err = current.NewResultFromResult(r); err != nil {
			return types.NewError(types.ErrDecodingFailure, fmt.Sprintf("the result of IPAM plugin %s: %v", conf.IPAM.Type, err), "")
		}
		if len(res.IPs) == 0 {
			return types.NewError(types.ErrInternal, fmt.Sprintf("IPAM plugin %s gave no address", conf.IPAM.Type), "")
		}
	} else {
		res = &current.Result{}
	}
	res.CNIVersion = current.ImplementedSpecVersion

	link, err := netlink.LinkByName(name)
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("overlayd made VNIC %s, but its interface is not here: %v", name, err), "")
	}
	if err := netlink.LinkSetNsFd(link, int(netns.Fd())); err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("move %s into %s: %v", name, args.Netns, err), "")
	}
	res.Interfaces = []*current.Interface{{Name: args.IfName, Mac: link.Attrs().HardwareAddr.String(), Mtu: link.Attrs().MTU, Sandbox: args.Netns}}
	for _, ipc := range res.IPs {
		ipc.Interface = current.Int(0)
	}
	peer := 0
	err = netns.Do(func(ns.NetNS) error {
		if err := ip.RenameLink(name, args.IfName); err != nil {
			return fmt.Errorf("rename %s to %s: %w", name, args.IfName, err)
		}
		l, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return err
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", args.IfName, err)
		}
		// A veth (the kernel data path) has its other end on the
		// overlay's bridge; a TAP (userspace) has none.
		_, peer, _ = ip.GetVethPeerIfindex(args.IfName)
		if len(res.IPs) > 0 {
			return ipam.ConfigureIface(args.IfName, res)
		}
		return nil
	})
	if err != nil {
		// The interface may be in the container now: deleting the VNIC
		// removes it wherever it is.
		return types.NewError(types.ErrInternal, fmt.Sprintf("in %s: %v", args.Netns, err), "")
	}
	// The host's side of the interface, as the bridge plugin reports
	// its veth's: the bandwidth plugin shapes there.
	if peer > 0 {
		if l, err := netlink.LinkByIndex(peer); err == nil {
			res.Interfaces = append(res.Interfaces, &current.Interface{Name: l.Attrs().Name, Mac: l.Attrs().HardwareAddr.String(), Mtu: l.Attrs().MTU})
		}
	}
	if conf.IsGateway {
		if err := ensureGateway(c, conf, res); err != nil {
			return err
		}
	}
	if conf.Portolan != nil {
		// Last: should it fail, the VNIC and the addresses go (above)
		// and nothing is left registered.
		vnetid, err := vnetID(c, info.Overlay)
		if err != nil {
			return err
		}
		if err := register(conf, vnetid, ether.MAC(link.Attrs().HardwareAddr), uint16(conf.VLAN), res.IPs); err != nil {
			return err
		}
	}
	done = true
	return types.PrintResult(res, conf.CNIVersion)
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.IPAM.Type != "" {
		if err := ipam.ExecDel(conf.IPAM.Type, args.StdinData); err != nil {
			return err
		}
	}
	c := &admin.Client{Socket: conf.Socket}
	name := vnicName(conf.Name, args.ContainerID, args.IfName)
	if conf.Portolan != nil {
		// Before the VNIC: while it exists, its MAC and overlay say
		// which mapping is the container's.
		var vnics []overlay.VNICInfo
		err := c.Call(admin.MethodShowVNIC, admin.ShowVNICParams{Name: name}, &vnics)
		if err != nil && !errors.Is(err, admin.ErrNotFound) {
			return adminError(fmt.Sprintf("show VNIC %s", name), err)
		}
		if len(vnics) == 1 {
			if err := unregisterVNIC(c, conf, vnics[0]); err != nil {
				return err
			}
		} else if mac, ok := prevMAC(conf, args.IfName); ok {
			// The VNIC is gone, but a mapping may be left (a DEL
			// that failed between the two): ADD's result names the
			// MAC. Best effort: the overlay may be gone too.
			if vnetid, err := confVNetID(c, conf); err == nil {
				if err := unregister(conf, vnetid, mac); err != nil {
					return err
				}
			}
		}
	}
	// The VNIC's interface goes with it, wherever it is; gone already
	// (a second DEL) is done.
	if err := c.Call(admin.MethodDeleteVNIC, admin.NameParams{Name: name}, nil); err != nil && !errors.Is(err, admin.ErrNotFound) {
		return adminError(fmt.Sprintf("delete VNIC %s", name), err)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.RawPrevResult == nil {
		return configError(`"prevResult" is missing: CHECK needs the result of ADD`)
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf(`"prevResult": %v`, err), "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, fmt.Sprintf(`"prevResult": %v`, err), "")
	}
	c := &admin.Client{Socket: conf.Socket}
	name := vnicName(conf.Name, args.ContainerID, args.IfName)
	var vnics []overlay.VNICInfo
	if err := c.Call(admin.MethodShowVNIC, admin.ShowVNICParams{Name: name}, &vnics); err != nil || len(vnics) != 1 {
		if err == nil || errors.Is(err, admin.ErrNotFound) {
			return types.NewError(types.ErrInternal, fmt.Sprintf("VNIC %s of container %s interface %s is gone from overlayd", name, args.ContainerID, args.IfName), "")
		}
		return adminError(fmt.Sprintf("show VNIC %s", name), err)
	}
	want, err := ether.ParseMAC(vnics[0].MAC)
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("overlayd's MAC of VNIC %s: %v", name, err), "")
	}
	if conf.IPAM.Type != "" {
		if err := ipam.ExecCheck(conf.IPAM.Type, args.StdinData); err != nil {
			return err
		}
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("container network namespace %s: %v", args.Netns, err), "")
	}
	defer netns.Close()
	if conf.IsGateway {
		if err := checkGateway(conf, prev); err != nil {
			return err
		}
	}
	return netns.Do(func(ns.NetNS) error {
		l, err := netlink.LinkByName(args.IfName)
		if err != nil {
			return fmt.Errorf("interface %s is not in %s: %w", args.IfName, args.Netns, err)
		}
		if got := l.Attrs().HardwareAddr; got.String() != net.HardwareAddr(want[:]).String() {
			return fmt.Errorf("interface %s has MAC %s, but its VNIC %s has %s", args.IfName, got, name, net.HardwareAddr(want[:]))
		}
		if l.Attrs().OperState == netlink.OperDown {
			return fmt.Errorf("interface %s is down", args.IfName)
		}
		if err := ip.ValidateExpectedInterfaceIPs(args.IfName, prev.IPs); err != nil {
			return err
		}
		return ip.ValidateExpectedRoute(prev.Routes)
	})
}

func cmdStatus(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	c := &admin.Client{Socket: conf.Socket}
	var ovs []overlay.OverlayInfo
	if err := c.Call(admin.MethodShowOverlay, admin.NameParams{}, &ovs); err != nil {
		return types.NewError(ErrPluginNotAvailable, fmt.Sprintf("overlayd does not answer: %v", err), "")
	}
	if !strings.Contains(conf.Overlay, "/") {
		found := false
		for _, o := range ovs {
			found = found || o.Name == conf.Overlay
		}
		if !found {
			return types.NewError(ErrPluginNotAvailable, fmt.Sprintf("overlayd has no overlay %s (overlayadm create-overlay)", conf.Overlay), "")
		}
	}
	if conf.IPAM.Type != "" {
		return ipam.ExecStatus(conf.IPAM.Type, args.StdinData)
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	conf, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	valid := map[string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[vnicName(conf.Name, a.ContainerID, a.IfName)] = true
	}
	c := &admin.Client{Socket: conf.Socket}
	var vnics []overlay.VNICInfo
	if err := c.Call(admin.MethodShowVNIC, admin.ShowVNICParams{}, &vnics); err != nil {
		return adminError("list VNICs", err)
	}
	prefix := vnicPrefix(conf.Name)
	var failed []string
	for _, v := range vnics {
		// The network's VNICs: its name's prefix, on its overlay (a
		// rule's overlay is named rule and vnetid together).
		if len(v.Name) != len(prefix)+10 || !strings.HasPrefix(v.Name, prefix) || valid[v.Name] ||
			v.Overlay != overlayName(conf.Overlay) {
			continue
		}
		if conf.Portolan != nil {
			if err := unregisterVNIC(c, conf, v); err != nil {
				failed = append(failed, fmt.Sprintf("%s: %v", v.Name, err))
				continue
			}
		}
		if err := c.Call(admin.MethodDeleteVNIC, admin.NameParams{Name: v.Name}, nil); err != nil && !errors.Is(err, admin.ErrNotFound) {
			failed = append(failed, fmt.Sprintf("%s: %v", v.Name, err))
		}
	}
	if len(failed) > 0 {
		return types.NewError(types.ErrTryAgainLater, "GC could not delete VNICs: "+strings.Join(failed, "; "), "")
	}
	if conf.IPAM.Type != "" {
		return invoke.DelegateGC(context.Background(), conf.IPAM.Type, args.StdinData, nil)
	}
	return nil
}
