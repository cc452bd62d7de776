package overlay

import (
	"net/netip"
	"time"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/search"
)

// The overlay is the search.Host of its plugin instance: what a plugin
// tells it goes to the lookup engine, which passes it to the data path.

// Invalidate implements search.Host.
func (ov *overlay) Invalidate(mac ether.MAC) { ov.engine.invalidate(mac) }

// Learn implements search.Host.
func (ov *overlay) Learn(a search.Answer) { ov.engine.learn(a) }

// Announce implements search.Host.
func (ov *overlay) Announce(vlan uint16, ip netip.Addr, mac ether.MAC) {
	ov.engine.announce(vlan, ip, mac)
}

// SetFlood implements search.FloodHost.
func (ov *overlay) SetFlood(dests []encap.Dest) bool {
	dp := ov.engine.data()
	if dp == nil || dp.caps.Flood == nil {
		return false
	}
	dp.caps.Flood.SetFlood(dests)
	return true
}

// Degrade implements search.Host.
func (ov *overlay) Degrade(reason string) {
	ov.smu.Lock()
	defer ov.smu.Unlock()
	if ov.degraded == reason {
		return
	}
	if ov.degraded == "" {
		ov.degradedSince = time.Now()
	}
	ov.degraded = reason
	ov.log.Warn("overlay DEGRADED", "reason", reason)
}

// Restore implements search.Host.
func (ov *overlay) Restore() {
	ov.smu.Lock()
	defer ov.smu.Unlock()
	if ov.degraded == "" {
		return
	}
	ov.log.Info("overlay ONLINE again", "was", ov.degraded, "degraded_for", time.Since(ov.degradedSince).Round(time.Millisecond).String())
	ov.degraded = ""
}
