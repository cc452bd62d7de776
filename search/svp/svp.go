// Package svp is the svp search plugin: a dynamic plugin that asks a
// mapping server (portolan, Triton's or ours) over SVP where MACs live
// (VL2) and which MAC holds an overlay IP (VL3, to answer ARP and NDP),
// and reads the server's log of changes to forget stale answers: one
// LOG_REQ is kept outstanding against a server that holds it while the
// log is empty (a long poll: portolan's, up to 5 s), so a change arrives
// within a round trip; a server that answers an empty log at once
// (Triton's) is asked again a poll interval (0.5 s) later.
//
// It connects to every address svp/host resolves to, keeps the
// connections up with backoff, retries a request on another server when
// one fails or is slow (closing a connection only after 30 s without
// progress), and marks its overlays DEGRADED while no server answers
// (a connected server that answers nothing counts as none), clearing that
// by itself on the first answer; a held LOG_REQ counts as none of that
// until it is overdue (7 s). The first LOG_REQ waits a delay, and a
// server that closes the connection on LOG_REQ gets them ever more rarely.
package svp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
	"overlaynet/svpwire"
)

// Property names.
const (
	PropHost         = "svp/host"
	PropPort         = "svp/port"
	PropUnderlayIP   = "svp/underlay_ip"
	PropUnderlayPort = "svp/underlay_port"
)

func init() {
	search.Register(&search.Plugin{
		Name:  "svp",
		Mode:  search.Dynamic,
		Props: props,
		New:   newInstance,
	})
}

func props(encap.DestType) []prop.Desc {
	return []prop.Desc{
		{Name: PropHost, Type: prop.String, Perm: prop.ReadWrite, Required: true,
			Check: checkHost, Help: "host name or IP address of the mapping server (all its addresses are used)"},
		{Name: PropPort, Type: prop.Uint, Perm: prop.ReadWrite, Required: true,
			Default: strconv.Itoa(svpwire.DefaultPort), HasRange: true, Min: 1, Max: 65535,
			Help: "TCP port of the mapping server"},
		{Name: PropUnderlayIP, Type: prop.IP, Perm: prop.ReadWrite, Required: true,
			Check: prop.CheckUnderlayIP, Help: "this host's underlay address, as the mapping server knows it"},
		// illumos stores this with default 1339 and never uses it; here it
		// documents the VXLAN port this host receives on.
		{Name: PropUnderlayPort, Type: prop.Uint, Perm: prop.ReadWrite, Required: true,
			Default: "4789", HasRange: true, Min: 1, Max: 65535,
			Help: "the UDP port this host receives VXLAN on"},
	}
}

func checkHost(v string) error {
	if v == "" || len(v) > 253 {
		return fmt.Errorf("must be a host name or an IP address")
	}
	if _, err := netip.ParseAddr(v); err == nil {
		return nil
	}
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("%q is neither a host name nor an IP address", v)
		}
	}
	return nil
}

var errNotFound = search.ErrNotFound

type instance struct {
	key    remoteKey
	vnetid uint32
	// noPort: the encapsulation has no ports (NVGRE), so answers are
	// used without theirs.
	noPort bool
	host   search.Host
	log    *slog.Logger
	// remote is set by Start and never cleared: a lookup that raced Stop
	// then fails on the stopped remote instead of crashing.
	remote   *remote
	stopOnce sync.Once
}

func newInstance(cfg search.Config) (search.Instance, error) {
	if cfg.Dest&encap.DestIP == 0 || cfg.Dest&^(encap.DestIP|encap.DestPort) != 0 {
		return nil, fmt.Errorf("svp plugin can only supply an ip or ip+port destination, not %s", cfg.Dest)
	}
	key := remoteKey{host: cfg.Props.Get(PropHost), port: uint16(cfg.Props.Uint(PropPort)),
		underlay: cfg.Props.IP(PropUnderlayIP)}
	return &instance{key: key, vnetid: cfg.VNetID, host: cfg.Host, log: cfg.Log, noPort: cfg.Dest&encap.DestPort == 0}, nil
}

// Start joins (or starts) the remote for svp/host, svp/port and
// svp/underlay_ip. It does not wait for a connection: an unreachable
// server makes the overlay DEGRADED, not its creation fail.
func (in *instance) Start() error {
	if in.key.host == "" || !in.key.underlay.IsValid() {
		return fmt.Errorf("svp/host and svp/underlay_ip are required")
	}
	r, err := acquire(in.key, in)
	if err != nil {
		return err
	}
	in.remote = r
	in.log.Info("svp: started", "server", fmt.Sprintf("%s:%d", in.key.host, in.key.port), "underlay_ip", in.key.underlay.String())
	return nil
}

// Stop implements search.Instance.
func (in *instance) Stop() {
	if in.remote != nil {
		in.stopOnce.Do(func() { in.remote.release(in) })
	}
}

// dest is the destination of an answer.
func (in *instance) dest(addr netip.Addr, port uint16) encap.Dest {
	if in.noPort {
		port = 0
	}
	return encap.Dest{IP: addr.Unmap(), Port: port}
}

// Lookup implements search.DynamicInstance with a VL2 request.
func (in *instance) Lookup(ctx context.Context, _ uint16, mac ether.MAC) (encap.Dest, error) {
	body, err := in.remote.call(ctx, svpwire.VL2Req{MAC: mac, VNetID: in.vnetid}.AppendFrame, svpwire.OpVL2Ack, false)
	if err != nil {
		return encap.Dest{}, err
	}
	ack, err := svpwire.DecodeVL2Ack(body)
	if err != nil {
		return encap.Dest{}, err
	}
	switch ack.Status {
	case svpwire.StatusOK:
		return in.dest(ack.Addr, ack.Port), nil
	case svpwire.StatusNotFound:
		return encap.Dest{}, search.ErrNotFound
	}
	return encap.Dest{}, fmt.Errorf("mapping server answered VL2 with %s", ack.Status)
}

// ResolveIP implements search.IPResolver with a VL3 request. The answer
// also says where the MAC lives, so that is installed at once and the
// guest's first frame after ARP needs no VL2 lookup.
func (in *instance) ResolveIP(ctx context.Context, _ uint16, ip netip.Addr) (ether.MAC, error) {
	mac, dest, err := in.vl3(ctx, ip)
	if err != nil {
		return ether.MAC{}, err
	}
	in.host.Learn(search.Answer{MAC: mac, Dest: dest})
	return mac, nil
}

func (in *instance) vl3(ctx context.Context, ip netip.Addr) (ether.MAC, encap.Dest, error) {
	typ := uint32(svpwire.L3IPv6)
	if ip.Is4() {
		typ = svpwire.L3IPv4
	}
	body, err := in.remote.call(ctx, svpwire.VL3Req{IP: ip, Type: typ, VNetID: in.vnetid}.AppendFrame, svpwire.OpVL3Ack, false)
	if err != nil {
		return ether.MAC{}, encap.Dest{}, err
	}
	ack, err := svpwire.DecodeVL3Ack(body)
	if err != nil {
		return ether.MAC{}, encap.Dest{}, err
	}
	switch ack.Status {
	case svpwire.StatusOK:
		return ether.MAC(ack.MAC), in.dest(ack.Addr, ack.Port), nil
	case svpwire.StatusNotFound:
		return ether.MAC{}, encap.Dest{}, search.ErrNotFound
	}
	return ether.MAC{}, encap.Dest{}, errors.New("mapping server answered VL3 with " + ack.Status.String())
}
