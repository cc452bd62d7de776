package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"overlaynet/ether"
	"overlaynet/netlab"
)

// StormOptions tune the lookup-storm benchmark.
type StormOptions struct {
	// MACs is how many distinct unknown MACs the storm sends to.
	MACs int
	// Rate is the storm's frames per second.
	Rate int
	Bin  string
	Log  io.Writer
}

// StormResult is what the lookup-storm benchmark measured on the
// storming host's overlayd.
type StormResult struct {
	MACs, Rate             int
	Duration               time.Duration
	RSSBefore, RSSPeak     uint64 // bytes
	RSSAfter               uint64
	LookupP50, LookupP99   time.Duration
	LookupsStarted         uint64
	LookupsDropped         uint64
	FramesDropped          uint64
	PingBefore, PingDuring float64 // ms, between known VNICs
	PingLoss               int     // pings lost during the storm
}

// Storm sends frames to many unknown MACs from one VNIC of a files-plugin
// overlay while two known VNICs ping each other, and reports overlayd's
// memory, the lookup latency and the effect on the known traffic.
func Storm(o StormOptions) (StormResult, error) {
	res := StormResult{MACs: o.MACs, Rate: o.Rate}
	l, err := netlab.New(o.Bin)
	if err != nil {
		return res, err
	}
	defer l.Close()
	hosts, err := l.Hosts(2)
	if err != nil {
		return res, err
	}
	mapPath := filepath.Join(l.Dir, "map.json")
	mac := func(i int) string { return fmt.Sprintf("2:8:20:0:0:%x", i) }
	entries := map[string]map[string]any{
		mac(1): {"ip": netlab.HostIP(1), "port": 4789, "arp": "10.8.0.1"},
		mac(2): {"ip": netlab.HostIP(2), "port": 4789, "arp": "10.8.0.2"},
		mac(3): {"ip": netlab.HostIP(1), "port": 4789, "arp": "10.8.0.3"},
	}
	data, _ := json.Marshal(entries)
	if err := os.WriteFile(mapPath, data, 0o644); err != nil {
		return res, err
	}
	var ds []*netlab.Daemon
	for i, h := range hosts {
		d, err := l.StartDaemon(h, "--log-level", "warn")
		if err != nil {
			return res, err
		}
		if err := d.FilesOverlay("ov0", 42, netlab.HostIP(i+1), mapPath); err != nil {
			return res, err
		}
		ds = append(ds, d)
	}
	guest := func(d *netlab.Daemon, i int) (*netlab.NS, error) {
		name := fmt.Sprintf("vn%d", i)
		if _, err := d.Adm("create-vnic", "-l", "ov0", "-m", mac(i), name); err != nil {
			return nil, err
		}
		return d.Guest(fmt.Sprintf("g%d", i), name, fmt.Sprintf("10.8.0.%d/24", i))
	}
	g1, err := guest(ds[0], 1)
	if err != nil {
		return res, err
	}
	if _, err := guest(ds[1], 2); err != nil {
		return res, err
	}
	gs, err := guest(ds[0], 3)
	if err != nil {
		return res, err
	}
	if _, err := g1.Exec("ping", "-c", "2", "-i", "0.1", "10.8.0.2"); err != nil { // ARP, lookups
		return res, err
	}
	if res.PingBefore, err = pingAvg(path{"known", g1, "10.8.0.2"}); err != nil {
		return res, err
	}
	pid := ds[0].Proc.Cmd.Process.Pid
	res.RSSBefore = rss(pid, "VmRSS")

	src, _ := ether.ParseMAC(mac(3))
	frames := netlab.StormFrames(src, o.MACs)
	var wg sync.WaitGroup
	var stormErr error
	stop := make(chan struct{})
	wg.Add(2)
	go func() { // memory sampler
		defer wg.Done()
		for {
			if r := rss(pid, "VmRSS"); r > res.RSSPeak {
				res.RSSPeak = r
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	start := time.Now()
	go func() {
		defer wg.Done()
		stormErr = gs.SendFrames("vn3", frames, o.Rate)
	}()
	stormTime := time.Duration(o.MACs) * time.Second / time.Duration(max(o.Rate, 1))
	count := max(int(stormTime/(50*time.Millisecond)), 10)
	out, _ := g1.Exec("ping", "-c", strconv.Itoa(count), "-i", "0.05", "-W", "1", "10.8.0.2")
	res.Duration = time.Since(start)
	for i := 0; i < 100; i++ { // lookups finish asynchronously
		started, _ := ds[0].Stat("ov0", "lookups-started")
		answered, _ := ds[0].Stat("ov0", "lookups-answered")
		dropped, _ := ds[0].Stat("ov0", "lookups-dropped")
		if answered+dropped >= started {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if stormErr != nil {
		return res, stormErr
	}
	if m := rttLine.FindStringSubmatch(out); m != nil {
		res.PingDuring, _ = strconv.ParseFloat(m[1], 64)
	}
	if m := receivedLine.FindStringSubmatch(out); m != nil {
		got, _ := strconv.Atoi(m[1])
		res.PingLoss = count - got
	}
	res.RSSAfter = rss(pid, "VmRSS")
	if hwm := rss(pid, "VmHWM"); hwm > res.RSSPeak {
		res.RSSPeak = hwm
	}
	st := func(name string) uint64 { v, _ := ds[0].Stat("ov0", name); return v }
	res.LookupP50 = time.Duration(st("lookup-latency-p50-us")) * time.Microsecond
	res.LookupP99 = time.Duration(st("lookup-latency-p99-us")) * time.Microsecond
	res.LookupsStarted, res.LookupsDropped = st("lookups-started"), st("lookups-dropped")
	res.FramesDropped = st("drop-no-target") + st("drop-lookup-limit") + st("queue-drops") + st("drop-table-full")
	return res, nil
}

// rss reads a memory figure (VmRSS, VmHWM) of a process, in bytes.
func rss(pid int, field string) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// PrintStorm writes the storm result.
func PrintStorm(w io.Writer, r StormResult) {
	mib := func(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "lookup storm: %d frames to %d unknown MACs at %d/s, %v\n", r.MACs, r.MACs, r.Rate, r.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "  overlayd memory (RSS): before %s, peak %s, after %s\n", mib(r.RSSBefore), mib(r.RSSPeak), mib(r.RSSAfter))
	fmt.Fprintf(w, "  lookups: %d started, %d answered \"drop\"; latency miss -> answer installed: p50 %v, p99 %v\n",
		r.LookupsStarted, r.LookupsDropped, r.LookupP50, r.LookupP99)
	fmt.Fprintf(w, "  frames to unknown MACs dropped and counted: %d\n", r.FramesDropped)
	fmt.Fprintf(w, "  ping between known VNICs: %.3f ms before, %.3f ms during the storm, %d lost\n", r.PingBefore, r.PingDuring, r.PingLoss)
}
