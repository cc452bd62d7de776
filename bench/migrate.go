package bench

import (
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"time"

	"overlaynet/admin"
	"overlaynet/netlab"
	"overlaynet/overlay"
)

// MigrateOptions tune the migration benchmark.
type MigrateOptions struct {
	Moves int
	Bin   string
	Log   io.Writer
}

// MigrateResult is the time from "portolan move-vnic" returning to the
// traffic arriving at the new host.
type MigrateResult struct {
	Moves    int
	P50, P99 time.Duration
	Max      time.Duration
}

// Migrate builds three hosts and a portolan server; guest 1 on host 1
// pings a VNIC whose twin (same MAC and address) exists on hosts 2 and 3,
// and the mapping is moved back and forth between them. Each move is timed
// from the admin command to the first frame the new host delivers.
func Migrate(o MigrateOptions) (MigrateResult, error) {
	var res MigrateResult
	l, err := netlab.New(o.Bin)
	if err != nil {
		return res, err
	}
	defer l.Close()
	hosts, err := l.Hosts(3)
	if err != nil {
		return res, err
	}
	ps, err := l.Namespace("ps")
	if err != nil {
		return res, err
	}
	if err := l.SwitchPort(ps, "198.18.0.100/24"); err != nil {
		return res, err
	}
	dsn := "sqlite:" + filepath.Join(l.Dir, "portolan.db")
	for i := range hosts {
		if _, err := l.PortolanAdm(dsn, "add-host", fmt.Sprintf("h%d", i+1), netlab.HostIP(i+1)); err != nil {
			return res, err
		}
	}
	if _, err := l.StartPortolan(ps, "0", "198.18.0.100:1296", dsn); err != nil {
		return res, err
	}
	var ds []*netlab.Daemon
	for i, h := range hosts {
		d, err := l.StartDaemon(h, "--log-level", "warn")
		if err != nil {
			return res, err
		}
		if err := d.SVPOverlay("ov0", 42, netlab.HostIP(i+1), "198.18.0.100"); err != nil {
			return res, err
		}
		ds = append(ds, d)
	}
	mac1, mac2 := "2:8:20:0:0:1", "2:8:20:0:0:2"
	mk := func(d *netlab.Daemon, vnic, mac, guest, addr string) (*netlab.NS, error) {
		if _, err := d.Adm("create-vnic", "-l", "ov0", "-m", mac, vnic); err != nil {
			return nil, err
		}
		return d.Guest(guest, vnic, addr)
	}
	g1, err := mk(ds[0], "vn1", mac1, "g1", "10.8.0.1/24")
	if err != nil {
		return res, err
	}
	if _, err := mk(ds[1], "vn2", mac2, "g2", "10.8.0.2/24"); err != nil {
		return res, err
	}
	if _, err := mk(ds[2], "vn2b", mac2, "g2b", "10.8.0.2/24"); err != nil {
		return res, err
	}
	for _, args := range [][]string{
		{"add-vnic", "--vnetid", "42", "--mac", mac1, "--host", "h1", "--ip", "10.8.0.1"},
		{"add-vnic", "--vnetid", "42", "--mac", mac2, "--host", "h2", "--ip", "10.8.0.2"},
	} {
		if _, err := l.PortolanAdm(dsn, args...); err != nil {
			return res, err
		}
	}
	if _, err := g1.Exec("ping", "-c", "3", "-i", "0.1", "10.8.0.2"); err != nil {
		return res, err
	}
	// A steady stream of pings (every 5 ms) for the whole run.
	pinger, err := l.Start(g1, "ping", "ping", "-i", "0.005", "-q", "10.8.0.2")
	if err != nil {
		return res, err
	}
	defer pinger.Stop()

	var times []time.Duration
	// Move -1 is a warm-up, not counted: it may come before the plugins'
	// first log poll (overlayd --svp-log-delay after the overlay starts),
	// and the figure is meant for hosts in their steady state.
	for i := -1; i < o.Moves; i++ {
		to := 2 - (i+1)%2 // host index 2 (h3), then 1 (h2), ...
		d := ds[to]
		c := &admin.Client{Socket: d.Socket}
		before, err := counter(c, "out-frames")
		if err != nil {
			return res, err
		}
		start := time.Now()
		if _, err := l.PortolanAdm(dsn, "move-vnic", "--vnetid", "42", "--mac", mac2, "--host", fmt.Sprintf("h%d", to+1)); err != nil {
			return res, err
		}
		cmdDone := time.Now()
		for {
			n, err := counter(c, "out-frames")
			if err != nil {
				return res, err
			}
			if n > before {
				break
			}
			if time.Since(start) > 10*time.Second {
				return res, fmt.Errorf("move %d: traffic did not reach h%d within 10 s", i+1, to+1)
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(cmdDone)
		if i < 0 {
			fmt.Fprintf(o.Log, "warm-up move to h%d (not counted): %v\n", to+1, took.Round(time.Millisecond))
		} else {
			times = append(times, took)
			fmt.Fprintf(o.Log, "move %d to h%d: %v\n", i+1, to+1, took.Round(time.Millisecond))
		}
		time.Sleep(100 * time.Millisecond)
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	res.Moves = len(times)
	res.P50 = times[len(times)/2]
	res.P99 = times[min(len(times)-1, len(times)*99/100)]
	res.Max = times[len(times)-1]
	return res, nil
}

// counter reads one counter of overlay ov0 straight from the admin
// socket: quicker than running overlayadm, for timing loops.
func counter(c *admin.Client, name string) (uint64, error) {
	var ss []overlay.StatsInfo
	if err := c.Call(admin.MethodShowStats, admin.NameParams{Name: "ov0"}, &ss); err != nil {
		return 0, err
	}
	for _, st := range ss[0].Stats {
		if st.Name == name {
			return st.Value, nil
		}
	}
	return 0, fmt.Errorf("no %s counter", name)
}

// PrintMigrate writes the migration result.
func PrintMigrate(w io.Writer, r MigrateResult) {
	fmt.Fprintf(w, "migration (svp): time from 'portolan move-vnic' to traffic arriving at the new host, %d moves\n", r.Moves)
	fmt.Fprintf(w, "  p50 %v, p99 %v, max %v\n", r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond))
}
