package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"overlaynet/ether"
	"overlaynet/pgtemp"
	"overlaynet/portolan/store"
	"overlaynet/svpwire"
)

// SVPOptions tune the portolan benchmark.
type SVPOptions struct {
	// Mappings is how many VL2 mappings the store holds.
	Mappings int
	// Pipelined are the connection counts measured with Depth requests in
	// flight on each; Unpipelined, when above 0, adds a row of that many
	// connections with one request in flight each.
	Pipelined   []int
	Depth       int
	Unpipelined int
	Duration    time.Duration
	// Stores are the stores to measure portolan on: "sqlite", "postgres"
	// (the default is both). The ceiling row is always measured.
	Stores []string
	// ServeArgs are added to portolan serve's arguments.
	ServeArgs []string
	// Bin holds portolan.
	Bin string
	Log io.Writer
}

// SVPResult is one measurement: a server and a connection shape.
type SVPResult struct {
	Server    string // "ceiling", "sqlite" or "postgres"
	Conns     int
	Depth     int // requests in flight per connection
	Lookups   uint64
	PerSecond float64
	// Ratio is PerSecond over the ceiling's with the same shape.
	Ratio     float64
	P50, P99  time.Duration
	Errors    int
	FirstErr  string
	ServerCPU float64 // the server's CPU time over the row's wall time (1 = one core)
	ClientCPU float64 // this process's
	ServerRSS uint64  // bytes, after the row
}

// SVPServer is what was measured of one server outside the rows.
type SVPServer struct {
	Name       string
	Load       time.Duration // loading the store (0 for the ceiling)
	Start      time.Duration // from exec to the first answered lookup
	StoreBytes int64         // SQLite file size
	PeakRSS    uint64        // VmHWM at the end
}

// SVPReport is the whole svp benchmark.
type SVPReport struct {
	Mappings   int
	Duration   time.Duration
	Constraint string // how the server and the load generator shared the CPUs
	ClientCPUs int    // CPUs the load generator had
	Servers    []SVPServer
	Rows       []SVPResult
}

type shape struct{ conns, depth int }

func (o SVPOptions) shapes() []shape {
	var ss []shape
	for _, n := range o.Pipelined {
		ss = append(ss, shape{n, o.Depth})
	}
	if o.Unpipelined > 0 {
		ss = append(ss, shape{o.Unpipelined, 1})
	}
	return ss
}

// SVP measures VL2 lookups against a bare in-memory ceiling server and
// against portolan on each store, every server constrained to one CPU
// the same way, the load generator in this process on the others.
func SVP(o SVPOptions) (SVPReport, error) {
	rep := SVPReport{Mappings: o.Mappings, Duration: o.Duration}
	if o.Mappings < 1 {
		return rep, errors.New("svp: need at least one mapping")
	}
	if len(o.Stores) == 0 {
		o.Stores = []string{"sqlite", "postgres"}
	}
	o.Log = &lockedWriter{w: o.Log} // the servers' stderr goes there too
	dir, err := os.MkdirTemp("", "svpbench-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)
	type target struct {
		name, dsn string
		load      time.Duration
	}
	var targets []target
	for _, st := range o.Stores {
		t := target{name: st}
		switch st {
		case "sqlite":
			t.dsn = "sqlite:" + filepath.Join(dir, "portolan.db")
		case "postgres":
			pg, err := pgtemp.Start()
			if err != nil {
				return rep, err
			}
			defer pg.Stop()
			t.dsn = pg.DSN
		default:
			return rep, fmt.Errorf("svp: unknown store %q", st)
		}
		// Loading runs before the CPUs are split: it is not measured.
		fmt.Fprintf(o.Log, "%s: loading %d mappings\n", st, o.Mappings)
		start := time.Now()
		if err := load(t.dsn, o.Mappings); err != nil {
			return rep, fmt.Errorf("%s: %w", st, err)
		}
		t.load = time.Since(start)
		fmt.Fprintf(o.Log, "%s: loaded in %v\n", st, t.load.Round(time.Millisecond))
		targets = append(targets, t)
	}

	split := splitCPUs()
	defer split.restore()
	rep.Constraint = split.note
	rep.ClientCPUs = split.clientCPUs()
	fmt.Fprintln(o.Log, "svp:", split.note)

	self, err := os.Executable()
	if err != nil {
		return rep, err
	}
	srv, rows, err := runSVPServer(o, split, "ceiling", func(addr string) *exec.Cmd {
		c := exec.Command(self)
		c.Env = []string{ceilingEnv + "=" + addr + " " + strconv.Itoa(o.Mappings)}
		return c
	})
	if err != nil {
		return rep, fmt.Errorf("ceiling: %w", err)
	}
	rep.Servers = append(rep.Servers, srv)
	rep.Rows = append(rep.Rows, rows...)
	ceiling := map[shape]float64{}
	for _, r := range rows {
		ceiling[shape{r.Conns, r.Depth}] = r.PerSecond
	}
	for _, t := range targets {
		srv, rows, err := runSVPServer(o, split, t.name, func(addr string) *exec.Cmd {
			args := append([]string{"serve", "--listen", addr, "--store", t.dsn, "--log-level", "warn"}, o.ServeArgs...)
			return exec.Command(filepath.Join(o.Bin, "portolan"), args...)
		})
		if err != nil {
			return rep, fmt.Errorf("%s: %w", t.name, err)
		}
		srv.Load = t.load
		if t.name == "sqlite" {
			if fi, err := os.Stat(strings.TrimPrefix(t.dsn, "sqlite:")); err == nil {
				srv.StoreBytes = fi.Size()
			}
		}
		for i := range rows {
			if c := ceiling[shape{rows[i].Conns, rows[i].Depth}]; c > 0 {
				rows[i].Ratio = rows[i].PerSecond / c
			}
		}
		rep.Servers = append(rep.Servers, srv)
		rep.Rows = append(rep.Rows, rows...)
	}
	return rep, nil
}

func benchMAC(i int) ether.MAC {
	return ether.MAC{2, 0xbe, byte(i >> 24), byte(i >> 16), byte(i >> 8), byte(i)}
}

func load(dsn string, n int) error {
	ctx := context.Background()
	s, err := store.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.PutHost(ctx, store.Host{ID: "h1", IP: benchHost, Port: benchPort}); err != nil {
		return err
	}
	const chunk = 50000
	for i := 0; i < n; i += chunk {
		vs := make([]store.VNIC, 0, chunk)
		for j := i; j < min(i+chunk, n); j++ {
			vs = append(vs, store.VNIC{VNetID: 1, MAC: benchMAC(j), Host: "h1"})
		}
		if err := s.Import(ctx, vs); err != nil {
			return err
		}
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// runSVPServer starts the server mk makes for an address on one CPU,
// times its start and measures every shape against it.
func runSVPServer(o SVPOptions, split *cpuSplit, name string, mk func(addr string) *exec.Cmd) (SVPServer, []SVPResult, error) {
	srv := SVPServer{Name: name}
	addr, err := freeAddr()
	if err != nil {
		return srv, nil, err
	}
	cmd := mk(addr)
	cmd.Stderr = o.Log
	t0 := time.Now()
	if err := split.startOn(cmd); err != nil {
		return srv, nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if srv.Start, err = firstLookup(addr, t0, svpwire.VL2Req{MAC: benchMAC(o.Mappings - 1), VNetID: 1}); err != nil {
		return srv, nil, err
	}
	fmt.Fprintf(o.Log, "%s: first lookup answered %v after exec\n", name, srv.Start.Round(time.Millisecond))
	pid := cmd.Process.Pid
	var rows []SVPResult
	for _, sh := range o.shapes() {
		fmt.Fprintf(o.Log, "%s: %d connections x %d in flight for %v\n", name, sh.conns, sh.depth, o.Duration)
		c0, s0, w0 := selfCPU(), cpuTime(pid), time.Now()
		r := measure(addr, sh.conns, sh.depth, o.Mappings, o.Duration)
		wall := time.Since(w0).Seconds()
		r.ServerCPU = (cpuTime(pid) - s0).Seconds() / wall
		r.ClientCPU = (selfCPU() - c0).Seconds() / wall
		r.Server = name
		r.ServerRSS = rss(pid, "VmRSS")
		if name == "ceiling" {
			r.Ratio = 1
		}
		rows = append(rows, r)
	}
	srv.PeakRSS = rss(pid, "VmHWM")
	return srv, rows, nil
}

// firstLookup dials addr until it answers lookup (of a loaded mapping)
// with OK, and returns the time since t0.
func firstLookup(addr string, t0 time.Time, lookup svpwire.VL2Req) (time.Duration, error) {
	req := lookup.AppendFrame(nil, 1)
	var last error
	for time.Since(t0) < 2*time.Minute {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			last = err
			time.Sleep(2 * time.Millisecond)
			continue
		}
		for time.Since(t0) < 2*time.Minute {
			nc.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err = nc.Write(req); err != nil {
				break
			}
			var f svpwire.Frame
			if f, err = svpwire.NewReader(nc, 0).Next(); err != nil {
				break
			}
			if ack, err := svpwire.DecodeVL2Ack(f.Body); err == nil && f.Op == svpwire.OpVL2Ack && ack.Status == svpwire.StatusOK {
				d := time.Since(t0)
				nc.Close()
				return d, nil
			}
			last = fmt.Errorf("first lookup answered %v", f.Op)
			time.Sleep(2 * time.Millisecond)
		}
		if err != nil {
			last = err
		}
		nc.Close()
		time.Sleep(2 * time.Millisecond)
	}
	return 0, fmt.Errorf("no lookup answered within 2 minutes of exec: %v", last)
}

// lockedWriter serialises writes: progress lines and the servers'
// stderr (copied by os/exec's goroutines) share one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

var epoch = time.Now()

// nanotime is monotonic nanoseconds since epoch.
func nanotime() int64 { return int64(time.Since(epoch)) }

// measure runs conns connections, each keeping depth VL2 requests in
// flight, for d. Connections are all dialled before the clock starts.
func measure(addr string, conns, depth, mappings int, d time.Duration) SVPResult {
	r := SVPResult{Conns: conns, Depth: depth}
	ncs := make([]net.Conn, 0, conns)
	defer func() {
		for _, nc := range ncs {
			nc.Close()
		}
	}()
	for i := 0; i < conns; i++ {
		nc, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			r.Errors++
			r.FirstErr = "dial: " + err.Error()
			return r
		}
		ncs = append(ncs, nc)
	}
	type out struct {
		h    hist
		n    uint64
		errs int
		err  error
	}
	outs := make([]out, conns)
	var wg sync.WaitGroup
	start := make(chan struct{})
	var deadline int64
	for i, nc := range ncs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			o := &outs[i]
			o.n, o.errs, o.err = loadConn(nc, depth, mappings, i, deadline, &o.h)
		}()
	}
	deadline = nanotime() + int64(d)
	close(start)
	wg.Wait()
	var h hist
	for i := range outs {
		h.merge(&outs[i].h)
		r.Lookups += outs[i].n
		r.Errors += outs[i].errs
		if outs[i].err != nil {
			r.Errors++
			if r.FirstErr == "" {
				r.FirstErr = outs[i].err.Error()
			}
		}
	}
	r.PerSecond = float64(r.Lookups) / d.Seconds()
	r.P50, r.P99 = h.quantile(0.5), h.quantile(0.99)
	return r
}

// loadConn is one connection of the load generator. It keeps depth
// requests in flight: every reply frees its slot (the low bits of the
// request id index the send times, no map, no lock) and a new request
// takes it; the new requests of everything one read brought in leave in
// one write. Replies are counted, and their latency kept, until the
// deadline; then it drains what is in flight.
func loadConn(nc net.Conn, depth, mappings, seed int, deadline int64, h *hist) (uint64, int, error) {
	sbits := bits.Len(uint(depth - 1))
	mask := uint32(1)<<sbits - 1
	ids := make([]uint32, depth)
	sent := make([]int64, depth)
	batch := make([]int, 0, depth)
	buf := make([]byte, 0, depth*(svpwire.HeaderLen+12))
	seq := uint32(0)
	key := (seed * 7919) % mappings
	fill := func(s int) {
		seq++
		id := seq<<sbits | uint32(s)
		ids[s] = id
		key = (key + 104729) % mappings
		buf = svpwire.VL2Req{MAC: benchMAC(key), VNetID: 1}.AppendFrame(buf, id)
		batch = append(batch, s)
	}
	flush := func() error {
		t := nanotime()
		for _, s := range batch {
			sent[s] = t
		}
		_, err := nc.Write(buf)
		buf, batch = buf[:0], batch[:0]
		return err
	}
	for s := 0; s < depth; s++ {
		fill(s)
	}
	if err := flush(); err != nil {
		return 0, 0, err
	}
	nc.SetReadDeadline(epoch.Add(time.Duration(deadline) + 10*time.Second))
	br := bufio.NewReaderSize(nc, 4096)
	r := svpwire.NewReader(br, 0)
	const ackFrame = svpwire.HeaderLen + 20
	var n uint64
	errs := 0
	outstanding := depth
	for outstanding > 0 {
		f, err := r.Next()
		if err != nil {
			return n, errs, fmt.Errorf("read reply: %w", err)
		}
		now := nanotime()
		s := int(f.ID & mask)
		if s >= depth || ids[s] != f.ID || f.Op != svpwire.OpVL2Ack {
			return n, errs, fmt.Errorf("reply %v with id %#x matches no request", f.Op, f.ID)
		}
		ids[s] = 0
		outstanding--
		if now <= deadline {
			n++
			h.add(time.Duration(now - sent[s]))
		}
		if ack, err := svpwire.DecodeVL2Ack(f.Body); err != nil || ack.Status != svpwire.StatusOK {
			errs++
		}
		if now < deadline {
			fill(s)
			outstanding++
		}
		// Write when the next frame needs a read: everything this read
		// brought in has been answered.
		if len(batch) > 0 && br.Buffered() < ackFrame {
			if err := flush(); err != nil {
				return n, errs, err
			}
		}
	}
	return n, errs, nil
}

// PrintSVP writes the portolan benchmark results.
func PrintSVP(w io.Writer, rep SVPReport) {
	fmt.Fprintf(w, "portolan VL2 lookups: %d mappings in the store, %v per row\n", rep.Mappings, rep.Duration)
	fmt.Fprintf(w, "CPU: %s\n", rep.Constraint)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tCONNS\tIN FLIGHT\tLOOKUPS/S\tVS CEILING\tP50\tP99\tERRORS\tSERVER CPU\tBENCH CPU\tSERVER RSS")
	clientBound := false
	for _, r := range rep.Rows {
		mark := ""
		if r.ClientCPU >= 0.9*float64(rep.ClientCPUs) {
			mark, clientBound = " *", true
		}
		fmt.Fprintf(tw, "%s\t%d\t%d/conn\t%.0f\t%.2f\t%v\t%v\t%d\t%.0f%%\t%.0f%%%s\t%.1f MiB\n", r.Server, r.Conns, r.Depth, r.PerSecond, r.Ratio,
			roundLat(r.P50), roundLat(r.P99), r.Errors, 100*r.ServerCPU, 100*r.ClientCPU, mark, float64(r.ServerRSS)/(1<<20))
	}
	tw.Flush()
	fmt.Fprintln(w, "SERVER CPU, BENCH CPU: utime+stime over the row's wall time, 100% = one core")
	if clientBound {
		fmt.Fprintf(w, "* the load generator used 90%% or more of its %d CPU(s): that row may be limited by the client, not the server\n", rep.ClientCPUs)
	}
	for _, r := range rep.Rows {
		if r.FirstErr != "" {
			fmt.Fprintf(w, "error: %s, %d conns x %d: %s\n", r.Server, r.Conns, r.Depth, r.FirstErr)
		}
	}
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVER\tLOAD\tSTART (EXEC TO FIRST LOOKUP)\tPEAK RSS\tSTORE FILE")
	for _, s := range rep.Servers {
		ld, file := "-", "-"
		if s.Load > 0 {
			ld = s.Load.Round(time.Millisecond).String()
		}
		if s.StoreBytes > 0 {
			file = fmt.Sprintf("%.0f MiB", float64(s.StoreBytes)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%.1f MiB\t%s\n", s.Name, ld, s.Start.Round(time.Millisecond), float64(s.PeakRSS)/(1<<20), file)
	}
	tw.Flush()
	fmt.Fprintln(w, "targets (reported, not asserted): pipelined >= 1M lookups/s on one core and >= 0.7 of the ceiling; unpipelined >= 100k/s")
	for _, r := range rep.Rows {
		if r.Server == "ceiling" {
			continue
		}
		verdict := func(ok bool) string {
			if ok {
				return "met"
			}
			return "NOT met"
		}
		if r.Depth > 1 {
			fmt.Fprintf(w, "  %s %d conns x %d: %.0f/s (%s), %.2f of ceiling (%s)\n", r.Server, r.Conns, r.Depth,
				r.PerSecond, verdict(r.PerSecond >= 1e6), r.Ratio, verdict(r.Ratio >= 0.7))
		} else {
			fmt.Fprintf(w, "  %s %d conns x 1: %.0f/s (%s), %.2f of ceiling\n", r.Server, r.Conns, r.PerSecond, verdict(r.PerSecond >= 1e5), r.Ratio)
		}
	}
}

func roundLat(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= 10*time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}
