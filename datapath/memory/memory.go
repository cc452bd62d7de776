// Package memory is a data path that carries nothing: it keeps in memory
// what the control plane asks of it (overlays, VNICs, the target table,
// proxy answers, neighbour and DHCP entries), so that the core's tests run
// on a data path registered like the others, without root. It declares
// every capability, so that the core's use of each is tested, and it is
// the smallest example of what a data path implements.
//
// A test drives the frame side with Overlay.Frame (a VNIC sends a unicast
// frame), Overlay.Broadcast (a proxy frame) and Overlay.AskIP (a neighbour
// table miss), and reads the outcome with Snapshot or Await.
package memory

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/proxy"
)

// Name is this data path's name, the value of the datapath property.
const Name = "memory"

func init() {
	datapath.Register(datapath.Driver{Name: Name,
		Help: "carries nothing: keeps the control plane's requests in memory (tests)",
		New:  func(datapath.Env) (datapath.DataPath, error) { return New(Options{}), nil }})
}

var (
	_ datapath.DataPath       = (*DataPath)(nil)
	_ datapath.Sweeper        = (*DataPath)(nil)
	_ datapath.Holder         = (*Overlay)(nil)
	_ datapath.DropTable      = (*Overlay)(nil)
	_ datapath.FrameInjector  = (*Overlay)(nil)
	_ datapath.NeighborTable  = (*Overlay)(nil)
	_ datapath.DHCPRedirector = (*Overlay)(nil)
	_ datapath.Deleter        = (*Overlay)(nil)
)

// Options tune the memory data path.
type Options struct {
	// Refuse, when set, is asked before an overlay is created or
	// updated; its error is CreateOverlay's or Update's (a listen address
	// that cannot be bound, say).
	Refuse func(cfg datapath.OverlayConfig) error
}

// DataPath is the memory data path.
type DataPath struct {
	opts Options

	mu     sync.Mutex
	open   []*Overlay // not closed, in creation order
	sweeps int
	closed bool
}

// New returns a memory data path.
func New(o Options) *DataPath { return &DataPath{opts: o} }

// CreateOverlay implements datapath.DataPath. Like the userspace data
// path it refuses a second overlay with the VNI on one listen address, and
// leaves names to the control plane.
func (d *DataPath) CreateOverlay(cfg datapath.OverlayConfig) (datapath.Overlay, error) {
	if d.opts.Refuse != nil {
		if err := d.opts.Refuse(cfg); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.open {
		if o.st.Config.Listen == cfg.Listen && o.st.Config.VNetID == cfg.VNetID {
			return nil, fmt.Errorf("vnetid %d is already carried on %s by overlay %s", cfg.VNetID, cfg.Listen, o.st.Config.Name)
		}
	}
	o := &Overlay{dp: d, changed: make(chan struct{}), st: State{Config: cfg, VNICs: map[string]datapath.VNICConfig{},
		Targets: map[ether.MAC]datapath.Target{}, Negative: map[ether.MAC]time.Duration{},
		Neighbors: map[netip.Addr]ether.MAC{}, DHCP: map[ether.MAC]ether.MAC{}, held: map[ether.MAC][]int{},
		negUntil: map[ether.MAC]time.Time{}}}
	d.open = append(d.open, o)
	return o, nil
}

// Listeners implements datapath.DataPath.
func (d *DataPath) Listeners() []datapath.Listener {
	d.mu.Lock()
	defer d.mu.Unlock()
	byAddr := map[netip.AddrPort][]string{}
	for _, o := range d.open {
		byAddr[o.st.Config.Listen] = append(byAddr[o.st.Config.Listen], o.st.Config.Name)
	}
	var out []datapath.Listener
	for _, a := range slices.SortedFunc(maps.Keys(byAddr), func(a, b netip.AddrPort) int { return a.Compare(b) }) {
		names := byAddr[a]
		sort.Strings(names)
		out = append(out, datapath.Listener{Addr: a, Overlays: names,
			Stats: new(datapath.Counters).Snapshot(datapath.ListenerCounters...)})
	}
	return out
}

// Sweep implements datapath.Sweeper: it only counts.
func (d *DataPath) Sweep() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweeps++
}

// Close implements io.Closer.
func (d *DataPath) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	return nil
}

// Sweeps is how many times Sweep ran; Closed whether Close did.
func (d *DataPath) Sweeps() int { d.mu.Lock(); defer d.mu.Unlock(); return d.sweeps }

// Closed reports whether Close ran.
func (d *DataPath) Closed() bool { d.mu.Lock(); defer d.mu.Unlock(); return d.closed }

// Overlay returns the open overlay called name, or nil.
func (d *DataPath) Overlay(name string) *Overlay {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, o := range d.open {
		if o.st.Config.Name == name {
			return o
		}
	}
	return nil
}

// Names returns the names of the open overlays, in creation order.
func (d *DataPath) Names() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, o := range d.open {
		out = append(out, o.st.Config.Name)
	}
	return out
}

// VNICCount is how many VNICs the open overlays have.
func (d *DataPath) VNICCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, o := range d.open {
		n += len(o.st.VNICs)
	}
	return n
}

// Overlay is one overlay of the memory data path.
type Overlay struct {
	dp      *DataPath
	changed chan struct{} // closed and replaced on every change; under dp.mu
	st      State         // under dp.mu
}

// State is what an overlay was asked to do, as Snapshot copies it.
type State struct {
	Config datapath.OverlayConfig
	VNICs  map[string]datapath.VNICConfig
	// Targets holds valid, drop and pending entries; Negative the
	// lookups answered with Drop, and for how long.
	Targets  map[ether.MAC]datapath.Target
	Negative map[ether.MAC]time.Duration
	// Sent lists the frames (by the sequence number Frame returned) in
	// the order they left, held ones included.
	Sent      []Sent
	Dropped   int // held frames dropped by an answer
	Neighbors map[netip.Addr]ether.MAC
	DHCP      map[ether.MAC]ether.MAC
	Injected  []Frame // Inject
	Resent    []Frame // Resend
	Flushes   int
	Closed    bool
	Deleted   bool

	held     map[ether.MAC][]int     // frames held while a lookup runs
	negUntil map[ether.MAC]time.Time // when each negative answer ends
	seq      int
}

// Sent is a frame that left for the underlay.
type Sent struct {
	Seq  int
	MAC  ether.MAC
	Dest encap.Dest
}

// Frame is a frame handed to Inject or Resend.
type Frame struct {
	VLAN uint16
	Data []byte
}

// Snapshot returns a copy of the overlay's state.
func (o *Overlay) Snapshot() State {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	return o.st.clone()
}

// Await waits up to timeout until cond holds for the overlay's state and
// returns the state that made it hold; false when time ran out.
func (o *Overlay) Await(timeout time.Duration, cond func(State) bool) (State, bool) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		o.dp.mu.Lock()
		st, ch := o.st.clone(), o.changed
		o.dp.mu.Unlock()
		if cond(st) {
			return st, true
		}
		select {
		case <-ch:
		case <-deadline.C:
			return st, false
		}
	}
}

func (s State) clone() State {
	c := s
	c.VNICs = maps.Clone(s.VNICs)
	c.Targets = maps.Clone(s.Targets)
	c.Negative = maps.Clone(s.Negative)
	c.Neighbors = maps.Clone(s.Neighbors)
	c.DHCP = maps.Clone(s.DHCP)
	c.Sent = slices.Clone(s.Sent)
	c.Injected = slices.Clone(s.Injected)
	c.Resent = slices.Clone(s.Resent)
	c.held, c.negUntil = nil, nil
	return c
}

// change runs fn on the state under the lock and wakes Await.
func (o *Overlay) change(fn func(s *State)) {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	fn(&o.st)
	close(o.changed)
	o.changed = make(chan struct{})
}

// Frame is a unicast frame for dst from a local VNIC on vlan, as the
// userspace switch handles it: sent when the target is valid, held (and
// the miss reported once) while a lookup runs, dropped otherwise (while a
// negative answer stands, or by an operator's drop entry). It returns the
// frame's sequence number.
func (o *Overlay) Frame(dst ether.MAC, vlan uint16) int {
	var miss bool
	var seq int
	o.change(func(s *State) {
		s.seq++
		seq = s.seq
		if p := s.Config.Point; p != nil {
			s.Sent = append(s.Sent, Sent{Seq: seq, MAC: dst, Dest: *p})
			return
		}
		t, ok := s.Targets[dst]
		switch {
		case ok && t.State == datapath.TargetValid:
			s.Sent = append(s.Sent, Sent{Seq: seq, MAC: dst, Dest: t.Dest})
		case ok && t.State == datapath.TargetPending:
			s.held[dst] = append(s.held[dst], seq)
		case ok:
			s.Dropped++ // an operator's drop entry
		default:
			if until, neg := s.negUntil[dst]; neg && time.Now().Before(until) {
				s.Dropped++
				return
			}
			delete(s.Negative, dst)
			delete(s.negUntil, dst)
			s.Targets[dst] = datapath.Target{MAC: dst, State: datapath.TargetPending}
			s.held[dst] = []int{seq}
			miss = true
		}
	})
	if miss && o.handler() != nil {
		o.handler().Miss(dst, vlan)
	}
	return seq
}

// Broadcast hands a proxy frame up, as a switch that answers ARP, NDP
// and DHCP broadcasts does.
func (o *Overlay) Broadcast(vlan uint16, frame []byte) {
	if h := o.handler(); h != nil {
		h.Proxy(vlan, proxy.Classify(frame), frame)
	}
}

// AskIP reports a neighbour table miss for ip, as the kernel's vxlan
// device does.
func (o *Overlay) AskIP(vlan uint16, ip netip.Addr) {
	if h := o.handler(); h != nil {
		h.MissIP(vlan, ip)
	}
}

func (o *Overlay) handler() datapath.Handler {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	return o.st.Config.Handler
}

// Update implements datapath.Overlay.
func (o *Overlay) Update(cfg datapath.OverlayConfig) error {
	if o.dp.opts.Refuse != nil {
		if err := o.dp.opts.Refuse(cfg); err != nil {
			return err
		}
	}
	o.change(func(s *State) { s.Config = cfg })
	return nil
}

// AddVNIC implements datapath.Overlay.
func (o *Overlay) AddVNIC(cfg datapath.VNICConfig) error {
	var err error
	o.change(func(s *State) {
		if _, dup := s.VNICs[cfg.Name]; dup {
			err = fmt.Errorf("memory data path: VNIC %s exists", cfg.Name)
			return
		}
		s.VNICs[cfg.Name] = cfg
	})
	return err
}

// RemoveVNIC implements datapath.Overlay.
func (o *Overlay) RemoveVNIC(name string) error {
	var err error
	o.change(func(s *State) {
		if _, ok := s.VNICs[name]; !ok {
			err = fmt.Errorf("memory data path: no VNIC %s", name)
			return
		}
		delete(s.VNICs, name)
	})
	return err
}

// SetNoSpoof implements datapath.Overlay.
func (o *Overlay) SetNoSpoof(name string, on bool) error {
	var err error
	o.change(func(s *State) {
		v, ok := s.VNICs[name]
		if !ok {
			err = fmt.Errorf("memory data path: no VNIC %s", name)
			return
		}
		v.NoSpoof = on
		s.VNICs[name] = v
	})
	return err
}

// Stats implements datapath.Overlay: every counter, all zero.
func (o *Overlay) Stats() datapath.Stats {
	return new(datapath.Counters).Snapshot(datapath.OverlayCounters...)
}

// SetTarget implements datapath.Overlay; held frames leave first.
func (o *Overlay) SetTarget(mac ether.MAC, dest encap.Dest) {
	o.change(func(s *State) {
		for _, seq := range s.held[mac] {
			s.Sent = append(s.Sent, Sent{Seq: seq, MAC: mac, Dest: dest})
		}
		delete(s.held, mac)
		delete(s.Negative, mac)
		delete(s.negUntil, mac)
		s.Targets[mac] = datapath.Target{MAC: mac, Dest: dest}
	})
}

// RemoveTarget implements datapath.Overlay, leaving a lookup in flight.
func (o *Overlay) RemoveTarget(mac ether.MAC) {
	o.change(func(s *State) {
		if t, ok := s.Targets[mac]; ok && t.State != datapath.TargetPending {
			delete(s.Targets, mac)
		}
		delete(s.Negative, mac)
		delete(s.negUntil, mac)
	})
}

// FlushTargets implements datapath.Overlay, leaving lookups in flight.
func (o *Overlay) FlushTargets() {
	o.change(func(s *State) {
		s.Flushes++
		maps.DeleteFunc(s.Targets, func(_ ether.MAC, t datapath.Target) bool { return t.State != datapath.TargetPending })
		clear(s.Negative)
		clear(s.negUntil)
	})
}

// Targets implements datapath.Overlay.
func (o *Overlay) Targets() []datapath.Target {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	return slices.Collect(maps.Values(o.st.Targets))
}

// Drop implements datapath.Holder.
func (o *Overlay) Drop(mac ether.MAC, ttl time.Duration) {
	o.change(func(s *State) {
		if t, ok := s.Targets[mac]; !ok || t.State != datapath.TargetPending {
			return // a late answer does not overrule
		}
		s.Dropped += len(s.held[mac])
		delete(s.held, mac)
		delete(s.Targets, mac)
		s.Negative[mac] = ttl
		s.negUntil[mac] = time.Now().Add(ttl)
	})
}

// SetDrop implements datapath.DropTable.
func (o *Overlay) SetDrop(mac ether.MAC) {
	o.change(func(s *State) {
		s.Dropped += len(s.held[mac])
		delete(s.held, mac)
		s.Targets[mac] = datapath.Target{MAC: mac, State: datapath.TargetDrop}
	})
}

// Inject implements datapath.FrameInjector.
func (o *Overlay) Inject(vlan uint16, frame []byte) {
	o.change(func(s *State) { s.Injected = append(s.Injected, Frame{vlan, slices.Clone(frame)}) })
}

// Resend implements datapath.FrameInjector.
func (o *Overlay) Resend(vlan uint16, frame []byte) {
	o.change(func(s *State) { s.Resent = append(s.Resent, Frame{vlan, slices.Clone(frame)}) })
}

// SetNeighbor implements datapath.NeighborTable.
func (o *Overlay) SetNeighbor(ip netip.Addr, mac ether.MAC) {
	o.change(func(s *State) { s.Neighbors[ip] = mac })
}

// SetDHCPRedirect implements datapath.DHCPRedirector.
func (o *Overlay) SetDHCPRedirect(client, server ether.MAC) {
	o.change(func(s *State) { s.DHCP[client] = server })
}

// Close implements datapath.Overlay.
func (o *Overlay) Close() error {
	o.change(func(s *State) { s.Closed = true })
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	o.dp.open = slices.DeleteFunc(o.dp.open, func(x *Overlay) bool { return x == o })
	return nil
}

// Delete implements datapath.Deleter.
func (o *Overlay) Delete() error {
	o.change(func(s *State) { s.Deleted = true })
	return o.Close()
}

// VNIC returns the VNIC called name.
func (o *Overlay) VNIC(name string) (datapath.VNICConfig, bool) {
	o.dp.mu.Lock()
	defer o.dp.mu.Unlock()
	v, ok := o.st.VNICs[name]
	return v, ok
}
