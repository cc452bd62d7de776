package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"time"

	"overlaynet/netlab"
)

// AttachOptions tune the attach benchmark.
type AttachOptions struct {
	Rounds int
	Bin    string
	Log    io.Writer
}

// AttachResult is one search plugin's time from a VNIC made on one host
// to traffic from another host reaching its guest.
type AttachResult struct {
	Plugin   string
	Rounds   int
	P50, P99 time.Duration
	Max      time.Duration
}

// Attach builds three hosts: host 3 runs FRR (the route reflector of the
// evpn overlays) and, beside it, portolan (the svp overlays' server);
// hosts 1 and 2 run overlayd with an svp and an evpn overlay. Each round,
// for each plugin in turn, a VNIC is made on host 2 (for svp also
// registered with portolan, as the CNI plugin does) and put in a new
// guest, while host 1's guest sends it a UDP probe every 2 ms; the time
// is from the create-vnic command to the first echo.
func Attach(o AttachOptions) ([]AttachResult, error) {
	l, err := netlab.New(o.Bin)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	hosts, err := l.Hosts(3)
	if err != nil {
		return nil, err
	}
	if _, err := l.StartFRR(hosts[2], netlab.ReflectorConf(netlab.HostIP(3), false, netlab.HostIP(1), netlab.HostIP(2))); err != nil {
		return nil, err
	}
	ps, err := l.Namespace("ps")
	if err != nil {
		return nil, err
	}
	if err := l.SwitchPort(ps, "198.18.0.100/24"); err != nil {
		return nil, err
	}
	dsn := "sqlite:" + filepath.Join(l.Dir, "portolan.db")
	if _, err := l.StartPortolan(ps, "0", "198.18.0.100:1296", dsn); err != nil {
		return nil, err
	}
	for i := range 2 {
		if _, err := l.PortolanAdm(dsn, "add-host", fmt.Sprintf("h%d", i+1), netlab.HostIP(i+1)); err != nil {
			return nil, err
		}
	}
	var ds []*netlab.Daemon
	for i, h := range hosts[:2] {
		d, err := l.StartDaemon(h, "--log-level", "warn")
		if err != nil {
			return nil, err
		}
		if err := d.SVPOverlay("ovs", 42, netlab.HostIP(i+1), "198.18.0.100"); err != nil {
			return nil, err
		}
		if _, err := d.Adm("create-overlay", "-e", "vxlan", "-s", "evpn", "-v", "43", "-p", "vxlan/listen_ip="+netlab.HostIP(i+1),
			"-p", "evpn/asn=65000,evpn/peers="+netlab.HostIP(3), "ove"); err != nil {
			return nil, err
		}
		ds = append(ds, d)
	}
	type plugin struct {
		name, overlay, net string
		vnetid             int
		probe              net.PacketConn
	}
	plugins := []*plugin{{name: "svp", overlay: "ovs", net: "10.8.0", vnetid: 42}, {name: "evpn", overlay: "ove", net: "10.7.0", vnetid: 43}}
	for k, p := range plugins {
		mac := fmt.Sprintf("2:8:20:0:%d:1", k)
		if _, err := ds[0].Adm("create-vnic", "-l", p.overlay, "-m", mac, "src"+p.name); err != nil {
			return nil, err
		}
		if p.name == "svp" {
			if _, err := l.PortolanAdm(dsn, "add-vnic", "--vnetid", "42", "--mac", mac, "--host", "h1", "--ip", p.net+".1"); err != nil {
				return nil, err
			}
		}
		g, err := ds[0].Guest("s"+p.name, "src"+p.name, p.net+".1/24")
		if err != nil {
			return nil, err
		}
		// ARP retried every 10 ms rather than every second: the figure
		// is the overlay's, not the guest's ARP timer's.
		if _, err := g.Exec("sysctl", "-qw", "net.ipv4.neigh.src"+p.name+".retrans_time_ms=10"); err != nil {
			return nil, err
		}
		if err := g.Do(func() (err error) { p.probe, err = net.ListenPacket("udp4", ":0"); return err }); err != nil {
			return nil, err
		}
		defer p.probe.Close()
	}

	times := map[string][]time.Duration{}
	// Round -1 warms up (the BGP sessions, portolan's first answers).
	for i := -1; i < o.Rounds; i++ {
		for k, p := range plugins {
			n := i + 11
			mac, vnic, ip := fmt.Sprintf("2:8:20:1:%d:%d", k, n), fmt.Sprintf("a%s%d", p.name, n), fmt.Sprintf("%s.%d", p.net, n)
			start := time.Now()
			if _, err := ds[1].Adm("create-vnic", "-l", p.overlay, "-m", mac, vnic); err != nil {
				return nil, err
			}
			if p.name == "svp" {
				if _, err := l.PortolanAdm(dsn, "add-vnic", "--vnetid", "42", "--mac", mac, "--host", "h2", "--ip", ip); err != nil {
					return nil, err
				}
			}
			g, err := ds[1].Guest(fmt.Sprintf("t%s%d", p.name, n), vnic, ip+"/24")
			if err != nil {
				return nil, err
			}
			var echo net.PacketConn
			if err := g.Do(func() (err error) { echo, err = net.ListenPacket("udp4", ":7"); return err }); err != nil {
				return nil, err
			}
			go func() {
				buf := make([]byte, 64)
				for {
					n, from, err := echo.ReadFrom(buf)
					if err != nil {
						return
					}
					echo.WriteTo(buf[:n], from)
				}
			}()
			took, err := probeUntilEcho(p.probe, ip, start)
			echo.Close()
			if err != nil {
				return nil, fmt.Errorf("%s round %d: %w", p.name, i+1, err)
			}
			if i >= 0 {
				times[p.name] = append(times[p.name], took)
			}
			fmt.Fprintf(o.Log, "%s round %d: %v\n", p.name, i+1, took.Round(time.Millisecond))
			if _, err := ds[1].Adm("delete-vnic", vnic); err != nil {
				return nil, err
			}
			if p.name == "svp" {
				if _, err := l.PortolanAdm(dsn, "remove-vnic", "--vnetid", "42", "--mac", mac); err != nil {
					return nil, err
				}
			}
		}
	}
	var out []AttachResult
	for _, p := range plugins {
		ts := times[p.name]
		slices.Sort(ts)
		out = append(out, AttachResult{Plugin: p.name, Rounds: len(ts), P50: ts[len(ts)/2],
			P99: ts[min(len(ts)-1, len(ts)*99/100)], Max: ts[len(ts)-1]})
	}
	return out, nil
}

// probeUntilEcho sends a probe to ip:7 every 2 ms until one comes back,
// and returns the time since start; it gives up after 10 s.
func probeUntilEcho(c net.PacketConn, ip string, start time.Time) (time.Duration, error) {
	dst := &net.UDPAddr{IP: net.ParseIP(ip), Port: 7}
	buf := make([]byte, 64)
	for time.Since(start) < 10*time.Second {
		c.WriteTo([]byte("probe"), dst)
		c.SetReadDeadline(time.Now().Add(2 * time.Millisecond))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				break
			}
			if u, ok := from.(*net.UDPAddr); ok && u.IP.String() == ip && string(buf[:n]) == "probe" {
				return time.Since(start), nil
			}
		}
	}
	return 0, errors.New("no echo within 10 s")
}

// PrintAttach writes the attach results, with evpn's ratio to svp's.
func PrintAttach(w io.Writer, rs []AttachResult) {
	fmt.Fprintln(w, "attach: time from create-vnic on host 2 to host 1's traffic reaching the new guest (for svp, with the portolan registration the CNI plugin makes)")
	var ref AttachResult
	for _, r := range rs {
		if r.Plugin == "svp" {
			ref = r
		}
	}
	for _, r := range rs {
		fmt.Fprintf(w, "  %-5s %d rounds: p50 %v (%.2f of svp), p99 %v (%.2f), max %v\n", r.Plugin, r.Rounds,
			r.P50.Round(time.Millisecond), ratio(r.P50, ref.P50), r.P99.Round(time.Millisecond), ratio(r.P99, ref.P99), r.Max.Round(time.Millisecond))
	}
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
