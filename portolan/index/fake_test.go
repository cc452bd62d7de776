package index

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// fakeFeed is an in-memory store.Feed. Its mutators record changes as the
// SQL store's transactions are to; the silent ones change data without
// recording anything (what a broken feed would do).
type fakeFeed struct {
	mu      sync.Mutex
	hosts   map[string]store.Host
	sources map[string][]netip.Addr
	vnics   map[vl2Key]string
	ips     map[ipk]ether.MAC
	changes []store.Change
	seq     int64
	pruned  int64 // changes up to this seq are gone
	// fail, when set, is returned by every read; calls counts reads.
	fail  error
	calls int
	watch chan struct{}
	// onScan, when set, runs between the VL2 and VL3 scans (to change
	// the store while a load reads it).
	onScan func()
}

type ipk struct {
	vnet uint32
	ip   netip.Addr
}

func newFake() *fakeFeed {
	return &fakeFeed{hosts: map[string]store.Host{}, sources: map[string][]netip.Addr{}, vnics: map[vl2Key]string{},
		ips: map[ipk]ether.MAC{}, watch: make(chan struct{}, 1)}
}

// record appends a change; mu held.
func (f *fakeFeed) record(c store.Change) {
	f.seq++
	c.Seq = f.seq
	f.changes = append(f.changes, c)
	select {
	case f.watch <- struct{}{}:
	default:
	}
}

func (f *fakeFeed) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *fakeFeed) read() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	return f.fail
}

func (f *fakeFeed) putHost(h store.Host, srcs ...netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hosts[h.ID] = h
	if len(srcs) > 0 {
		f.sources[h.ID] = slices.SortedFunc(slices.Values(srcs), netip.Addr.Compare)
	} else {
		delete(f.sources, h.ID)
	}
	f.record(store.Change{Kind: store.ChangeHost, Host: h.ID})
}

func (f *fakeFeed) removeHost(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.hosts, id)
	delete(f.sources, id)
	f.record(store.Change{Kind: store.ChangeHost, Host: id})
}

func (f *fakeFeed) addVNIC(vnet uint32, mac ether.MAC, host string, ips ...netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vnics[vl2Key{vnet, mac}] = host
	f.record(store.Change{Kind: store.ChangeVNIC, VNetID: vnet, MAC: mac})
	for _, ip := range ips {
		f.ips[ipk{vnet, ip.Unmap()}] = mac
		f.record(store.Change{Kind: store.ChangeIP, VNetID: vnet, IP: ip})
	}
}

func (f *fakeFeed) moveVNIC(vnet uint32, mac ether.MAC, host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.vnics[vl2Key{vnet, mac}] = host
	f.record(store.Change{Kind: store.ChangeVNIC, VNetID: vnet, MAC: mac})
}

func (f *fakeFeed) removeVNIC(vnet uint32, mac ether.MAC) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.vnics, vl2Key{vnet, mac})
	f.record(store.Change{Kind: store.ChangeVNIC, VNetID: vnet, MAC: mac})
	for k, m := range f.ips {
		if k.vnet == vnet && m == mac {
			delete(f.ips, k)
			f.record(store.Change{Kind: store.ChangeIP, VNetID: vnet, IP: k.ip})
		}
	}
}

func (f *fakeFeed) appendLog(host string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(store.Change{Kind: store.ChangeLog, Host: host})
}

// silently runs fn on the data, recording no change.
func (f *fakeFeed) silently(fn func(f *fakeFeed)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeFeed) recordReload() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record(store.Change{Kind: store.ChangeReload})
}

// prune forgets every change recorded so far.
func (f *fakeFeed) prune() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruned = f.seq
	f.changes = nil
}

func (f *fakeFeed) ChangeSeq(ctx context.Context) (int64, error) {
	if err := f.read(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seq, nil
}

func (f *fakeFeed) Changes(ctx context.Context, after int64, limit int) ([]store.Change, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if after < f.pruned {
		return nil, store.ErrChangesPruned
	}
	var out []store.Change
	for _, c := range f.changes {
		if c.Seq > after && len(out) < limit {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeFeed) ScanVL2(ctx context.Context, fn func(vnetid uint32, mac ether.MAC, host string) error) error {
	if err := f.read(); err != nil {
		return err
	}
	f.mu.Lock()
	vs := maps.Clone(f.vnics)
	f.mu.Unlock()
	for k, h := range vs {
		if err := fn(k.vnet, k.mac, h); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeFeed) ScanVL3(ctx context.Context, fn func(vnetid uint32, ip netip.Addr, mac ether.MAC) error) error {
	if f.onScan != nil {
		f.onScan()
	}
	if err := f.read(); err != nil {
		return err
	}
	f.mu.Lock()
	ips := maps.Clone(f.ips)
	f.mu.Unlock()
	for k, m := range ips {
		if err := fn(k.vnet, k.ip, m); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeFeed) Hosts(ctx context.Context) ([]store.Host, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []store.Host
	for _, id := range slices.Sorted(maps.Keys(f.hosts)) {
		out = append(out, f.hosts[id])
	}
	return out, nil
}

func (f *fakeFeed) Sources(ctx context.Context) (map[string][]netip.Addr, error) {
	if err := f.read(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string][]netip.Addr{}
	for id, as := range f.sources {
		out[id] = slices.Clone(as)
	}
	return out, nil
}

func (f *fakeFeed) VL2(ctx context.Context, vnetid uint32, mac ether.MAC) (store.Host, bool, error) {
	if err := f.read(); err != nil {
		return store.Host{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.vnics[vl2Key{vnetid, mac}]
	if !ok {
		return store.Host{}, false, nil
	}
	h, ok := f.hosts[id]
	return h, ok, nil
}

func (f *fakeFeed) VL3(ctx context.Context, vnetid uint32, ip netip.Addr) (ether.MAC, store.Host, bool, error) {
	if err := f.read(); err != nil {
		return ether.MAC{}, store.Host{}, false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	mac, ok := f.ips[ipk{vnetid, ip.Unmap()}]
	if !ok {
		return ether.MAC{}, store.Host{}, false, nil
	}
	id, ok := f.vnics[vl2Key{vnetid, mac}]
	if !ok {
		return ether.MAC{}, store.Host{}, false, nil
	}
	h, ok := f.hosts[id]
	return mac, h, ok, nil
}

func (f *fakeFeed) Watch(ctx context.Context) <-chan struct{} { return f.watch }

var _ store.Feed = (*fakeFeed)(nil)

var errDown = errors.New("connection refused")
