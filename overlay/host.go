package overlay

import (
	"time"

	"overlaynet/ether"
)

// The overlay is the search.Host of its plugin instance.

// Invalidate implements search.Host.
func (ov *overlay) Invalidate(mac ether.MAC) {
	ov.smu.Lock()
	dp := ov.hostDP
	ov.smu.Unlock()
	if dp != nil {
		dp.RemoveTarget(mac)
	}
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
