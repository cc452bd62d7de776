package overlay

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/proxy"
	"overlaynet/search"
)

// Lookup limits (SPEC section 2).
const (
	// LookupTimeout bounds one plugin lookup; after it the held frames
	// are dropped and counted.
	LookupTimeout = 5 * time.Second
	// maxProxyInFlight bounds proxy requests being answered at once; a
	// broadcast storm beyond it is dropped and counted.
	maxProxyInFlight = 256
)

// engine turns a data path's misses and proxy frames into plugin lookups,
// one at a time per MAC, off the frame path, and answers the data path.
// It is the same for every data path.
type engine struct {
	log     *slog.Logger
	timeout time.Duration

	// inst is the overlay's current plugin instance; dp its data path
	// overlay, set once before any VNIC exists.
	inst atomic.Pointer[instance]
	dp   datapath.Overlay

	mu       sync.Mutex
	inflight map[datapath.MAC]struct{}
	proxies  chan struct{} // semaphore

	ctr     datapath.Counters
	latency histogram
}

// instance boxes an interface for atomic.Pointer.
type instance struct{ search.Instance }

func newEngine(log *slog.Logger) *engine {
	return &engine{log: log, timeout: LookupTimeout,
		inflight: map[datapath.MAC]struct{}{}, proxies: make(chan struct{}, maxProxyInFlight)}
}

func (e *engine) setInstance(in search.Instance) { e.inst.Store(&instance{in}) }

func (e *engine) instance() search.Instance {
	if p := e.inst.Load(); p != nil {
		return p.Instance
	}
	return nil
}

// Miss implements datapath.Handler.
func (e *engine) Miss(mac datapath.MAC, vlan uint16) {
	e.mu.Lock()
	if _, busy := e.inflight[mac]; busy {
		e.mu.Unlock()
		return
	}
	e.inflight[mac] = struct{}{}
	e.mu.Unlock()
	e.ctr.Inc(datapath.LookupsStarted)
	go e.lookup(mac, vlan, time.Now())
}

func (e *engine) lookup(mac datapath.MAC, vlan uint16, start time.Time) {
	in, ok := e.instance().(search.DynamicInstance)
	var dest encap.Dest
	err := errors.New("the overlay has no dynamic search plugin")
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
		dest, err = in.Lookup(ctx, vlan, mac)
		cancel()
	}
	// Done before answering the data path: a miss for this MAC right
	// after the answer (the entry removed meanwhile) must start a lookup.
	e.mu.Lock()
	delete(e.inflight, mac)
	e.mu.Unlock()
	// Counters are bumped before the data path is told, here and below:
	// whoever sees the effect (traffic flowing, a frame injected) and then
	// reads show-overlay must find it counted, never a count behind.
	switch {
	case err == nil:
		e.ctr.Inc(datapath.LookupsAnswered)
		e.latency.observe(time.Since(start))
		e.dp.SetTarget(mac, dest)
	case errors.Is(err, context.DeadlineExceeded):
		e.ctr.Inc(datapath.LookupsTimedOut)
		e.dp.DropTarget(mac, false)
		e.log.Warn("lookup timed out; frames for the MAC dropped", "mac", ether.Short(mac[:]), "vlan", vlan, "timeout", e.timeout)
	default:
		e.ctr.Inc(datapath.LookupsDropped)
		e.latency.observe(time.Since(start))
		e.dp.DropTarget(mac, false)
		if !errors.Is(err, search.ErrNotFound) {
			e.log.Warn("lookup failed; frames for the MAC dropped", "mac", ether.Short(mac[:]), "vlan", vlan, "err", err)
		} else {
			e.log.Debug("lookup: unknown MAC; frames dropped", "mac", ether.Short(mac[:]), "vlan", vlan)
		}
	}
}

// Proxy implements datapath.Handler.
func (e *engine) Proxy(vlan uint16, kind proxy.Kind, frame []byte) {
	e.proxyAsync(func() bool { return e.answer(vlan, kind, frame) })
}

// MissIP implements datapath.Handler: a kernel data path asks which MAC an
// overlay address is at, to answer ARP or NDP from its neighbour table.
func (e *engine) MissIP(vlan uint16, ip netip.Addr) {
	e.proxyAsync(func() bool {
		r, ok := e.instance().(search.IPResolver)
		if !ok {
			return false
		}
		ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
		defer cancel()
		mac, err := r.ResolveIP(ctx, vlan, ip)
		if err != nil {
			return false
		}
		if ip.Is4() {
			e.ctr.Inc(datapath.ProxyARP)
		} else {
			e.ctr.Inc(datapath.ProxyNDP)
		}
		e.dp.SetNeighbor(ip, mac)
		return true
	})
}

// proxyAsync runs one proxy answer off the frame path, within the bound on
// answers in flight; what is refused or not answered is counted.
func (e *engine) proxyAsync(answer func() bool) {
	select {
	case e.proxies <- struct{}{}:
	default:
		e.ctr.Inc(datapath.ProxyUnanswered)
		return
	}
	go func() {
		defer func() { <-e.proxies }()
		if !answer() {
			e.ctr.Inc(datapath.ProxyUnanswered)
		}
	}()
}

// answer handles one proxy frame and reports whether it was answered.
func (e *engine) answer(vlan uint16, kind proxy.Kind, frame []byte) bool {
	in := e.instance()
	ctx, cancel := context.WithTimeout(context.Background(), e.timeout)
	defer cancel()
	// resolve answers "who has target?" asked by asker, with reply.
	resolve := func(target netip.Addr, asker ether.MAC, reply func(ether.MAC) []byte, c datapath.Counter) bool {
		r, ok := in.(search.IPResolver)
		if !ok {
			return false
		}
		mac, err := r.ResolveIP(ctx, vlan, target)
		if err != nil || mac == asker {
			return false
		}
		e.ctr.Inc(c)
		e.dp.Inject(vlan, reply(mac))
		return true
	}
	switch kind {
	case proxy.ARP:
		req, valid := proxy.ParseARP(frame)
		return valid && resolve(req.TargetIP, req.SenderMAC,
			func(mac ether.MAC) []byte { return proxy.ARPReply(req, mac) }, datapath.ProxyARP)
	case proxy.NDP:
		ns, valid := proxy.ParseNS(frame)
		return valid && resolve(ns.Target, ns.SrcMAC,
			func(mac ether.MAC) []byte { return proxy.Advertisement(ns, mac) }, datapath.ProxyNDP)
	case proxy.DHCPClient:
		r, ok := in.(search.DHCPResolver)
		client, valid := proxy.ParseDHCPClient(frame)
		if !ok || !valid {
			return false
		}
		server, err := r.DHCPServer(ctx, vlan, client)
		if err != nil {
			return false
		}
		proxy.Redirect(frame, server)
		e.ctr.Inc(datapath.ProxyDHCP)
		e.dp.Resend(vlan, frame)
	case proxy.DHCPToClient:
		// A server's broadcast reply goes to the client it names, since
		// a dynamic overlay does not flood.
		client, valid := proxy.ParseDHCPToClient(frame)
		if !valid {
			return false
		}
		proxy.Redirect(frame, client)
		e.ctr.Inc(datapath.ProxyDHCP)
		e.dp.Resend(vlan, frame)
	default:
		return false
	}
	return true
}

// stats returns the engine's counters and the quantiles of lookup latency:
// from the miss to the answer (a destination or "drop") being handed to
// the data path.
func (e *engine) stats() []Stat {
	out := convStats(e.ctr.Snapshot(datapath.LookupCounters...))
	return append(out,
		Stat{Name: "lookup-latency-p50-us", Value: uint64(e.latency.quantile(0.50).Microseconds())},
		Stat{Name: "lookup-latency-p99-us", Value: uint64(e.latency.quantile(0.99).Microseconds())})
}
