package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"overlaynet/ether"
	"overlaynet/netlab"
)

// KernelMissOptions tune the kernel-miss benchmark.
type KernelMissOptions struct {
	MACs int
	Bin  string
	Log  io.Writer
}

// KernelMissResult is how fast overlayd answers the kernel's L2 misses.
type KernelMissResult struct {
	MACs, Answered int
	P50, P99       time.Duration
}

// KernelMiss measures, on the kernel data path with the files plugin, the
// time from an L2 miss (the vxlan driver's notification, as overlayd
// receives it) to the forwarding entry installed, over MACs distinct MACs:
// the map is loaded, the forwarding database flushed, and a guest sends
// one frame to each MAC.
func KernelMiss(o KernelMissOptions) (KernelMissResult, error) {
	var res KernelMissResult
	l, err := netlab.New(o.Bin)
	if err != nil {
		return res, err
	}
	defer l.Close()
	h1, h2, err := l.TwoHosts()
	if err != nil {
		return res, err
	}
	mapPath := filepath.Join(l.Dir, "map.json")
	entries := map[string]map[string]any{"2:8:20:0:0:1": {"ip": netlab.Host1IP, "port": 4789}}
	frames := netlab.StormFrames(ether.MAC{2, 8, 0x20, 0, 0, 1}, o.MACs)
	for _, f := range frames {
		entries[ether.Long(ether.MAC(f[:6]))] = map[string]any{"ip": netlab.Host2IP, "port": 4789}
	}
	data, _ := json.Marshal(entries)
	if err := os.WriteFile(mapPath, data, 0o644); err != nil {
		return res, err
	}
	var d1 *netlab.Daemon
	for i, h := range []*netlab.NS{h1, h2} {
		d, err := l.StartDaemon(h, "--log-level", "warn")
		if err != nil {
			return res, err
		}
		if err := d.FilesOverlay("ov0", 42, netlab.HostIP(i+1), mapPath, "-p", "datapath=kernel"); err != nil {
			return res, err
		}
		if i == 0 {
			d1 = d
		}
	}
	if _, err := d1.Adm("create-vnic", "-l", "ov0", "-m", "2:8:20:0:0:1", "vn1"); err != nil {
		return res, err
	}
	g1, err := d1.Guest("g1", "vn1", "10.8.0.1/24")
	if err != nil {
		return res, err
	}
	// Forget the preloaded map, so that every MAC misses.
	if _, err := d1.Adm("modify-overlay", "-f", "ov0"); err != nil {
		return res, err
	}
	if err := g1.SendFrames("vn1", frames, 5000); err != nil {
		return res, err
	}
	for i := 0; i < 100; i++ {
		n, _ := d1.Stat("ov0", "lookups-answered")
		res.Answered = int(n)
		if res.Answered >= o.MACs {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p50, _ := d1.Stat("ov0", "lookup-latency-p50-us")
	p99, _ := d1.Stat("ov0", "lookup-latency-p99-us")
	res.MACs, res.P50, res.P99 = o.MACs, time.Duration(p50)*time.Microsecond, time.Duration(p99)*time.Microsecond
	if res.Answered < o.MACs {
		return res, fmt.Errorf("only %d of %d misses were answered", res.Answered, o.MACs)
	}
	return res, nil
}

// PrintKernelMiss writes the result.
func PrintKernelMiss(w io.Writer, r KernelMissResult) {
	fmt.Fprintf(w, "kernel data path, files plugin: L2 miss to forwarding entry installed, %d distinct MACs (%d answered)\n", r.MACs, r.Answered)
	fmt.Fprintf(w, "  p50 %v, p99 %v\n", r.P50, r.P99)
}
