package forward_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/sim"
)

// metric is the value of series name whose labels include want.
func metric(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if got[k] != v {
					continue next
				}
			}
			switch {
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no series %s%v", name, want)
	return 0
}

// The destination metrics follow what happened: an answered request, its
// latency observed, the connection up; a timeout counted and its advice
// in the SAF gauge until the host takes it.
func TestDestinationMetrics(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(forward.NewCollector(r.fwd, r.st))
	dest := map[string]string{"destination": "demo-issuer"}
	if _, err := r.buy(41, 100); err != nil {
		t.Fatal(err)
	}
	if metric(t, reg, "switchd_destination_up", dest) != 1 ||
		metric(t, reg, "switchd_destination_requests_total", map[string]string{"destination": "demo-issuer", "result": "answered"}) < 1 ||
		metric(t, reg, "switchd_destination_answer_seconds", dest) < 1 ||
		metric(t, reg, "switchd_destination_saf_queued", dest) != 0 {
		t.Fatal("metrics after an approval")
	}
	for _, stage := range []string{forward.StageRecord, forward.StageHop, forward.StageAnswer} {
		if n := metric(t, reg, "switchd_forward_stage_seconds", map[string]string{"destination": "demo-issuer", "stage": stage}); n != 1 {
			t.Fatalf("stage %s timed %v times after one purchase, want 1", stage, n)
		}
	}
	b := r.issuer.Behavior()
	b.Mode = sim.ModeTimeout
	if err := r.issuer.SetBehavior(b); err != nil {
		t.Fatal(err)
	}
	if _, err := r.buy(42, 100); err == nil {
		t.Fatal("approved by a host that does not answer")
	}
	if metric(t, reg, "switchd_destination_requests_total", map[string]string{"destination": "demo-issuer", "result": "timeout"}) < 1 ||
		metric(t, reg, "switchd_destination_saf_queued", dest) != 1 {
		t.Fatal("metrics after a timeout")
	}
	b.Mode = sim.ModeApprove
	if err := r.issuer.SetBehavior(b); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for metric(t, reg, "switchd_destination_saf_queued", dest) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the SAF gauge never went back to 0")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
