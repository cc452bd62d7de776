package overlay

import (
	"context"
	"errors"
	"fmt"
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
	// negativeTTL is how long a "no destination" answer stands on a data
	// path that holds frames, so that a stream of frames to an unknown
	// MAC costs one lookup per period.
	negativeTTL = 2 * time.Second
	// maxProxyInFlight bounds proxy requests being answered at once; a
	// broadcast storm beyond it is dropped and counted.
	maxProxyInFlight = 256
	// maxAsks bounds how often one miss asks the plugin again because
	// the answer went stale while it was being looked up.
	maxAsks = 3
)

// engine is the one path between an overlay's search plugin and its data
// path, whichever runs. It turns the data path's misses and proxy frames
// into plugin lookups, one at a time per MAC, off the frame path; it
// passes what plugins learn without being asked, and an operator's
// target entries, to the data path in the form that data path takes
// (datapath.Capabilities). It is the only writer of the target table and
// the only owner of lookups in flight: every miss is answered, within
// timeout, and an answer that went stale while it was looked up (the
// plugin invalidated the MAC, or was replaced) is asked for again.
type engine struct {
	log     *slog.Logger
	timeout time.Duration

	// inst is the overlay's current plugin instance; dp its data path
	// overlay and that overlay's capabilities, set once before any VNIC
	// exists. What plugins tell the engine before then is dropped: the
	// plugin's Preload comes after.
	inst atomic.Pointer[instance]
	dp   atomic.Pointer[attachment]

	mu       sync.Mutex
	inflight map[ether.MAC]*inflight
	proxies  chan struct{} // semaphore

	ctr     datapath.Counters
	latency histogram
}

// attachment is a data path overlay and what it can do.
type attachment struct {
	dp   datapath.Overlay
	caps datapath.Capabilities
}

// inflight is a lookup being asked of the plugin.
type inflight struct {
	// stale: what the plugin is answering may be out of date (the MAC
	// was invalidated or learnt, the plugin replaced): ask again, or,
	// once the answer is given, take it back.
	stale bool
	// answering: the answer is being handed to the data path; a miss
	// then (the entry removed right after it was set) sets missed, and
	// the lookup runs again for it.
	answering, missed bool
}

// instance boxes an interface for atomic.Pointer.
type instance struct{ search.Instance }

func newEngine(log *slog.Logger) *engine {
	return &engine{log: log, timeout: LookupTimeout,
		inflight: map[ether.MAC]*inflight{}, proxies: make(chan struct{}, maxProxyInFlight)}
}

// attach gives the engine its data path overlay, once.
func (e *engine) attach(dp datapath.Overlay) {
	e.dp.Store(&attachment{dp: dp, caps: datapath.Discover(dp)})
}

// data returns the data path overlay, nil before attach.
func (e *engine) data() *attachment { return e.dp.Load() }

// setInstance makes in the plugin that lookups ask. Lookups in flight
// with the previous one ask again, and its answers are flushed by the
// caller: none of them may outlive it.
func (e *engine) setInstance(in search.Instance) {
	e.inst.Store(&instance{in})
	e.mu.Lock()
	for _, l := range e.inflight {
		l.stale = true
	}
	e.mu.Unlock()
}

func (e *engine) instance() search.Instance {
	if p := e.inst.Load(); p != nil {
		return p.Instance
	}
	return nil
}

// Miss implements datapath.Handler.
func (e *engine) Miss(mac ether.MAC, vlan uint16) {
	if e.data() == nil {
		return // not attached yet (a kernel device taken over): it asks again
	}
	e.mu.Lock()
	if l, busy := e.inflight[mac]; busy {
		if l.answering {
			l.missed = true
		}
		e.mu.Unlock()
		return
	}
	e.inflight[mac] = &inflight{}
	e.mu.Unlock()
	go e.lookup(mac, vlan)
}

// lookup asks the plugin where mac is and answers the data path, for as
// long as the MAC stays in flight: again when the answer went stale while
// it was asked, and again when a miss came while it was given.
func (e *engine) lookup(mac ether.MAC, vlan uint16) {
	for {
		e.ctr.Inc(datapath.LookupsStarted)
		start := time.Now()
		var dest encap.Dest
		var err error
		for asks := 1; ; asks++ {
			dest, err = e.ask(mac, vlan, start)
			e.mu.Lock()
			l := e.inflight[mac]
			again := l.stale && asks < maxAsks && time.Since(start) < e.timeout
			if again {
				l.stale = false
			} else {
				l.answering = true
			}
			e.mu.Unlock()
			if !again {
				break
			}
		}
		e.give(mac, vlan, dest, err, start)
		e.mu.Lock()
		l := e.inflight[mac]
		stale, again := l.stale, l.missed
		if again {
			*l = inflight{}
		} else {
			delete(e.inflight, mac)
		}
		e.mu.Unlock()
		if stale {
			// Invalidated while it was given (its RemoveTarget found the
			// entry still pending), or still stale after maxAsks: the
			// next frame asks afresh.
			e.data().dp.RemoveTarget(mac)
		}
		if !again {
			return
		}
	}
}

// give hands a lookup's outcome to the data path.
func (e *engine) give(mac ether.MAC, vlan uint16, dest encap.Dest, err error, start time.Time) {
	dp := e.data()
	// Counters are bumped before the data path is told, here and below:
	// whoever sees the effect (traffic flowing, a frame injected) and then
	// reads show-overlay must find it counted, never a count behind.
	switch {
	case err == nil:
		e.ctr.Inc(datapath.LookupsAnswered)
		e.latency.observe(time.Since(start))
		dp.dp.SetTarget(mac, dest)
		return
	case errors.Is(err, context.DeadlineExceeded):
		e.ctr.Inc(datapath.LookupsTimedOut)
		e.log.Warn("lookup timed out; frames for the MAC dropped", "mac", ether.Short(mac), "vlan", vlan, "timeout", e.timeout)
	default:
		e.ctr.Inc(datapath.LookupsDropped)
		e.latency.observe(time.Since(start))
		if !errors.Is(err, search.ErrNotFound) {
			e.log.Warn("lookup failed; frames for the MAC dropped", "mac", ether.Short(mac), "vlan", vlan, "err", err)
		} else {
			e.log.Debug("lookup: unknown MAC; frames dropped", "mac", ether.Short(mac), "vlan", vlan)
		}
	}
	if dp.caps.Hold != nil {
		dp.caps.Hold.Drop(mac, negativeTTL)
	}
}

// ask asks the current plugin where mac is, within what is left of the
// lookup's time.
func (e *engine) ask(mac ether.MAC, vlan uint16, start time.Time) (encap.Dest, error) {
	in, ok := e.instance().(search.DynamicInstance)
	if !ok {
		return encap.Dest{}, errors.New("the overlay has no dynamic search plugin")
	}
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(e.timeout))
	defer cancel()
	// The timeout holds even for a plugin that does not heed ctx: every
	// miss is answered in time, and the data path holds no frames longer.
	type result struct {
		dest encap.Dest
		err  error
	}
	res := make(chan result, 1)
	go func() {
		d, err := in.Lookup(ctx, vlan, mac)
		res <- result{d, err}
	}()
	select {
	case r := <-res:
		return r.dest, r.err
	case <-ctx.Done():
		return encap.Dest{}, ctx.Err()
	}
}

// invalidate forgets mac's answer (search.Host.Invalidate): the next
// frame for it starts a lookup, and one in flight asks again.
func (e *engine) invalidate(mac ether.MAC) {
	e.markStale(mac)
	if dp := e.data(); dp != nil {
		dp.dp.RemoveTarget(mac)
	}
}

// markStale makes a lookup in flight for mac ask again (or take its
// answer back): what it is answering may be older than what is known.
func (e *engine) markStale(mac ether.MAC) {
	e.mu.Lock()
	if l := e.inflight[mac]; l != nil {
		l.stale = true
	}
	e.mu.Unlock()
}

// learn installs what a plugin knows without being asked
// (search.Host.Learn), each part where the data path takes it.
func (e *engine) learn(a search.Answer) {
	dp := e.data()
	if dp == nil {
		return
	}
	if a.Dest.IP.IsValid() {
		e.markStale(a.MAC) // a slower, older answer must not overwrite this
		dp.dp.SetTarget(a.MAC, a.Dest)
	}
	if n := dp.caps.Neighbors; n != nil {
		for _, ip := range a.IPs {
			n.SetNeighbor(ip, a.MAC)
		}
	}
	if d := dp.caps.DHCP; d != nil && a.DHCPServer != (ether.MAC{}) {
		d.SetDHCPRedirect(a.MAC, a.DHCPServer)
	}
}

// announce tells local guests that ip is now at mac
// (search.Host.Announce): a gratuitous ARP or an unsolicited neighbour
// advertisement where the data path takes frames, the neighbour table
// where it answers from one.
func (e *engine) announce(vlan uint16, ip netip.Addr, mac ether.MAC) {
	dp := e.data()
	if dp == nil {
		return
	}
	if f := dp.caps.Frames; f != nil {
		if ip.Is4() {
			f.Inject(vlan, proxy.GratuitousARP(mac, ip))
		} else {
			f.Inject(vlan, proxy.UnsolicitedAdvertisement(mac, ip))
		}
	}
	if n := dp.caps.Neighbors; n != nil {
		n.SetNeighbor(ip, mac)
	}
}

// The operator's edits of the target table (modify-overlay).

func (e *engine) setTarget(mac ether.MAC, dest encap.Dest) { e.data().dp.SetTarget(mac, dest) }

func (e *engine) removeTarget(mac ether.MAC) { e.data().dp.RemoveTarget(mac) }

// flushTargets deletes every answer; lookups in flight ask again, since
// what made the operator (or a new plugin) flush may have changed theirs.
func (e *engine) flushTargets() {
	e.mu.Lock()
	for _, l := range e.inflight {
		l.stale = true
	}
	e.mu.Unlock()
	e.data().dp.FlushTargets()
}

// setDrop makes mac's entry "drop", on data paths that keep such entries.
func (e *engine) setDrop(mac ether.MAC, dpName string) error {
	t := e.data().caps.Drops
	if t == nil {
		return fmt.Errorf("the %s data path keeps no drop entries (frames to a MAC without an entry are dropped anyway; remove the MAC's entry with -d)", dpName)
	}
	t.SetDrop(mac)
	return nil
}

// Proxy implements datapath.Handler.
func (e *engine) Proxy(vlan uint16, kind proxy.Kind, frame []byte) {
	dp := e.data()
	if dp == nil || dp.caps.Frames == nil {
		return // only a FrameInjector hands frames up, once attached
	}
	e.proxyAsync(func() bool { return e.answer(dp.caps.Frames, vlan, kind, frame) })
}

// MissIP implements datapath.Handler: a NeighborTable data path asks which
// MAC an overlay address is at, to answer ARP or NDP from its table.
func (e *engine) MissIP(vlan uint16, ip netip.Addr) {
	dp := e.data()
	if dp == nil || dp.caps.Neighbors == nil {
		return // only a NeighborTable asks, once attached
	}
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
		dp.caps.Neighbors.SetNeighbor(ip, mac)
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
func (e *engine) answer(out datapath.FrameInjector, vlan uint16, kind proxy.Kind, frame []byte) bool {
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
		out.Inject(vlan, reply(mac))
		return true
	}
	switch kind {
	case proxy.ARP:
		req, valid := proxy.ParseARP(frame)
		if valid {
			guestAddress(in, vlan, req.SenderMAC, req.SenderIP)
		}
		return valid && resolve(req.TargetIP, req.SenderMAC,
			func(mac ether.MAC) []byte { return proxy.ARPReply(req, mac) }, datapath.ProxyARP)
	case proxy.NDP:
		ns, valid := proxy.ParseNS(frame)
		if valid {
			guestAddress(in, vlan, ns.SrcMAC, ns.SrcIP)
		}
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
		out.Resend(vlan, frame)
	case proxy.DHCPToClient:
		// A server's broadcast reply goes to the client it names, since
		// a dynamic overlay does not flood.
		client, valid := proxy.ParseDHCPToClient(frame)
		if !valid {
			return false
		}
		proxy.Redirect(frame, client)
		e.ctr.Inc(datapath.ProxyDHCP)
		out.Resend(vlan, frame)
	default:
		return false
	}
	return true
}

// guestAddress tells a plugin that watches (search.AddressWatcher) the
// address a local guest asked from: an unspecified one (a probe) is none.
func guestAddress(in search.Instance, vlan uint16, mac ether.MAC, ip netip.Addr) {
	if w, ok := in.(search.AddressWatcher); ok && ip.IsValid() && !ip.IsUnspecified() {
		w.GuestAddress(vlan, mac, ip.Unmap())
	}
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
