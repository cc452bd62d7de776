// Package bench measures the overlay beside its references in one run:
// the raw underlay, the Linux kernel's vxlan driver, and overlayd's
// userspace data path, each between two simulated hosts (network
// namespaces joined by veth). Absolute figures on shared virtual machines
// move from run to run; the ratios to kernel vxlan measured in the same
// run are what to compare.
package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"overlaynet/netlab"
)

// Options tune a benchmark run.
type Options struct {
	// Duration of each iperf3 run.
	Duration time.Duration
	// Rounds of the whole set; medians are reported.
	Rounds int
	// Bin holds overlayd and overlayadm.
	Bin string
	// Log receives progress lines.
	Log io.Writer
}

// Result is the measurement of one path.
type Result struct {
	Path    string
	TCP1    float64 // Gbit/s, one stream
	TCP4    float64 // Gbit/s, four streams
	UDP64   float64 // 64-byte UDP packets received per second, in thousands
	CPUGbit float64 // CPU seconds of the whole machine per gigabit, one TCP stream
	PingAvg float64 // ms
}

// path is one way of carrying traffic from host 1 to host 2.
type path struct {
	name   string
	client *netlab.NS // where iperf3 -c and ping run
	target string     // the address they aim at
}

// Run measures every path and returns one result per path, in order, the
// kernel vxlan row second.
func Run(o Options) ([]Result, error) {
	l, err := netlab.New(o.Bin)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	h1, h2, err := l.TwoHosts()
	if err != nil {
		return nil, err
	}

	// Kernel vxlan on port 4790, so that overlayd keeps 4789.
	for _, h := range []struct {
		ns          *netlab.NS
		local, peer string
		addr        string
	}{{h1, netlab.Host1IP, netlab.Host2IP, "10.99.0.1/24"}, {h2, netlab.Host2IP, netlab.Host1IP, "10.99.0.2/24"}} {
		for _, args := range [][]string{
			{"link", "add", "vxk0", "type", "vxlan", "id", "42", "dstport", "4790", "remote", h.peer, "local", h.local, "dev", "ul0"},
			{"link", "set", "vxk0", "mtu", "1400"},
			{"addr", "add", h.addr, "dev", "vxk0"},
			{"link", "set", "vxk0", "up"},
		} {
			if _, err := h.ns.IP(args...); err != nil {
				return nil, err
			}
		}
	}

	// Kernel vxlan by hand in the container layout (a bridge, and a veth
	// pair into a guest namespace), on port 4792: the reference for our
	// kernel data path, which builds exactly that.
	var gds []*netlab.NS
	for i, h := range []struct {
		ns          *netlab.NS
		local, peer string
	}{{h1, netlab.Host1IP, netlab.Host2IP}, {h2, netlab.Host2IP, netlab.Host1IP}} {
		g, err := l.Namespace(fmt.Sprintf("gd%d", i+1))
		if err != nil {
			return nil, err
		}
		for _, args := range [][]string{
			{"link", "add", "vxd0", "type", "vxlan", "id", "44", "dstport", "4792", "remote", h.peer, "local", h.local, "dev", "ul0"},
			{"link", "set", "vxd0", "mtu", "1400"},
			{"link", "add", "brd0", "type", "bridge"},
			{"link", "set", "vxd0", "master", "brd0"},
			{"link", "add", "vd0", "mtu", "1400", "type", "veth", "peer", "name", "eth0", "netns", g.Name},
			{"link", "set", "vd0", "master", "brd0"},
			{"link", "set", "vxd0", "up"},
			{"link", "set", "brd0", "up"},
			{"link", "set", "vd0", "up"},
		} {
			if _, err := h.ns.IP(args...); err != nil {
				return nil, err
			}
		}
		if _, err := g.IP("addr", "add", fmt.Sprintf("10.11.0.%d/24", i+1), "dev", "eth0"); err != nil {
			return nil, err
		}
		if _, err := g.IP("link", "set", "eth0", "up"); err != nil {
			return nil, err
		}
		gds = append(gds, g)
	}

	// Our overlay, VNICs in guest namespaces as an operator would use them.
	pair, err := l.DirectPair(h1, h2, []string{"--log-level", "warn"})
	if err != nil {
		return nil, err
	}
	d1, d2, g1, g2 := pair.D1, pair.D2, pair.G1, pair.G2

	// Our kernel data path: another overlay, on its own port (a kernel and
	// a userspace overlay cannot share one).
	for _, d := range []struct {
		d           *netlab.Daemon
		self, other string
	}{{d1, netlab.Host1IP, netlab.Host2IP}, {d2, netlab.Host2IP, netlab.Host1IP}} {
		if err := d.d.DirectOverlay("ovk", 43, d.self, d.other, "-p", "datapath=kernel,vxlan/listen_port=4791,direct/dest_port=4791"); err != nil {
			return nil, err
		}
	}
	if _, err := d1.Adm("create-vnic", "-l", "ovk", "vnic3"); err != nil {
		return nil, err
	}
	if _, err := d2.Adm("create-vnic", "-l", "ovk", "vnic4"); err != nil {
		return nil, err
	}
	g3, err := d1.Guest("g3", "vnic3", "10.10.0.1/24")
	if err != nil {
		return nil, err
	}
	g4, err := d2.Guest("g4", "vnic4", "10.10.0.2/24")
	if err != nil {
		return nil, err
	}

	// The other encapsulations on the userspace path, each its own
	// overlay: Geneve on its port, NVGRE on IP protocol 47.
	var encGuests [2][2]*netlab.NS // [geneve, nvgre][host]
	for e, enc := range []string{"geneve", "nvgre"} {
		for i, d := range []struct {
			d           *netlab.Daemon
			self, other string
		}{{d1, netlab.Host1IP, netlab.Host2IP}, {d2, netlab.Host2IP, netlab.Host1IP}} {
			ov, vnic := "ov"+enc, fmt.Sprintf("v%s%d", enc, i+1)
			if err := d.d.DirectOverlay(ov, 45+e, d.self, d.other, "-e", enc, "-p", "datapath=userspace"); err != nil {
				return nil, err
			}
			if _, err := d.d.Adm("create-vnic", "-l", ov, vnic); err != nil {
				return nil, err
			}
			if encGuests[e][i], err = d.d.Guest(fmt.Sprintf("g%s%d", enc, i+1), vnic, fmt.Sprintf("10.%d.0.%d/24", 12+e, i+1)); err != nil {
				return nil, err
			}
		}
	}

	for _, ns := range []*netlab.NS{h2, g2, g4, gds[1], encGuests[0][1], encGuests[1][1]} {
		if _, err := l.Start(ns, "iperf3-"+ns.Name, "iperf3", "-s"); err != nil {
			return nil, err
		}
	}
	paths := []path{
		{"raw underlay (veth)", h1, netlab.Host2IP},
		{"kernel vxlan", h1, "10.99.0.2"},
		{"kernel vxlan + bridge/veth", gds[0], "10.11.0.2"},
		{"overlayd userspace", g1, "10.9.0.2"},
		{"overlayd kernel", g3, "10.10.0.2"},
		{"overlayd userspace geneve", encGuests[0][0], "10.12.0.2"},
		{"overlayd userspace nvgre", encGuests[1][0], "10.13.0.2"},
	}
	for _, p := range paths { // warm up: ARP, server readiness
		if err := waitIperf(p); err != nil {
			return nil, err
		}
	}

	samples := make([][]Result, len(paths))
	for r := 0; r < o.Rounds; r++ {
		for i, p := range paths {
			fmt.Fprintf(o.Log, "round %d/%d: %s\n", r+1, o.Rounds, p.name)
			res := Result{Path: p.name}
			busy0 := busyCPU()
			if res.TCP1, err = iperf(p, o.Duration, 1); err != nil {
				return nil, err
			}
			if res.TCP1 > 0 {
				res.CPUGbit = (busyCPU() - busy0) / (res.TCP1 * o.Duration.Seconds())
			}
			if res.TCP4, err = iperf(p, o.Duration, 4); err != nil {
				return nil, err
			}
			if res.UDP64, err = udpSmall(p, o.Duration); err != nil {
				return nil, err
			}
			if res.PingAvg, err = pingAvg(p); err != nil {
				return nil, err
			}
			samples[i] = append(samples[i], res)
		}
	}
	out := make([]Result, len(paths))
	for i, ss := range samples {
		out[i] = Result{Path: paths[i].name,
			TCP1:    median(ss, func(r Result) float64 { return r.TCP1 }),
			TCP4:    median(ss, func(r Result) float64 { return r.TCP4 }),
			UDP64:   median(ss, func(r Result) float64 { return r.UDP64 }),
			CPUGbit: median(ss, func(r Result) float64 { return r.CPUGbit }),
			PingAvg: median(ss, func(r Result) float64 { return r.PingAvg })}
	}
	return out, nil
}

func waitIperf(p path) error {
	var err error
	for i := 0; i < 50; i++ {
		var out string
		if out, err = p.client.Exec("iperf3", "-c", p.target, "-t", "1", "-J"); err == nil && !strings.Contains(out, `"error":`) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s: iperf3 never connected: %w", p.name, err)
}

// iperfJSON runs an iperf3 client on p for d with the extra args and
// decodes its JSON report into res.
func iperfJSON(p path, d time.Duration, res any, args ...string) error {
	out, err := p.client.Exec(append([]string{"iperf3", "-c", p.target, "-t", strconv.Itoa(int(d.Seconds())), "-J"}, args...)...)
	if err != nil {
		return fmt.Errorf("%s: %w", p.name, err)
	}
	if err := json.Unmarshal([]byte(out), res); err != nil {
		return fmt.Errorf("%s: iperf3 output: %w", p.name, err)
	}
	return nil
}

// iperf runs an iperf3 TCP test and returns the received rate in Gbit/s.
func iperf(p path, d time.Duration, streams int) (float64, error) {
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := iperfJSON(p, d, &res, "-P", strconv.Itoa(streams)); err != nil {
		return 0, err
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

// udpSmall sends 64-byte UDP datagrams as fast as one iperf3 sender can
// and returns the rate received, in thousands of packets per second.
func udpSmall(p path, d time.Duration) (float64, error) {
	var res struct {
		End struct {
			Sum struct {
				Seconds     float64 `json:"seconds"`
				Packets     float64 `json:"packets"`
				LostPackets float64 `json:"lost_packets"`
			} `json:"sum"`
		} `json:"end"`
	}
	if err := iperfJSON(p, d, &res, "-u", "-l", "64", "-b", "0"); err != nil {
		return 0, err
	}
	s := res.End.Sum
	if s.Seconds == 0 {
		return 0, fmt.Errorf("%s: iperf3 UDP run reported no duration", p.name)
	}
	return (s.Packets - s.LostPackets) / s.Seconds / 1000, nil
}

// busyCPU returns the CPU seconds the whole machine has spent outside
// idle and I/O wait since boot (/proc/stat): the delta over a run is the
// cost of that run, in the kernel and in every process alike.
func busyCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	var busy float64
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy / 100 // USER_HZ
}

var (
	rttLine      = regexp.MustCompile(`= [\d.]+/([\d.]+)/`)
	receivedLine = regexp.MustCompile(`(\d+) received`)
)

// pingAvg returns the average round trip of 20 pings, in milliseconds.
func pingAvg(p path) (float64, error) {
	out, err := p.client.Exec("ping", "-c", "20", "-i", "0.05", "-q", p.target)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.name, err)
	}
	m := rttLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s: no rtt in ping output %q", p.name, out)
	}
	return strconv.ParseFloat(m[1], 64)
}

func median(rs []Result, f func(Result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// Print writes the results as a table with ratios to the kernel vxlan row.
func Print(w io.Writer, rs []Result) {
	var ref Result
	for _, r := range rs {
		if r.Path == "kernel vxlan" {
			ref = r
		}
	}
	ratio := func(a, b float64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f", a/b)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PATH\tTCP 1 STREAM\tRATIO\tTCP 4 STREAMS\tRATIO\tUDP 64 B\tRATIO\tCPU/GBIT\tRATIO\tPING AVG\tRATIO")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%.2f Gbit/s\t%s\t%.2f Gbit/s\t%s\t%.0f kpps\t%s\t%.3f s\t%s\t%.3f ms\t%s\n", r.Path,
			r.TCP1, ratio(r.TCP1, ref.TCP1), r.TCP4, ratio(r.TCP4, ref.TCP4),
			r.UDP64, ratio(r.UDP64, ref.UDP64), r.CPUGbit, ratio(r.CPUGbit, ref.CPUGbit),
			r.PingAvg, ratio(r.PingAvg, ref.PingAvg))
	}
	tw.Flush()
	fmt.Fprintln(w, "Ratios are to kernel vxlan measured in the same run. Throughput and packets: higher is better;")
	fmt.Fprintln(w, "CPU/GBIT (CPU seconds of the whole machine per gigabit, one TCP stream) and ping: lower is better.")
}
