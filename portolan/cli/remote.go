package cli

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"

	"overlaynet/ether"
	"overlaynet/portolan/api"
	"overlaynet/portolan/store"
)

// mappings is what the administration subcommands change and read: the
// store itself, or a portolan server's network API (--server).
type mappings interface {
	SetHost(ctx context.Context, h store.Host, sources []netip.Addr) error
	RemoveHost(ctx context.Context, id string) error
	Hosts(ctx context.Context) ([]store.Host, error)
	Sources(ctx context.Context) (map[string][]netip.Addr, error)
	AddVNIC(ctx context.Context, v store.VNIC) error
	MoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC, host string) error
	RemoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC) error
	VNICs(ctx context.Context, vnetid uint32, all bool) ([]store.VNIC, error)
}

// mapOpener opens the mappings a subcommand works on, and returns how to
// let go of them.
type mapOpener func(ctx context.Context) (mappings, func(), error)

// withMappings runs fn with the mappings open.
func withMappings(open mapOpener, fn func(ctx context.Context, m mappings) error) error {
	ctx := context.Background()
	m, done, err := open(ctx)
	if err != nil {
		return err
	}
	defer done()
	return fn(ctx, m)
}

// remote is a server's API as mappings.
type remote struct{ c *api.Client }

func newRemote(server, tokenFile string) (*remote, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Errorf("--server %q: want http://HOST:PORT or https://HOST:PORT (portolan serve --api)", server)}
	}
	c := &api.Client{URL: server}
	if tokenFile != "" {
		tok, err := readToken(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		c.Token = tok
	}
	return &remote{c}, nil
}

func (r *remote) SetHost(ctx context.Context, h store.Host, sources []netip.Addr) error {
	req := api.HostRequest{IP: h.IP.String(), Port: h.Port}
	for _, a := range sources {
		req.Sources = append(req.Sources, a.String())
	}
	return r.c.SetHost(ctx, h.ID, req)
}

func (r *remote) RemoveHost(ctx context.Context, id string) error { return r.c.RemoveHost(ctx, id) }

func (r *remote) Hosts(ctx context.Context) ([]store.Host, error) {
	infos, err := r.c.Hosts(ctx)
	var out []store.Host
	for _, h := range infos {
		ip, perr := netip.ParseAddr(h.IP)
		if perr != nil {
			return nil, fmt.Errorf("server sent host %s with address %q", h.ID, h.IP)
		}
		out = append(out, store.Host{ID: h.ID, IP: ip, Port: h.Port})
	}
	return out, err
}

func (r *remote) Sources(ctx context.Context) (map[string][]netip.Addr, error) {
	infos, err := r.c.Hosts(ctx)
	out := map[string][]netip.Addr{}
	for _, h := range infos {
		for _, s := range h.Sources {
			a, perr := netip.ParseAddr(s)
			if perr != nil {
				return nil, fmt.Errorf("server sent host %s with source %q", h.ID, s)
			}
			out[h.ID] = append(out[h.ID], a)
		}
	}
	return out, err
}

func (r *remote) AddVNIC(ctx context.Context, v store.VNIC) error {
	req := api.VNICRequest{Host: v.Host, VLAN: v.VLAN}
	for _, a := range v.IPs {
		req.IPs = append(req.IPs, a.String())
	}
	return r.c.AddVNIC(ctx, v.VNetID, v.MAC, req)
}

func (r *remote) MoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC, host string) error {
	return r.c.MoveVNIC(ctx, vnetid, mac, host)
}

func (r *remote) RemoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC) error {
	return r.c.RemoveVNIC(ctx, vnetid, mac)
}

func (r *remote) VNICs(ctx context.Context, vnetid uint32, all bool) ([]store.VNIC, error) {
	infos, err := r.c.VNICs(ctx, vnetid, all)
	var out []store.VNIC
	for _, v := range infos {
		mac, perr := ether.ParseMAC(v.MAC)
		if perr != nil {
			return nil, fmt.Errorf("server sent VNIC MAC %q", v.MAC)
		}
		sv := store.VNIC{VNetID: v.VNetID, MAC: mac, VLAN: v.VLAN, Host: v.Host}
		for _, s := range v.IPs {
			a, perr := netip.ParseAddr(s)
			if perr != nil {
				return nil, fmt.Errorf("server sent VNIC address %q", s)
			}
			sv.IPs = append(sv.IPs, a)
		}
		out = append(out, sv)
	}
	return out, err
}

var _ mappings = (*store.SQL)(nil)
