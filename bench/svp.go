package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"overlaynet/ether"
	"overlaynet/pgtemp"
	"overlaynet/portolan/store"
	"overlaynet/svp"
)

// SVPOptions tune the portolan benchmark.
type SVPOptions struct {
	// Mappings is how many VL2 mappings the store holds.
	Mappings int
	// Conns are the connection counts to measure.
	Conns []int
	// Depth is the requests each connection keeps in flight.
	Depth    int
	Duration time.Duration
	Bin      string
	Log      io.Writer
}

// SVPResult is one measurement: a store and a connection count.
type SVPResult struct {
	Store      string
	Conns      int
	Lookups    int
	PerSecond  float64
	P50, P99   time.Duration
	Errors     int
	ServerRSS  uint64 // bytes, after the run
	StoreBytes int64  // size of the SQLite file (0 for PostgreSQL)
}

// SVP loads Mappings VL2 mappings into each store, runs a real portolan
// server over it on loopback, and measures VL2 lookups per second and
// their latency with each connection count, every connection keeping
// Depth requests in flight.
func SVP(o SVPOptions) ([]SVPResult, error) {
	dir, err := os.MkdirTemp("", "svpbench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	pg, err := pgtemp.Start()
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	stores := []struct{ name, dsn string }{
		{"sqlite", "sqlite:" + filepath.Join(dir, "portolan.db")},
		{"postgres", pg.DSN},
	}
	var out []SVPResult
	for _, st := range stores {
		fmt.Fprintf(o.Log, "%s: loading %d mappings\n", st.name, o.Mappings)
		start := time.Now()
		if err := load(st.dsn, o.Mappings); err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
		fmt.Fprintf(o.Log, "%s: loaded in %v\n", st.name, time.Since(start).Round(time.Millisecond))
		rs, err := runServer(o, st.name, st.dsn)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", st.name, err)
		}
		if st.name == "sqlite" {
			fi, _ := os.Stat(strings.TrimPrefix(st.dsn, "sqlite:"))
			for i := range rs {
				if fi != nil {
					rs[i].StoreBytes = fi.Size()
				}
			}
		}
		out = append(out, rs...)
	}
	return out, nil
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
	if err := s.PutHost(ctx, store.Host{ID: "h1", IP: netip.MustParseAddr("198.18.0.1"), Port: 4789}); err != nil {
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

// runServer starts portolan on the store and measures each connection
// count against it.
func runServer(o SVPOptions, name, dsn string) ([]SVPResult, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(o.Bin, "portolan"), "serve", "--listen", addr, "--store", dsn, "--log-level", "warn")
	cmd.Stderr = o.Log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if i > 200 {
			return nil, fmt.Errorf("portolan did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var out []SVPResult
	for _, n := range o.Conns {
		fmt.Fprintf(o.Log, "%s: %d connections x %d in flight for %v\n", name, n, o.Depth, o.Duration)
		r, err := measure(addr, n, o.Depth, o.Mappings, o.Duration)
		if err != nil {
			return nil, err
		}
		r.Store = name
		r.ServerRSS = rss(cmd.Process.Pid, "VmRSS")
		out = append(out, r)
	}
	return out, nil
}

// measure runs conns connections, each keeping depth VL2 requests in
// flight, for d.
func measure(addr string, conns, depth, mappings int, d time.Duration) (SVPResult, error) {
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	var firstErr error
	for c := 0; c < conns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			lat, nerr, err := client(addr, depth, mappings, c, deadline)
			mu.Lock()
			all = append(all, lat...)
			errs += nerr
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}(c)
	}
	wg.Wait()
	if firstErr != nil {
		return SVPResult{}, firstErr
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := SVPResult{Conns: conns, Lookups: len(all), PerSecond: float64(len(all)) / d.Seconds(), Errors: errs}
	if len(all) > 0 {
		r.P50 = all[len(all)/2]
		r.P99 = all[len(all)*99/100]
	}
	return r, nil
}

// client is one connection: it writes depth requests, then one more for
// every reply, until the deadline, and returns each request's latency.
func client(addr string, depth, mappings, seed int, deadline time.Time) ([]time.Duration, int, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, 0, err
	}
	defer nc.Close()
	sent := map[uint32]time.Time{}
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	next := uint32(seed) << 24
	key := seed * 7919
	send := func(buf []byte) []byte {
		next++
		key = (key + 104729) % mappings
		mu.Lock()
		sent[next] = time.Now()
		mu.Unlock()
		return svp.VL2Req{MAC: benchMAC(key), VNetID: 1}.AppendFrame(buf, next)
	}
	var buf []byte
	for i := 0; i < depth; i++ {
		buf = send(buf)
	}
	if _, err := nc.Write(buf); err != nil {
		return nil, 0, err
	}
	r := svp.NewReader(nc, 0)
	nc.SetReadDeadline(deadline.Add(5 * time.Second))
	outstanding := depth
	for outstanding > 0 {
		f, err := r.Next()
		if err != nil {
			return lat, errs, fmt.Errorf("read reply: %w", err)
		}
		now := time.Now()
		mu.Lock()
		t0, ok := sent[f.ID]
		delete(sent, f.ID)
		mu.Unlock()
		outstanding--
		if !ok {
			errs++
			continue
		}
		lat = append(lat, now.Sub(t0))
		if ack, err := svp.DecodeVL2Ack(f.Body); err != nil || ack.Status != svp.StatusOK {
			errs++
		}
		if now.Before(deadline) {
			buf = send(buf[:0])
			if _, err := nc.Write(buf); err != nil {
				return lat, errs, err
			}
			outstanding++
		}
	}
	return lat, errs, nil
}

// PrintSVP writes the portolan benchmark results.
func PrintSVP(w io.Writer, mappings int, rs []SVPResult) {
	fmt.Fprintf(w, "portolan VL2 lookups, %d mappings in the store, 32 requests in flight per connection\n", mappings)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STORE\tCONNS\tLOOKUPS/S\tP50\tP99\tERRORS\tSERVER RSS\tSTORE FILE")
	for _, r := range rs {
		file := "-"
		if r.StoreBytes > 0 {
			file = fmt.Sprintf("%.0f MiB", float64(r.StoreBytes)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%v\t%v\t%d\t%.1f MiB\t%s\n", r.Store, r.Conns, r.PerSecond,
			r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Errors, float64(r.ServerRSS)/(1<<20), file)
	}
	tw.Flush()
}
