package cni

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
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
	"overlaynet/portolan/api"
	"overlaynet/portolan/store"
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
// DEL leaves it, as the bridge plugin leaves its bridge, and so does an
// ADD that fails after making it (others may use it by then). One ADD
// creates it; an ADD that finds it (another's, or one racing) adds what
// is missing, its portolan mapping included.
func ensureGateway(c *admin.Client, conf *NetConf, res *current.Result) error {
	gws := gatewayAddrs(res.IPs)
	if len(gws) == 0 {
		return configError(`"isGateway": IPAM plugin %s gave no gateway address: set one ("gateway" in a host-local range)`, conf.IPAM.Type)
	}
	name := gatewayName(conf.Name)
	mac, err := gatewayMAC(conf)
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("gateway VNIC %s: %v", name, err), "")
	}
	var vnics []overlay.VNICInfo
	err = c.Call(admin.MethodShowVNIC, admin.ShowVNICParams{Name: name}, &vnics)
	switch {
	case errors.Is(err, admin.ErrNotFound) || err == nil && len(vnics) == 0:
		req := overlay.CreateVNICRequest{Name: name, Overlay: conf.Overlay, MAC: ether.Long(mac), VLAN: uint16(conf.VLAN)}
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
			vnics = []overlay.VNICInfo{info}
		}
	case err != nil:
		return adminError(fmt.Sprintf("show gateway VNIC %s", name), err)
	}
	v := vnics[0]
	if v.Overlay != overlayName(conf.Overlay) || int(v.VLAN) != conf.VLAN {
		return configError(`"isGateway": the gateway VNIC %s is on overlay %s VLAN %d, not %s VLAN %d: delete it (overlayadm delete-vnic %s) to have it made again`,
			name, v.Overlay, v.VLAN, conf.Overlay, conf.VLAN, name)
	}
	fail := func(err error) error {
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
	if conf.Portolan == nil {
		return nil
	}
	// Others on the overlay find the gateway as they find containers
	// (proxy ARP asks portolan). Checked on every ADD, so that one that
	// failed or was cut short after making the VNIC is finished by the
	// next.
	vmac, err := ether.ParseMAC(v.MAC)
	if err != nil {
		return fail(fmt.Errorf("overlayd's MAC %q: %w", v.MAC, err))
	}
	vnetid, err := vnetID(c, v.Overlay)
	if err != nil {
		return err
	}
	return registerGateway(conf, vnetid, vmac, v.VLAN, gws)
}

// gatewayMAC is the MAC of a network's gateway VNIC on this host: the
// same whenever it is made again, so that its portolan mapping (or a
// files entry) stays true; another for each host and network.
func gatewayMAC(conf *NetConf) (ether.MAC, error) {
	host := ""
	if conf.Portolan != nil {
		host = conf.Portolan.Host
	} else {
		h, err := os.Hostname()
		if err != nil {
			return ether.MAC{}, fmt.Errorf("this host's name, for the gateway's MAC: %w", err)
		}
		host = h
	}
	h := sha256.Sum256([]byte(conf.Name + "\x00" + host))
	var m ether.MAC
	copy(m[1:], h[:5])
	m[0] = 0x02 // locally administered, unicast
	return m, nil
}

// registerGateway makes portolan's mapping of the gateway this host's,
// with the gateway addresses: added when missing, replaced when it says
// something else, left alone when right (or when a racing ADD has just
// made it right).
func registerGateway(conf *NetConf, vnetid uint32, mac ether.MAC, vlan uint16, gws []*net.IPNet) error {
	pc, err := portolanClient(conf.Portolan)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), portolanTimeout)
	defer cancel()
	want := make([]string, 0, len(gws))
	for _, gw := range gws {
		want = append(want, gw.IP.String())
	}
	slices.Sort(want)
	where := fmt.Sprintf("gateway MAC %s on vnetid %d at portolan %s", ether.Short(mac), vnetid, conf.Portolan.URL)
	current := func() (found, right bool, err error) {
		vnics, err := pc.VNICs(ctx, vnetid, false)
		if err != nil {
			return false, false, portolanError("list the VNICs of "+where, err)
		}
		for _, v := range vnics {
			if m, err := ether.ParseMAC(v.MAC); err != nil || m != mac {
				continue
			}
			ips := slices.Clone(v.IPs)
			slices.Sort(ips)
			return true, v.Host == conf.Portolan.Host && v.VLAN == vlan && slices.Equal(ips, want), nil
		}
		return false, false, nil
	}
	found, right, err := current()
	if err != nil || right {
		return err
	}
	if found {
		if err := pc.RemoveVNIC(ctx, vnetid, mac); err != nil && !errors.Is(err, store.ErrNotFound) {
			return portolanError("replace "+where, err)
		}
	}
	err = pc.AddVNIC(ctx, vnetid, mac, api.VNICRequest{Host: conf.Portolan.Host, VLAN: vlan, IPs: want})
	if errors.Is(err, store.ErrExists) {
		if _, right, e := current(); e == nil && right {
			return nil // a racing ADD registered it
		}
	}
	if err != nil {
		return portolanError("register "+where+" (each host needs its own gateway address)", err)
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
