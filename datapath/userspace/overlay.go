package userspace

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/datapath/offload"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/proxy"
)

// overlay is one overlay's switch.
type overlay struct {
	dp  *DataPath
	ws  []*worker // the data path's, fixed
	log *slog.Logger

	mu     sync.Mutex // serialises control operations
	closed bool

	// state and vnics are replaced, never modified, so that the frame
	// paths read a consistent view without locks.
	state atomic.Pointer[ovState]
	vnics atomic.Pointer[vnicSet]

	targets *targetTable
	ctr     datapath.Counters

	// A multicast overlay's (cfg.Group): what it learned, and its group
	// membership (guarded by mu).
	learned *learnTable
	group   *groupSub
}

// ovState is what the frame paths need to know about an overlay.
type ovState struct {
	cfg datapath.OverlayConfig
	ln  *listener
	// flood is a dynamic overlay's flood list (datapath.Flooder).
	flood []encap.Dest
}

// vnicSet indexes an overlay's VNICs.
type vnicSet struct {
	byKey  map[vnicKey]*vnic
	byName map[string]*vnic
	byVLAN map[uint16][]*vnic
}

// vnic is a VNIC: its device (a TAP), read by the data path's workers.
type vnic struct {
	ov        *overlay
	name      string
	key       vnicKey
	dev       vnicDevice
	vnet      bool    // dev.vnetHdr(), asked once
	ids       []int32 // of its queues, in the workers' sets
	followMTU bool    // the MTU is the overlay's, and changes with it
	// noSpoof drops frames its user sends from another MAC than its own
	// (mac-nospoof); the frame paths read it, SetNoSpoof changes it.
	noSpoof atomic.Bool
}

// CreateOverlay implements datapath.DataPath.
func (dp *DataPath) CreateOverlay(cfg datapath.OverlayConfig) (datapath.Overlay, error) {
	ov := &overlay{dp: dp, log: dp.log.With("overlay", cfg.Name), targets: newTargetTable()}
	if cfg.Group != nil {
		// Before acquire: packets may come from then on.
		ov.learned = newLearnTable(cfg.Group)
	}
	// A worker may hand the overlay a packet as soon as acquire has
	// registered it: its state must be whole by then. It has no VNICs
	// yet, so nothing needs the listener before it is stored.
	ov.state.Store(&ovState{cfg: cfg})
	ov.vnics.Store(&vnicSet{byKey: map[vnicKey]*vnic{}, byName: map[string]*vnic{}, byVLAN: map[uint16][]*vnic{}})
	ln, err := dp.acquire(cfg.Underlay, cfg.Listen, cfg.Encap, cfg.VNetID, ov)
	if err != nil {
		return nil, err
	}
	st := &ovState{cfg: cfg, ln: ln}
	if cfg.Group != nil {
		if ov.group, err = ov.join(st); err != nil {
			dp.release(ln, cfg.VNetID)
			return nil, err
		}
	}
	ov.state.Store(st)
	return ov, nil
}

func (ov *overlay) name() string { return ov.state.Load().cfg.Name }

// Update implements datapath.Overlay.
func (ov *overlay) Update(cfg datapath.OverlayConfig) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if ov.closed {
		return fmt.Errorf("overlay %s is closed", cfg.Name)
	}
	old := ov.state.Load()
	ln := old.ln
	moved := cfg.Listen != old.cfg.Listen || cfg.VNetID != old.cfg.VNetID || cfg.Encap.Name() != old.cfg.Encap.Name()
	if moved {
		// Take the new registration before dropping the old one so a
		// failure leaves the overlay as it was.
		var err error
		if ln, err = ov.dp.acquire(old.cfg.Underlay, cfg.Listen, cfg.Encap, cfg.VNetID, ov); err != nil {
			return err
		}
	}
	st := &ovState{cfg: cfg, ln: ln}
	var sub *groupSub
	if g := cfg.Group; g != nil && ov.group != nil && (g.Dest != ov.group.dest || moved) {
		var err error
		if sub, err = ov.join(st); err != nil {
			if moved {
				ov.dp.release(ln, cfg.VNetID)
			}
			return err
		}
	}
	if moved {
		ov.dp.release(old.ln, old.cfg.VNetID)
	}
	if g := cfg.Group; g != nil && ov.learned != nil {
		ov.learned.setLimits(g)
	}
	if sub != nil {
		ov.group.leave()
		ov.group = sub
		ov.learned.flush() // learned on the old group or address
	}
	st.flood = old.flood
	ov.state.Store(st)
	if cfg.MTU != old.cfg.MTU {
		mtuErr := &datapath.MTUError{MTU: cfg.MTU}
		for _, v := range ov.vnics.Load().byName {
			if !v.followMTU {
				continue
			}
			if err := v.dev.setMTU(cfg.MTU, v.key.mac); err != nil {
				ov.log.Warn("cannot apply the new overlay MTU to a VNIC; set it where the VNIC lives",
					"vnic", v.name, "mtu", cfg.MTU, "err", err)
				mtuErr.VNICs = append(mtuErr.VNICs, datapath.VNICMTUError{VNIC: v.name, Kept: old.cfg.MTU, Err: err})
			}
		}
		if len(mtuErr.VNICs) > 0 {
			return mtuErr
		}
	}
	return nil
}

// AddVNIC implements datapath.Overlay.
func (ov *overlay) AddVNIC(cfg datapath.VNICConfig) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if ov.closed {
		return fmt.Errorf("overlay is closed")
	}
	key := vnicKey{vlan: cfg.VLAN, mac: cfg.MAC}
	set := ov.vnics.Load()
	if other := set.byKey[key]; other != nil {
		return fmt.Errorf("MAC %s (VLAN %d) is already used by VNIC %s on this overlay", ether.Short(cfg.MAC), cfg.VLAN, other.name)
	}
	mtu := cfg.MTU
	if mtu == 0 {
		mtu = ov.state.Load().cfg.MTU
	}
	t, err := ov.dp.io.openVNIC(vnicSpec{name: cfg.Name, owner: ov.dp.owner, mac: cfg.MAC, mtu: mtu,
		persistent: cfg.Persistent, adopt: cfg.Adopt, vnet: ov.dp.offloads, queues: len(ov.ws)})
	if err != nil {
		return err
	}
	v := &vnic{ov: ov, name: cfg.Name, key: key, dev: t, vnet: t.vnetHdr(), followMTU: cfg.MTU == 0}
	v.noSpoof.Store(cfg.NoSpoof)
	ov.vnics.Store(set.with(v))
	for q, fd := range t.fds() {
		id, err := ov.ws[q].watch(fd, tapQueue{v, q})
		if err != nil {
			ov.vnics.Store(set)
			v.unwatch()
			if cfg.Adopt {
				t.close() // a guest's interface: leave it for the next try
			} else {
				t.destroy()
			}
			return err
		}
		v.ids = append(v.ids, id)
	}
	ov.log.Info("VNIC up", "vnic", cfg.Name, "mac", ether.Short(cfg.MAC), "vlan", cfg.VLAN, "mtu", cfg.MTU)
	return nil
}

// RemoveVNIC implements datapath.Overlay.
func (ov *overlay) RemoveVNIC(name string) error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	set := ov.vnics.Load()
	v := set.byName[name]
	if v == nil {
		return fmt.Errorf("no VNIC %s on this overlay", name)
	}
	ov.vnics.Store(set.without(v))
	v.unwatch()
	v.dev.destroy()
	ov.log.Info("VNIC removed", "vnic", name)
	return nil
}

// SetNoSpoof implements datapath.Overlay.
func (ov *overlay) SetNoSpoof(name string, on bool) error {
	v := ov.vnics.Load().byName[name]
	if v == nil {
		return fmt.Errorf("no VNIC %s on this overlay", name)
	}
	v.noSpoof.Store(on)
	return nil
}

// spoofed reports (and counts) a frame from src whose source MAC is not
// src's own while src is under mac-nospoof. The frame holds an Ethernet
// header.
func (ov *overlay) spoofed(src *vnic, frame []byte) bool {
	if !src.noSpoof.Load() || ether.MAC(frame[6:12]) == src.key.mac {
		return false
	}
	ov.ctr.Inc(datapath.DropSpoofed)
	return true
}

// Stats implements datapath.Overlay.
func (ov *overlay) Stats() datapath.Stats { return ov.ctr.Snapshot(datapath.OverlayCounters...) }

// Close implements datapath.Overlay.
func (ov *overlay) Close() error {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	if ov.closed {
		return nil
	}
	ov.closed = true
	for _, v := range ov.vnics.Load().byName {
		v.stop()
	}
	ov.vnics.Store(&vnicSet{})
	st := ov.state.Load()
	if ov.group != nil {
		ov.group.leave()
		ov.group = nil
	}
	ov.dp.release(st.ln, st.cfg.VNetID)
	return nil
}

func (s *vnicSet) with(v *vnic) *vnicSet {
	n := s.copyExcept(nil)
	n.byKey[v.key] = v
	n.byName[v.name] = v
	n.byVLAN[v.key.vlan] = append(n.byVLAN[v.key.vlan], v)
	return n
}

func (s *vnicSet) without(v *vnic) *vnicSet { return s.copyExcept(v) }

func (s *vnicSet) copyExcept(skip *vnic) *vnicSet {
	n := &vnicSet{byKey: map[vnicKey]*vnic{}, byName: map[string]*vnic{}, byVLAN: map[uint16][]*vnic{}}
	for _, v := range s.byName {
		if v == skip {
			continue
		}
		n.byKey[v.key] = v
		n.byName[v.name] = v
		n.byVLAN[v.key.vlan] = append(n.byVLAN[v.key.vlan], v)
	}
	return n
}

// stop lets go of the VNIC's TAP, once no worker reads it.
func (v *vnic) stop() {
	v.unwatch()
	v.dev.close()
}

func (v *vnic) unwatch() {
	for q, id := range v.ids {
		v.ov.ws[q].unwatch(id)
	}
	v.ids = nil
}

// tapQueue is one queue of a VNIC's TAP, drained by the worker of the
// same index.
type tapQueue struct {
	v *vnic
	q int
}

// drain implements source: it switches the frames the VNIC's user
// transmitted, until none is waiting or the budget is spent.
func (tq tapQueue) drain(sc *scratch, budget int) bool {
	v, q := tq.v, tq.q
	start := headroom
	if v.vnet {
		start -= offload.VnetHdrLen
	}
	for range budget {
		n, err := v.dev.read(q, sc.buf[start:])
		if err != nil {
			if err == unix.EAGAIN {
				return true
			}
			// Anything else means the interface is gone (deleted outside
			// overlayd, or its network namespace destroyed) and will not
			// come back.
			if !errors.Is(err, os.ErrClosed) {
				v.ov.log.Warn("VNIC interface is gone; its frames are no longer read (delete-vnic to clean up)", "vnic", v.name, "err", err)
			}
			return false
		}
		if !v.vnet {
			v.ov.fromVNIC(v, sc.buf, headroom, n, sc.q)
			continue
		}
		if n < offload.VnetHdrLen {
			v.ov.ctr.Inc(datapath.DropMalformed)
			continue
		}
		v.ov.fromVNICOffload(v, sc.tx, sc.buf, n-offload.VnetHdrLen)
	}
	return true
}

// fromVNIC handles the frame buf[off:off+n] transmitted by VNIC src.
func (ov *overlay) fromVNIC(src *vnic, buf []byte, off, n, q int) {
	ov.ctr.Inc(datapath.InFrames)
	ov.ctr.Add(datapath.InBytes, uint64(n))
	st := ov.state.Load()
	frame := buf[off : off+n]
	if n < ethHeaderLen {
		ov.ctr.Inc(datapath.DropMalformed)
		return
	}
	if ov.spoofed(src, frame) {
		return
	}
	if _, tagged := frameVLAN(frame); tagged {
		// A VNIC's VLAN is set by the operator, never by its user.
		ov.ctr.Inc(datapath.DropVLAN)
		return
	}
	if n > st.cfg.MTU+ethHeaderLen {
		ov.ctr.Inc(datapath.DropMTU)
		return
	}
	ov.forward(st, src, buf, off, n, src.key.vlan, q)
}

// forward switches the untagged frame buf[off:off+n], which entered the
// overlay on vlan from VNIC src (nil for a resent frame): deliver it
// locally, or encapsulate and send it, or hold it for a lookup, or hand
// it to the proxy, or drop and count it. buf has headroom before off.
func (ov *overlay) forward(st *ovState, src *vnic, buf []byte, off, n int, vlan uint16, q int) {
	frame := buf[off : off+n]
	// A multicast overlay floods to its group what a dynamic one hands
	// the proxy or holds for a lookup.
	dynamic := st.cfg.Point == nil && st.cfg.Group == nil
	unicast := isUnicast(frame)
	var kind proxy.Kind
	var proxied []byte
	if dynamic && !unicast {
		kind = proxy.Classify(frame)
		if kind == proxy.DHCPToClient {
			// A local client gets the broadcast below, as it is.
			if client, _ := proxy.ParseDHCPToClient(frame); ov.vnics.Load().byKey[vnicKey{vlan: vlan, mac: client}] != nil {
				kind = proxy.None
			}
		}
		if kind != proxy.None {
			proxied = append([]byte(nil), frame...)
		}
	}
	if vlan != 0 {
		frame = insertTag(buf, off, n, vlan)
		off -= vlanTagLen
	}
	if unicast {
		dst := ether.MAC(frame[:6])
		switch local, dest, ok := ov.unicastTo(st, vlan, dst); {
		case local != nil:
			if local != src {
				ov.deliver(local, frame, q)
				ov.ctr.Inc(datapath.LocalSwitched)
			}
		case ok:
			ov.send(st, buf, off, frame, dest)
		case len(st.flood) > 0:
			// Unknown unicast, where a flood list says who expects
			// it (EVPN): to each, as a broadcast.
			ov.sendAll(st, buf, off, frame, st.flood)
		default:
			ov.hold(st, buf, off, frame, dst, vlan)
		}
		return
	}
	for _, v := range ov.vnics.Load().byVLAN[vlan] {
		if v != src {
			ov.deliver(v, frame, q)
		}
	}
	switch {
	case st.cfg.Group != nil:
		ov.send(st, buf, off, frame, st.cfg.Group.Dest)
	case !dynamic:
		ov.send(st, buf, off, frame, *st.cfg.Point)
	case kind != proxy.None && st.cfg.Handler != nil:
		// A dynamic overlay floods only to a flood list (EVPN): the
		// proxy answers what it can, the rest stays local.
		st.cfg.Handler.Proxy(vlan, kind, proxied)
		if len(st.flood) > 0 {
			ov.sendAll(st, buf, off, frame, st.flood)
		}
	case len(st.flood) > 0:
		ov.sendAll(st, buf, off, frame, st.flood)
	}
}

// sendAll sends frame, which starts at buf[off], to every destination:
// ingress replication. The header is written in place each time, so each
// send completes before the next (they do: sends copy into the kernel).
func (ov *overlay) sendAll(st *ovState, buf []byte, off int, frame []byte, dests []encap.Dest) {
	for _, d := range dests {
		ov.send(st, buf, off, frame, d)
	}
}

// unicastTo is the switching decision for a unicast frame to dst on vlan,
// whole frames and super-frames alike: a local VNIC, or the underlay
// destination (the point, or the target table's valid entry), or
// neither, when the caller must hold the frame for a lookup (hold).
func (ov *overlay) unicastTo(st *ovState, vlan uint16, dst ether.MAC) (local *vnic, dest encap.Dest, ok bool) {
	if v := ov.vnics.Load().byKey[vnicKey{vlan: vlan, mac: dst}]; v != nil {
		return v, encap.Dest{}, false
	}
	if st.cfg.Point != nil {
		return nil, *st.cfg.Point, true
	}
	dest, ok = ov.targets.valid(dst)
	if g := st.cfg.Group; g != nil && !ok {
		// Learned, or else to the group, as unknown unicast.
		if dest, ok = ov.learned.lookup(dst, time.Now().UnixNano()); !ok {
			dest, ok = g.Dest, true
		}
	}
	return nil, dest, ok
}

// hold hands a unicast frame in overlay form, starting at buf[off], for
// a MAC without a valid entry to the target table: held while a lookup
// runs (the first one reports the miss), sent if the answer came
// meanwhile, or dropped and counted.
func (ov *overlay) hold(st *ovState, buf []byte, off int, frame []byte, dst ether.MAC, vlan uint16) {
	res, d, flushed := ov.targets.hold(dst, frame, time.Now())
	for res == missWait {
		// The answer's held frames are being sent (a bounded number):
		// this one goes after them.
		<-flushed
		res, d, flushed = ov.targets.hold(dst, frame, time.Now())
	}
	switch res {
	case missSend:
		ov.send(st, buf, off, frame, d)
	case missQueued:
	case missNewLookup:
		if st.cfg.Handler != nil {
			st.cfg.Handler.Miss(dst, vlan)
		}
	case missQueueFull:
		ov.ctr.Inc(datapath.QueueDrops)
	case missNegative:
		ov.ctr.Inc(datapath.DropNoTarget)
	case missAdminDrop:
		ov.ctr.Inc(datapath.DropAdmin)
	case missTableFull:
		ov.ctr.Inc(datapath.DropTableFull)
	case missTooMany:
		ov.ctr.Inc(datapath.DropLookups)
	}
}

// send encapsulates frame, which starts at buf[off], in place and sends it.
func (ov *overlay) send(st *ovState, buf []byte, off int, frame []byte, dest encap.Dest) {
	hl := st.cfg.Encap.HeaderLen()
	pkt := buf[off-hl : off+len(frame)]
	st.cfg.Encap.Encap(pkt[:hl], st.cfg.VNetID)
	conn := st.ln.sender(encap.FlowHash(frame))
	if err := conn.send(pkt, nil, dest.AddrPort()); err != nil {
		ov.ctr.Inc(datapath.DropSendError)
		ov.log.Debug("underlay send failed", "dest", dest.String(), "err", err)
		return
	}
	ov.ctr.Inc(datapath.Encapsulated)
	ov.ctr.Add(datapath.EncapBytes, uint64(len(pkt)))
}

// fromUnderlay delivers a decapsulated frame to the local VNICs it is
// for; TCP segments for a VNIC with offloads join rx's super-frame.
func (ov *overlay) fromUnderlay(frame []byte, rx *rxBatch, from netip.AddrPort) {
	ov.ctr.Inc(datapath.Decapsulated)
	ov.ctr.Add(datapath.DecapBytes, uint64(len(frame)))
	st := ov.state.Load()
	if len(frame) < ethHeaderLen {
		ov.ctr.Inc(datapath.DropMalformed)
		return
	}
	limit := st.cfg.MTU + ethHeaderLen
	vlan, tagged := frameVLAN(frame)
	if tagged {
		if len(frame) < ethHeaderLen+vlanTagLen {
			ov.ctr.Inc(datapath.DropMalformed)
			return
		}
		limit += vlanTagLen
	}
	if st.cfg.Group != nil && from.IsValid() {
		ov.learnFrom(st, frame, vlan, from)
	}
	if len(frame) > limit {
		ov.ctr.Inc(datapath.DropMTU)
		return
	}
	if rx != nil && !tagged && isUnicast(frame) {
		if v := ov.vnics.Load().byKey[vnicKey{mac: ether.MAC(frame[:6])}]; v != nil && v.vnet {
			if rx.add(ov, v, frame) {
				return
			}
		}
	}
	rx.flush() // keep the order of a flow's frames
	q := 0
	if rx != nil {
		q = rx.q
	}
	ov.toLocal(frame, vlan, q)
}

// toLocal delivers a frame in overlay form to the local VNICs on vlan
// that it is addressed to.
func (ov *overlay) toLocal(frame []byte, vlan uint16, q int) {
	set := ov.vnics.Load()
	if isUnicast(frame) {
		v := set.byKey[vnicKey{vlan: vlan, mac: ether.MAC(frame[:6])}]
		if v == nil {
			ov.ctr.Inc(datapath.DropNoVNIC)
			return
		}
		ov.deliver(v, frame, q)
		return
	}
	vs := set.byVLAN[vlan]
	if len(vs) == 0 {
		ov.ctr.Inc(datapath.DropNoVNIC)
		return
	}
	for _, v := range vs {
		ov.deliver(v, frame, q)
	}
}

// SetTarget implements datapath.Overlay. The held frames leave from
// here, before any newer frame to mac (see targetTable.set).
func (ov *overlay) SetTarget(mac ether.MAC, dest encap.Dest) {
	held, f := ov.targets.set(mac, dest)
	if f.e == nil {
		return
	}
	defer ov.targets.flushed(mac, f)
	st := ov.state.Load()
	for _, b := range held {
		ov.send(st, b, headroom, b[headroom:], dest)
	}
}

// SetFlood implements datapath.Flooder.
func (ov *overlay) SetFlood(dests []encap.Dest) {
	ov.mu.Lock()
	defer ov.mu.Unlock()
	st := *ov.state.Load()
	st.flood = slices.Clone(dests)
	ov.state.Store(&st)
}

// Drop implements datapath.Holder.
func (ov *overlay) Drop(mac ether.MAC, ttl time.Duration) {
	ov.ctr.Add(datapath.DropNoTarget, uint64(ov.targets.drop(mac, ttl, time.Now())))
}

// SetDrop implements datapath.DropTable.
func (ov *overlay) SetDrop(mac ether.MAC) {
	ov.ctr.Add(datapath.DropAdmin, uint64(ov.targets.setDrop(mac)))
}

// RemoveTarget implements datapath.Overlay.
func (ov *overlay) RemoveTarget(mac ether.MAC) {
	ov.targets.remove(mac)
	if ov.learned != nil {
		ov.learned.remove(mac)
	}
}

// FlushTargets implements datapath.Overlay.
func (ov *overlay) FlushTargets() {
	ov.targets.flush()
	if ov.learned != nil {
		ov.learned.flush()
	}
}

// Targets implements datapath.Overlay: a multicast overlay's learned
// destinations too.
func (ov *overlay) Targets() []datapath.Target {
	ts := ov.targets.list()
	if ov.learned != nil {
		ts = append(ts, ov.learned.list(time.Now().UnixNano())...)
	}
	return ts
}

// Inject implements datapath.FrameInjector.
func (ov *overlay) Inject(vlan uint16, frame []byte) {
	if len(frame) < ethHeaderLen {
		return
	}
	if vlan != 0 {
		b := copyWithHeadroom(frame)
		frame = insertTag(b, headroom, len(frame), vlan)
	}
	ov.toLocal(frame, vlan, 0)
}

// Resend implements datapath.FrameInjector.
func (ov *overlay) Resend(vlan uint16, frame []byte) {
	if len(frame) < ethHeaderLen {
		return
	}
	b := copyWithHeadroom(frame)
	ov.forward(ov.state.Load(), nil, b, headroom, len(frame), vlan, 0)
}

// deliver writes a frame in overlay form (tagged when it belongs to a
// VLAN) to a local VNIC, whose user sees it untagged.
func (ov *overlay) deliver(dst *vnic, frame []byte, q int) {
	switch {
	case dst.vnet:
		bp := vnetBufs.Get().(*[]byte)
		ov.write(dst, q, vnetFrame(*bp, dst, frame), len(frame))
		vnetBufs.Put(bp)
	case dst.key.vlan != 0:
		// Remove the tag in place by moving the MAC addresses, and put
		// it back afterwards: the same buffer may go to more VNICs and
		// then onto the underlay.
		var saved [16]byte
		copy(saved[:], frame[:16])
		copy(frame[4:16], saved[:12])
		ov.write(dst, q, frame[4:], len(frame))
		copy(frame[:16], saved[:])
	default:
		ov.write(dst, q, frame, len(frame))
	}
}

// write is every write to a VNIC: b as its device takes it (behind a
// virtio-net header when it has one), counted as n bytes of frame out, or
// as a drop when the device refuses it.
func (ov *overlay) write(dst *vnic, q int, b []byte, n int) {
	if err := dst.dev.write(q, b); err != nil {
		ov.ctr.Inc(datapath.DropVNICWrite)
		return
	}
	ov.ctr.Inc(datapath.OutFrames)
	ov.ctr.Add(datapath.OutBytes, uint64(n))
}
