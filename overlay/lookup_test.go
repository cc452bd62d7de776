package overlay

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/proxy"
	"overlaynet/search"
)

// answers records what the engine tells the data path. Only the methods
// the engine calls are implemented; the rest come from the nil interface.
type answers struct {
	datapath.Overlay
	mu       sync.Mutex
	set      map[datapath.MAC]encap.Dest
	dropped  map[datapath.MAC]int
	injected [][]byte
	done     chan struct{}
}

func newAnswers() *answers {
	return &answers{set: map[datapath.MAC]encap.Dest{}, dropped: map[datapath.MAC]int{}, done: make(chan struct{}, 100)}
}

func (a *answers) SetTarget(mac datapath.MAC, d encap.Dest) {
	a.mu.Lock()
	a.set[mac] = d
	a.mu.Unlock()
	a.done <- struct{}{}
}

func (a *answers) DropTarget(mac datapath.MAC, admin bool) {
	a.mu.Lock()
	a.dropped[mac]++
	a.mu.Unlock()
	a.done <- struct{}{}
}

func (a *answers) Inject(vlan uint16, f []byte) {
	a.mu.Lock()
	a.injected = append(a.injected, f)
	a.mu.Unlock()
	a.done <- struct{}{}
}

func (a *answers) wait(t *testing.T) {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(5 * time.Second):
		t.Fatal("no answer from the engine")
	}
}

// plugin is a dynamic instance answering from a map, optionally blocking
// until release is closed.
type plugin struct {
	dests   map[datapath.MAC]encap.Dest
	ips     map[netip.Addr]ether.MAC
	release chan struct{}
	calls   atomic.Int32
}

func (p *plugin) Start() error { return nil }
func (p *plugin) Stop()        {}
func (p *plugin) Lookup(ctx context.Context, vlan uint16, mac ether.MAC) (encap.Dest, error) {
	p.calls.Add(1)
	if p.release != nil {
		select {
		case <-p.release:
		case <-ctx.Done():
			return encap.Dest{}, ctx.Err()
		}
	}
	if d, ok := p.dests[mac]; ok {
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

func newTestEngine(p search.Instance) (*engine, *answers) {
	e := newEngine(slog.New(slog.DiscardHandler))
	a := newAnswers()
	e.dp = a
	e.setInstance(p)
	return e, a
}

var (
	mac1  = datapath.MAC{2, 8, 0x20, 0, 0, 1}
	mac2  = datapath.MAC{2, 8, 0x20, 0, 0, 2}
	dest1 = encap.Dest{IP: netip.MustParseAddr("192.0.2.1"), Port: 4789}
)

func TestEngineAnswersAndDrops(t *testing.T) {
	e, a := newTestEngine(&plugin{dests: map[datapath.MAC]encap.Dest{mac1: dest1}})
	e.Miss(mac1, 0)
	a.wait(t)
	e.Miss(mac2, 0)
	a.wait(t)
	if a.set[mac1] != dest1 {
		t.Errorf("mac1 answered %v, want %v", a.set[mac1], dest1)
	}
	if a.dropped[mac2] != 1 {
		t.Errorf("mac2 dropped %d times, want 1", a.dropped[mac2])
	}
	st := statMap(e.stats())
	if st["lookups-started"] != 2 || st["lookups-answered"] != 1 || st["lookups-dropped"] != 1 {
		t.Errorf("counters %v", st)
	}
	if st["lookup-latency-p99-us"] == 0 {
		t.Errorf("no lookup latency recorded: %v", st)
	}
}

func TestEngineOneLookupPerMAC(t *testing.T) {
	p := &plugin{dests: map[datapath.MAC]encap.Dest{mac1: dest1}, release: make(chan struct{})}
	e, a := newTestEngine(p)
	e.Miss(mac1, 0)
	// More misses while the plugin is being asked (not merely before its
	// goroutine started) must not ask again.
	for deadline := time.Now().Add(5 * time.Second); p.calls.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the plugin was not asked")
		}
	}
	for i := 0; i < 9; i++ {
		e.Miss(mac1, 0)
	}
	close(p.release)
	a.wait(t)
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("plugin asked %d times for one MAC, want 1", n)
	}
	// Once answered, a new miss asks again.
	e.Miss(mac1, 0)
	a.wait(t)
	if n := p.calls.Load(); n != 2 {
		t.Fatalf("plugin asked %d times, want 2", n)
	}
}

func TestEngineTimeout(t *testing.T) {
	p := &plugin{release: make(chan struct{})}
	defer close(p.release)
	e, a := newTestEngine(p)
	e.timeout = 50 * time.Millisecond
	e.Miss(mac1, 0)
	a.wait(t)
	if a.dropped[mac1] != 1 {
		t.Fatal("a timed-out lookup did not drop")
	}
	if st := statMap(e.stats()); st["lookups-timed-out"] != 1 {
		t.Errorf("counters %v", st)
	}
}

func TestEngineProxyARP(t *testing.T) {
	ip := netip.MustParseAddr("10.0.0.2")
	e, a := newTestEngine(&plugin{ips: map[netip.Addr]ether.MAC{ip: mac2}})
	req := proxy.ARPReply(proxy.ARPRequest{SenderMAC: mac2, SenderIP: ip, TargetIP: netip.MustParseAddr("10.0.0.1")}, mac1)
	// Turn that reply into a request from mac1 for 10.0.0.2.
	frame := append([]byte(nil), req...)
	copy(frame[0:6], proxy.Broadcast[:])
	frame[14+7] = 1
	copy(frame[14+18:14+24], make([]byte, 6))
	if proxy.Classify(frame) != proxy.ARP {
		t.Fatal("test frame is not an ARP request")
	}
	e.Proxy(0, proxy.ARP, frame)
	a.wait(t)
	reply, ok := a.injected[0], len(a.injected) == 1
	if !ok || datapath.MAC(reply[6:12]) != mac2 || datapath.MAC(reply[0:6]) != mac1 {
		t.Fatalf("injected %x", a.injected)
	}
	if st := statMap(e.stats()); st["proxy-arp"] != 1 {
		t.Errorf("counters %v", st)
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
