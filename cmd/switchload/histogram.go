package main

import (
	"math"
	"math/bits"
	"time"
)

// Histogram geometry. Values below 2^histSubBits are counted exactly;
// above, every power-of-two range is split into histHalf equal buckets, so a
// reported value is never more than 1/histHalf (0.8 %) above the true one,
// whatever the range — HdrHistogram's idea, in a fixed 58 KiB and O(1) per
// sample instead of a slice that grows with the run.
const (
	histSubBits  = 8
	histSubCount = 1 << histSubBits
	histHalf     = histSubCount / 2
	histBuckets  = histSubCount + (64-histSubBits)*histHalf
)

// histogram records non-negative durations (nanoseconds). The zero value is
// empty and ready; it is not safe for concurrent use.
type histogram struct {
	counts   [histBuckets]uint64
	total    uint64
	sum      float64 // for the mean only; float is fine for a statistic
	min, max int64
}

func bucketOf(v int64) int {
	if v < 0 {
		v = 0
	}
	u := uint64(v)
	if u < histSubCount {
		return int(u)
	}
	shift := bits.Len64(u) - histSubBits // ≥ 1
	top := u >> uint(shift)              // in [histHalf, histSubCount)
	return histSubCount + (shift-1)*histHalf + int(top-histHalf)
}

// bucketHigh is the largest value that falls into bucket i.
func bucketHigh(i int) int64 {
	if i < histSubCount {
		return int64(i)
	}
	j := i - histSubCount
	shift := uint(j/histHalf + 1)
	top := uint64(j%histHalf + histHalf)
	return int64((top+1)<<shift - 1)
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	if v < 0 {
		v = 0
	}
	h.counts[bucketOf(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

func (h *histogram) merge(o *histogram) {
	if o.total == 0 {
		return
	}
	for i, n := range o.counts {
		h.counts[i] += n
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.total += o.total
	h.sum += o.sum
}

func (h *histogram) reset() { *h = histogram{} }

// quantile returns the value at or below which a fraction q of the samples
// lie (the bucket's upper bound, clamped to the recorded min and max), 0
// for an empty histogram.
func (h *histogram) quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	rank = max(rank, 1)
	var seen uint64
	for i, n := range h.counts {
		seen += n
		if seen >= rank {
			v := min(bucketHigh(i), h.max)
			return time.Duration(max(v, h.min))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}
