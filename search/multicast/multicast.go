// Package multicast is the multicast search plugin, which illumos'
// administration guide proposes and Linux's vxlan driver has as its group
// mode: frames without a known destination (broadcast, multicast and
// unknown unicast) go to a multicast group that every member joins, and
// where each remote MAC lives is learned from the frames that arrive,
// with ageing and a bound. No server, no map: the underlay's multicast
// does the finding.
//
// The group is multicast/dest_ip, the straw man's name; its port is the
// overlay's listen port, which every member shares (as the vxlan
// driver's dstport). The listen address stays the host's own, unicast:
// learned destinations are sent to directly, and the group is joined on
// the interface that holds the listen address.
package multicast

import (
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"overlaynet/encap"
	"overlaynet/prop"
	"overlaynet/search"
)

// Property names.
const (
	PropDestIP     = "multicast/dest_ip"
	PropAgeing     = "multicast/ageing"
	PropMaxLearned = "multicast/max_learned"
)

// Defaults: the vxlan driver's ageing (300 s); a bound the driver does
// not have by default (maxaddress 0), since a learned table fed by
// whatever arrives should not grow without one.
const (
	DefaultAgeing     = 300
	DefaultMaxLearned = 4096
)

func init() {
	search.Register(&search.Plugin{
		Name:  "multicast",
		Mode:  search.Multicast,
		Props: props,
		New:   newInstance,
	})
}

func props(encap.DestType) []prop.Desc {
	return []prop.Desc{
		{Name: PropDestIP, Type: prop.IP, Perm: prop.ReadWrite, Required: true, Check: checkGroup,
			Help: "multicast group (IPv4 or IPv6, the listen address's family) that unknown and broadcast frames go to, on the listen port"},
		{Name: PropAgeing, Type: prop.Uint, Perm: prop.ReadWrite, Default: strconv.Itoa(DefaultAgeing),
			HasRange: true, Min: 1, Max: 86400,
			Help: "seconds a learned destination lasts without a frame from it"},
		{Name: PropMaxLearned, Type: prop.Uint, Perm: prop.ReadWrite, Default: strconv.Itoa(DefaultMaxLearned),
			HasRange: true, Min: 1, Max: 1 << 20,
			Help: "learned destinations at most; beyond, frames to unlearned MACs go to the group"},
	}
}

// checkGroup accepts a multicast address that can carry traffic between
// hosts: not a node-local (interface-local) one.
func checkGroup(v string) error {
	a, err := netip.ParseAddr(v)
	if err != nil {
		return err
	}
	a = a.Unmap()
	switch {
	case !a.IsMulticast():
		return fmt.Errorf("%s is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)", a)
	case a.IsInterfaceLocalMulticast():
		return fmt.Errorf("%s is interface-local: it never leaves this host", a)
	}
	return nil
}

type instance struct {
	group  netip.Addr
	ageing time.Duration
	max    int
}

func newInstance(cfg search.Config) (search.Instance, error) {
	if cfg.Dest != encap.DestIP|encap.DestPort {
		return nil, fmt.Errorf("the multicast plugin needs a UDP encapsulation (vxlan or geneve): the group's port is the listen port, and learned destinations are address and port")
	}
	g, _ := netip.ParseAddr(cfg.Props.Get(PropDestIP))
	return &instance{group: g.Unmap(), ageing: time.Duration(cfg.Props.Uint(PropAgeing)) * time.Second,
		max: int(cfg.Props.Uint(PropMaxLearned))}, nil
}

// Start checks the group.
func (in *instance) Start() error {
	if !in.group.IsValid() {
		return fmt.Errorf("missing required property %s", PropDestIP)
	}
	return nil
}

func (in *instance) Stop() {}

// Group implements search.GroupInstance.
func (in *instance) Group() (netip.Addr, time.Duration, int) { return in.group, in.ageing, in.max }
