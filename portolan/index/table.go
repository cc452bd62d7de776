package index

import (
	"crypto/rand"
	"encoding/binary"
	"math/bits"

	"overlaynet/ether"
)

// table is an open-addressing hash table (linear probing, deletion by
// backward shift, so no tombstones) over one flat slice of pointer-free
// slots. It exists because a Go map holds its slots in tables of up to
// 1024 that split in two when full, so that a million entries may sit at
// under half load: this one is kept between maxLoad and fitLoad full and
// its capacity need not be a power of two, which halves the memory of the
// index. It is not safe for concurrent writes; readers need the writer
// excluded (the Index's lock).
type table[K hashKey, V any] struct {
	slots []slot[K, V]
	n     int
	seed  uint64
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

// Loads: grow past maxLoad (by growBy), and fit sets a table maxLoad's
// neighbourhood after a bulk load.
const (
	maxLoad = 0.85
	fitLoad = 0.80
	growBy  = 1.5
	minCap  = 16
)

func newSeed() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint64(b[:])
}

func newTable[K hashKey, V any](hint int) *table[K, V] {
	t := &table[K, V]{seed: newSeed()}
	if hint > 0 {
		t.slots = make([]slot[K, V], max(minCap, int(float64(hint)/fitLoad)+1))
	}
	return t
}

// home is where k's probe sequence starts: the hash scaled to the
// capacity (no power of two needed).
func (t *table[K, V]) home(k K) int {
	hi, _ := bits.Mul64(k.hash(t.seed), uint64(len(t.slots)))
	return int(hi)
}

func (t *table[K, V]) len() int { return t.n }

func (t *table[K, V]) get(k K) (V, bool) {
	if len(t.slots) == 0 {
		var zero V
		return zero, false
	}
	for i := t.home(k); ; {
		s := &t.slots[i]
		if !s.used {
			var zero V
			return zero, false
		}
		if s.k == k {
			return s.v, true
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

func (t *table[K, V]) set(k K, v V) {
	if float64(t.n+1) > maxLoad*float64(len(t.slots)) {
		t.resize(max(minCap, int(float64(len(t.slots))*growBy)+1))
	}
	for i := t.home(k); ; {
		s := &t.slots[i]
		if !s.used {
			*s = slot[K, V]{k, v, true}
			t.n++
			return
		}
		if s.k == k {
			s.v = v
			return
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

func (t *table[K, V]) delete(k K) {
	if len(t.slots) == 0 {
		return
	}
	i := t.home(k)
	for {
		s := &t.slots[i]
		if !s.used {
			return
		}
		if s.k == k {
			break
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
	// Shift back what follows in the cluster and may stand at i: every
	// entry whose home is not cyclically in (i, j].
	j := i
	for {
		if j++; j == len(t.slots) {
			j = 0
		}
		s := &t.slots[j]
		if !s.used {
			break
		}
		h := t.home(s.k)
		if i <= j && i < h && h <= j || i > j && (i < h || h <= j) {
			continue
		}
		t.slots[i] = *s
		i = j
	}
	t.slots[i] = slot[K, V]{}
	t.n--
}

// all calls fn for every entry, in no order.
func (t *table[K, V]) all(fn func(K, V)) {
	for i := range t.slots {
		if s := &t.slots[i]; s.used {
			fn(s.k, s.v)
		}
	}
}

func (t *table[K, V]) resize(c int) {
	old := t.slots
	t.slots = make([]slot[K, V], c)
	t.n = 0
	for i := range old {
		if s := &old[i]; s.used {
			t.set(s.k, s.v)
		}
	}
}

// fit brings the load to fitLoad after a bulk load that left it lower.
func (t *table[K, V]) fit() {
	if c := max(minCap, int(float64(t.n)/fitLoad)+1); c < len(t.slots) {
		t.resize(c)
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
