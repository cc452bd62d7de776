package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// VnetHdrLen is the size of the virtio-net header in front of every frame
// on a TAP opened with IFF_VNET_HDR.
const VnetHdrLen = 10

// virtio-net header values.
const (
	FlagNeedsCsum = 1 // the checksum at CsumStart+CsumOffset is partial
	FlagDataValid = 2 // the checksum was verified

	GSONone  = 0
	GSOTCPv4 = 1
	GSOUDP   = 3
	GSOTCPv6 = 4
	GSOECN   = 0x80
)

// VnetHdr is the virtio-net header (struct virtio_net_hdr), in the host's
// byte order as the TAP device uses it.
type VnetHdr struct {
	Flags      uint8
	GSOType    uint8
	HdrLen     uint16
	GSOSize    uint16
	CsumStart  uint16
	CsumOffset uint16
}

// DecodeVnetHdr reads a header.
func DecodeVnetHdr(b []byte) VnetHdr {
	_ = b[9]
	return VnetHdr{Flags: b[0], GSOType: b[1],
		HdrLen: binary.LittleEndian.Uint16(b[2:]), GSOSize: binary.LittleEndian.Uint16(b[4:]),
		CsumStart: binary.LittleEndian.Uint16(b[6:]), CsumOffset: binary.LittleEndian.Uint16(b[8:])}
}

// Encode writes the header into b[:10].
func (h VnetHdr) Encode(b []byte) {
	_ = b[9]
	b[0], b[1] = h.Flags, h.GSOType
	binary.LittleEndian.PutUint16(b[2:], h.HdrLen)
	binary.LittleEndian.PutUint16(b[4:], h.GSOSize)
	binary.LittleEndian.PutUint16(b[6:], h.CsumStart)
	binary.LittleEndian.PutUint16(b[8:], h.CsumOffset)
}

// ErrMalformed is returned for frames whose headers do not hold together.
var ErrMalformed = errors.New("malformed frame")

// FinishChecksum completes the partial checksum of a frame whose header
// has FlagNeedsCsum: the checksum field then holds the pseudo-header sum,
// and the rest is summed here.
func FinishChecksum(f []byte, h VnetHdr) error {
	start, off := int(h.CsumStart), int(h.CsumOffset)
	if start > len(f) || start+off+2 > len(f) {
		return fmt.Errorf("%w: checksum at %d+%d past the frame's %d bytes", ErrMalformed, start, off, len(f))
	}
	initial := uint64(binary.BigEndian.Uint16(f[start+off:]))
	binary.BigEndian.PutUint16(f[start+off:], 0)
	c := Checksum(f[start:], initial)
	if c == 0 {
		// As the kernel does: 0 means "no checksum" to UDP over IPv4 and
		// is invalid over IPv6; 0xffff is the same value in one's
		// complement.
		c = 0xffff
	}
	binary.BigEndian.PutUint16(f[start+off:], c)
	return nil
}
