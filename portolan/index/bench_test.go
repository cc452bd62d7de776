package index

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// genFeed is a store of n VNICs, each with one IPv4 address, on 100
// hosts and n/100 vnetids, generated as it is read (so that it costs no
// memory itself).
type genFeed struct {
	n     int
	hosts []store.Host
}

func newGenFeed(n int) *genFeed {
	g := &genFeed{n: n}
	for i := range 100 {
		g.hosts = append(g.hosts, store.Host{ID: fmt.Sprintf("host-%03d", i), IP: netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}), Port: 4789})
	}
	return g
}

func (g *genFeed) vnic(i int) (vnet uint32, mac ether.MAC, a netip.Addr) {
	vnet = uint32(i/100 + 1)
	mac = ether.MAC{2, 8, 0x20, byte(i >> 16), byte(i >> 8), byte(i)}
	a = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	return
}

func (g *genFeed) ChangeSeq(ctx context.Context) (int64, error) { return 1, nil }
func (g *genFeed) Changes(ctx context.Context, after int64, limit int) ([]store.Change, error) {
	return nil, nil
}
func (g *genFeed) ScanVL2(ctx context.Context, fn func(uint32, ether.MAC, string) error) error {
	for i := range g.n {
		vnet, mac, _ := g.vnic(i)
		if err := fn(vnet, mac, g.hosts[i%len(g.hosts)].ID); err != nil {
			return err
		}
	}
	return nil
}
func (g *genFeed) ScanVL3(ctx context.Context, fn func(uint32, netip.Addr, ether.MAC) error) error {
	for i := range g.n {
		vnet, mac, a := g.vnic(i)
		if err := fn(vnet, a, mac); err != nil {
			return err
		}
	}
	return nil
}
func (g *genFeed) Hosts(ctx context.Context) ([]store.Host, error) { return g.hosts, nil }
func (g *genFeed) Sources(ctx context.Context) (map[string][]netip.Addr, error) {
	return map[string][]netip.Addr{}, nil
}
func (g *genFeed) VL2(ctx context.Context, vnetid uint32, mac ether.MAC) (store.Host, bool, error) {
	return store.Host{}, false, nil
}
func (g *genFeed) VL3(ctx context.Context, vnetid uint32, ip netip.Addr) (ether.MAC, store.Host, bool, error) {
	return ether.MAC{}, store.Host{}, false, nil
}
func (g *genFeed) Watch(ctx context.Context) <-chan struct{} { return nil }

// heap returns the live heap after a full collection, and the process's
// resident set after returning freed memory to the system.
func heap() (inuse, resident uint64) {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, rss()
}

// rss returns the process's resident set.
func rss() uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for l := range strings.SplitSeq(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestMemory1M loads a million VL2 mappings, each with one IPv4
// address, and reports the heap they take and how long the load took.
// The server must hold them in under 100 MB of RSS.
func TestMemory1M(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("a million mappings: not with -short or -race")
	}
	const n = 1_000_000
	g := newGenFeed(n)
	before, rssBefore := heap()
	start := time.Now()
	ix, err := Load(context.Background(), g, nil)
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	var peak runtime.MemStats
	runtime.ReadMemStats(&peak)
	rssLoad := rss()
	after, rss := heap()
	s := ix.Status()
	if s.VL2 != n || s.VL3 != n {
		t.Fatalf("loaded %+v", s)
	}
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	t.Logf("%d VL2 + %d VL3 mappings: load %v, heap in use %.1f MB (%.1f B a VNIC), RSS %.1f MB (%.1f before; %.1f right after the load), heap sys at load %.1f MB",
		n, n, took.Round(time.Millisecond), mb(after-before), float64(after-before)/n, mb(rss), mb(rssBefore), mb(rssLoad), mb(peak.HeapSys))
	if after-before > 80<<20 {
		t.Errorf("the index takes %.1f MB of heap", mb(after-before))
	}
	// A reload holds both states for a moment.
	ix.reload(context.Background())
	_, rss2 := heap()
	t.Logf("after a reload: RSS %.1f MB", mb(rss2))
	runtime.KeepAlive(ix)
}

func benchIndex(b *testing.B) (*Index, *genFeed) {
	g := newGenFeed(1_000_000)
	ix, err := Load(context.Background(), g, nil)
	if err != nil {
		b.Fatal(err)
	}
	return ix, g
}

func BenchmarkLoad1M(b *testing.B) {
	g := newGenFeed(1_000_000)
	for b.Loop() {
		if _, err := Load(context.Background(), g, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVL2(b *testing.B) {
	ix, g := benchIndex(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		vnet, mac, _ := g.vnic(i * 7919 % g.n)
		if _, ok := ix.VL2(vnet, mac); !ok {
			b.Fatal("not found")
		}
		i++
	}
}

func BenchmarkVL3(b *testing.B) {
	ix, g := benchIndex(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		vnet, _, a := g.vnic(i * 7919 % g.n)
		if _, _, ok := ix.VL3(vnet, a); !ok {
			b.Fatal("not found")
		}
		i++
	}
}

func BenchmarkVL2Parallel(b *testing.B) {
	ix, g := benchIndex(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			vnet, mac, _ := g.vnic(i * 7919 % g.n)
			ix.VL2(vnet, mac)
			i++
		}
	})
}

func BenchmarkVL2Batch64(b *testing.B) {
	ix, g := benchIndex(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ix.Batch(func(r Reader) {
			for range 64 {
				vnet, mac, _ := g.vnic(i * 7919 % g.n)
				r.VL2(vnet, mac)
				i++
			}
		})
	}
}

// BenchmarkGoMapVL2 is BenchmarkVL2 over a Go map, for comparison.
func BenchmarkGoMapVL2(b *testing.B) {
	g := newGenFeed(1_000_000)
	m := map[vl2Key]uint32{}
	g.ScanVL2(context.Background(), func(vnet uint32, mac ether.MAC, host string) error {
		m[vl2Key{vnet, mac}] = 1
		return nil
	})
	i := 0
	for b.Loop() {
		vnet, mac, _ := g.vnic(i * 7919 % g.n)
		if _, ok := m[vl2Key{vnet, mac}]; !ok {
			b.Fatal("not found")
		}
		i++
	}
}

// BenchmarkSmall looks up in a small index (all in cache): the CPU cost
// of a lookup, without the cache misses of a million random keys.
func BenchmarkSmall(b *testing.B) {
	g := newGenFeed(1000)
	ix, err := Load(context.Background(), g, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("VL2", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			vnet, mac, _ := g.vnic(i % g.n)
			ix.VL2(vnet, mac)
			i++
		}
	})
	b.Run("VL3", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			vnet, _, a := g.vnic(i % g.n)
			ix.VL3(vnet, a)
			i++
		}
	})
	b.Run("HostsFrom", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ix.HostsFrom(g.hosts[7].IP)
		}
	})
}
