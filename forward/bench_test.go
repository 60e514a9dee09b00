package forward_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// Issue 13's performance goals, on one node (real raft log and pebble)
// and a simulated issuer answering at once, compared in one run:
//
//	go test -run NONE -bench 'Forward|SAFDrain' -benchtime 3x ./forward/
//
// BenchmarkForward: closed loop, 256 callers; off-us approvals/s over
// on-us approvals/s (off/on) is the first goal (≥ 0.7).
// BenchmarkForwardOpenLoop: 5,000/s offered; the hop (building the
// host's message, to the host and back) is timed by the node's own stage
// histogram: hop-p99-ms and hop-over-2ms-% are the second goal (≤ 2 ms);
// p99 off-us − p99 on-us adds the second raft command to it.
// BenchmarkSAFDrain: 10,000
// queued advices drained to a host that recovers (goal ≥ 2,000/s).

const onUsPAN = "4111111111111111" // the demo's funded cardholder

var benchSTAN atomic.Int64

func (r *rig) benchIntent(pan string) payment.Intent {
	n := benchSTAN.Add(1)
	in := r.intent(int(n%1_000_000), 1)
	p, err := card.ParsePAN(pan)
	if err != nil {
		r.t.Fatal(err)
	}
	in.PAN = p
	key := fmt.Sprintf("100001|bench-%d", n)
	in.IdempotencyKey, in.OriginalRef = key, key
	in.Ref.STAN, in.Ref.RRN = fmt.Sprintf("%06d", n%1_000_000), fmt.Sprintf("%012d", n)
	return in
}

func (r *rig) submitOK(pan string) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	out, err := r.core.Submit(ctx, r.benchIntent(pan))
	if err != nil || out.AuthCode == "" {
		r.t.Fatalf("purchase on %s: %+v %v", pan[:6], out, err)
	}
	return time.Since(start)
}

// BenchmarkForward alternates rounds of on-us and off-us purchases (256
// callers, 2,048 a round: enough that both are bound by the machine,
// not by waiting), so both see the same machine, and reports off-us
// approvals/s over on-us approvals/s; b.N rounds of each.
//
// A third round is the control: the on-us purchase followed by a second
// raft command that does nothing (noopCommand) before the caller goes
// on. An off-us purchase is two commands in sequence, the request
// recorded before it leaves and the answer before the partner hears it,
// so 2commit/on is about as far as off/on can go on this machine
// whatever the forward itself costs (docs/BENCHMARKS.md: 0.68-0.73).
// FORWARD_ONLY=on-us|off-us|2commit runs only that kind (for a profile).
func BenchmarkForward(b *testing.B) {
	r := newRig(b, sim.DefaultBehavior())
	const callers, round = 256, 2048
	var spent, cpu [3]time.Duration
	pans := [3]string{onUsPAN, testPAN, onUsPAN}
	names := [3]string{"on-us", "off-us", "2commit"}
	only := os.Getenv("FORWARD_ONLY") // one kind of round, for its profile
	b.ResetTimer()
	for range b.N {
		for m, pan := range pans {
			if only != "" && only != names[m] {
				continue
			}
			var wg sync.WaitGroup
			var next atomic.Int64
			cpu0 := processCPU()
			start := time.Now()
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= round {
						r.submitOK(pan)
						if m == 2 {
							r.noopCommand()
						}
					}
				}()
			}
			wg.Wait()
			spent[m] += time.Since(start)
			cpu[m] += processCPU() - cpu0
		}
	}
	n := float64(b.N * round)
	for m, name := range names {
		if spent[m] == 0 {
			continue // FORWARD_ONLY
		}
		// CPU a purchase costs the whole process (switch, raft, pebble,
		// the simulated issuer, GC): what bounds approvals/s on a busy
		// machine.
		b.ReportMetric(float64(cpu[m].Microseconds())/n, name+"-cpu-us")
		b.ReportMetric(n/spent[m].Seconds(), name+"/s")
	}
	if spent[0] != 0 && spent[1] != 0 && spent[2] != 0 {
		b.ReportMetric(spent[0].Seconds()/spent[1].Seconds(), "off/on")
		b.ReportMetric(spent[0].Seconds()/spent[2].Seconds(), "2commit/on")
	}
}

// noopCommand proposes a command the FSM refuses before it reads or
// writes anything (a post without an idempotency key): the cost of a
// raft command and nothing else.
func (r *rig) noopCommand() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.cn.Propose(ctx, store.Command{Op: store.OpPost})
	if err != nil || res.Status != store.StatusInvalidCommand {
		r.t.Fatalf("no-op command: %+v %v", res, err)
	}
}

// BenchmarkForwardOpenLoop offers 5,000 purchases a second
// (FORWARD_RATE) and reports their latency percentiles; b.N of them.
func BenchmarkForwardOpenLoop(b *testing.B) {
	r := newRig(b, sim.DefaultBehavior())
	reg := prometheus.NewRegistry()
	reg.MustRegister(forward.NewCollector(r.fwd, nil))
	rate := 5000
	if n, err := strconv.Atoi(os.Getenv("FORWARD_RATE")); err == nil && n > 0 {
		rate = n
	}
	for _, c := range []struct{ name, pan string }{{"on-us", onUsPAN}, {"off-us", testPAN}} {
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, b.N)
			var wg sync.WaitGroup
			tick := time.Second / time.Duration(rate)
			start := time.Now()
			for i := range b.N {
				if d := time.Until(start.Add(time.Duration(i) * tick)); d > 0 {
					time.Sleep(d)
				}
				wg.Add(1)
				go func() { defer wg.Done(); lat[i] = r.submitOK(c.pan) }()
			}
			wg.Wait()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "done/s")
			if c.pan == testPAN {
				// Where an off-us purchase's time goes, from the node's own
				// stage histogram (switchd_forward_stage_seconds).
				for _, stage := range []string{forward.StageRecord, forward.StageHop, forward.StageAnswer} {
					b.ReportMetric(stageQuantile(b, reg, stage, 0.99), stage+"-p99-ms")
				}
				// Exact, not interpolated: the share of hops over the
				// goal's 2 ms (a bucket bound). Under 1 % is p99 ≤ 2 ms.
				b.ReportMetric(100*stageShareOver(b, reg, forward.StageHop, 0.002), "hop-over-2ms-%")
			}
		})
	}
}

// BenchmarkSAFDrain queues 10,000 reversal advices (forwards recorded and
// timed out straight through raft, as a host that stopped answering
// leaves them) and times their delivery once the host answers again.
func BenchmarkSAFDrain(b *testing.B) {
	advices := 10_000
	if n, err := strconv.Atoi(os.Getenv("SAF_DRAIN_ADVICES")); err == nil && n > 0 {
		advices = n
	}
	for range b.N {
		b.StopTimer()
		r := newRig(b, sim.DefaultBehavior())
		timeout := r.issuer.Behavior()
		timeout.Mode = sim.ModeTimeout
		if err := r.issuer.SetBehavior(timeout); err != nil {
			b.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < advices; i += 16 {
					r.queueTimedOut(i)
				}
			}()
		}
		wg.Wait()
		// Head of line: the first entry goes first, the last one last;
		// the ids are the queue's order (S + 14 digits, from 1 here).
		first, last := "S00000000000001", fmt.Sprintf("S%014d", advices)
		delivered := func(id string) bool {
			e, err := r.st.SAFEntry(id)
			if err != nil {
				b.Fatal(err)
			}
			return e.State == store.SAFDelivered
		}
		approve := timeout
		approve.Mode = sim.ModeApprove
		b.StartTimer()
		start := time.Now()
		if err := r.issuer.SetBehavior(approve); err != nil {
			b.Fatal(err)
		}
		// Polled by one point read each, not by reading the queue from
		// its head: that read skips the deletions of every delivered
		// entry (pebble tombstones) and, every millisecond, took CPU
		// from the sender it was timing.
		var firstAt time.Time
		for !delivered(last) {
			if firstAt.IsZero() && delivered(first) {
				firstAt = time.Now()
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("SAF not drained in 5 minutes: %+v", r.issuer.Stats().Advices)
			}
			time.Sleep(time.Millisecond)
		}
		// Deliveries are recorded a window at a time, so one just before
		// the last may still be on its way to the log.
		for {
			q, err := r.st.SAFQueue("demo-issuer", 1)
			if err != nil {
				b.Fatal(err)
			}
			if len(q) == 0 {
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("queue after the last delivery: %+v", q)
			}
			time.Sleep(time.Millisecond)
		}
		el := time.Since(start)
		if firstAt.IsZero() {
			firstAt = start.Add(el)
		}
		b.StopTimer()
		a := r.issuer.Stats().Advices
		if a.Distinct != int64(advices) || a.NewTwice != 0 {
			b.Fatalf("issuer advices %+v, want %d distinct", a, advices)
		}
		// The rate once advices flow; before the first delivery the
		// head's send in flight times out (the host did not answer it)
		// and, if the host's timeouts opened its circuit while the
		// queue filled, the breaker's cooldown passes (first-ms).
		b.ReportMetric(float64(advices-1)/(el-firstAt.Sub(start)).Seconds(), "advices/s")
		b.ReportMetric(float64(firstAt.Sub(start).Milliseconds()), "first-ms")
		b.ReportMetric(float64(advices)/el.Seconds(), "overall/s")
		r.fwd.Close()
	}
}

// queueTimedOut records forward i and its timeout, which queues its 0420
// (without a card number: the simulator needs none).
func (r *rig) queueTimedOut(i int) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := fmt.Sprintf("demo-acquirer|100001|drain-%d", i)
	now := time.Now().UnixNano()
	res, err := r.cn.Propose(ctx, store.Command{Op: store.OpForward, Key: key, Fingerprint: key, Time: now, Partner: "demo-acquirer",
		Amount: 1, Currency: "USD", BusinessDay: time.Now().UTC().Format("20060102"),
		Ref: store.Ref{MTI: "0200", STAN: fmt.Sprintf("%06d", i%1_000_000), RRN: fmt.Sprintf("%012d", i)},
		Forward: &store.ForwardCommand{Request: &store.ForwardRequest{Destination: "demo-issuer", Debit: "demo-issuer-settlement",
			Credit: "demo-acquirer-settlement", MTI: "0200", MaskedPAN: "400000******0002", TimeoutAt: now + int64(time.Minute),
			Fields: map[int]string{3: "000000", 4: "000000000001", 7: "1202120000", 32: "100001", 41: "TERM0001", 49: "840"}}}})
	if err != nil || res.Status != store.StatusOK {
		r.t.Fatalf("forward %d: %+v %v", i, res, err)
	}
	res, err = r.cn.Propose(ctx, store.Command{Op: store.OpForwardResult, Key: "fwd|timeout|" + key, Fingerprint: key, Time: now + 1,
		Forward: &store.ForwardCommand{Result: &store.ForwardResult{Key: key, Outcome: store.OutcomeTimeout, Reason: "timeout",
			SAFExpiresAt: now + int64(time.Hour)}}})
	if err != nil || res.Status != store.StatusOK {
		r.t.Fatalf("timeout %d: %+v %v", i, res, err)
	}
}

// processCPU is the user and system time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// stageShareOver is the share of stage's samples that took longer than
// bound seconds, which must be one of the histogram's bucket bounds.
func stageShareOver(b *testing.B, reg *prometheus.Registry, stage string, bound float64) float64 {
	b.Helper()
	h := stageHistogram(b, reg, stage)
	for _, bk := range h.GetBucket() {
		if bk.GetUpperBound() == bound {
			return 1 - float64(bk.GetCumulativeCount())/float64(h.GetSampleCount())
		}
	}
	b.Fatalf("%g s is not a bound of the stage histogram", bound)
	return 0
}

// stageHistogram is the stage histogram of stage, which must have samples.
func stageHistogram(b *testing.B, reg *prometheus.Registry, stage string) *dto.Histogram {
	b.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "switchd_forward_stage_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage && m.GetHistogram().GetSampleCount() > 0 {
					return m.GetHistogram()
				}
			}
		}
	}
	b.Fatalf("no samples of stage %s", stage)
	return nil
}

// stageQuantile estimates quantile q, in ms, of forward stage stage from
// the stage histogram's buckets: linear within the bucket it falls in,
// so as fine as the buckets (0.25-1 ms below 10 ms).
func stageQuantile(b *testing.B, reg *prometheus.Registry, stage string, q float64) float64 {
	h := stageHistogram(b, reg, stage)
	target := q * float64(h.GetSampleCount())
	lo, below := 0.0, 0.0
	for _, bk := range h.GetBucket() {
		n := float64(bk.GetCumulativeCount())
		if n >= target {
			return 1000 * (lo + (bk.GetUpperBound()-lo)*(target-below)/max(n-below, 1))
		}
		lo, below = bk.GetUpperBound(), n
	}
	return 1000 * lo // past the last bound
}
