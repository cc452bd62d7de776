package userspace

import (
	"sync"

	"golang.org/x/sys/unix"

	"overlaynet/datapath"
	"overlaynet/datapath/offload"
	"overlaynet/encap"
	"overlaynet/ether"
)

// This file is the offload side of the data path: TCP super-frames read
// from a TAP (TSO) leave as one UDP GSO send, and runs of received TCP
// segments (UDP GRO) reach a TAP as one super-frame.

// Bounds of one UDP GSO send: a UDP datagram, even a super one, has a
// 16-bit length, and older kernels take at most 64 segments.
const (
	maxGSOSend     = 65000
	maxGSOSegments = 64
)

// txScratch is the working space for frames read from VNICs.
type txScratch struct {
	q    int    // the worker's index: the TAP queue it writes into
	segs []byte // segments of a super-frame, each behind its headroom
	oob  [64]byte
}

func newTxScratch(q int) *txScratch { return &txScratch{q: q, segs: make([]byte, 2*maxFrame)} }

// fromVNICOffload handles a frame read with its virtio-net header, which
// sits right before buf[headroom].
func (ov *overlay) fromVNICOffload(src *vnic, tx *txScratch, buf []byte, n int) {
	h := offload.DecodeVnetHdr(buf[headroom-offload.VnetHdrLen:])
	frame := buf[headroom : headroom+n]
	if h.GSOType == offload.GSONone {
		if h.Flags&offload.FlagNeedsCsum != 0 {
			if err := offload.FinishChecksum(frame, h); err != nil {
				ov.ctr.Inc(datapath.DropMalformed)
				return
			}
		}
		ov.fromVNIC(src, buf, headroom, n, tx.q)
		return
	}
	ov.ctr.Inc(datapath.InFrames)
	ov.ctr.Add(datapath.InBytes, uint64(n))
	st := ov.state.Load()
	if drop, ok := admitSuper(frame, h, st.cfg.MTU); !ok {
		ov.ctr.Inc(drop)
		return
	}
	// Every segment carries the super-frame's source MAC: one check.
	if ov.spoofed(src, frame) {
		return
	}
	local, dest, ok := ov.unicastTo(st, src.key.vlan, ether.MAC(frame[:6]))
	if local != nil {
		if local != src {
			ov.deliverSuper(local, buf[headroom-offload.VnetHdrLen:headroom+n], frame, h, tx)
			ov.ctr.Inc(datapath.LocalSwitched)
		}
		return
	}
	if !ok {
		// No destination yet: frame by frame through the ordinary path,
		// which holds them for the lookup.
		ov.segmentSlow(st, src, tx, frame, h)
		return
	}
	hl := st.cfg.Encap.HeaderLen()
	slot, total, nseg, err := offload.SegmentTCP(tx.segs, frame, h, hl, src.key.vlan)
	if err != nil {
		ov.ctr.Inc(datapath.DropMalformed)
		return
	}
	for off := 0; off < total; off += slot {
		st.cfg.Encap.Encap(tx.segs[off:off+hl], st.cfg.VNetID)
	}
	conn := st.ln.sender(encap.FlowHash(tx.segs[hl:slot]))
	per := min(max(maxGSOSend/slot, 1), maxGSOSegments) * slot
	for off := 0; off < total; off += per {
		chunk := tx.segs[off:min(off+per, total)]
		var oob []byte
		if len(chunk) > slot {
			oob = gsoOOB(tx.oob[:], slot)
		}
		err := conn.send(chunk, oob, dest.AddrPort())
		if err == unix.EINVAL && oob != nil {
			// The kernel refused the GSO send (a segment above the path
			// MTU, say): one datagram at a time, as without offloads.
			err = nil
			for o := 0; o < len(chunk); o += slot {
				if e := conn.send(chunk[o:min(o+slot, len(chunk))], nil, dest.AddrPort()); e != nil {
					err = e
				}
			}
		}
		if err != nil {
			ov.ctr.Add(datapath.DropSendError, uint64((len(chunk)+slot-1)/slot))
			ov.log.Debug("underlay send failed", "dest", dest.String(), "err", err)
		}
	}
	ov.ctr.Add(datapath.Encapsulated, uint64(nseg))
	ov.ctr.Add(datapath.EncapBytes, uint64(total))
}

// admitSuper decides whether a guest's TCP super-frame may be segmented
// and sent: it must be TCP over IPv4 or IPv6 as its GSO type says, and
// each segment it makes (IP and TCP headers and GSOSize bytes of payload)
// must fit the overlay MTU. On refusal it returns the counter to bump.
func admitSuper(frame []byte, h offload.VnetHdr, mtu int) (datapath.Counter, bool) {
	hdrLen, ok := offload.TCPHeaderLen(frame)
	if !ok || h.GSOType&^offload.GSOECN != offload.GSOTCPv4 && h.GSOType&^offload.GSOECN != offload.GSOTCPv6 {
		return datapath.DropMalformed, false
	}
	// hdr_len from a TAP is only a hint: measure the headers.
	if hdrLen-ethHeaderLen+int(h.GSOSize) > mtu {
		return datapath.DropMTU, false
	}
	return 0, true
}

// segmentSlow cuts a super-frame into frames and forwards each alone.
func (ov *overlay) segmentSlow(st *ovState, src *vnic, tx *txScratch, frame []byte, h offload.VnetHdr) {
	slot, total, _, err := offload.SegmentTCP(tx.segs, frame, h, headroom, 0)
	if err != nil {
		ov.ctr.Inc(datapath.DropMalformed)
		return
	}
	for off := 0; off < total; off += slot {
		end := min(off+slot, total)
		ov.forward(st, src, tx.segs[off:end], headroom, end-off-headroom, src.key.vlan, tx.q)
	}
}

// deliverSuper writes a super-frame to a local VNIC: as it is when that
// VNIC takes offloads, else segment by segment.
func (ov *overlay) deliverSuper(dst *vnic, withHdr, frame []byte, h offload.VnetHdr, tx *txScratch) {
	if dst.vnet {
		ov.write(dst, tx.q, withHdr, len(frame))
		return
	}
	slot, total, _, err := offload.SegmentTCP(tx.segs, frame, h, 0, 0)
	if err != nil {
		ov.ctr.Inc(datapath.DropMalformed)
		return
	}
	for off := 0; off < total; off += slot {
		ov.deliver(dst, tx.segs[off:min(off+slot, total)], tx.q)
	}
}

// vnetBufs are scratch buffers for writing one frame behind a virtio-net
// header to a TAP.
var vnetBufs = sync.Pool{New: func() any { b := make([]byte, offload.VnetHdrLen+maxFrame); return &b }}

// vnetFrame puts a frame in overlay form as a VNIC that takes offloads
// takes it, into b: behind an empty virtio-net header, without its VLAN
// tag.
func vnetFrame(b []byte, dst *vnic, frame []byte) []byte {
	clear(b[:offload.VnetHdrLen])
	n := offload.VnetHdrLen
	if dst.key.vlan != 0 && len(frame) >= ethHeaderLen+vlanTagLen {
		n += copy(b[n:], frame[:12])
		n += copy(b[n:], frame[16:])
	} else {
		n += copy(b[n:], frame)
	}
	return b[:n]
}

// rxBatch is a worker's run of received TCP segments being merged for one
// VNIC.
type rxBatch struct {
	q   int // the worker's index: the TAP queue it writes into
	c   *offload.Coalescer
	ov  *overlay
	dst *vnic
}

// add offers a segment for dst; false when it must go alone.
func (rx *rxBatch) add(ov *overlay, dst *vnic, frame []byte) bool {
	if rx.dst != dst {
		rx.flush()
	}
	if rx.c.Add(frame) {
		rx.ov, rx.dst = ov, dst
		return true
	}
	rx.flush()
	if rx.c.Add(frame) {
		rx.ov, rx.dst = ov, dst
		return true
	}
	return false
}

// flush writes what is held.
func (rx *rxBatch) flush() {
	if rx == nil || rx.c.Pending() == 0 {
		return
	}
	b := rx.c.Flush()
	rx.ov.write(rx.dst, rx.q, b, len(b)-offload.VnetHdrLen)
	rx.dst, rx.ov = nil, nil
}
