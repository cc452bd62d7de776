package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
)

// ModifyTargets edits a dynamic overlay's target table: remove one entry,
// flush it, or set one entry by hand (modify-overlay -d, -f, -s). Entries
// set by hand are not kept across a restart, as in illumos; a plugin's
// later invalidation may replace them.
func (m *Manager) ModifyTargets(req ModifyRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ov, err := m.overlay(req.Name)
	if err != nil {
		return err
	}
	n := 0
	for _, given := range []bool{req.Delete != "", req.Flush, req.Set != ""} {
		if given {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("give exactly one of -d, -f and -s")
	}
	if ov.sp.Mode == search.Point {
		return fmt.Errorf("overlay %s uses the point-mode search plugin %s: it has no target table to modify", ov.name, ov.sp.Name)
	}
	switch {
	case req.Flush:
		ov.engine.flushTargets()
		ov.log.Info("target table flushed")
	case req.Delete != "":
		mac, err := ether.ParseMAC(req.Delete)
		if err != nil {
			return err
		}
		// An entry that is not there is an error, not a silent success:
		// the operator may have mistyped the MAC or the overlay.
		found := false
		for _, t := range ov.dp.Targets() {
			if t.MAC == mac {
				if t.State == datapath.TargetPending {
					return fmt.Errorf("overlay %s has no answer for %s to remove: a lookup for it is in flight", ov.name, ether.Short(mac))
				}
				found = true
			}
		}
		if !found {
			return fmt.Errorf("overlay %s has no target entry for %s (show-overlay -t %s lists them)", ov.name, ether.Short(mac), ov.name)
		}
		ov.engine.removeTarget(mac)
		ov.log.Info("target entry removed", "mac", ether.Short(mac))
	default:
		mac, dest, drop, err := parseTargetSet(req.Set, ov.enc.Dest())
		if err != nil {
			return err
		}
		if drop {
			if err := ov.engine.setDrop(mac, ov.props.Get(PropDataPath)); err != nil {
				return fmt.Errorf("overlay %s: %w", ov.name, err)
			}
			ov.log.Info("target entry set", "mac", ether.Short(mac), "dest", "drop")
			return nil
		}
		listen, err := ov.enc.Listen(ov.props)
		if err != nil {
			return err
		}
		if err := checkFamilies(listen.Addr(), dest.IP); err != nil {
			return err
		}
		ov.engine.setTarget(mac, dest)
		ov.log.Info("target entry set", "mac", ether.Short(mac), "dest", dest.String())
	}
	return nil
}

// parseTargetSet parses "<mac>=<ip>:<port>", "<mac>=[<ipv6>]:<port>" or
// "<mac>=drop" (illumos cut the IP at the first ':' and so could not take
// IPv6; and crashed without '=').
func parseTargetSet(s string, need encap.DestType) (ether.MAC, encap.Dest, bool, error) {
	macText, destText, ok := strings.Cut(s, "=")
	if !ok {
		return ether.MAC{}, encap.Dest{}, false, fmt.Errorf("invalid target %q: want <mac>=<ip>:<port> or <mac>=drop", s)
	}
	mac, err := ether.ParseMAC(macText)
	if err != nil {
		return ether.MAC{}, encap.Dest{}, false, err
	}
	if strings.EqualFold(destText, "drop") {
		return mac, encap.Dest{}, true, nil
	}
	var dest encap.Dest
	if need&encap.DestPort == 0 {
		if dest.IP, err = netip.ParseAddr(destText); err != nil {
			return mac, dest, false, fmt.Errorf("invalid destination %q: want an IP address", destText)
		}
	} else {
		host, portText, err := net.SplitHostPort(destText)
		if err != nil {
			return mac, dest, false, fmt.Errorf("invalid destination %q: want <ip>:<port> or [<ipv6>]:<port>", destText)
		}
		ip, err := netip.ParseAddr(host)
		if err != nil {
			return mac, dest, false, fmt.Errorf("invalid destination %q: %q is not an IP address", destText, host)
		}
		port, err := strconv.ParseUint(portText, 10, 16)
		if err != nil || port == 0 {
			return mac, dest, false, fmt.Errorf("invalid destination %q: port %q is not a number from 1 to 65535", destText, portText)
		}
		dest = encap.Dest{IP: ip.Unmap(), Port: uint16(port)}
	}
	if err := prop.CheckUnderlayIP(dest.IP.String()); err != nil {
		return mac, dest, false, fmt.Errorf("invalid destination %q: %v", destText, err)
	}
	return mac, dest, false, nil
}

// Refresh asks the named overlay's plugin, or every overlay's plugin that
// can, to reload its configuration.
func (m *Manager) Refresh(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ovs, err := m.pick(name)
	if err != nil {
		return err
	}
	for _, ov := range ovs {
		r, ok := ov.inst.(search.Refresher)
		if !ok {
			if name != "" {
				return fmt.Errorf("overlay %s: the %s search plugin has no configuration to refresh", ov.name, ov.sp.Name)
			}
			continue
		}
		if err := r.Refresh(); err != nil {
			return fmt.Errorf("overlay %s: %w", ov.name, err)
		}
	}
	return nil
}
