// Package offload does in software what a NIC's offloads would: Internet
// checksums, segmenting TCP super-frames that a TAP device hands over
// with a virtio-net header (TSO), and coalescing received TCP segments
// back into super-frames (GRO). The userspace data path uses it to move
// ~64 KB per system call instead of one MTU-sized frame.
package offload

import (
	"encoding/binary"
	"math/bits"
)

// sum adds b to the running one's-complement sum as 16-bit big-endian
// words, eight bytes at a time; the caller folds.
func sum(b []byte, initial uint64) uint64 {
	ac := initial
	var carry uint64
	for len(b) >= 32 {
		ac, carry = bits.Add64(ac, uint64(binary.BigEndian.Uint32(b[0:4]))<<32|uint64(binary.BigEndian.Uint32(b[4:8])), 0)
		ac, carry = bits.Add64(ac, uint64(binary.BigEndian.Uint32(b[8:12]))<<32|uint64(binary.BigEndian.Uint32(b[12:16])), carry)
		ac, carry = bits.Add64(ac, uint64(binary.BigEndian.Uint32(b[16:20]))<<32|uint64(binary.BigEndian.Uint32(b[20:24])), carry)
		ac, carry = bits.Add64(ac, uint64(binary.BigEndian.Uint32(b[24:28]))<<32|uint64(binary.BigEndian.Uint32(b[28:32])), carry)
		ac += carry
		b = b[32:]
	}
	for len(b) >= 8 {
		ac, carry = bits.Add64(ac, binary.BigEndian.Uint64(b[:8]), 0)
		ac += carry
		b = b[8:]
	}
	for len(b) >= 2 {
		ac, carry = bits.Add64(ac, uint64(binary.BigEndian.Uint16(b[:2])), 0)
		ac += carry
		b = b[2:]
	}
	if len(b) == 1 {
		ac, carry = bits.Add64(ac, uint64(b[0])<<8, 0)
		ac += carry
	}
	return ac
}

// fold reduces a running sum to 16 bits.
func fold(ac uint64) uint16 {
	ac = (ac >> 32) + (ac & 0xffffffff)
	ac = (ac >> 32) + (ac & 0xffffffff)
	ac = (ac >> 16) + (ac & 0xffff)
	ac = (ac >> 16) + (ac & 0xffff)
	return uint16(ac)
}

// Checksum returns the Internet checksum (RFC 1071) of b with an initial
// running sum: the value to store in a header.
func Checksum(b []byte, initial uint64) uint16 { return ^fold(sum(b, initial)) }

// PseudoHeader returns the running sum of the IPv4 or IPv6 pseudo-header
// for a transport segment of length n.
func PseudoHeader(proto byte, src, dst []byte, n int) uint64 {
	ac := sum(src, 0)
	ac = sum(dst, ac)
	return ac + uint64(proto) + uint64(n)
}

// Fold returns the folded (not complemented) 16-bit value of a running
// sum, as a partial checksum field holds it.
func Fold(ac uint64) uint16 { return fold(ac) }
