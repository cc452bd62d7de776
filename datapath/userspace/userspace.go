// Package userspace is the data path that moves frames in Go: each VNIC is
// a TAP device, each underlay listen address one UDP socket (plus a few
// send sockets for source-port spreading). Frames between local VNICs are
// switched here; others are encapsulated and sent to the destination the
// search plugin gave.
package userspace

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"overlaynet/datapath"
	"overlaynet/datapath/offload"
	"overlaynet/encap"
)

// DataPath is the userspace data path.
type DataPath struct {
	log      *slog.Logger
	offloads bool

	mu        sync.Mutex
	listeners map[netip.AddrPort]*listener
}

// Options tune the userspace data path.
type Options struct {
	// Offloads moves TCP in ~64 KB super-frames instead of MTU-sized
	// frames: TAPs with a virtio-net header and TSO, UDP GSO to send, UDP
	// GRO to receive (offload.go). Off, every frame costs system calls
	// of its own; peers see the same packets either way.
	Offloads bool
}

// New returns a userspace data path.
func New(log *slog.Logger, o Options) *DataPath {
	return &DataPath{log: log, offloads: o.Offloads, listeners: map[netip.AddrPort]*listener{}}
}

var _ datapath.DataPath = (*DataPath)(nil)

// listener is one underlay listen address, shared by every overlay that
// listens there; overlays are told apart by VNI.
type listener struct {
	addr    netip.AddrPort
	encap   encap.Plugin
	conn    *net.UDPConn
	senders []*net.UDPConn
	// byVNI is replaced, never modified, so the receive loop reads it
	// without a lock.
	byVNI atomic.Pointer[map[uint32]*overlay]
	refs  int // guarded by DataPath.mu
	ctr   datapath.Counters
	done  chan struct{}
	log   *slog.Logger
}

// acquire returns the listener for addr, binding it if needed, with the
// overlay registered under vni.
func (dp *DataPath) acquire(addr netip.AddrPort, enc encap.Plugin, vni uint32, ov *overlay) (*listener, error) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	ln := dp.listeners[addr]
	if ln == nil {
		conn, err := listenUDP(addr, dp.offloads)
		if err != nil {
			return nil, err
		}
		senders, err := openSenders(addr.Addr())
		if err != nil {
			conn.Close()
			return nil, err
		}
		ln = &listener{addr: addr, encap: enc, conn: conn, senders: senders,
			done: make(chan struct{}), log: dp.log.With("listen", addr.String())}
		ln.byVNI.Store(&map[uint32]*overlay{})
		dp.listeners[addr] = ln
		go ln.receive()
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
	delete(dp.listeners, ln.addr)
	ln.conn.Close()
	for _, s := range ln.senders {
		s.Close()
	}
	<-ln.done
	ln.log.Info("stopped listening on the underlay")
}

// sender returns the send socket for a flow hash.
func (ln *listener) sender(hash uint32) *net.UDPConn {
	return ln.senders[hash%uint32(len(ln.senders))]
}

// receive reads underlay packets until the socket is closed.
func (ln *listener) receive() {
	defer close(ln.done)
	// With UDP GRO one read returns a run of datagrams of one size (the
	// last may be shorter), coalesced by the kernel.
	buf := make([]byte, 2*maxFrame)
	oob := make([]byte, 64)
	rx := &rxBatch{c: offload.NewCoalescer()}
	for {
		n, oobn, _, _, err := ln.conn.ReadMsgUDPAddrPort(buf, oob)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			ln.log.Warn("underlay receive failed", "err", err)
			continue
		}
		seg := groSize(oob[:oobn])
		if seg <= 0 {
			seg = n
		}
		for off := 0; off < n; off += seg {
			ln.packet(buf[off:min(off+seg, n)], rx)
		}
		rx.flush()
	}
}

// packet handles one underlay datagram.
func (ln *listener) packet(pkt []byte, rx *rxBatch) {
	ln.ctr.Inc(datapath.Decapsulated)
	ln.ctr.Add(datapath.DecapBytes, uint64(len(pkt)))
	vni, inner, err := ln.encap.Decap(pkt)
	if err != nil {
		if len(pkt) < ln.encap.HeaderLen() {
			ln.ctr.Inc(datapath.DropShort)
		} else {
			ln.ctr.Inc(datapath.DropBadHeader)
		}
		return
	}
	ov := (*ln.byVNI.Load())[vni]
	if ov == nil {
		ln.ctr.Inc(datapath.DropUnknownVNI)
		return
	}
	ov.fromUnderlay(inner, rx)
}

// Listeners implements datapath.DataPath.
func (dp *DataPath) Listeners() []datapath.Listener {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	var out []datapath.Listener
	for addr, ln := range dp.listeners {
		l := datapath.Listener{Addr: addr, Stats: ln.ctr.Snapshot(datapath.ListenerCounters...)}
		for _, ov := range *ln.byVNI.Load() {
			l.Overlays = append(l.Overlays, ov.name())
		}
		out = append(out, l)
	}
	return out
}

// Close implements datapath.DataPath. Overlays should be closed first;
// Close only stops listeners they left behind.
func (dp *DataPath) Close() error {
	dp.mu.Lock()
	lns := dp.listeners
	dp.listeners = map[netip.AddrPort]*listener{}
	dp.mu.Unlock()
	for _, ln := range lns {
		ln.conn.Close()
		for _, s := range ln.senders {
			s.Close()
		}
		<-ln.done
	}
	return nil
}
