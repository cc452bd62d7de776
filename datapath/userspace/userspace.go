// Package userspace is the data path that moves frames in Go: each VNIC is
// a TAP device, each underlay listen address a UDP socket (plus a few
// send sockets for source-port spreading), one queue or socket of each
// per worker thread (worker.go). Frames between local VNICs are switched
// here; others are encapsulated and sent to the destination the search
// plugin gave.
package userspace

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/underlayns"
)

// DataPath is the userspace data path.
type DataPath struct {
	io       ioSystem
	log      *slog.Logger
	offloads bool
	batch    bool
	owner    string

	mu        sync.Mutex
	listeners map[lnKey]*listener
	nworkers  int
	ws        []*worker // started with the first overlay
}

// Options tune the userspace data path.
type Options struct {
	// Offloads moves TCP in ~64 KB super-frames instead of MTU-sized
	// frames: TAPs with a virtio-net header and TSO, UDP GSO to send, UDP
	// GRO to receive (offload.go). Off, every frame costs system calls
	// of its own; peers see the same packets either way.
	Offloads bool
	// Sched is the scheduling policy of the worker threads that move
	// the frames: "batch" (SCHED_BATCH) or "normal" (SCHED_OTHER). A
	// batch thread woken by a packet does not preempt the task running
	// on its CPU, it waits for that task's turn to end or for another
	// CPU: fewer context switches per packet, so more throughput when
	// the CPUs are busy (a tenth more for one TCP stream on two vCPUs),
	// for some latency then (a fifth more round trip under load, measured). On an
	// idle CPU both run at once.
	Sched string
	// Workers is the number of worker threads (at least one). Each
	// takes one queue of every TAP (IFF_MULTI_QUEUE; a single-queue TAP
	// from an earlier run is the first worker's) and one of every listen
	// address's sockets (SO_REUSEPORT); the kernel keeps each flow, both
	// ways, on one worker. More workers carry more flows at
	// once on hosts with the cores for them; one flow never goes faster.
	Workers int
	// Owner tags the persistent TAPs this data path makes (their
	// interface alias) and is the tag it looks for when it takes one
	// over after a restart: overlayd gives the identity of its state
	// directory, so that it never takes over another overlayd's VNIC of
	// the same name. Empty, TAPs carry no tag, as before there was one.
	Owner string
}

// Scheduling policies for Options.Sched.
const (
	SchedBatch  = "batch"
	SchedNormal = "normal"
)

// New returns a userspace data path.
func New(log *slog.Logger, o Options) *DataPath {
	return newWithIO(log, o, hostIO{})
}

// newWithIO returns a userspace data path on the given devices and
// sockets (tests: in memory).
func newWithIO(log *slog.Logger, o Options, io ioSystem) *DataPath {
	return &DataPath{io: io, log: log, offloads: o.Offloads, batch: o.Sched != SchedNormal, nworkers: max(o.Workers, 1), owner: o.Owner, listeners: map[lnKey]*listener{}}
}

// Name is this data path's name, the value of the datapath property.
const Name = "userspace"

func init() {
	datapath.Register(datapath.Driver{Name: Name,
		Help: "frames moved in Go: a TAP device per VNIC, UDP (or raw IP, NVGRE) sockets on the underlay, proxy ARP/NDP/DHCP, TCP offloads",
		New: func(env datapath.Env) (datapath.DataPath, error) {
			return New(env.Log.With("datapath", Name), Options{Offloads: env.Offloads, Sched: env.Sched, Workers: env.Workers, Owner: env.Owner}), nil
		}})
}

var (
	_ datapath.DataPath      = (*DataPath)(nil)
	_ io.Closer              = (*DataPath)(nil)
	_ datapath.Holder        = (*overlay)(nil)
	_ datapath.DropTable     = (*overlay)(nil)
	_ datapath.FrameInjector = (*overlay)(nil)
)

// lnKey is what a listener is found by: a listen address in an underlay
// network namespace (its path, "" for overlayd's own).
type lnKey struct {
	ns   string
	addr netip.AddrPort
}

// listener is one underlay listen address, shared by every overlay that
// listens there; overlays are told apart by VNI.
type listener struct {
	key     lnKey
	addr    netip.AddrPort
	encap   encap.Codec
	conns   []underlaySocket // one per worker
	ids     []int32          // of conns, in the workers' sets
	senders []underlaySocket
	// byVNI is replaced, never modified, so the workers read it
	// without a lock.
	byVNI atomic.Pointer[map[uint32]*overlay]
	refs  int // guarded by DataPath.mu
	ctr   datapath.Counters
	log   *slog.Logger
}

// startWorkers starts the data path's workers unless they run. The
// caller holds dp.mu.
func (dp *DataPath) startWorkers() error {
	for len(dp.ws) < dp.nworkers {
		w, err := newWorker(dp.log.With("worker", len(dp.ws)), len(dp.ws), dp.batch)
		if err != nil {
			return err
		}
		dp.ws = append(dp.ws, w)
	}
	return nil
}

// acquire returns the listener for addr, binding it if needed, with the
// overlay registered under vni.
func (dp *DataPath) acquire(ns *underlayns.NS, addr netip.AddrPort, enc encap.Codec, vni uint32, ov *overlay) (*listener, error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	key := lnKey{ns.Path(), addr}
	ln := dp.listeners[key]
	if err := dp.startWorkers(); err != nil {
		return nil, err
	}
	if ov.ws == nil {
		ov.ws = dp.ws // before the overlay is visible to the workers
	}
	if ln == nil {
		log := dp.log.With("listen", addr.String())
		if ns != nil {
			log = log.With("netns", ns.Path())
		}
		ln = &listener{key: key, addr: addr, encap: enc, log: log}
		if ipp, ok := enc.(encap.IPProtocol); ok {
			// Straight over IP: one raw socket receives and sends.
			raw, err := dp.io.listenRaw(ns, addr.Addr(), ipp.IPProto())
			if err != nil {
				return nil, err
			}
			ln.conns, ln.senders = []underlaySocket{raw}, []underlaySocket{raw}
		} else {
			conns, err := dp.io.listen(ns, addr, dp.offloads, len(dp.ws))
			if err != nil {
				return nil, err
			}
			ln.conns = conns
			if ln.senders, err = dp.io.senders(ns, addr.Addr()); err != nil {
				ln.closeSockets()
				return nil, err
			}
		}
		conns := ln.conns
		ln.byVNI.Store(&map[uint32]*overlay{})
		for q, c := range conns {
			if c.fd() < 0 {
				ln.ids = append(ln.ids, 0) // drained by hand (a fake)
				continue
			}
			id, err := dp.ws[q].watch(c.fd(), lnQueue{ln, q})
			if err != nil {
				dp.unwatch(ln)
				ln.closeSockets()
				return nil, err
			}
			ln.ids = append(ln.ids, id)
		}
		dp.listeners[key] = ln
		ln.log.Info("listening on the underlay")
	}
	if ln.encap.Name() != enc.Name() {
		return nil, fmt.Errorf("%s is already used by the %s encapsulation", addr, ln.encap.Name())
	}
	m := *ln.byVNI.Load()
	if other := m[vni]; other != nil && other != ov {
		return nil, fmt.Errorf("vnetid %d is already carried on %s by overlay %s", vni, addr, other.name())
	}
	next := make(map[uint32]*overlay, len(m)+1)
	for k, v := range m {
		next[k] = v
	}
	next[vni] = ov
	ln.byVNI.Store(&next)
	ln.refs++
	return ln, nil
}

// release unregisters vni from the listener and closes it when no overlay
// uses it any more.
func (dp *DataPath) release(ln *listener, vni uint32) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	m := *ln.byVNI.Load()
	next := make(map[uint32]*overlay, len(m))
	for k, v := range m {
		if k != vni {
			next[k] = v
		}
	}
	ln.byVNI.Store(&next)
	ln.refs--
	if ln.refs > 0 {
		return
	}
	delete(dp.listeners, ln.key)
	dp.unwatch(ln)
	ln.closeSockets()
	ln.log.Info("stopped listening on the underlay")
}

// unwatch takes the listener's sockets out of the workers' sets.
func (dp *DataPath) unwatch(ln *listener) {
	for q, id := range ln.ids {
		dp.ws[q].unwatch(id)
	}
	ln.ids = nil
}

func (ln *listener) closeSockets() {
	for _, s := range ln.conns {
		s.close()
	}
	for _, s := range ln.senders {
		s.close()
	}
}

// lnQueue is one of a listener's receive sockets, drained by the worker
// of the same index.
type lnQueue struct {
	ln *listener
	q  int
}

func (lq lnQueue) drain(sc *scratch, budget int) bool {
	return lq.ln.drain(lq.ln.conns[lq.q], sc, budget)
}

// sender returns the send socket for a flow hash.
func (ln *listener) sender(hash uint32) underlaySocket {
	return ln.senders[hash%uint32(len(ln.senders))]
}

// drain reads underlay datagrams from conn until none is
// waiting or the budget is spent.
func (ln *listener) drain(conn underlaySocket, sc *scratch, budget int) bool {
	return ln.drainTo(conn, sc, budget, nil)
}

// drainTo is drain, handing each packet to the overlay of its VNI; or,
// with only set (a multicast overlay's group socket), to only, skipping
// other VNIs' (their overlays' own group sockets get them).
func (ln *listener) drainTo(conn underlaySocket, sc *scratch, budget int, only *overlay) bool {
	// With UDP GRO one read returns a run of datagrams of one size (the
	// last may be shorter), coalesced by the kernel.
	defer sc.rx.flush()
	for range budget {
		n, oobn, err := conn.recv(&sc.msg, sc.buf, sc.oob)
		if err != nil {
			if err == unix.EAGAIN {
				return true
			}
			if errors.Is(err, os.ErrClosed) {
				return false
			}
			ln.log.Warn("underlay receive failed", "err", err)
			return true
		}
		from := sc.msg.source()
		if n == 0 && only == nil {
			ln.packet(sc.buf[:0], sc.rx, from) // counted short
			continue
		}
		seg := groSize(sc.oob[:oobn])
		if seg <= 0 {
			seg = n
		}
		for off := 0; off < n; off += seg {
			if only != nil {
				only.fromGroup(sc.buf[off:min(off+seg, n)], sc.rx, from)
				continue
			}
			ln.packet(sc.buf[off:min(off+seg, n)], sc.rx, from)
		}
	}
	return true
}

// packet handles one underlay datagram, from the underlay address from
// (invalid when unknown).
func (ln *listener) packet(pkt []byte, rx *rxBatch, from netip.AddrPort) {
	ln.ctr.Inc(datapath.Decapsulated)
	ln.ctr.Add(datapath.DecapBytes, uint64(len(pkt)))
	vni, inner, err := ln.encap.Decap(pkt)
	if err != nil {
		ln.countBad(pkt, err)
		return
	}
	ov := (*ln.byVNI.Load())[vni]
	if ov == nil {
		ln.ctr.Inc(datapath.DropUnknownVNI)
		return
	}
	ov.fromUnderlay(inner, rx, from)
}

// countBad counts a packet whose header Decap refused, by reason.
func (ln *listener) countBad(pkt []byte, err error) {
	switch {
	case len(pkt) < ln.encap.HeaderLen():
		ln.ctr.Inc(datapath.DropShort)
	case errors.Is(err, encap.ErrCritical):
		ln.ctr.Inc(datapath.DropCritical)
	default:
		ln.ctr.Inc(datapath.DropBadHeader)
	}
}

// Listeners implements datapath.DataPath.
func (dp *DataPath) Listeners() []datapath.Listener {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	var out []datapath.Listener
	for key, ln := range dp.listeners {
		l := datapath.Listener{Addr: key.addr, NetNS: key.ns, Stats: ln.ctr.Snapshot(datapath.ListenerCounters...)}
		for _, ov := range *ln.byVNI.Load() {
			l.Overlays = append(l.Overlays, ov.name())
		}
		out = append(out, l)
	}
	return out
}

// Close stops the workers and the listeners. Overlays should be closed first;
// Close only stops listeners they left behind.
func (dp *DataPath) Close() error {
	dp.mu.Lock()
	lns := dp.listeners
	dp.listeners = map[lnKey]*listener{}
	dp.mu.Unlock()
	for _, ln := range lns {
		dp.unwatch(ln)
		ln.closeSockets()
	}
	dp.mu.Lock()
	ws := dp.ws
	dp.ws = nil
	dp.mu.Unlock()
	for _, w := range ws {
		w.stop()
	}
	return nil
}
