// Package direct is the point-to-point search plugin: every non-local
// frame of the overlay, broadcast and multicast included, goes to one
// underlay destination.
package direct

import (
	"fmt"
	"net/netip"

	"overlaynet/encap"
	"overlaynet/prop"
	"overlaynet/search"
)

// Property names.
const (
	PropDestIP   = "direct/dest_ip"
	PropDestPort = "direct/dest_port"
)

func init() {
	search.Register(&search.Plugin{
		Name:  "direct",
		Mode:  search.Point,
		Props: props,
		New:   newInstance,
	})
}

func props(dest encap.DestType) []prop.Desc {
	d := []prop.Desc{
		{Name: PropDestIP, Type: prop.IP, Perm: prop.ReadWrite, Required: true,
			Check: prop.CheckUnderlayIP,
			Help:  "underlay address of the one peer"},
	}
	if dest&encap.DestPort != 0 {
		d = append(d, prop.Desc{Name: PropDestPort, Type: prop.Uint, Perm: prop.ReadWrite,
			Required: true, HasRange: true, Min: 1, Max: 65535,
			Help: "UDP port of the one peer"})
	}
	return d
}

type instance struct {
	dest  encap.Dest
	needs encap.DestType
}

func newInstance(cfg search.Config) (search.Instance, error) {
	if cfg.Dest&^(encap.DestIP|encap.DestPort) != 0 {
		return nil, fmt.Errorf("direct plugin cannot supply a %s destination", cfg.Dest)
	}
	in := &instance{needs: cfg.Dest}
	in.dest.IP, _ = netip.ParseAddr(cfg.Props.Get(PropDestIP))
	in.dest.Port = uint16(cfg.Props.Uint(PropDestPort))
	return in, nil
}

// Start checks both properties; unlike illumos it really checks the port.
func (in *instance) Start() error {
	if !in.dest.IP.IsValid() {
		return fmt.Errorf("missing required property %s", PropDestIP)
	}
	if in.needs&encap.DestPort != 0 && in.dest.Port == 0 {
		return fmt.Errorf("missing required property %s", PropDestPort)
	}
	return nil
}

func (in *instance) Stop() {}

func (in *instance) Point() encap.Dest { return in.dest }
