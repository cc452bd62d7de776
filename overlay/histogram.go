package overlay

import (
	"math"
	"sync/atomic"
	"time"
)

// histogram records durations in logarithmic buckets (four per doubling,
// from 1 µs to about 70 s), so quantiles cost no memory per sample and
// are accurate to within 19%.
type histogram struct {
	buckets [numBuckets]atomic.Uint64
	sum     atomic.Int64 // nanoseconds
}

const numBuckets = 4 * 27

func bucketOf(d time.Duration) int {
	us := float64(d) / float64(time.Microsecond)
	if us <= 1 {
		return 0
	}
	b := int(math.Ceil(4 * math.Log2(us)))
	return min(b, numBuckets-1)
}

// upper returns the upper bound of bucket b.
func upper(b int) time.Duration {
	return time.Duration(math.Exp2(float64(b)/4) * float64(time.Microsecond))
}

func (h *histogram) observe(d time.Duration) {
	h.buckets[bucketOf(d)].Add(1)
	h.sum.Add(int64(d))
}

// cumulative returns, for each bound, how many samples were at most that
// long (as far as the buckets tell), and the count and sum of all.
func (h *histogram) cumulative(bounds []time.Duration) (counts []uint64, total uint64, sum time.Duration) {
	counts = make([]uint64, len(bounds))
	for i := range h.buckets {
		c := h.buckets[i].Load()
		total += c
		for j, b := range bounds {
			if upper(i) <= b {
				counts[j] += c
			}
		}
	}
	return counts, total, time.Duration(h.sum.Load())
}

// quantile returns the upper bound of the bucket holding quantile q, 0
// with no samples.
func (h *histogram) quantile(q float64) time.Duration {
	var counts [numBuckets]uint64
	var total uint64
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	if total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(total)))
	var seen uint64
	for i, c := range counts {
		seen += c
		if seen >= rank && c > 0 {
			return upper(i)
		}
	}
	return upper(numBuckets - 1)
}
