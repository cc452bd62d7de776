package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"overlaynet/ether"
	"overlaynet/pgtemp"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// ScaleOptions tune the scale simulation.
type ScaleOptions struct {
	// Hosts is the number of simulated hosts, each one TCP connection.
	Hosts int
	// LookupRate is the VL2 lookups per second offered over all hosts.
	LookupRate int
	// Duration is the measuring window of each configuration; it is
	// stretched to fit the changes.
	Duration time.Duration
	// Changes are timed from the store write to every host's LOG_ACK.
	Changes int
	// ChangeTimeout bounds the wait for one change to reach every host.
	ChangeTimeout time.Duration
	// Configs: "sqlite" (one portolan on SQLite), "postgres" (one on
	// PostgreSQL), "postgres2" (two on one PostgreSQL, the hosts split
	// between them). The default is sqlite and postgres2.
	Configs   []string
	ServeArgs []string
	Bin       string
	Log       io.Writer
}

// ScaleResult is one configuration.
type ScaleResult struct {
	Config  string
	Store   string
	Servers int
	Hosts   int

	Register      time.Duration // adding the hosts and VNICs to the store
	Connect       time.Duration // connecting every host, in waves
	ConnectMax    time.Duration // the slowest connect (a dropped SYN costs a second)
	ConnectErrors int           // failed attempts (each retried)
	ConnectFailed int           // hosts that never connected
	ListenDrops   uint64        // TcpExt ListenOverflows+ListenDrops during the connects
	Ready         int           // hosts whose first LOG_ACK was OK

	Window         time.Duration
	Lookups        uint64
	LookupRate     float64
	LookupP50      time.Duration
	LookupP99      time.Duration
	LookupMax      time.Duration
	LookupErrors   uint64 // not OK, or a reply that matches nothing
	LookupsSkipped uint64 // not sent: 64 already in flight on that connection

	ServerCPU []float64 // per server, over the window (1 = one core)
	ServerRSS []uint64  // per server, at the end of the window
	BenchCPU  float64

	LogReqs  uint64        // LOG_REQs sent during the window
	LogHeld  uint64        // empty LOG_ACKs that took 0.5 s or more (held, or a slow server)
	LogQuick uint64        // empty LOG_ACKs that came sooner (then the host waits 0.5 s)
	EmptyP50 time.Duration // how long an empty LOG_ACK took
	// Holds says the server holds LOG_REQs, judged by timing as a
	// plugin would: empty LOG_ACKs take half a second or more while
	// lookups are answered in well under that.
	Holds      bool
	LogEntries uint64 // entries received
	LogErrors  uint64 // LOG_ACK or LOG_RM_ACK not OK
	ConnErrors uint64 // connections lost during the run
	FirstErr   string

	Changes []ScaleChange

	ServerLogLines int
	ServerLogFirst string
}

// ScaleChange is one change's way to the hosts' logs.
type ScaleChange struct {
	Write time.Duration // the MoveVNIC call
	// ByServer[s] are the latencies (from the start of the store write
	// to the LOG_ACK carrying the entry) of the hosts of server s that
	// got it within the timeout, sorted; Missed[s] the others.
	ByServer [][]time.Duration
	Missed   []int
}

const scaleVNet = 4242

func simHostIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, 1, byte(i / 200), byte(i%200 + 1)})
}
func simHostID(i int) string   { return fmt.Sprintf("sim%05d", i) }
func simMAC(i int) ether.MAC   { return ether.MAC{2, 0x5c, 0, byte(i >> 16), byte(i >> 8), byte(i)} }
func moverMAC(k int) ether.MAC { return ether.MAC{2, 0x5d, 0, 0, byte(k >> 8), byte(k)} }

func moverIndex(m [6]byte) int {
	if m[0] != 2 || m[1] != 0x5d {
		return -1
	}
	return int(m[4])<<8 | int(m[5])
}

// Scale runs the scale simulation in each configuration.
func Scale(o ScaleOptions) ([]ScaleResult, error) {
	if len(o.Configs) == 0 {
		o.Configs = []string{"sqlite", "postgres2"}
	}
	if o.ChangeTimeout == 0 {
		o.ChangeTimeout = 15 * time.Second
	}
	if o.Hosts < 2 || o.Hosts > 200*256 {
		return nil, fmt.Errorf("scale: hosts must be 2 to %d", 200*256)
	}
	if o.Changes > 64 {
		return nil, errors.New("scale: at most 64 changes")
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(o.Hosts)+200 {
		return nil, fmt.Errorf("scale: %d hosts need %d file descriptors in this process, the limit is %d (hard %d): raise it (ulimit -Hn)",
			o.Hosts, o.Hosts+200, lim.Cur, lim.Max)
	}
	var out []ScaleResult
	for _, c := range o.Configs {
		r, err := scaleConfig(o, c)
		if err != nil {
			return out, fmt.Errorf("scale %s: %w", c, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// scaleRun is the shared state of one configuration's hosts.
type scaleRun struct {
	o        ScaleOptions
	hosts    []*simHost
	servers  int
	stopping atomic.Bool
	measure  atomic.Bool
	lat      sharedHist
	emptyLat sharedHist // how long empty LOG_ACKs took

	lookupErrs, skipped                    atomic.Uint64
	logReqs, held, quick, entries, logErrs atomic.Uint64
	connErrs                               atomic.Uint64
	firstErr                               atomic.Pointer[string]
	readyWG                                sync.WaitGroup
	readyOK                                atomic.Int64
	changeStart                            [64]atomic.Int64
	arrive                                 [64][]int64 // per host, ns after the start; 0 = not yet
	remaining                              [64]atomic.Int64
	done                                   [64]chan struct{}
	readers                                sync.WaitGroup
	// paceStart is when the lookups began to be offered (nanotime), 0
	// while none are.
	paceStart atomic.Int64
}

func (sr *scaleRun) fail(err error) {
	s := err.Error()
	sr.firstErr.CompareAndSwap(nil, &s)
}

func scaleConfig(o ScaleOptions, config string) (ScaleResult, error) {
	res := ScaleResult{Config: config, Hosts: o.Hosts, Servers: 1}
	dir, err := os.MkdirTemp("", "scalebench-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	var dsn string
	switch config {
	case "sqlite":
		res.Store, dsn = "sqlite", "sqlite:"+filepath.Join(dir, "portolan.db")
	case "postgres", "postgres2":
		pg, err := pgtemp.Start()
		if err != nil {
			return res, err
		}
		defer pg.Stop()
		res.Store, dsn = "postgres", pg.DSN
		if config == "postgres2" {
			res.Servers = 2
		}
	default:
		return res, fmt.Errorf("unknown configuration %q (want sqlite, postgres or postgres2)", config)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		return res, err
	}
	defer st.Close()
	fmt.Fprintf(o.Log, "scale %s: registering %d hosts\n", config, o.Hosts)
	t0 := time.Now()
	if err := registerHosts(ctx, st, o.Hosts, res.Store == "postgres"); err != nil {
		return res, err
	}
	vs := make([]store.VNIC, 0, o.Hosts+o.Changes)
	for i := 0; i < o.Hosts; i++ {
		vs = append(vs, store.VNIC{VNetID: scaleVNet, MAC: simMAC(i), Host: simHostID(i)})
	}
	for k := 0; k < o.Changes; k++ {
		vs = append(vs, store.VNIC{VNetID: scaleVNet, MAC: moverMAC(k), Host: simHostID(0)})
	}
	if err := st.Import(ctx, vs); err != nil {
		return res, err
	}
	res.Register = time.Since(t0)
	fmt.Fprintf(o.Log, "scale %s: registered in %v\n", config, res.Register.Round(time.Millisecond))

	// Servers.
	var cmds []*exec.Cmd
	var addrs []string
	var logs []string
	defer func() {
		for _, c := range cmds {
			c.Process.Kill()
			c.Wait()
		}
	}()
	for s := 0; s < res.Servers; s++ {
		addr, err := freeAddr()
		if err != nil {
			return res, err
		}
		logPath := filepath.Join(dir, fmt.Sprintf("portolan%d.log", s))
		lf, err := os.Create(logPath)
		if err != nil {
			return res, err
		}
		args := append([]string{"serve", "--listen", addr, "--store", dsn, "--log-level", "warn"}, o.ServeArgs...)
		cmd := exec.Command(filepath.Join(o.Bin, "portolan"), args...)
		cmd.Stdout, cmd.Stderr = lf, lf
		start := time.Now()
		if err := cmd.Start(); err != nil {
			lf.Close()
			return res, err
		}
		lf.Close()
		cmds = append(cmds, cmd)
		addrs = append(addrs, addr)
		logs = append(logs, logPath)
		if _, err := firstLookup(addr, start, svpwire.VL2Req{MAC: simMAC(0), VNetID: scaleVNet}); err != nil {
			return res, fmt.Errorf("portolan %d: %w%s", s, err, tail(logPath))
		}
	}

	sr := &scaleRun{o: o, servers: res.Servers}
	for k := 0; k < o.Changes; k++ {
		sr.arrive[k] = make([]int64, o.Hosts)
		sr.done[k] = make(chan struct{})
	}
	defer func() {
		sr.stopping.Store(true)
		for _, c := range cmds {
			c.Process.Kill()
		}
		sr.readers.Wait() // the loops close their hosts
		for _, h := range sr.hosts {
			if h.fd >= 0 { // no loop ran for it
				unix.Close(h.fd)
			}
		}
	}()
	fmt.Fprintf(o.Log, "scale %s: connecting %d hosts\n", config, o.Hosts)
	sr.connect(&res, addrs)
	if err := sr.startLoops(); err != nil {
		return res, err
	}
	fmt.Fprintf(o.Log, "scale %s: connected in %v (%d failed attempts, %d hosts without a connection, %d listen drops)\n",
		config, res.Connect.Round(time.Millisecond), res.ConnectErrors, res.ConnectFailed, res.ListenDrops)
	waitTimeout(&sr.readyWG, 60*time.Second)
	res.Ready = int(sr.readyOK.Load())
	for k := 0; k < o.Changes; k++ {
		sr.remaining[k].Store(int64(o.Hosts - res.ConnectFailed))
	}

	// The window: lookups throughout, changes one after another.
	fmt.Fprintf(o.Log, "scale %s: measuring for %v, %d changes\n", config, o.Duration, o.Changes)
	pids := make([]int, len(cmds))
	cpu0 := make([]time.Duration, len(cmds))
	for i, c := range cmds {
		pids[i] = c.Process.Pid
		cpu0[i] = cpuTime(pids[i])
	}
	sr.logReqs.Store(0)
	sr.held.Store(0)
	sr.quick.Store(0)
	self0 := selfCPU()
	w0 := time.Now()
	sr.measure.Store(true)
	sr.paceStart.Store(nanotime())
	end := w0.Add(o.Duration)
	time.Sleep(min(time.Second, o.Duration/4))
	for k := 0; k < o.Changes; k++ {
		c := ScaleChange{ByServer: make([][]time.Duration, res.Servers), Missed: make([]int, res.Servers)}
		ts := nanotime()
		sr.changeStart[k].Store(ts)
		if err := st.MoveVNIC(ctx, scaleVNet, moverMAC(k), simHostID(1)); err != nil {
			return res, fmt.Errorf("move-vnic: %w", err)
		}
		c.Write = time.Duration(nanotime() - ts)
		select {
		case <-sr.done[k]:
		case <-time.After(o.ChangeTimeout):
		}
		// Entries arrive on the hosts' readers: read what arrived so far
		// under their own rule (a slot written once, atomically).
		for i, h := range sr.hosts {
			if d := atomic.LoadInt64(&sr.arrive[k][i]); d > 0 {
				c.ByServer[h.srv] = append(c.ByServer[h.srv], time.Duration(d))
			} else {
				c.Missed[h.srv]++
			}
		}
		for _, l := range c.ByServer {
			sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		}
		fmt.Fprintf(o.Log, "scale %s: change %d written in %v, reached %d of %d hosts, max %v\n", config, k+1,
			c.Write.Round(time.Millisecond), o.Hosts-sum(c.Missed), o.Hosts, maxOf(c.ByServer).Round(time.Millisecond))
		res.Changes = append(res.Changes, c)
		time.Sleep(200 * time.Millisecond)
	}
	if d := time.Until(end); d > 0 {
		time.Sleep(d)
	}
	sr.paceStart.Store(0)
	res.Window = time.Since(w0)
	sr.measure.Store(false)
	for i := range cmds {
		res.ServerCPU = append(res.ServerCPU, (cpuTime(pids[i])-cpu0[i]).Seconds()/res.Window.Seconds())
		res.ServerRSS = append(res.ServerRSS, rss(pids[i], "VmRSS"))
	}
	res.BenchCPU = (selfCPU() - self0).Seconds() / res.Window.Seconds()
	time.Sleep(100 * time.Millisecond) // replies to the last lookups
	h := sr.lat.snapshot()
	res.Lookups = h.count()
	res.LookupRate = float64(res.Lookups) / res.Window.Seconds()
	res.LookupP50, res.LookupP99, res.LookupMax = h.quantile(0.5), h.quantile(0.99), h.max()
	res.LookupErrors = sr.lookupErrs.Load()
	res.LookupsSkipped = sr.skipped.Load()
	res.LogReqs, res.LogHeld, res.LogQuick = sr.logReqs.Load(), sr.held.Load(), sr.quick.Load()
	res.EmptyP50 = sr.emptyLat.snapshot().quantile(0.5)
	res.Holds = res.EmptyP50 >= 500*time.Millisecond && res.Lookups > 0 && res.LookupP50 < 50*time.Millisecond
	res.LogEntries, res.LogErrors, res.ConnErrors = sr.entries.Load(), sr.logErrs.Load(), sr.connErrs.Load()
	if p := sr.firstErr.Load(); p != nil {
		res.FirstErr = *p
	}
	for _, c := range cmds {
		c.Process.Kill()
	}
	for _, c := range cmds {
		c.Wait()
	}
	cmds = nil
	sr.stopping.Store(true)
	for _, p := range logs {
		data, _ := os.ReadFile(p)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(data) > 0 {
			res.ServerLogLines += len(lines)
			if res.ServerLogFirst == "" {
				res.ServerLogFirst = lines[0]
			}
		}
	}
	return res, nil
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

func maxOf(ls [][]time.Duration) time.Duration {
	var m time.Duration
	for _, l := range ls {
		if len(l) > 0 {
			m = max(m, l[len(l)-1])
		}
	}
	return m
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	s := strings.TrimSpace(string(data))
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	if s == "" {
		return ""
	}
	return "\n" + s
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) bool {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// registerHosts adds the simulated hosts, each with its own loopback
// underlay address (a connection from it passes portolan's ownership
// check).
func registerHosts(ctx context.Context, st *store.SQL, n int, parallel bool) error {
	workers := 1
	if parallel {
		workers = 8
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				if err := st.SetHost(ctx, store.Host{ID: simHostID(i), IP: simHostIP(i), Port: 4789}, nil); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// somaxconn is the kernel's cap on a listen backlog.
func somaxconn() int {
	data, err := os.ReadFile("/proc/sys/net/core/somaxconn")
	if err != nil {
		return 128
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || n < 1 {
		return 128
	}
	return n
}

// connect connects every host to its server (host i to server i mod
// servers) from its own address, in waves of at most half the listen
// backlog, each wave answered a PING before the next, so that no SYN
// meets a full queue. Each connected host's socket is then its own
// (simHost.fd), for startLoops.
func (sr *scaleRun) connect(res *ScaleResult, addrs []string) {
	wave := max(1, min(1000, somaxconn()/2))
	drops0 := listenDrops()
	t0 := time.Now()
	var mu sync.Mutex
	for start := 0; start < sr.o.Hosts; start += wave {
		var wg sync.WaitGroup
		for i := start; i < min(start+wave, sr.o.Hosts); i++ {
			h := &simHost{i: i, srv: i % len(addrs), ip: simHostIP(i), fd: -1}
			sr.hosts = append(sr.hosts, h)
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: h.ip.AsSlice()}, Timeout: 10 * time.Second}
				for try := 0; try < 4; try++ {
					c0 := time.Now()
					nc, err := d.Dial("tcp", addrs[h.srv])
					el := time.Since(c0)
					mu.Lock()
					res.ConnectMax = max(res.ConnectMax, el)
					if err != nil {
						res.ConnectErrors++
						mu.Unlock()
						sr.fail(fmt.Errorf("connect from %v: %w", h.ip, err))
						time.Sleep(100 * time.Millisecond)
						continue
					}
					mu.Unlock()
					// A PING answered: the server has accepted it. The
					// next wave waits for that, so that the accept queue
					// never holds more than a wave.
					r := svpwire.NewReader(bufio.NewReaderSize(nc, 4096), 0)
					nc.SetDeadline(time.Now().Add(30 * time.Second))
					_, err = nc.Write(svpwire.AppendFrame(nil, svpwire.OpPing, 1<<31, nil))
					var f svpwire.Frame
					if err == nil {
						f, err = r.Next()
					}
					nc.SetDeadline(time.Time{})
					if err != nil || f.Op != svpwire.OpPong {
						mu.Lock()
						res.ConnectErrors++
						mu.Unlock()
						sr.fail(fmt.Errorf("ping from %v: %v %v", h.ip, f.Op, err))
						nc.Close()
						continue
					}
					fd, err := takeFD(nc)
					if err != nil {
						mu.Lock()
						res.ConnectErrors++
						mu.Unlock()
						sr.fail(fmt.Errorf("host %v: %w", h.ip, err))
						nc.Close()
						return
					}
					h.fd = fd
					return
				}
			}()
		}
		wg.Wait()
		for _, h := range sr.hosts[start:] {
			if h.fd < 0 {
				res.ConnectFailed++
			}
		}
	}
	res.Connect = time.Since(t0)
	res.ListenDrops = listenDrops() - drops0
}

// PrintScale writes the scale simulation's results.
func PrintScale(w io.Writer, o ScaleOptions, rs []ScaleResult) {
	mib := func(b uint64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	fmt.Fprintf(w, "scale: simulated hosts, each one TCP connection from its own 127.1.x.y keeping one LOG_REQ outstanding; %d lookups/s offered over all; every host has a VNIC on vnetid %d\n",
		o.LookupRate, scaleVNet)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONFIG\tSERVERS\tSTORE\tHOSTS\tCONNECTED\tCONNECT ERRS\tLISTEN DROPS\tLOOKUPS/S\tP50\tP99\tMAX\tLOOKUP ERRS\tSERVER CPU\tSERVER RSS\tBENCH CPU\tLOG_REQ/S\tEMPTY LOG_ACK P50\tHOLDS\tCONN ERRS")
	for _, r := range rs {
		var cpus, rsss []string
		for i := range r.ServerCPU {
			cpus = append(cpus, fmt.Sprintf("%.0f%%", 100*r.ServerCPU[i]))
			rsss = append(rsss, mib(r.ServerRSS[i]))
		}
		holds := "no"
		switch {
		case r.Holds:
			holds = "yes"
		case r.LogHeld+r.LogQuick == 0:
			holds = "?" // no empty LOG_ACK came back in the window
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%d\t%d\t%.0f\t%v\t%v\t%v\t%d\t%s\t%s\t%.0f%%\t%.0f\t%v\t%s\t%d\n", r.Config, r.Servers, r.Store, r.Hosts,
			r.Hosts-r.ConnectFailed, r.ConnectErrors, r.ListenDrops, r.LookupRate, roundLat(r.LookupP50), roundLat(r.LookupP99), roundLat(r.LookupMax),
			r.LookupErrors+r.LookupsSkipped, strings.Join(cpus, "+"), strings.Join(rsss, "+"), 100*r.BenchCPU,
			float64(r.LogReqs)/r.Window.Seconds(), roundLat(r.EmptyP50), holds, r.ConnErrors)
	}
	tw.Flush()
	fmt.Fprintln(w, "LOOKUPS/S: answered OK in the window. HOLDS: judged by timing as a plugin would (empty LOG_ACKs take >= 0.5 s while lookups p50 < 50 ms; ? when no empty LOG_ACK came back in the window); an empty LOG_ACK sooner than 0.5 s is followed by the next LOG_REQ 0.5 s later, a slower one at once. SERVER CPU: utime+stime over the window, 100% = one core")
	fmt.Fprintln(w, "change propagation: from the start of the store write (MoveVNIC of a VNIC on the shared vnetid) to each host's LOG_ACK carrying its entry")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CONFIG\tCHANGE\tHOSTS OF\tWRITE\tREACHED\tP50\tP99\tMAX")
	for _, r := range rs {
		groups := []int{-1}
		if r.Servers > 1 {
			for s := 0; s < r.Servers; s++ {
				groups = append(groups, s)
			}
		}
		var pooled = make([][]time.Duration, len(groups))
		var pooledMissed = make([]int, len(groups))
		var writes []time.Duration
		for k, c := range r.Changes {
			writes = append(writes, c.Write)
			for gi, g := range groups {
				l, missed, name := groupOf(c, g)
				pooled[gi] = append(pooled[gi], l...)
				pooledMissed[gi] += missed
				fmt.Fprintf(tw, "%s\t%d\t%s\t%v\t%d/%d\t%s\n", r.Config, k+1, name, c.Write.Round(time.Millisecond), len(l), len(l)+missed, quantiles(l))
			}
		}
		sort.Slice(writes, func(a, b int) bool { return writes[a] < writes[b] })
		for gi, g := range groups {
			l := pooled[gi]
			sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
			_, _, name := groupOf(ScaleChange{ByServer: make([][]time.Duration, r.Servers), Missed: make([]int, r.Servers)}, g)
			wr := "-"
			if len(writes) > 0 {
				wr = "p50 " + writes[len(writes)/2].Round(time.Millisecond).String()
			}
			fmt.Fprintf(tw, "%s\tall %d\t%s\t%s\t%d/%d\t%s\n", r.Config, len(r.Changes), name, wr, len(l), len(l)+pooledMissed[gi], quantiles(l))
		}
	}
	tw.Flush()
	for _, r := range rs {
		fmt.Fprintf(w, "%s: registered in %v, connected in %v (slowest connect %v), %d of %d hosts' first LOG_ACK OK; window %v; %d lookups, %d not OK, %d not sent (64 in flight); %d log entries, %d log errors; empty LOG_ACKs: %d took >= 0.5 s, %d sooner\n",
			r.Config, r.Register.Round(time.Millisecond), r.Connect.Round(time.Millisecond), r.ConnectMax.Round(time.Millisecond), r.Ready, r.Hosts,
			r.Window.Round(time.Millisecond), r.Lookups, r.LookupErrors, r.LookupsSkipped, r.LogEntries, r.LogErrors, r.LogHeld, r.LogQuick)
		if r.FirstErr != "" {
			fmt.Fprintf(w, "%s: first error: %s\n", r.Config, r.FirstErr)
		}
		if r.ServerLogLines > 0 {
			fmt.Fprintf(w, "%s: portolan logged %d lines at warn and above; first: %s\n", r.Config, r.ServerLogLines, r.ServerLogFirst)
		}
	}
	fmt.Fprintln(w, "targets (reported, not asserted): lookup p99 under 5 ms")
	for _, r := range rs {
		v := "met"
		if r.LookupP99 >= 5*time.Millisecond || r.Lookups == 0 {
			v = "NOT met"
		}
		fmt.Fprintf(w, "  %s: lookup p99 %v (%s)\n", r.Config, roundLat(r.LookupP99), v)
	}
}

// groupOf returns the latencies and misses of change c for the hosts of
// server g (-1: all hosts).
func groupOf(c ScaleChange, g int) ([]time.Duration, int, string) {
	if g >= 0 {
		return c.ByServer[g], c.Missed[g], "portolan " + strconv.Itoa(g+1)
	}
	var l []time.Duration
	for _, s := range c.ByServer {
		l = append(l, s...)
	}
	sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
	return l, sum(c.Missed), "all"
}

func quantiles(l []time.Duration) string {
	if len(l) == 0 {
		return "-\t-\t-"
	}
	q := func(f float64) time.Duration { return l[min(len(l)-1, int(f*float64(len(l))))] }
	return fmt.Sprintf("%v\t%v\t%v", roundLat(q(0.5)), roundLat(q(0.99)), roundLat(l[len(l)-1]))
}
