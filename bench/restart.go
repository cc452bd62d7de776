package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"overlaynet/admin"
	"overlaynet/netlab"
)

// RestartOptions tune the restart benchmark.
type RestartOptions struct {
	Rounds int
	Bin    string
	Log    io.Writer
}

// RestartResult is the time from starting a new overlayd, after kill -9
// of the old one, to traffic flowing through it again.
type RestartResult struct {
	Rounds   int
	P50, P99 time.Duration
	Max      time.Duration
}

// Restart kills overlayd on one of two hosts with SIGKILL while a guest
// pings across the overlay every 5 ms, starts it again, and times how long
// the new daemon takes to carry the guest's frames: restoring the saved
// configuration, taking over the persistent VNIC, forwarding.
func Restart(o RestartOptions) (RestartResult, error) {
	var res RestartResult
	l, err := netlab.New(o.Bin)
	if err != nil {
		return res, err
	}
	defer l.Close()
	h1, h2, err := l.TwoHosts()
	if err != nil {
		return res, err
	}
	pair, err := l.DirectPair(h1, h2, []string{"--log-level", "warn"})
	if err != nil {
		return res, err
	}
	d1, d2, g1 := pair.D1, pair.D2, pair.G1
	if _, err := g1.Exec("ping", "-c", "2", "-i", "0.1", "10.9.0.2"); err != nil {
		return res, err
	}
	pinger, err := l.Start(g1, "ping", "ping", "-i", "0.005", "-q", "10.9.0.2")
	if err != nil {
		return res, err
	}
	defer pinger.Stop()
	c2 := &admin.Client{Socket: d2.Socket}
	decap := func() (uint64, error) { return counter(c2, "decapsulated") }
	var times []time.Duration
	for i := 0; i < o.Rounds; i++ {
		d1.Kill()
		time.Sleep(100 * time.Millisecond) // frames pile up nowhere
		before, err := decap()
		if err != nil {
			return res, err
		}
		start := time.Now()
		if d1, err = d1.Restart("--log-level", "warn"); err != nil {
			return res, err
		}
		for {
			n, err := decap()
			if err != nil {
				return res, err
			}
			if n > before {
				break
			}
			if time.Since(start) > 10*time.Second {
				return res, fmt.Errorf("round %d: no traffic 10 s after the restart; the restarted overlayd logged:\n%s",
					i+1, lastLines(d1.Proc.Output(), 20))
			}
			time.Sleep(time.Millisecond)
		}
		took := time.Since(start)
		times = append(times, took)
		fmt.Fprintf(o.Log, "restart %d: traffic after %v\n", i+1, took.Round(time.Millisecond))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	res.Rounds = len(times)
	res.P50 = times[len(times)/2]
	res.P99 = times[min(len(times)-1, len(times)*99/100)]
	res.Max = times[len(times)-1]
	return res, nil
}

// PrintRestart writes the restart result.
func PrintRestart(w io.Writer, r RestartResult) {
	fmt.Fprintf(w, "restart after kill -9: time from starting overlayd to traffic flowing again, %d rounds\n", r.Rounds)
	fmt.Fprintf(w, "  p50 %v, p99 %v, max %v\n", r.P50.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond))
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
