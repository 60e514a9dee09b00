package switching_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchd/switchd/store"
	switching "github.com/switchd/switchd/switch"
)

// newAuditedLane is newTestLane with the lane's refusals audited by a.
func newAuditedLane(h *harness, reg *prometheus.Registry, m *switching.Metrics, a *switching.RefusalAudit, mutate func(*switching.LaneConfig)) *testLane {
	tl := &testLane{h: h, reg: reg}
	lc := h.cfg.Switch.Lanes[0]
	lc.Name, lc.Listen = "audited", "127.0.0.1:0"
	mutate(&lc)
	logger := slog.New(slog.NewJSONHandler(lockedWriter{&tl.mu, &tl.logs}, nil))
	l, err := switching.NewLane(lc, h.pipe, h.cfg.Switch.RequestTimeout, logger, m)
	if err != nil {
		h.t.Fatal(err)
	}
	l.AuditRefusals(a)
	if err := l.Start(); err != nil {
		h.t.Fatal(err)
	}
	tl.Lane = l
	h.t.Cleanup(func() { l.Close() })
	return tl
}

// refusalRecords reads the lane.refused records of lane back from the
// audit chain, waiting up to wait for at least min of them.
func refusalRecords(t testing.TB, h *harness, lane string, min int, wait time.Duration) []switching.RefusalEvent {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		recs, err := h.st.Audit(store.AuditFilter{Object: "lane/" + lane})
		if err != nil {
			t.Fatal(err)
		}
		var out []switching.RefusalEvent
		for _, r := range recs {
			if r.Action != "lane.refused" || r.Actor != "lane:"+lane {
				t.Fatalf("record on lane/%s: action %s actor %s", lane, r.Action, r.Actor)
			}
			var ev switching.RefusalEvent
			if err := json.Unmarshal(r.After, &ev); err != nil {
				t.Fatal(err)
			}
			if r.Remote != ev.Source {
				t.Errorf("record %d: remote %q, source %q", r.Seq, r.Remote, ev.Source)
			}
			out = append(out, ev)
		}
		if len(out) >= min || time.Now().After(deadline) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// countBy sums the records' counts by reason and source.
func countBy(evs []switching.RefusalEvent) map[string]int64 {
	out := map[string]int64{}
	for _, ev := range evs {
		out[ev.Reason+" "+ev.Source] += ev.Count
	}
	return out
}

// Refusals reach the audit chain aggregated: the first from a source at
// once, the next ones of the same (lane, reason, source) within the
// interval (a minute here: none passes) pending, another source at once
// with its own record; Close sends what is pending as one record with
// its count. Every refusal is in some record's count, and a refusal
// after Close is counted as dropped.
func TestRefusalAuditAggregates(t *testing.T) {
	h := newHarness(t, nil)
	reg := prometheus.NewRegistry()
	m := switching.NewMetrics(reg)
	a, err := switching.NewRefusalAudit(switching.DefaultRefusalAuditConfig(), h.node, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	tl := newAuditedLane(h, reg, m, a, func(lc *switching.LaneConfig) { lc.Allow = []string{"127.0.0.9/32"} })
	before := h.ledgerSums()
	tl.dial("127.0.0.1").closedByPeer(5 * time.Second)
	first := refusalRecords(t, h, "audited", 1, 5*time.Second)
	if len(first) != 1 || first[0].Count != 1 || first[0].Reason != "not_allowed" || first[0].Source != "127.0.0.1" {
		t.Fatalf("first refusal: %+v", first)
	}
	const more = 8
	for i := 0; i < more; i++ {
		tl.dial("127.0.0.1").closedByPeer(5 * time.Second)
	}
	tl.dial("127.0.0.2").closedByPeer(5 * time.Second)
	got := refusalRecords(t, h, "audited", 2, 5*time.Second)
	if len(got) != 2 || got[1].Source != "127.0.0.2" || got[1].Count != 1 {
		t.Fatalf("records right after the burst: %+v", got)
	}
	waitFor(t, func() bool { return tl.rejected("not_allowed") == more+2 })
	tl.Close()
	a.Close()
	got = refusalRecords(t, h, "audited", 3, 0)
	if len(got) != 3 || got[2].Source != "127.0.0.1" || got[2].Count != more || got[2].First.After(got[2].Last) {
		t.Fatalf("after Close: %+v", got)
	}
	a.Refused("audited", "not_allowed", netip.MustParseAddr("127.0.0.1"), "")
	if v := tl.metricLabel("switchd_lane_refusal_audit_dropped_total", "why", "closed"); v != 1 {
		t.Errorf("dropped{closed} = %v, want 1", v)
	}
	if v := tl.metric("switchd_lane_refusal_audit_records_total"); v != 3 {
		t.Errorf("records_total = %v, want 3", v)
	}
	if after := h.ledgerSums(); after != before {
		t.Fatal("refused connections changed the ledger")
	}
	if v, _ := h.st.VerifyAudit(); !v.OK {
		t.Fatalf("audit chain: %+v", v)
	}
}

// Pending counts do not wait for Close: once the interval has passed, the
// periodic flush sends them. However the refusals fall against the
// one-second interval, every one is in exactly one record's count.
func TestRefusalAuditFlushesDue(t *testing.T) {
	h := newHarness(t, nil)
	reg := prometheus.NewRegistry()
	m := switching.NewMetrics(reg)
	cfg := switching.DefaultRefusalAuditConfig()
	cfg.Interval = time.Second
	a, err := switching.NewRefusalAudit(cfg, h.node, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	tl := newAuditedLane(h, reg, m, a, func(lc *switching.LaneConfig) { lc.Allow = []string{"127.0.0.9/32"} })
	const n = 4
	for i := 0; i < n; i++ {
		tl.dial("127.0.0.1").closedByPeer(5 * time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := refusalRecords(t, h, "audited", 2, 0)
		if c := countBy(got); c["not_allowed 127.0.0.1"] == n && len(got) >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("records %+v, want %d refusals in at least 2 records", got, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gatedProposer holds every proposal until open is closed: a cluster
// that is slow to commit (fault injection over the real node).
type gatedProposer struct {
	switching.Proposer
	open    chan struct{}
	mu      sync.Mutex
	waiting int
}

func (g *gatedProposer) Propose(ctx context.Context, cmd store.Command) (store.Result, error) {
	g.mu.Lock()
	g.waiting++
	g.mu.Unlock()
	select {
	case <-g.open:
	case <-ctx.Done():
		return store.Result{}, ctx.Err()
	}
	return g.Proposer.Propose(ctx, cmd)
}

func (g *gatedProposer) blocked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// Bounded: with the cluster slow to commit, a full queue defers a
// record (counted queue_full) and its count goes with a later one (here
// at Close), and a full key table leaves a new source out of the audit
// (keys_full; the lane still counts it). Refused never blocks the lane.
func TestRefusalAuditBounded(t *testing.T) {
	h := newHarness(t, nil)
	reg := prometheus.NewRegistry()
	m := switching.NewMetrics(reg)
	cfg := switching.DefaultRefusalAuditConfig()
	cfg.QueueMax, cfg.KeysMax = 1, 3
	g := &gatedProposer{Proposer: h.node, open: make(chan struct{})}
	a, err := switching.NewRefusalAudit(cfg, g, nil, m)
	if err != nil {
		t.Fatal(err)
	}
	tl := newAuditedLane(h, reg, m, a, func(lc *switching.LaneConfig) { lc.Allow = []string{"127.0.0.9/32"} })
	tl.dial("127.0.0.1").closedByPeer(5 * time.Second)
	waitFor(t, func() bool { return g.blocked() == 1 }) // off the queue, held in Propose
	tl.dial("127.0.0.2").closedByPeer(5 * time.Second)  // fills the queue
	tl.dial("127.0.0.3").closedByPeer(5 * time.Second)  // queue full: deferred
	tl.dial("127.0.0.4").closedByPeer(5 * time.Second)  // a fourth key: left out
	waitFor(t, func() bool { return tl.rejected("not_allowed") == 4 })
	// Deferred twice: on its own refusal, and when the fourth key's
	// arrival swept the full table for what is due.
	if v := tl.metricLabel("switchd_lane_refusal_audit_dropped_total", "why", "queue_full"); v != 2 {
		t.Errorf("dropped{queue_full} = %v, want 2", v)
	}
	if v := tl.metricLabel("switchd_lane_refusal_audit_dropped_total", "why", "keys_full"); v != 1 {
		t.Errorf("dropped{keys_full} = %v, want 1", v)
	}
	close(g.open)
	refusalRecords(t, h, "audited", 2, 10*time.Second)
	tl.Close()
	a.Close()
	got := countBy(refusalRecords(t, h, "audited", 3, 0))
	want := map[string]int64{"not_allowed 127.0.0.1": 1, "not_allowed 127.0.0.2": 1, "not_allowed 127.0.0.3": 1}
	if len(got) != len(want) {
		t.Fatalf("records %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d, want %d", k, got[k], n)
		}
	}
}

func TestRefusalAuditConfig(t *testing.T) {
	ok := switching.DefaultRefusalAuditConfig()
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*switching.RefusalAuditConfig){
		"interval below a second": func(c *switching.RefusalAuditConfig) { c.Interval = 100 * time.Millisecond },
		"no queue":                func(c *switching.RefusalAuditConfig) { c.QueueMax = 0 },
		"no keys":                 func(c *switching.RefusalAuditConfig) { c.KeysMax = 0 },
		"no timeout":              func(c *switching.RefusalAuditConfig) { c.ProposeTimeout = 0 },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "refusal_audit.") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// metricLabel is the value of the series of name whose label is value.
func (tl *testLane) metricLabel(name, label, value string) float64 {
	mfs, err := tl.reg.Gather()
	if err != nil {
		tl.h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
				}
			}
		}
	}
	return 0
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
