package integration

import (
	"fmt"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/netlab"
)

// TestLookupStorm: frames to 10,000 unknown MACs do not stall traffic
// between known VNICs, and what is dropped is counted.
func TestLookupStorm(t *testing.T) {
	need(t, "ping")
	f := newFilesNet(t, 2)
	g1 := f.vnic(t, 0, 1, "10.8.0.1", "")
	f.vnic(t, 1, 2, "10.8.0.2", "")
	storm := f.vnic(t, 0, 3, "10.8.0.3", "")
	f.publish(t)
	must(t, g1.PingAll("10.8.0.2", 3))

	const n = 10000
	src, _ := ether.ParseMAC("02:08:20:00:00:03")
	errc := make(chan error, 1)
	go func() { errc <- storm.SendFrames("vn3", netlab.StormFrames(src, n), 20000) }()
	// Known traffic keeps flowing throughout the storm.
	start := time.Now()
	must(t, g1.PingAll("10.8.0.2", 10))
	must(t, <-errc)
	t.Logf("storm of %d frames and 10 pings took %v", n, time.Since(start).Round(time.Millisecond))

	var started, dropped, limited, noTarget uint64
	for i := 0; i < 50; i++ { // lookups finish asynchronously
		started, _ = f.ds[0].Stat("ov0", "lookups-started")
		dropped, _ = f.ds[0].Stat("ov0", "lookups-dropped")
		if dropped+3 >= started {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	limited, _ = f.ds[0].Stat("ov0", "drop-lookup-limit")
	noTarget, _ = f.ds[0].Stat("ov0", "drop-no-target")
	// Frames the guest's interface could not hand over (queue full while
	// overlayd was busy) are counted by the kernel, on the guest's side.
	var queued uint64
	if out, err := storm.Exec("cat", "/sys/class/net/vn3/statistics/tx_dropped"); err == nil {
		fmt.Sscan(out, &queued)
	}
	t.Logf("lookups started %d, dropped %d; frames dropped: no target %d, lookup limit %d, at the interface %d",
		started, dropped, noTarget, limited, queued)
	noTarget += queued
	if started < 1000 {
		t.Errorf("only %d lookups started for %d unknown MACs", started, n)
	}
	if noTarget+limited < n-10 {
		t.Errorf("frames to unknown MACs dropped and counted: %d, want about %d", noTarget+limited, n)
	}
	must(t, g1.PingAll("10.8.0.2", 3))
}
