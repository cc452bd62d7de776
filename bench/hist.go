package bench

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// hist is a latency histogram in nanoseconds: exact below 64 ns, then 32
// buckets per power of two (about 3% wide), up to some 18 minutes. It
// costs a few instructions per sample and no allocation, so that a load
// generator can record every request.
type hist struct {
	n [histBuckets]uint64
}

const histBuckets = 64 + 35*32

func histIndex(v int64) int {
	if v < 64 {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 6 // >= 1
	if shift > 35 {
		return histBuckets - 1
	}
	return 64 + (shift-1)*32 + int(uint64(v)>>shift) - 32
}

// histValue is the middle of bucket i.
func histValue(i int) int64 {
	if i < 64 {
		return int64(i)
	}
	shift := (i-64)/32 + 1
	m := int64((i-64)%32 + 32)
	return m<<shift + (int64(1)<<shift)/2
}

func (h *hist) add(d time.Duration) { h.n[histIndex(int64(d))]++ }

func (h *hist) merge(o *hist) {
	for i, c := range o.n {
		h.n[i] += c
	}
}

func (h *hist) count() uint64 {
	var t uint64
	for _, c := range h.n {
		t += c
	}
	return t
}

// quantile returns the q-quantile (0 < q <= 1), 0 when empty.
func (h *hist) quantile(q float64) time.Duration {
	t := h.count()
	if t == 0 {
		return 0
	}
	want := uint64(q * float64(t))
	if want >= t {
		want = t - 1
	}
	var c uint64
	for i, n := range h.n {
		c += n
		if c > want {
			return time.Duration(histValue(i))
		}
	}
	return 0
}

// max returns the largest sample's bucket.
func (h *hist) max() time.Duration {
	for i := histBuckets - 1; i >= 0; i-- {
		if h.n[i] > 0 {
			return time.Duration(histValue(i))
		}
	}
	return 0
}

// sharedHist is a hist many goroutines add to: shards of atomic counters,
// chosen by the caller (a connection's index), keep them apart.
type sharedHist struct {
	shards [64][histBuckets]atomic.Uint64
}

func (s *sharedHist) add(shard int, d time.Duration) {
	s.shards[shard&63][histIndex(int64(d))].Add(1)
}

func (s *sharedHist) snapshot() *hist {
	h := new(hist)
	for i := range s.shards {
		for j := range s.shards[i] {
			h.n[j] += s.shards[i][j].Load()
		}
	}
	return h
}
