package index

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"

	"overlaynet/ether"
)

// table is a hash table of pointer-free slots: 256 segments, chosen by
// the top byte of the hash, each an open-addressing table (linear
// probing, deletion by backward shift, so no tombstones) over one flat
// slice. It exists because a Go map holds its slots in tables of up to
// 1024 that split in two when full, so that a million entries may sit at
// under half load: a segment is kept between maxLoad/growBy and maxLoad
// full (and set to fitLoad after a bulk load), its capacity need not be a
// power of two, and it grows alone, so growing needs memory for one
// segment twice, not the whole table. That halves the index's memory. It
// is not safe for concurrent writes; readers need the writer excluded
// (the Index's lock).
type table[K hashKey, V any] struct {
	segs [nsegs]segment[K, V]
	n    int
	seed uint64
}

const nsegs = 256

type segment[K, V any] struct {
	slots []slot[K, V]
	n     int
}

type hashKey interface {
	comparable
	hash(seed uint64) uint64
}

type slot[K, V any] struct {
	k    K
	v    V
	used bool
}

// Loads: a segment grows past maxLoad (by growBy), and fit sets a table
// fitLoad full after a bulk load.
const (
	maxLoad = 0.85
	fitLoad = 0.80
	growBy  = 1.5
	minCap  = 8
)

func newSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

func newTable[K hashKey, V any](hint int) *table[K, V] {
	t := &table[K, V]{seed: newSeed()}
	if hint > nsegs {
		c := capFor(hint / nsegs)
		for i := range t.segs {
			t.segs[i].slots = make([]slot[K, V], c)
		}
	}
	return t
}

// capFor is the capacity that holds n entries fitLoad full.
func capFor(n int) int { return max(minCap, int(float64(n)/fitLoad)+1) }

// find returns k's segment and where its probe sequence starts: the
// hash's low 56 bits scaled to the segment's capacity (no power of two
// needed).
func (t *table[K, V]) find(k K) (*segment[K, V], int) {
	h := k.hash(t.seed)
	sg := &t.segs[h>>56]
	hi, _ := bits.Mul64(h<<8, uint64(len(sg.slots)))
	return sg, int(hi)
}

func (t *table[K, V]) home(sg *segment[K, V], k K) int {
	hi, _ := bits.Mul64(k.hash(t.seed)<<8, uint64(len(sg.slots)))
	return int(hi)
}

func (t *table[K, V]) len() int { return t.n }

func (t *table[K, V]) get(k K) (V, bool) {
	sg, i := t.find(k)
	if len(sg.slots) == 0 {
		var zero V
		return zero, false
	}
	for {
		s := &sg.slots[i]
		if !s.used {
			var zero V
			return zero, false
		}
		if s.k == k {
			return s.v, true
		}
		if i++; i == len(sg.slots) {
			i = 0
		}
	}
}

func (t *table[K, V]) set(k K, v V) {
	sg, _ := t.find(k)
	if float64(sg.n+1) > maxLoad*float64(len(sg.slots)) {
		t.resize(sg, max(minCap, int(float64(len(sg.slots))*growBy)+1))
	}
	if t.put(sg, k, v) {
		t.n++
	}
}

// put sets k in sg, which has room, and reports whether it is new.
func (t *table[K, V]) put(sg *segment[K, V], k K, v V) bool {
	for i := t.home(sg, k); ; {
		s := &sg.slots[i]
		if !s.used {
			*s = slot[K, V]{k, v, true}
			sg.n++
			return true
		}
		if s.k == k {
			s.v = v
			return false
		}
		if i++; i == len(sg.slots) {
			i = 0
		}
	}
}

func (t *table[K, V]) delete(k K) {
	sg, i := t.find(k)
	if len(sg.slots) == 0 {
		return
	}
	for {
		s := &sg.slots[i]
		if !s.used {
			return
		}
		if s.k == k {
			break
		}
		if i++; i == len(sg.slots) {
			i = 0
		}
	}
	// Shift back what follows in the cluster and may stand at i: every
	// entry whose home is not cyclically in (i, j].
	j := i
	for {
		if j++; j == len(sg.slots) {
			j = 0
		}
		s := &sg.slots[j]
		if !s.used {
			break
		}
		h := t.home(sg, s.k)
		if i <= j && i < h && h <= j || i > j && (i < h || h <= j) {
			continue
		}
		sg.slots[i] = *s
		i = j
	}
	sg.slots[i] = slot[K, V]{}
	sg.n--
	t.n--
}

// all calls fn for every entry, in no order.
func (t *table[K, V]) all(fn func(K, V)) {
	for g := range t.segs {
		for i := range t.segs[g].slots {
			if s := &t.segs[g].slots[i]; s.used {
				fn(s.k, s.v)
			}
		}
	}
}

func (t *table[K, V]) resize(sg *segment[K, V], c int) {
	old := sg.slots
	sg.slots = make([]slot[K, V], c)
	sg.n = 0
	for i := range old {
		if s := &old[i]; s.used {
			t.put(sg, s.k, s.v)
		}
	}
}

// fit sets every segment fitLoad full (after a bulk load that left them
// emptier), or frees it when empty.
func (t *table[K, V]) fit() {
	for g := range t.segs {
		sg := &t.segs[g]
		switch c := capFor(sg.n); {
		case sg.n == 0:
			sg.slots = nil
		case c < len(sg.slots):
			t.resize(sg, c)
		}
	}
}

// mix is a 64-bit finaliser (murmur3's fmix64).
func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}

// The tables' keys and values: byte arrays (no padding, no pointers),
// big-endian so that byte order is (vnetid, MAC or address) order.
type (
	vl2K    [10]byte // vnetid, MAC
	vl4K    [8]byte  // vnetid, IPv4 address
	vl6K    [20]byte // vnetid, IPv6 address
	hostRef [4]byte  // a host's slot
)

func pk2(k vl2Key) (p vl2K) {
	binary.BigEndian.PutUint32(p[:4], k.vnet)
	copy(p[4:], k.mac[:])
	return p
}

func (p vl2K) key() vl2Key {
	return vl2Key{binary.BigEndian.Uint32(p[:4]), ether.MAC(p[4:])}
}

func pk4(k vl3Key4) (p vl4K) {
	binary.BigEndian.PutUint32(p[:4], k.vnet)
	copy(p[4:], k.ip[:])
	return p
}

func (p vl4K) key() vl3Key4 {
	return vl3Key4{binary.BigEndian.Uint32(p[:4]), [4]byte(p[4:])}
}

func pk6(k vl3Key6) (p vl6K) {
	binary.BigEndian.PutUint32(p[:4], k.vnet)
	copy(p[4:], k.ip[:])
	return p
}

func (p vl6K) key() vl3Key6 {
	return vl3Key6{binary.BigEndian.Uint32(p[:4]), [16]byte(p[4:])}
}

func ref(i uint32) (r hostRef) {
	binary.LittleEndian.PutUint32(r[:], i)
	return r
}

func (r hostRef) idx() uint32 { return binary.LittleEndian.Uint32(r[:]) }

func (p vl2K) hash(seed uint64) uint64 {
	return mix(mix(binary.LittleEndian.Uint64(p[:8])^seed) ^ uint64(binary.LittleEndian.Uint16(p[8:])))
}

func (p vl4K) hash(seed uint64) uint64 { return mix(binary.LittleEndian.Uint64(p[:]) ^ seed) }

func (p vl6K) hash(seed uint64) uint64 {
	h := mix(binary.LittleEndian.Uint64(p[:8]) ^ seed)
	h = mix(h ^ binary.LittleEndian.Uint64(p[8:16]))
	return mix(h ^ uint64(binary.LittleEndian.Uint32(p[16:])))
}
