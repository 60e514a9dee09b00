package forward

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/host"
)

// SAFDepthMax bounds the queue a scrape counts per destination: a
// scrape stays cheap however long a host has been down; the gauge says
// "at least this many" past it.
const SAFDepthMax = 100_000

// DepthReader counts a destination's queued advices (store.Store).
type DepthReader interface {
	SAFQueueDepth(dest string, max int) (int, error)
}

// Collector exports this node's destinations as Prometheus metrics:
// connections, circuit, requests by result, strays, answer latency and
// the SAF queue depth. Labels are destination ids (ops-managed, at most
// 256), never message data.
type Collector struct {
	f     *Forwarder
	depth DepthReader

	up, conns, circuit, queued, requests, strays, latency, orphaned *prometheus.Desc
}

// NewCollector is f's collector; depth may be nil (no SAF gauge).
func NewCollector(f *Forwarder, depth DepthReader) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("switchd_destination_"+name, help, append([]string{"destination"}, labels...), nil)
	}
	return &Collector{f: f, depth: depth,
		up:       d("up", "1 when this node has a signed-on connection to the destination's host."),
		conns:    d("connections", "Connections up to the destination's host from this node."),
		circuit:  d("circuit_open", "1 while the circuit is open: requests are declined 91 at once."),
		queued:   d("saf_queued", "Advices queued for the destination (replicated; counted up to 100000)."),
		requests: d("requests_total", "Requests sent by this node, by result.", "result"),
		strays:   d("strays_total", "Messages from the host that matched no request in flight, by kind.", "kind"),
		latency:  d("answer_seconds", "Time from sending a request to its answer."),
		orphaned: d("saf_orphaned", "Advices queued for a destination the directory no longer has: no sender takes them (the leader's last check, every forward.orphan_check; counted up to 1000)."),
	}
}

// Describe is prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.conns, c.circuit, c.queued, c.requests, c.strays, c.latency, c.orphaned} {
		ch <- d
	}
	c.f.stages.Describe(ch)
}

// Collect is prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.f.Stats() {
		c.collect(ch, s)
	}
	for id, n := range c.f.Orphans() {
		ch <- prometheus.MustNewConstMetric(c.orphaned, prometheus.GaugeValue, float64(n), id)
	}
	c.f.stages.Collect(ch)
}

func (c *Collector) collect(ch chan<- prometheus.Metric, s host.Stats) {
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{s.Name}, l...)...)
	}
	count := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), append([]string{s.Name}, l...)...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(c.up, b2f(s.Ready))
	gauge(c.conns, float64(s.ConnectionsUp))
	gauge(c.circuit, b2f(s.CircuitOpen))
	if c.depth != nil {
		if n, err := c.depth.SAFQueueDepth(s.Name, SAFDepthMax); err == nil {
			gauge(c.queued, float64(n))
		}
	}
	count(c.requests, s.Answered, "answered")
	count(c.requests, s.Timeouts, "timeout")
	count(c.requests, s.Lost, "connection_lost")
	count(c.requests, s.Unavailable, "unavailable")
	count(c.strays, s.Late, "late")
	count(c.strays, s.Unmatched, "unmatched")
	count(c.strays, s.Malformed, "malformed")
	count(c.strays, s.HostRequests, "host_request")
	buckets := make(map[float64]uint64, len(s.LatencyBoundsSeconds))
	var cum uint64
	for i, b := range s.LatencyBoundsSeconds {
		if i < len(s.LatencyBuckets) {
			cum += s.LatencyBuckets[i]
		}
		buckets[b] = cum
	}
	total := cum
	if n := len(s.LatencyBuckets); n > len(s.LatencyBoundsSeconds) {
		total += s.LatencyBuckets[n-1] // +Inf
	}
	ch <- prometheus.MustNewConstHistogram(c.latency, total, s.LatencySumSeconds, buckets, s.Name)
}
