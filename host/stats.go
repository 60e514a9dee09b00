package host

import (
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of the answer-latency histogram
// (Prometheus-style cumulative buckets when rendered).
var latencyBounds = []time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond,
	5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
	2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

type histogram struct {
	counts [16]atomic.Uint64 // one per bound, the last one +Inf
	sumNs  atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sumNs.Add(int64(d))
}

type counters struct {
	sent, answered, timeouts, lost, unavailable atomic.Uint64
	late, unmatched, malformed, hostRequests    atomic.Uint64
	connects, dialFailures, echoFailures        atomic.Uint64
	connsUp                                     atomic.Int64
	latency                                     histogram
}

// Stats is a point-in-time view of a destination for metrics and
// `switchctl destinations status`. Counters count since New.
type Stats struct {
	Name string `json:"name"`
	// Kind is the destination's kind (iso8583, http).
	Kind string `json:"kind"`
	// Ready: a connection is up (signed on). ConnectionsUp of PoolSize.
	Ready         bool  `json:"ready"`
	ConnectionsUp int64 `json:"connections_up"`
	PoolSize      int   `json:"pool_size"`
	// CircuitOpen: requests fail at once; CircuitOpens counts openings.
	CircuitOpen  bool   `json:"circuit_open"`
	CircuitOpens uint64 `json:"circuit_opens"`
	// Sent requests (echo and sign-on included); Answered matched an
	// answer in time; Timeouts and Lost did not (the host may have acted);
	// Unavailable failed at once.
	Sent        uint64 `json:"sent"`
	Answered    uint64 `json:"answered"`
	Timeouts    uint64 `json:"timeouts"`
	Lost        uint64 `json:"lost"`
	Unavailable uint64 `json:"unavailable"`
	// Late answers came after their request timed out; Unmatched answered
	// nothing we sent; Malformed did not decode (the connection is then
	// closed); HostRequests are requests the host sent us.
	Late         uint64 `json:"late"`
	Unmatched    uint64 `json:"unmatched"`
	Malformed    uint64 `json:"malformed"`
	HostRequests uint64 `json:"host_requests"`
	Connects     uint64 `json:"connects"`
	DialFailures uint64 `json:"dial_failures"`
	EchoFailures uint64 `json:"echo_failures"`
	// LatencyBuckets[i] counts answers at or under LatencyBoundsSeconds[i]
	// (not cumulative; the last bucket is everything slower).
	LatencyBuckets       []uint64  `json:"latency_buckets"`
	LatencyBoundsSeconds []float64 `json:"latency_bounds_seconds"`
	LatencySumSeconds    float64   `json:"latency_sum_seconds"`
}

// Stats returns the destination's counters now.
func (c *Client) Stats() Stats {
	open, opens := c.brk.state(c.opt.Now())
	s := Stats{
		Name: c.cfg.Name, Ready: c.Ready(), ConnectionsUp: c.stats.connsUp.Load(), PoolSize: c.cfg.PoolSize,
		CircuitOpen: open, CircuitOpens: opens,
		Sent: c.stats.sent.Load(), Answered: c.stats.answered.Load(), Timeouts: c.stats.timeouts.Load(),
		Lost: c.stats.lost.Load(), Unavailable: c.stats.unavailable.Load(),
		Late: c.stats.late.Load(), Unmatched: c.stats.unmatched.Load(), Malformed: c.stats.malformed.Load(),
		HostRequests: c.stats.hostRequests.Load(), Connects: c.stats.connects.Load(),
		DialFailures: c.stats.dialFailures.Load(), EchoFailures: c.stats.echoFailures.Load(),
		Kind: "iso8583",
	}
	c.stats.latency.fill(&s)
	return s
}

// fill puts the histogram in s.
func (h *histogram) fill(s *Stats) {
	s.LatencySumSeconds = time.Duration(h.sumNs.Load()).Seconds()
	for i := range h.counts {
		s.LatencyBuckets = append(s.LatencyBuckets, h.counts[i].Load())
	}
	for _, b := range latencyBounds {
		s.LatencyBoundsSeconds = append(s.LatencyBoundsSeconds, b.Seconds())
	}
}
