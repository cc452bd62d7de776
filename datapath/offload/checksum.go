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

// sum adds b to the running one's-complement sum of 16-bit big-endian
// words; the caller folds. The words are read as little-endian 64-bit
// loads, with no byte swapping in the loop: one's-complement addition
// commutes with swapping, so the folded total is swapped once. That runs
// about twice as fast as reading big-endian words.
func sum(b []byte, initial uint64) uint64 {
	return initial + uint64(bits.ReverseBytes16(sumLE(b)))
}

// sumLE is the one's-complement sum of b read as little-endian words,
// folded to 16 bits.
func sumLE(b []byte) uint16 {
	var ac, c uint64
	for len(b) >= 64 {
		_ = b[63]
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[0:]), 0)
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[8:]), c)
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[16:]), c)
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[24:]), c)
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[32:]), c)
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[40:]), c)
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[48:]), c)
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b[56:]), c)
		ac += c
		b = b[64:]
	}
	for len(b) >= 8 {
		ac, c = bits.Add64(ac, binary.LittleEndian.Uint64(b), 0)
		ac += c
		b = b[8:]
	}
	// The last 0-7 bytes, as a zero-padded little-endian word.
	var tail uint64
	for i := len(b) - 1; i >= 0; i-- {
		tail = tail<<8 | uint64(b[i])
	}
	ac, c = bits.Add64(ac, tail, 0)
	return fold(ac + c)
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
