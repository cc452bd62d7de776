package cni

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"overlaynet/admin"
	"overlaynet/ether"
	"overlaynet/overlay"
	"overlaynet/portolan/api"
	"overlaynet/portolan/store"
)

// portolanTimeout bounds one request to portolan's API.
const portolanTimeout = 10 * time.Second

// portolanClient returns the API client of the configuration.
func portolanClient(p *PortolanConf) (*api.Client, error) {
	tok, err := os.ReadFile(p.TokenFile)
	if err != nil {
		return nil, configError(`"portolan": "tokenFile": %v`, err)
	}
	return &api.Client{URL: p.URL, Token: strings.TrimSpace(string(tok))}, nil
}

// vnetID returns the vnetid of the overlay a VNIC is on.
func vnetID(c *admin.Client, ov string) (uint32, error) {
	var ovs []overlay.OverlayInfo
	if err := c.Call(admin.MethodShowOverlay, admin.NameParams{Name: ov}, &ovs); err != nil {
		return 0, adminError("show overlay "+ov, err)
	}
	for _, o := range ovs {
		for _, p := range o.Props {
			if p.Name == overlay.PropVNetID {
				v, err := strconv.ParseUint(p.Value, 10, 32)
				if err != nil {
					return 0, types.NewError(types.ErrInternal, fmt.Sprintf("overlay %s: vnetid %q: %v", ov, p.Value, err), "")
				}
				return uint32(v), nil
			}
		}
	}
	return 0, types.NewError(types.ErrInternal, fmt.Sprintf("overlayd shows no vnetid for overlay %s", ov), "")
}

// register adds the VNIC's mapping (MAC, addresses, this host) to
// portolan.
func register(conf *NetConf, vnetid uint32, mac ether.MAC, vlan uint16, ips []*current.IPConfig) error {
	pc, err := portolanClient(conf.Portolan)
	if err != nil {
		return err
	}
	req := api.VNICRequest{Host: conf.Portolan.Host, VLAN: vlan}
	for _, ip := range ips {
		req.IPs = append(req.IPs, ip.Address.IP.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), portolanTimeout)
	defer cancel()
	if err := pc.AddVNIC(ctx, vnetid, mac, req); err != nil {
		return portolanError(fmt.Sprintf("register MAC %s on vnetid %d with portolan at %s", ether.Short(mac), vnetid, conf.Portolan.URL), err)
	}
	return nil
}

// unregister removes the VNIC's mapping from portolan when it is this
// host's; one already gone is done.
func unregister(conf *NetConf, vnetid uint32, mac ether.MAC) error {
	pc, err := portolanClient(conf.Portolan)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), portolanTimeout)
	defer cancel()
	// Only this host's: a MAC that moved (a migrated container) is
	// another host's now, and its mapping is not this DEL's to remove.
	vnics, err := pc.VNICs(ctx, vnetid, false)
	if err != nil {
		return portolanError(fmt.Sprintf("list vnetid %d's VNICs at portolan %s", vnetid, conf.Portolan.URL), err)
	}
	mine := false
	for _, v := range vnics {
		if m, err := ether.ParseMAC(v.MAC); err == nil && m == mac {
			mine = v.Host == conf.Portolan.Host
		}
	}
	if !mine {
		return nil
	}
	if err := pc.RemoveVNIC(ctx, vnetid, mac); err != nil && !errors.Is(err, store.ErrNotFound) {
		return portolanError(fmt.Sprintf("remove MAC %s on vnetid %d from portolan at %s", ether.Short(mac), vnetid, conf.Portolan.URL), err)
	}
	return nil
}

// portolanError words a failed API request: refused (a bad token, a
// host portolan does not know, a MAC in use) is the configuration's
// fault; anything else is worth trying again.
func portolanError(what string, err error) *types.Error {
	var refused *api.Error
	if errors.Is(err, api.ErrAuth) || errors.As(err, &refused) && refused.Status < 500 {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf("%s: %v", what, err), "")
	}
	return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s: %v", what, err), "")
}

// unregisterVNIC removes the mapping of an existing VNIC.
func unregisterVNIC(c *admin.Client, conf *NetConf, v overlay.VNICInfo) error {
	mac, err := ether.ParseMAC(v.MAC)
	if err != nil {
		return types.NewError(types.ErrInternal, fmt.Sprintf("overlayd's MAC of VNIC %s: %v", v.Name, err), "")
	}
	vnetid, err := vnetID(c, v.Overlay)
	if err != nil {
		return err
	}
	return unregister(conf, vnetid, mac)
}

// confVNetID is the vnetid of the configuration's overlay: a rule's is
// in its name; a named overlay's, overlayd says.
func confVNetID(c *admin.Client, conf *NetConf) (uint32, error) {
	if _, id, ok := strings.Cut(conf.Overlay, "/"); ok {
		v, err := strconv.ParseUint(id, 10, 32)
		return uint32(v), err
	}
	return vnetID(c, conf.Overlay)
}

// prevMAC returns the MAC that ADD's result (prevResult) gives the
// container's interface ifName.
func prevMAC(conf *NetConf, ifName string) (ether.MAC, bool) {
	if conf.RawPrevResult == nil || version.ParsePrevResult(&conf.PluginConf) != nil {
		return ether.MAC{}, false
	}
	res, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return ether.MAC{}, false
	}
	for _, i := range res.Interfaces {
		if i.Name == ifName && i.Sandbox != "" {
			if mac, err := ether.ParseMAC(i.Mac); err == nil {
				return mac, true
			}
		}
	}
	return ether.MAC{}, false
}
