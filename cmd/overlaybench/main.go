// Command overlaybench measures overlayd's data path beside the raw
// underlay and the Linux kernel's vxlan driver, in one run, between two
// simulated hosts. It needs root, iperf3 and ping. See -h.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"overlaynet/bench"
	"overlaynet/netlab"
)

func main() {
	dur := flag.Duration("time", 5*time.Second, "duration of each iperf3 run")
	rounds := flag.Int("rounds", 3, "rounds over all paths; the medians are printed")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, `usage: overlaybench [-time 5s] [-rounds 3]

Builds two hosts (network namespaces joined by veth) and measures, in one
run: the raw underlay, the kernel vxlan driver, and overlayd's userspace
data path (VNICs in guest namespaces). For each: iperf3 TCP with 1 and 4
streams and the average ping round trip, with ratios to kernel vxlan.
Needs root, iperf3 and ping.

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	dir, err := os.MkdirTemp("", "overlaybench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "overlaybench:", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	bin, err := netlab.Build(dir)
	if err == nil {
		var rs []bench.Result
		rs, err = bench.Run(bench.Options{Duration: *dur, Rounds: *rounds, Bin: bin, Log: os.Stderr})
		if err == nil {
			bench.Print(os.Stdout, rs)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "overlaybench:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
}
