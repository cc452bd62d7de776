package daemon

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"overlaynet/overlay"
)

// latencyBounds are the lookup latency histogram's buckets.
var latencyBounds = []time.Duration{
	50 * time.Microsecond, 100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// collector exports the overlay core's counters to Prometheus, read at
// each scrape: nothing is copied on the frame path.
type collector struct {
	mgr *overlay.Manager

	counter, drops, lookups, proxy, degraded, latency *prometheus.Desc
	listener, listenerDrops                           *prometheus.Desc
}

func newCollector(mgr *overlay.Manager) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("overlayd_"+name, help, labels, nil)
	}
	return &collector{mgr: mgr,
		counter:       d("overlay_total", "Frames and bytes through each overlay, by counter (in-frames, out-bytes, local-switched, encapsulated, ...).", "overlay", "counter"),
		drops:         d("overlay_drops_total", "Frames each overlay dropped, by reason.", "overlay", "reason"),
		lookups:       d("overlay_lookups_total", "Destination lookups of each overlay, by outcome (started, answered, dropped, timed-out).", "overlay", "outcome"),
		proxy:         d("overlay_proxy_total", "Frames each overlay's proxy answered (arp, ndp, dhcp) or left unanswered.", "overlay", "kind"),
		degraded:      d("overlay_degraded", "1 while the overlay is DEGRADED (see overlayadm show-overlay -f).", "overlay"),
		latency:       d("overlay_lookup_latency_seconds", "Time from a miss to the answer installed in the data path.", "overlay"),
		listener:      d("listener_packets_total", "Underlay packets received on each listen address.", "listen"),
		listenerDrops: d("listener_drops_total", "Underlay packets dropped before reaching an overlay, by reason.", "listen", "reason"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.counter, c.drops, c.lookups, c.proxy, c.degraded, c.latency, c.listener, c.listenerDrops} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, om := range c.mgr.Metrics(latencyBounds) {
		for _, st := range om.Stats {
			v := float64(st.Value)
			switch name := st.Name; {
			case strings.HasPrefix(name, "drop-"):
				ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, v, om.Name, strings.TrimPrefix(name, "drop-"))
			case name == "queue-drops":
				ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, v, om.Name, "queue-full")
			case strings.HasPrefix(name, "lookups-"):
				ch <- prometheus.MustNewConstMetric(c.lookups, prometheus.CounterValue, v, om.Name, strings.TrimPrefix(name, "lookups-"))
			case strings.HasPrefix(name, "proxy-"):
				ch <- prometheus.MustNewConstMetric(c.proxy, prometheus.CounterValue, v, om.Name, strings.TrimPrefix(name, "proxy-"))
			default:
				ch <- prometheus.MustNewConstMetric(c.counter, prometheus.CounterValue, v, om.Name, name)
			}
		}
		deg := 0.0
		if om.Degraded {
			deg = 1
		}
		ch <- prometheus.MustNewConstMetric(c.degraded, prometheus.GaugeValue, deg, om.Name)
		buckets := map[float64]uint64{}
		for i, b := range om.Lookups.Bounds {
			buckets[b.Seconds()] = om.Lookups.Counts[i]
		}
		ch <- prometheus.MustNewConstHistogram(c.latency, om.Lookups.Total, om.Lookups.Sum.Seconds(), buckets, om.Name)
	}
	for _, l := range c.mgr.Listeners() {
		for _, st := range l.Stats {
			switch {
			case strings.HasPrefix(st.Name, "drop-"):
				ch <- prometheus.MustNewConstMetric(c.listenerDrops, prometheus.CounterValue, float64(st.Value), l.Listen, strings.TrimPrefix(st.Name, "drop-"))
			case st.Name == "decapsulated":
				ch <- prometheus.MustNewConstMetric(c.listener, prometheus.CounterValue, float64(st.Value), l.Listen)
			}
		}
	}
}

// serveMetrics serves /metrics on addr until ctx ends.
func serveMetrics(ctx context.Context, ln net.Listener, mgr *overlay.Manager, log *slog.Logger) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector(mgr))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	log.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "err", err)
		}
	}()
	return nil
}
