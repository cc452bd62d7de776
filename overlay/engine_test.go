package overlay

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"overlaynet/datapath"
	"overlaynet/datapath/memory"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/proxy"
	"overlaynet/search"
)

// plugin is a dynamic instance answering from a map, optionally blocking
// until release is closed.
type plugin struct {
	mu      sync.Mutex
	dests   map[ether.MAC]encap.Dest
	ips     map[netip.Addr]ether.MAC
	release chan struct{}
	calls   atomic.Int32
	called  chan struct{} // when set (waitAsked), told of every call
}

func (p *plugin) Start() error { return nil }
func (p *plugin) Stop()        {}

// Lookup answers with what the map held when it was asked, as a mapping
// server's reply in flight does.
func (p *plugin) Lookup(ctx context.Context, vlan uint16, mac ether.MAC) (encap.Dest, error) {
	p.mu.Lock()
	d, ok := p.dests[mac]
	called := p.called
	p.mu.Unlock()
	p.calls.Add(1)
	if called != nil {
		select {
		case called <- struct{}{}:
		default:
		}
	}
	if p.release != nil {
		select {
		case <-p.release:
		case <-ctx.Done():
			return encap.Dest{}, ctx.Err()
		}
	}
	if ok {
		return d, nil
	}
	return encap.Dest{}, search.ErrNotFound
}
func (p *plugin) ResolveIP(ctx context.Context, vlan uint16, ip netip.Addr) (ether.MAC, error) {
	if m, ok := p.ips[ip]; ok {
		return m, nil
	}
	return ether.MAC{}, search.ErrNotFound
}

// newTestEngine returns an engine asking p, attached to an overlay of the
// memory data path (every capability).
func newTestEngine(t *testing.T, p search.Instance) (*engine, *memory.Overlay) {
	t.Helper()
	e := newEngine(slog.New(slog.DiscardHandler))
	dpo, err := memory.New(memory.Options{}).CreateOverlay(datapath.OverlayConfig{Name: "t", VNetID: 1, Handler: e})
	if err != nil {
		t.Fatal(err)
	}
	e.attach(dpo)
	e.setInstance(p)
	return e, dpo.(*memory.Overlay)
}

// await waits for cond on the overlay's state, failing the test after 5 s.
func await(t *testing.T, o *memory.Overlay, what string, cond func(memory.State) bool) memory.State {
	t.Helper()
	st, ok := o.Await(5*time.Second, cond)
	if !ok {
		t.Fatalf("%s: not within 5 s; data path state %+v", what, st)
	}
	return st
}

func validTo(mac ether.MAC, d encap.Dest) func(memory.State) bool {
	return func(s memory.State) bool {
		t, ok := s.Targets[mac]
		return ok && t.State == datapath.TargetValid && t.Dest == d
	}
}

var (
	mac1  = ether.MAC{2, 8, 0x20, 0, 0, 1}
	mac2  = ether.MAC{2, 8, 0x20, 0, 0, 2}
	dest1 = encap.Dest{IP: netip.MustParseAddr("192.0.2.1"), Port: 4789}
	dest2 = encap.Dest{IP: netip.MustParseAddr("192.0.2.2"), Port: 4789}
)

func TestEngineAnswersAndDrops(t *testing.T) {
	e, o := newTestEngine(t, &plugin{dests: map[ether.MAC]encap.Dest{mac1: dest1}})
	o.Frame(mac1, 0)
	await(t, o, "mac1 answered", validTo(mac1, dest1))
	o.Frame(mac2, 0)
	st := await(t, o, "mac2 answered with drop", func(s memory.State) bool { return s.Negative[mac2] != 0 })
	if st.Negative[mac2] != negativeTTL || st.Dropped != 1 {
		t.Errorf("mac2: negative for %v (want %v), %d held frames dropped (want 1)", st.Negative[mac2], negativeTTL, st.Dropped)
	}
	c := statMap(e.stats())
	if c["lookups-started"] != 2 || c["lookups-answered"] != 1 || c["lookups-dropped"] != 1 {
		t.Errorf("counters %v", c)
	}
	if c["lookup-latency-p99-us"] == 0 {
		t.Errorf("no lookup latency recorded: %v", c)
	}
}

// waitAsked waits until p has been asked n times.
func waitAsked(t *testing.T, p *plugin, n int32) {
	t.Helper()
	p.mu.Lock()
	if p.called == nil {
		p.called = make(chan struct{}, 16)
	}
	called := p.called
	p.mu.Unlock()
	deadline := time.After(5 * time.Second)
	for p.calls.Load() < n {
		select {
		case <-called:
		case <-deadline:
			t.Fatalf("the plugin was asked %d times, want %d", p.calls.Load(), n)
		}
	}
}

func TestEngineOneLookupPerMAC(t *testing.T) {
	p := &plugin{dests: map[ether.MAC]encap.Dest{mac1: dest1}, release: make(chan struct{})}
	e, o := newTestEngine(t, p)
	e.Miss(mac1, 0)
	// More misses while the plugin is being asked (not merely before its
	// goroutine started) must not ask again.
	waitAsked(t, p, 1)
	for range 9 {
		e.Miss(mac1, 0)
	}
	close(p.release)
	await(t, o, "answer", validTo(mac1, dest1))
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("plugin asked %d times for one MAC, want 1", n)
	}
	// Once answered, a new miss asks again.
	e.Miss(mac1, 0)
	waitAsked(t, p, 2)
}

// TestEngineHeldInOrder: frames held while the lookup runs leave, in the
// order they came, before a frame sent after the answer.
func TestEngineHeldInOrder(t *testing.T) {
	p := &plugin{dests: map[ether.MAC]encap.Dest{mac1: dest1}, release: make(chan struct{})}
	_, o := newTestEngine(t, p)
	var seqs []int
	for range 3 {
		seqs = append(seqs, o.Frame(mac1, 0))
	}
	waitAsked(t, p, 1)
	close(p.release)
	await(t, o, "answer", validTo(mac1, dest1))
	seqs = append(seqs, o.Frame(mac1, 0))
	st := o.Snapshot()
	var sent []int
	for _, s := range st.Sent {
		if s.Dest != dest1 {
			t.Errorf("frame %d went to %v, want %v", s.Seq, s.Dest, dest1)
		}
		sent = append(sent, s.Seq)
	}
	if !slices.Equal(sent, seqs) {
		t.Fatalf("frames left in the order %v, want %v", sent, seqs)
	}
}

// TestEngineStaleAnswerAskedAgain: a MAC invalidated while its lookup is
// in flight is asked for again, so that the old answer never installs.
func TestEngineStaleAnswerAskedAgain(t *testing.T) {
	p := &plugin{dests: map[ether.MAC]encap.Dest{mac1: dest1}, release: make(chan struct{})}
	e, o := newTestEngine(t, p)
	o.Frame(mac1, 0)
	waitAsked(t, p, 1)
	p.mu.Lock()
	p.dests[mac1] = dest2 // the MAC moved, and the plugin says so
	p.mu.Unlock()
	e.invalidate(mac1)
	close(p.release)
	st := await(t, o, "the new answer", validTo(mac1, dest2))
	if n := p.calls.Load(); n != 2 {
		t.Errorf("plugin asked %d times, want 2", n)
	}
	if len(st.Sent) != 1 || st.Sent[0].Dest != dest2 {
		t.Errorf("the held frame went %+v, want to %v", st.Sent, dest2)
	}
}

// gate is a data path overlay whose SetTarget waits until released, so
// that a test can act while an answer is being given.
type gate struct {
	datapath.Overlay
	entered chan struct{}
	release chan struct{}
}

func (g *gate) SetTarget(mac ether.MAC, d encap.Dest) {
	g.entered <- struct{}{}
	<-g.release
	g.Overlay.SetTarget(mac, d)
}

func newGatedEngine(t *testing.T, p search.Instance) (*engine, *memory.Overlay, *gate) {
	t.Helper()
	e := newEngine(slog.New(slog.DiscardHandler))
	dpo, err := memory.New(memory.Options{}).CreateOverlay(datapath.OverlayConfig{Name: "t", Handler: e})
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{Overlay: dpo, entered: make(chan struct{}, 1), release: make(chan struct{})}
	e.attach(g)
	e.setInstance(p)
	return e, dpo.(*memory.Overlay), g
}

// TestEngineInvalidatedWhileGiven: an invalidation that comes while the
// answer is being handed over (the entry still pending, so removing it
// then does nothing) takes the answer back once it is in.
func TestEngineInvalidatedWhileGiven(t *testing.T) {
	p := &plugin{dests: map[ether.MAC]encap.Dest{mac1: dest1}}
	e, o, g := newGatedEngine(t, p)
	o.Frame(mac1, 0)
	<-g.entered
	e.invalidate(mac1)
	close(g.release)
	await(t, o, "the answer taken back", func(s memory.State) bool {
		_, ok := s.Targets[mac1]
		return !ok && len(s.Sent) == 1
	})
}

// TestEngineMissWhileGiven: a miss that comes while an answer is being
// handed over (its entry removed right after it was set) is not lost.
func TestEngineMissWhileGiven(t *testing.T) {
	p := &plugin{dests: map[ether.MAC]encap.Dest{mac1: dest1}}
	e, o, g := newGatedEngine(t, p)
	o.Frame(mac1, 0)
	<-g.entered
	e.Miss(mac1, 0) // as the data path reports one for a removed entry
	close(g.release)
	// Counters are bumped before the data path is told: the second
	// answer's SetTarget finds the count at 2.
	await(t, o, "answered twice", func(s memory.State) bool {
		return validTo(mac1, dest1)(s) && statMap(e.stats())["lookups-answered"] == 2
	})
}

// TestEngineStaleEveryTime: a plugin whose answers are always stale is
// asked maxAsks times, and its last answer does not stay.
func TestEngineStaleEveryTime(t *testing.T) {
	var e *engine
	p := &plugin{dests: map[ether.MAC]encap.Dest{mac1: dest1}}
	churn := &churning{plugin: p, invalidate: func() { e.invalidate(mac1) }}
	e, o := newTestEngine(t, churn)
	o.Frame(mac1, 0)
	await(t, o, "the stale answer given, then taken back", func(s memory.State) bool {
		_, ok := s.Targets[mac1]
		return !ok && statMap(e.stats())["lookups-answered"] == 1
	})
	if n := p.calls.Load(); n != maxAsks {
		t.Errorf("asked %d times, want %d", n, maxAsks)
	}
}

// churning invalidates its MAC while each lookup is being asked.
type churning struct {
	*plugin
	invalidate func()
}

func (c *churning) Lookup(ctx context.Context, vlan uint16, mac ether.MAC) (encap.Dest, error) {
	d, err := c.plugin.Lookup(ctx, vlan, mac)
	c.invalidate()
	return d, err
}

// TestEngineTimeoutIgnored: a plugin that ignores its context still gets
// its miss answered ("drop") at the timeout.
func TestEngineTimeoutIgnored(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	e, o := newTestEngine(t, deaf{block})
	e.timeout = 50 * time.Millisecond
	o.Frame(mac1, 0)
	await(t, o, "dropped at the timeout", func(s memory.State) bool { return s.Negative[mac1] != 0 })
	if c := statMap(e.stats()); c["lookups-timed-out"] != 1 {
		t.Errorf("counters %v", c)
	}
}

// deaf is a plugin whose lookups never return until block closes.
type deaf struct{ block chan struct{} }

func (deaf) Start() error { return nil }
func (deaf) Stop()        {}
func (d deaf) Lookup(context.Context, uint16, ether.MAC) (encap.Dest, error) {
	<-d.block
	return encap.Dest{}, search.ErrNotFound
}

func TestEngineTimeout(t *testing.T) {
	p := &plugin{release: make(chan struct{})}
	defer close(p.release)
	e, o := newTestEngine(t, p)
	e.timeout = 50 * time.Millisecond
	o.Frame(mac1, 0)
	await(t, o, "a timed-out lookup drops", func(s memory.State) bool { return s.Negative[mac1] != 0 })
	if st := statMap(e.stats()); st["lookups-timed-out"] != 1 {
		t.Errorf("counters %v", st)
	}
}

// arpRequest is a broadcast ARP request from mac1 (10.0.0.1) for ip.
func arpRequest(t *testing.T, ip netip.Addr) []byte {
	t.Helper()
	req := proxy.ARPReply(proxy.ARPRequest{SenderMAC: mac2, SenderIP: ip, TargetIP: netip.MustParseAddr("10.0.0.1")}, mac1)
	// Turn that reply into a request from mac1 for ip.
	frame := append([]byte(nil), req...)
	copy(frame[0:6], proxy.Broadcast[:])
	frame[14+7] = 1
	copy(frame[14+18:14+24], make([]byte, 6))
	if proxy.Classify(frame) != proxy.ARP {
		t.Fatal("test frame is not an ARP request")
	}
	return frame
}

func TestEngineProxyARP(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.2")
	e, o := newTestEngine(t, &plugin{ips: map[netip.Addr]ether.MAC{ip: mac2}})
	o.Broadcast(0, arpRequest(t, ip))
	st := await(t, o, "ARP reply injected", func(s memory.State) bool { return len(s.Injected) > 0 })
	reply := st.Injected[0].Data
	if len(st.Injected) != 1 || ether.MAC(reply[6:12]) != mac2 || ether.MAC(reply[0:6]) != mac1 {
		t.Fatalf("injected %x", st.Injected)
	}
	if c := statMap(e.stats()); c["proxy-arp"] != 1 {
		t.Errorf("counters %v", c)
	}
	// A neighbour table data path asks instead; the answer fills it.
	o.AskIP(0, ip)
	await(t, o, "neighbour entry", func(s memory.State) bool { return s.Neighbors[ip] == mac2 })
}

// TestEngineRoutesWhatPluginsTell: what a plugin learns or announces
// reaches each capability that takes it.
func TestEngineRoutesWhatPluginsTell(t *testing.T) {
	e, o := newTestEngine(t, &plugin{})
	ip4, ip6 := netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")
	e.learn(search.Answer{MAC: mac2, Dest: dest2, IPs: []netip.Addr{ip4, ip6}, DHCPServer: mac1})
	e.learn(search.Answer{MAC: mac1, IPs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}}) // no destination known
	st := o.Snapshot()
	if !validTo(mac2, dest2)(st) || st.Neighbors[ip4] != mac2 || st.Neighbors[ip6] != mac2 || st.DHCP[mac2] != mac1 {
		t.Errorf("after learn: targets %v, neighbours %v, DHCP %v", st.Targets, st.Neighbors, st.DHCP)
	}
	if _, ok := st.Targets[mac1]; ok {
		t.Errorf("an answer without a destination made a target entry: %v", st.Targets[mac1])
	}
	e.announce(7, ip4, mac1)
	e.announce(7, ip6, mac1)
	st = o.Snapshot()
	if len(st.Injected) != 2 || st.Injected[0].VLAN != 7 || st.Injected[1].VLAN != 7 {
		t.Fatalf("announce injected %+v", st.Injected)
	}
	if ether.MAC(st.Injected[0].Data[6:12]) != mac1 || st.Neighbors[ip4] != mac1 || st.Neighbors[ip6] != mac1 {
		t.Errorf("announce: injected %x, neighbours %v", st.Injected, st.Neighbors)
	}
	e.invalidate(mac2)
	if _, ok := o.Snapshot().Targets[mac2]; ok {
		t.Error("invalidate left the target entry")
	}
	if err := e.setDrop(mac2, memory.Name); err != nil {
		t.Fatal(err)
	}
	if st := o.Snapshot(); st.Targets[mac2].State != datapath.TargetDrop {
		t.Errorf("setDrop: %v", st.Targets[mac2])
	}
}

// coreOnly hides every capability of a data path overlay.
type coreOnly struct{ datapath.Overlay }

// TestEngineWithoutCapabilities: on a data path with none, what it cannot
// take is left out, and an operator's drop entry is refused by name.
func TestEngineWithoutCapabilities(t *testing.T) {
	p := &plugin{}
	e := newEngine(slog.New(slog.DiscardHandler))
	dpo, err := memory.New(memory.Options{}).CreateOverlay(datapath.OverlayConfig{Name: "t", Handler: e})
	if err != nil {
		t.Fatal(err)
	}
	o := dpo.(*memory.Overlay)
	e.attach(coreOnly{dpo})
	e.setInstance(p)
	if c := e.data().caps; c != (datapath.Capabilities{}) {
		t.Fatalf("capabilities found behind the core interface: %+v", c)
	}
	ip := netip.MustParseAddr("10.0.0.2")
	e.learn(search.Answer{MAC: mac2, Dest: dest2, IPs: []netip.Addr{ip}, DHCPServer: mac1})
	e.announce(0, ip, mac2)
	st := o.Snapshot()
	if !validTo(mac2, dest2)(st) || len(st.Neighbors) != 0 || len(st.DHCP) != 0 || len(st.Injected) != 0 {
		t.Errorf("state %+v: want the target entry only", st)
	}
	// An unknown MAC, with no Holder to tell: the lookup runs here, so
	// that a fault in it fails this test.
	e.inflight[mac1] = &inflight{}
	e.lookup(mac1, 0)
	if c := statMap(e.stats()); c["lookups-dropped"] != 1 || len(e.inflight) != 0 {
		t.Errorf("counters %v, in flight %d", c, len(e.inflight))
	}
	err = e.setDrop(mac1, "kernel")
	if err == nil || !strings.Contains(err.Error(), "kernel data path keeps no drop entries") {
		t.Errorf("setDrop without a DropTable: %v", err)
	}
}

func statMap(s []Stat) map[string]uint64 {
	m := map[string]uint64{}
	for _, st := range s {
		m[st.Name] = st.Value
	}
	return m
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	if h.quantile(0.5) != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	for i := 0; i < 99; i++ {
		h.observe(100 * time.Microsecond)
	}
	h.observe(50 * time.Millisecond)
	p50, p99, p100 := h.quantile(0.5), h.quantile(0.99), h.quantile(1)
	if p50 < 100*time.Microsecond || p50 > 120*time.Microsecond {
		t.Errorf("p50 %v, want about 100µs", p50)
	}
	if p99 != p50 {
		t.Errorf("p99 %v, want the same bucket as p50 (99 of 100 samples)", p99)
	}
	if p100 < 50*time.Millisecond || p100 > 60*time.Millisecond {
		t.Errorf("max %v, want about 50ms", p100)
	}
}
