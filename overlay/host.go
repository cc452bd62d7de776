package overlay

import (
	"net/netip"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
)

// The overlay is the search.Host of its plugin instance.

// Invalidate implements search.Host.
func (ov *overlay) Invalidate(mac ether.MAC) {
	if dp := ov.dataPath(); dp != nil {
		dp.RemoveTarget(mac)
	}
}

// SetTarget implements search.Host.
func (ov *overlay) SetTarget(mac ether.MAC, dest encap.Dest) {
	if dp := ov.dataPath(); dp != nil {
		dp.SetTarget(mac, dest)
	}
}

// SetNeighbor implements search.Host.
func (ov *overlay) SetNeighbor(ip netip.Addr, mac ether.MAC) {
	if dp := ov.dataPath(); dp != nil {
		dp.SetNeighbor(ip, mac)
	}
}

// SetDHCPRedirect implements search.Host.
func (ov *overlay) SetDHCPRedirect(client, server ether.MAC) {
	if dp := ov.dataPath(); dp != nil {
		dp.SetDHCPRedirect(client, server)
	}
}

// Inject implements search.Host.
func (ov *overlay) Inject(vlan uint16, frame []byte) {
	if dp := ov.dataPath(); dp != nil {
		dp.Inject(vlan, frame)
	}
}

func (ov *overlay) dataPath() datapath.Overlay {
	ov.smu.Lock()
	defer ov.smu.Unlock()
	return ov.hostDP
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
