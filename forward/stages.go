package forward

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stages of a forwarded request, timed on the node that forwards it, so
// ops can tell a slow host from a slow log: switchd_forward_stage_seconds.
const (
	// StageRecord: the request recorded through raft before it leaves.
	StageRecord = "record"
	// StageHop: sent to the host and its answer back (or the timeout).
	StageHop = "hop"
	// StageAnswer: the answer recorded through raft before the partner
	// hears it.
	StageAnswer = "answer"
)

// stageBounds are the buckets of the stage histogram: fine up to 10 ms,
// where the hop's goal is (≤ 2 ms added at 5,000/s), coarse above.
var stageBounds = []float64{0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075,
	0.01, 0.015, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

func newStages() *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "switchd_forward_stage_seconds",
		Help:    "Time of each stage of a forwarded request on this node: record (through raft, before it leaves), hop (to the host and back), answer (through raft, before the partner hears it).",
		Buckets: stageBounds,
	}, []string{"destination", "stage"})
}

// observe records that stage of a request to dest took since start.
func (f *Forwarder) observe(dest, stage string, start time.Time) {
	f.stages.WithLabelValues(dest, stage).Observe(time.Since(start).Seconds())
}
