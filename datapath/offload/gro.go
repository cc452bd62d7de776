package offload

import (
	"bytes"
	"encoding/binary"
)

// maxSuper bounds a coalesced frame: the IP total length is 16 bits.
const maxSuper = 65535

// Coalescer merges consecutive TCP segments of one flow, as they come out
// of a batch of decapsulated packets, into one super-frame with a
// virtio-net GSO header, so that a TAP write carries ~64 KB instead of one
// segment. Segments are checked (TCP checksum) before they are merged.
type Coalescer struct {
	buf    []byte // virtio-net header, then the super-frame
	n      int    // bytes of frame in buf after the header
	count  int
	t      tcpFrame
	mss    int
	next   uint32 // sequence number the next segment must have
	full   bool   // every segment so far carried mss bytes
	closed bool   // the last segment ended the run (PSH, short)
}

// NewCoalescer returns a coalescer with room for a maximal super-frame.
func NewCoalescer() *Coalescer {
	return &Coalescer{buf: make([]byte, VnetHdrLen+maxSuper+ethLen)}
}

// Pending reports how many segments are held.
func (c *Coalescer) Pending() int { return c.count }

// Add offers an untagged Ethernet frame. It returns false when the frame
// cannot join what is held (another flow, a gap, not plain TCP data, a bad
// checksum, no room): the caller then flushes and delivers the frame some
// other way (or Adds it again to start a new run).
func (c *Coalescer) Add(f []byte) bool {
	t, ok := parseTCP(f)
	if !ok {
		return false
	}
	payload := len(f) - t.hdrLen
	flags := f[t.tcpOff+13]
	if payload == 0 || flags&^(tcpACK|tcpPSH) != 0 || flags&tcpACK == 0 {
		return false
	}
	if !t.v6 && int(binary.BigEndian.Uint16(f[t.ipOff+2:])) != len(f)-ethLen {
		return false // padding or a lie: leave it to the kernel
	}
	if t.v6 && int(binary.BigEndian.Uint16(f[t.ipOff+4:])) != len(f)-ethLen-ipv6HdrLen {
		return false
	}
	src, dst := t.addrs(f)
	tcpLen := len(f) - t.tcpOff
	if Checksum(f[t.tcpOff:], PseudoHeader(protoTCP, src, dst, tcpLen)) != 0 {
		return false
	}
	seq := binary.BigEndian.Uint32(f[t.tcpOff+4:])
	if c.count == 0 {
		if len(f) > len(c.buf)-VnetHdrLen {
			return false
		}
		copy(c.buf[VnetHdrLen:], f)
		c.n, c.count, c.t, c.mss = len(f), 1, t, payload
		c.next = seq + uint32(payload)
		c.full, c.closed = true, flags&tcpPSH != 0
		return true
	}
	if c.closed || !c.full || payload > c.mss || t != c.t || seq != c.next ||
		c.n+payload > maxSuper || !c.sameFlow(f) {
		return false
	}
	copy(c.buf[VnetHdrLen+c.n:], f[t.hdrLen:])
	c.n += payload
	c.count++
	c.next += uint32(payload)
	if payload < c.mss {
		c.full = false
	}
	if flags&tcpPSH != 0 {
		c.closed = true
		c.buf[VnetHdrLen+t.tcpOff+13] |= tcpPSH
	}
	return true
}

// sameFlow compares everything in the headers that must match: Ethernet,
// IP but for length, id and checksum, TCP ports, ack, the reserved bits
// and AE (ex-NS) flag beside the data offset, window, urgent pointer and
// options. The urgent pointer means nothing without URG (which
// never coalesces), but a merge must not change what the guest receives,
// and a segment whose pointer differed would come out of the merge with
// the first one's.
func (c *Coalescer) sameFlow(f []byte) bool {
	h := c.buf[VnetHdrLen:]
	t := c.t
	if !bytes.Equal(h[:ethLen], f[:ethLen]) {
		return false
	}
	ip, fip := h[t.ipOff:t.tcpOff], f[t.ipOff:t.tcpOff]
	if t.v6 {
		if !bytes.Equal(ip[:4], fip[:4]) || !bytes.Equal(ip[6:], fip[6:]) {
			return false
		}
	} else if ip[0] != fip[0] || ip[1] != fip[1] || !bytes.Equal(ip[6:10], fip[6:10]) || !bytes.Equal(ip[12:], fip[12:]) {
		return false
	}
	tcp, ftcp := h[t.tcpOff:t.hdrLen], f[t.tcpOff:t.hdrLen]
	return bytes.Equal(tcp[0:4], ftcp[0:4]) && bytes.Equal(tcp[8:13], ftcp[8:13]) &&
		bytes.Equal(tcp[14:16], ftcp[14:16]) && bytes.Equal(tcp[18:], ftcp[18:])
}

// Flush returns what is held, virtio-net header first, ready for one TAP
// write, and empties the coalescer. A single segment goes out as it came
// (checksum verified); several go out as one GSO super-frame whose TCP
// checksum is left partial for the kernel.
func (c *Coalescer) Flush() []byte {
	if c.count == 0 {
		return nil
	}
	out := c.buf[:VnetHdrLen+c.n]
	f := out[VnetHdrLen:]
	t := c.t
	var h VnetHdr
	if c.count == 1 {
		h.Flags = FlagDataValid
	} else {
		tcpLen := c.n - t.tcpOff
		ip := f[t.ipOff:]
		if t.v6 {
			binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen))
			h.GSOType = GSOTCPv6
		} else {
			binary.BigEndian.PutUint16(ip[2:], uint16(t.ipLen+tcpLen))
			binary.BigEndian.PutUint16(ip[10:], 0)
			binary.BigEndian.PutUint16(ip[10:], Checksum(ip[:t.ipLen], 0))
			h.GSOType = GSOTCPv4
		}
		src, dst := t.addrs(f)
		binary.BigEndian.PutUint16(f[t.tcpOff+16:], Fold(PseudoHeader(protoTCP, src, dst, tcpLen)))
		h.Flags = FlagNeedsCsum
		h.HdrLen = uint16(t.hdrLen)
		h.GSOSize = uint16(c.mss)
		h.CsumStart = uint16(t.tcpOff)
		h.CsumOffset = 16
	}
	h.Encode(out)
	c.count, c.n = 0, 0
	return out
}
