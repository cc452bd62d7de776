// Command overlaybench measures overlayd between simulated hosts. It needs
// root, iperf3 and ping. See -h.
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"overlaynet/bench"
	"overlaynet/netlab"
)

func main() {
	bench.CeilingMain() // the svp benchmark's ceiling server runs as this program
	dur := flag.Duration("time", 5*time.Second, "throughput: duration of each iperf3 run")
	rounds := flag.Int("rounds", 3, "throughput: rounds over all paths; the medians are printed")
	macs := flag.Int("macs", 10000, "storm: unknown MACs to send frames to")
	rate := flag.Int("rate", 20000, "storm: frames per second")
	moves := flag.Int("moves", 20, "migrate: VNIC moves to time")
	mappings := flag.Int("mappings", 1000000, "svp: VL2 mappings in the store")
	duration := flag.Duration("duration", 0, "svp: duration of each row (default 5s); scale: of each configuration's window (default 20s)")
	unpipelined := flag.Int("unpipelined", 1000, "svp: connections of the unpipelined row (one request in flight each; 0: no such row)")
	stores := flag.String("stores", "sqlite,postgres", "svp: stores to run portolan on, comma-separated")
	hosts := flag.Int("hosts", 10000, "scale: simulated hosts (one TCP connection each)")
	lookupRate := flag.Int("lookup-rate", 50000, "scale: lookups per second, over all simulated hosts")
	changes := flag.Int("changes", 5, "scale: changes timed from the store to every host's log, per configuration")
	serveArgs := flag.String("portolan-args", "", "svp, scale: more arguments for portolan serve (space-separated, e.g. \"--log-hold 3s\")")
	configs := flag.String("configs", "sqlite,postgres2", "scale: configurations, comma-separated: sqlite (one portolan), postgres (one), postgres2 (two on one PostgreSQL)")
	quick := flag.Bool("quick", false, "svp, scale: a small run of seconds (smoke test): svp with 10,000 mappings, 100 unpipelined connections and 1s rows; scale with 200 hosts, 2,000 lookups/s, 2 changes and a 2s window")
	restarts := flag.Int("restarts", 10, "restart: kill -9 and restart rounds")
	missMACs := flag.Int("miss-macs", 1000, "kernel-miss: distinct MACs")
	attaches := flag.Int("attaches", 20, "attach: VNICs made and reached, per search plugin")
	// --help prints to stdout (and exits 0); a usage error to stderr.
	for _, a := range os.Args[1:] {
		if a == "-h" || a == "-help" || a == "--help" {
			flag.CommandLine.SetOutput(os.Stdout)
		}
	}
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `usage: overlaybench [flags] [throughput | storm | migrate | svp | scale | restart | kernel-miss | attach]

throughput (the default) builds two hosts (network namespaces joined by
veth) and measures, in one run: the raw underlay, the kernel vxlan driver
(alone, and behind a bridge and veth as containers use it), overlayd's
userspace and kernel data paths (VNICs in guest namespaces), and the
userspace path with Geneve and with NVGRE in place of VXLAN. For each:
iperf3 TCP with 1 and 4 streams, 64-byte UDP packets per second (one
sender, unlimited rate, counted at the receiver), the CPU seconds the
whole machine spends per gigabit of the 1-stream run, and the average
ping round trip, each with its ratio to kernel vxlan.

storm sends frames to -macs unknown MACs from one VNIC of a files-plugin
overlay while two known VNICs ping each other, and reports overlayd's
memory, the lookup latency (miss to answer installed, p50 and p99) and
the pings during the storm.

migrate moves a VNIC back and forth between two hosts with 'portolan
move-vnic' while a guest on a third host pings it, and reports the time
from the command to the traffic arriving at the new host (p50, p99).

svp loads -mappings VL2 mappings into each store (SQLite, then a throwaway
PostgreSQL), runs portolan over it on loopback, and reports lookups per
second and their latency (p50, p99) with 1, 4 and 64 connections of 32
requests in flight each and with -unpipelined connections of one request
each. The same shapes run first against a bare in-memory server built
into the benchmark (the ceiling: VL2 from a Go map, one write per read
drained); every rate is also given as a ratio to the ceiling's. Each
server runs with GOMAXPROCS=1 pinned to one CPU, the load generator in
this process on the others. Also each server's CPU, memory, and start
time (exec to the first answered lookup).

scale connects -hosts simulated hosts (default 10,000), each a TCP
connection from its own loopback address 127.1.x.y registered as the
host's underlay IP, to portolan; each behaves as the plugin does (one
LOG_REQ outstanding, LOG_RM of what it got) and all share -lookup-rate
lookups per second. Every host has a VNIC on one vnetid, so one change
there logs an entry for every host. It reports the lookup latency, the
server's CPU and memory, and, over -changes VNIC moves, the time from the
store write to every host's LOG_ACK carrying the entry; for each of
-configs (one portolan on SQLite; two on one PostgreSQL with the hosts
split between them).

-quick makes svp and scale small enough for a smoke test.

restart kills overlayd with SIGKILL while a guest pings across every 5 ms,
starts it again, -restarts times, and reports the time from its start to
the guest's frames arriving at the other host again (p50, p99, max).

kernel-miss measures, on the kernel data path with the files plugin, the
time from the vxlan driver's L2 miss to the forwarding entry installed,
over -miss-macs distinct MACs (p50, p99).

attach times, for the evpn and svp plugins in one run, a VNIC made on
one host to traffic from another host reaching its guest (for svp with
the portolan registration the CNI plugin makes; evpn's route reflector is
FRR), over -attaches VNICs each (p50, p99, and evpn's ratio to svp).

The data-path modes need root, iperf3 and ping (attach also FRR); svp and scale need
neither, only PostgreSQL's server binaries for their PostgreSQL parts.

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	mode := flag.Arg(0)
	if mode == "" {
		mode = "throughput"
	}
	switch mode {
	case "throughput", "storm", "migrate", "svp", "scale", "restart", "kernel-miss", "attach":
	default:
		fmt.Fprintf(os.Stderr, "overlaybench: unknown mode %q: want throughput, storm, migrate, svp, scale, restart, kernel-miss or attach (overlaybench --help)\n", mode)
		os.Exit(2)
	}
	if flag.NArg() > 1 {
		fmt.Fprintf(os.Stderr, "overlaybench: one mode at a time, got %q; flags go before the mode (overlaybench --help)\n", flag.Args())
		os.Exit(2)
	}
	dir, err := os.MkdirTemp("", "overlaybench-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "overlaybench:", err)
		os.Exit(1)
	}
	bin, err := netlab.Build(dir)
	if err == nil {
		switch mode {
		case "throughput":
			var rs []bench.Result
			if rs, err = bench.Run(bench.Options{Duration: *dur, Rounds: *rounds, Bin: bin, Log: os.Stderr}); err == nil {
				bench.Print(os.Stdout, rs)
			}
		case "storm":
			var r bench.StormResult
			if r, err = bench.Storm(bench.StormOptions{MACs: *macs, Rate: *rate, Bin: bin, Log: os.Stderr}); err == nil {
				bench.PrintStorm(os.Stdout, r)
			}
		case "migrate":
			var r bench.MigrateResult
			if r, err = bench.Migrate(bench.MigrateOptions{Moves: *moves, Bin: bin, Log: os.Stderr}); err == nil {
				bench.PrintMigrate(os.Stdout, r)
			}
		case "attach":
			var rs []bench.AttachResult
			if rs, err = bench.Attach(bench.AttachOptions{Rounds: *attaches, Bin: bin, Log: os.Stderr}); err == nil {
				bench.PrintAttach(os.Stdout, rs)
			}
		case "kernel-miss":
			var r bench.KernelMissResult
			if r, err = bench.KernelMiss(bench.KernelMissOptions{MACs: *missMACs, Bin: bin, Log: os.Stderr}); err == nil {
				bench.PrintKernelMiss(os.Stdout, r)
			}
		case "scale":
			o := bench.ScaleOptions{Hosts: *hosts, LookupRate: *lookupRate, Duration: *duration, Changes: *changes,
				Configs: strings.Split(*configs, ","), ServeArgs: strings.Fields(*serveArgs), Bin: bin, Log: os.Stderr}
			if o.Duration == 0 {
				o.Duration = 20 * time.Second
			}
			if *quick {
				o.Hosts, o.LookupRate, o.Changes, o.Duration = 200, 2000, 2, 2*time.Second
			}
			var rs []bench.ScaleResult
			if rs, err = bench.Scale(o); err == nil {
				bench.PrintScale(os.Stdout, o, rs)
			}
		case "restart":
			var r bench.RestartResult
			if r, err = bench.Restart(bench.RestartOptions{Rounds: *restarts, Bin: bin, Log: os.Stderr}); err == nil {
				bench.PrintRestart(os.Stdout, r)
			}
		case "svp":
			o := bench.SVPOptions{Mappings: *mappings, Pipelined: []int{1, 4, 64}, Depth: 32, Unpipelined: *unpipelined,
				Duration: *duration, Stores: strings.Split(*stores, ","), ServeArgs: strings.Fields(*serveArgs), Bin: bin, Log: os.Stderr}
			if o.Duration == 0 {
				o.Duration = 5 * time.Second
			}
			if *quick {
				o.Mappings, o.Unpipelined, o.Duration = 10000, 100, time.Second
			}
			var rep bench.SVPReport
			if rep, err = bench.SVP(o); err == nil {
				bench.PrintSVP(os.Stdout, rep)
			}
		}
	}
	os.RemoveAll(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "overlaybench:", err)
		os.Exit(1)
	}
}
