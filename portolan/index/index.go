// Package index is portolan's in-memory index of the store: the hosts,
// VL2 mappings (vnetid+MAC -> host) and VL3 mappings (vnetid+IP -> MAC)
// the server answers its hot requests from, kept current by following
// the store's change feed (store.Feed).
//
// Load reads the latest change sequence number, then everything; Follow
// then applies the changes after that number by re-reading what each
// names. A re-read gives the store's state at the time of the read, which
// is never older than the change, so replaying a change twice does no
// harm, and anything that moved while Load was reading is fixed by the
// changes replayed after it: correctness does not depend on Load reading
// a consistent snapshot.
//
// The big tables hold no pointers and no padding (a VL2 slot is a
// 10-byte key, vnetid and MAC, and a 4-byte host number; an IPv4 VL3 slot
// an 8-byte key and a 6-byte MAC; each with a used byte) and are kept
// 57-85% full, 80% after a load (table), so a million VNICs with an IPv4 address each take
// about 38 MB, and nothing for the garbage collector to scan.
package index

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// Defaults of Follow.
const (
	// DefaultTick is how often Follow looks for changes when Watch says
	// nothing (a lost notification costs at most this much delay).
	DefaultTick = time.Second
	// changesLimit is how many changes one Changes call asks for.
	changesLimit = 10000
	// minBackoff and maxBackoff bound the pause between retries while
	// the store fails.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

// Keys and values of the big maps: no pointers.
type vl2Key struct {
	vnet uint32
	mac  ether.MAC
}

type vl3Key4 struct {
	vnet uint32
	ip   [4]byte
}

type vl3Key6 struct {
	vnet uint32
	ip   [16]byte
}

// hostSlot is one host. Slots are never reused while a state lives (a
// removed host's slot is marked dead), so a VL2 entry that still names a
// removed host's slot answers nothing rather than another host.
type hostSlot struct {
	h       store.Host
	sources []netip.Addr // sorted, as store.Sources gives them
	alive   bool
	// sig is closed when the host's log is next appended to.
	sig chan struct{}
}

// state is everything the index knows. The Index's mutex guards it.
type state struct {
	hosts []hostSlot
	byID  map[string]uint32
	byIP  map[netip.Addr]uint32       // underlay IP -> live slot
	from  map[netip.Addr][]store.Host // HostsFrom, precomputed, sorted by ID
	// anySig is closed whenever the hosts are re-read: what LogSignal
	// gives for an address no host has (yet).
	anySig chan struct{}
	// closed holds the signals closed under the Index's lock, for it to
	// report (OnLogSignals) once the lock is released.
	closed []<-chan struct{}

	vl2 *table[vl2K, hostRef]
	vl4 *table[vl4K, ether.MAC]
	vl6 *table[vl6K, ether.MAC]
}

func newState(nvl2, nvl4, nvl6 int) *state {
	return &state{
		byID:   map[string]uint32{},
		byIP:   map[netip.Addr]uint32{},
		from:   map[netip.Addr][]store.Host{},
		anySig: make(chan struct{}),
		vl2:    newTable[vl2K, hostRef](nvl2),
		vl4:    newTable[vl4K, ether.MAC](nvl4),
		vl6:    newTable[vl6K, ether.MAC](nvl6),
	}
}

// Index is an in-memory index of a store. Its lookups are safe for
// concurrent use and do no I/O; they answer from the last state read
// while the store is unreachable. It implements portolan.Lookups.
type Index struct {
	feed store.Feed
	log  *slog.Logger
	tick time.Duration
	// backoff bounds, changeable by tests.
	minBackoff, maxBackoff time.Duration

	// upd serialises updates (Follow, Update, Check): only its holder
	// writes st and seq.
	upd sync.Mutex

	mu  sync.RWMutex
	st  *state
	seq int64 // the last change applied; guarded by mu

	statMu   sync.Mutex
	lastErr  error
	errSince time.Time
	failures int
	reloads  int

	// onSigs is called with the log signals closed (OnLogSignals).
	onSigs atomic.Pointer[func(closed []<-chan struct{})]
}

// OnLogSignals sets fn, called with the log signals (LogSignal's
// channels) each time the index closes some, once they are closed: a
// server holding thousands of LOG_REQs wakes those concerned from this
// one call, with no goroutine waiting on each signal. fn must not block
// or call the index.
func (ix *Index) OnLogSignals(fn func(closed []<-chan struct{})) { ix.onSigs.Store(&fn) }

// report passes closed signals to the OnLogSignals function.
func (ix *Index) report(closed []<-chan struct{}) {
	if fn := ix.onSigs.Load(); fn != nil && len(closed) > 0 {
		(*fn)(closed)
	}
}

// Load reads the store through feed: the latest change sequence number
// first, then the hosts, their source addresses and every VL2 and VL3
// mapping. The index then answers as of that sequence number or later;
// Follow (or Update) brings it current. log may be nil (no logging).
func Load(ctx context.Context, feed store.Feed, log *slog.Logger) (*Index, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ix := &Index{feed: feed, log: log, tick: DefaultTick, minBackoff: minBackoff, maxBackoff: maxBackoff}
	st, seq, err := ix.load(ctx, 0, 0, 0)
	if err != nil {
		return nil, err
	}
	ix.st, ix.seq = st, seq
	return ix, nil
}

// load reads everything into a new state, presized from the hints.
func (ix *Index) load(ctx context.Context, nvl2, nvl4, nvl6 int) (*state, int64, error) {
	if ix.feed == nil {
		return nil, 0, errors.New("index: no store to load from (a dump)")
	}
	seq, err := ix.feed.ChangeSeq(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("index: change sequence: %w", err)
	}
	hosts, err := ix.feed.Hosts(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("index: hosts: %w", err)
	}
	srcs, err := ix.feed.Sources(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("index: source addresses: %w", err)
	}
	st := newState(nvl2, nvl4, nvl6)
	st.setHosts(hosts, srcs)
	st.takeClosed() // a new state's signals: nobody waits on them
	err = ix.feed.ScanVL2(ctx, func(vnetid uint32, mac ether.MAC, host string) error {
		// A host unknown here was added after Hosts read: the
		// changes after seq name this VNIC again.
		if i, ok := st.byID[host]; ok {
			st.vl2.set(pk2(vl2Key{vnetid, mac}), ref(i))
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("index: VL2 mappings: %w", err)
	}
	err = ix.feed.ScanVL3(ctx, func(vnetid uint32, ip netip.Addr, mac ether.MAC) error {
		st.setVL3(vnetid, ip, mac, true)
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("index: VL3 mappings: %w", err)
	}
	st.vl2.fit()
	st.vl4.fit()
	st.vl6.fit()
	// A load leaves garbage up to the size of the index (rows read,
	// segments outgrown); the runtime would keep it resident. Loads are
	// rare (start, ChangeReload, ErrChangesPruned): return it now.
	debug.FreeOSMemory()
	return st, seq, nil
}

// setHosts makes the hosts those listed, with their source addresses:
// known hosts keep their slot (and their log signal unless their address
// changed), new ones get a new slot, missing ones are marked dead. Every
// waiter on a dead or readdressed host, or on an unknown address, wakes.
func (st *state) setHosts(hosts []store.Host, srcs map[string][]netip.Addr) {
	seen := make(map[string]bool, len(hosts))
	for _, h := range hosts {
		seen[h.ID] = true
		if i, ok := st.byID[h.ID]; ok {
			sl := &st.hosts[i]
			if sl.h.IP != h.IP || !sl.alive {
				st.closeSig(sl.sig)
				sl.sig = make(chan struct{})
			}
			sl.h, sl.sources, sl.alive = h, srcs[h.ID], true
			continue
		}
		st.byID[h.ID] = uint32(len(st.hosts))
		st.hosts = append(st.hosts, hostSlot{h: h, sources: srcs[h.ID], alive: true, sig: make(chan struct{})})
	}
	for i := range st.hosts {
		sl := &st.hosts[i]
		if sl.alive && !seen[sl.h.ID] {
			sl.alive = false
			st.closeSig(sl.sig)
			sl.sig = make(chan struct{})
		}
	}
	clear(st.byIP)
	clear(st.from)
	for i := range st.hosts {
		sl := &st.hosts[i]
		if !sl.alive {
			continue
		}
		st.byIP[sl.h.IP] = uint32(i)
		st.addFrom(sl.h.IP, sl.h)
		for _, a := range sl.sources {
			st.addFrom(a, sl.h)
		}
	}
	for a, hs := range st.from {
		slices.SortFunc(hs, func(x, y store.Host) int { return cmp.Compare(x.ID, y.ID) })
		st.from[a] = slices.Clip(hs)
	}
	st.closeSig(st.anySig)
	st.anySig = make(chan struct{})
}

// closeSig closes a log signal, to be reported.
func (st *state) closeSig(c chan struct{}) {
	close(c)
	st.closed = append(st.closed, c)
}

// takeClosed returns the signals closed since it was last called.
func (st *state) takeClosed() []<-chan struct{} {
	c := st.closed
	st.closed = nil
	return c
}

// addFrom adds h to the hosts a connection from a may act for, once.
func (st *state) addFrom(a netip.Addr, h store.Host) {
	if !slices.ContainsFunc(st.from[a], func(x store.Host) bool { return x.ID == h.ID }) {
		st.from[a] = append(st.from[a], h)
	}
}

// wakeAll closes every signal of the state: after a reload, which may
// have missed log changes.
func (st *state) wakeAll() {
	for i := range st.hosts {
		st.closeSig(st.hosts[i].sig)
	}
	st.closeSig(st.anySig)
}

// setVL3 sets (ok) or deletes the VL3 mapping of (vnetid, ip).
func (st *state) setVL3(vnetid uint32, ip netip.Addr, mac ether.MAC, ok bool) {
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		k := vl3Key4{vnetid, ip.As4()}
		if ok {
			st.vl4.set(pk4(k), mac)
		} else {
			st.vl4.delete(pk4(k))
		}
	case ip.Is6():
		k := vl3Key6{vnetid, ip.As16()}
		if ok {
			st.vl6.set(pk6(k), mac)
		} else {
			st.vl6.delete(pk6(k))
		}
	}
}

func (st *state) lookVL2(vnetid uint32, mac ether.MAC) (store.Host, bool) {
	r, ok := st.vl2.get(pk2(vl2Key{vnetid, mac}))
	i := r.idx()
	if !ok || !st.hosts[i].alive {
		return store.Host{}, false
	}
	return st.hosts[i].h, true
}

func (st *state) lookVL3(vnetid uint32, ip netip.Addr) (ether.MAC, store.Host, bool) {
	var mac ether.MAC
	var ok bool
	ip = ip.Unmap()
	switch {
	case ip.Is4():
		mac, ok = st.vl4.get(pk4(vl3Key4{vnetid, ip.As4()}))
	case ip.Is6():
		mac, ok = st.vl6.get(pk6(vl3Key6{vnetid, ip.As16()}))
	}
	if !ok {
		return ether.MAC{}, store.Host{}, false
	}
	// As the store's join: an address whose VNIC is gone answers nothing.
	h, ok := st.lookVL2(vnetid, mac)
	if !ok {
		return ether.MAC{}, store.Host{}, false
	}
	return mac, h, true
}

func (st *state) hostsFrom(src netip.Addr) []store.Host {
	return slices.Clone(st.from[src.Unmap()])
}

func (st *state) logSignal(hostIP netip.Addr) <-chan struct{} {
	if i, ok := st.byIP[hostIP.Unmap()]; ok {
		return st.hosts[i].sig
	}
	return st.anySig
}

// VL2 answers where a MAC lives (portolan.Lookups).
func (ix *Index) VL2(vnetid uint32, mac ether.MAC) (store.Host, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.st.lookVL2(vnetid, mac)
}

// VL3 answers which MAC holds an IP, and where that MAC lives
// (portolan.Lookups). An IPv4-mapped address is its IPv4 address.
func (ix *Index) VL3(vnetid uint32, ip netip.Addr) (ether.MAC, store.Host, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.st.lookVL3(vnetid, ip)
}

// HostsFrom returns the hosts a connection from src may act for, sorted
// by ID, as store.Store.HostsFrom: the host whose underlay IP is src and
// every host with src among its source addresses (src unmapped). The
// slice is the caller's.
func (ix *Index) HostsFrom(src netip.Addr) []store.Host {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.st.hostsFrom(src)
}

// LogSignal returns a channel closed when entries are next appended to
// the log of the host with underlay IP hostIP (portolan.Lookups). It is
// also closed, spuriously, when the host's address changes or it is
// removed, and after a reload (which may have missed appends). For an
// address no host has, it is closed when the hosts next change.
func (ix *Index) LogSignal(hostIP netip.Addr) <-chan struct{} {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.st.logSignal(hostIP)
}

// Reader answers lookups inside Batch, without taking the lock again. It
// is valid only during the Batch call that gave it.
type Reader struct{ st *state }

// VL2 is Index.VL2.
func (r Reader) VL2(vnetid uint32, mac ether.MAC) (store.Host, bool) {
	return r.st.lookVL2(vnetid, mac)
}

// VL3 is Index.VL3.
func (r Reader) VL3(vnetid uint32, ip netip.Addr) (ether.MAC, store.Host, bool) {
	return r.st.lookVL3(vnetid, ip)
}

// HostsFrom is Index.HostsFrom.
func (r Reader) HostsFrom(src netip.Addr) []store.Host { return r.st.hostsFrom(src) }

// LogSignal is Index.LogSignal.
func (r Reader) LogSignal(hostIP netip.Addr) <-chan struct{} { return r.st.logSignal(hostIP) }

// Batch calls fn with a Reader that answers under one hold of the read
// lock: for answering a drained buffer of requests at once. fn must be
// quick, do no I/O and not call the Index's own methods (a waiting update
// would deadlock them); the index does not change while fn runs.
func (ix *Index) Batch(fn func(r Reader)) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	fn(Reader{ix.st})
}

// Status is how current an index is.
type Status struct {
	// Seq is the last change applied.
	Seq int64
	// Err is the error of the last update, nil when it succeeded; Since
	// is when the store began failing (zero when Err is nil).
	Err   error
	Since time.Time
	// Failures counts failed updates; Reloads counts full reloads after
	// Load (ChangeReload, ErrChangesPruned).
	Failures, Reloads int
	// Hosts, VL2 and VL3 count the live hosts and the mappings.
	Hosts, VL2, VL3 int
}

// Status returns how current the index is.
func (ix *Index) Status() Status {
	ix.mu.RLock()
	s := Status{Seq: ix.seq, Hosts: len(ix.st.byIP), VL2: ix.st.vl2.len(), VL3: ix.st.vl4.len() + ix.st.vl6.len()}
	ix.mu.RUnlock()
	ix.statMu.Lock()
	s.Err, s.Since, s.Failures, s.Reloads = ix.lastErr, ix.errSince, ix.failures, ix.reloads
	ix.statMu.Unlock()
	return s
}

// Seq returns the last change applied.
func (ix *Index) Seq() int64 {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.seq
}
