package forward_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/cluster"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/forward"
	"github.com/switchd/switchd/mac"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type ledger struct {
	*store.Store
	n *cluster.Node
}

func (l ledger) ReadIndex(ctx context.Context) error { return l.n.ReadIndex(ctx) }
func (l ledger) Propose(ctx context.Context, c store.Command) (store.Result, error) {
	return l.n.Propose(ctx, c)
}

// rig is one node (real pebble store, one-voter raft) on the demo
// config, its destination demo-issuer pointed at a simulated issuer, and
// the core forwarding through a Forwarder.
type rig struct {
	t      testing.TB
	st     *store.Store
	cn     *cluster.Node
	core   *payment.Core
	fwd    *forward.Forwarder
	issuer *sim.Issuer
	now    atomic.Int64 // the forwarder's clock offset, ns
	data   string
}

const testPAN = "4000000000000002" // BIN 400000: the demo's off-us card

func newRig(t testing.TB, behavior sim.Behavior, mut ...func(*config.File)) *rig {
	t.Helper()
	icfg := sim.DefaultIssuerConfig()
	// It signs the connection on in approve mode, then does what the
	// test wants (a host in timeout mode would not answer the sign-on).
	icfg.Listen = "127.0.0.1:0"
	issuer, err := sim.NewIssuer(icfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { issuer.Close() })

	cfg := config.Demo()
	cfg.DataDir = t.TempDir()
	cfg.Cluster.RaftAddr = "127.0.0.1:0"
	cfg.Cluster.HeartbeatTimeout, cfg.Cluster.ElectionTimeout, cfg.Cluster.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	for i := range cfg.Destinations {
		if cfg.Destinations[i].ID == "demo-issuer" {
			h := *cfg.Destinations[i].ISO8583
			h.Addrs, h.TimeoutMs, h.EchoIntervalMs = []string{issuer.Addr()}, 300, 0
			cfg.Destinations[i].ISO8583 = &h
		}
	}
	for _, m := range mut {
		m(&cfg)
	}
	cfg.Finish()
	st, err := store.Open(cfg.Store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cn, err := cluster.New(cfg.Cluster, st, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cn.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	core, err := payment.NewCore(cfg.Switch.Config, cn, st, st.Directory, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := core.Seed(ctx, cfg.Seeds(), st, time.Now()); err != nil {
		t.Fatal(err)
	}
	kb := make([]byte, 32)
	rand.Read(kb)
	kek, _ := mac.NewKEK(kb)
	r := &rig{t: t, st: st, cn: cn, core: core, issuer: issuer, data: cfg.DataDir}
	fcfg := cfg.Forward // the demo's, as the test changed it
	fcfg.DeadlineMargin, fcfg.SweepInterval, fcfg.SyncInterval = 200*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	// The tests call CheckOrphans themselves; the leader's own would race
	// them for the same entries.
	fcfg.OrphanCheck = 24 * time.Hour
	if _, bench := t.(*testing.B); bench {
		// The sweeper's read of the deadline index costs 3-8 ms (it skips
		// the deletions of the forwards decided since pebble compacted
		// it): every 50 ms that was 12 % of an off-us purchase's CPU, which
		// a node sweeping at its default interval does not pay.
		fcfg.SweepInterval = forward.DefaultConfig().SweepInterval
	}
	fcfg.SAF.RetryMin, fcfg.SAF.RetryMax, fcfg.SAF.Poll = 20*time.Millisecond, 100*time.Millisecond, 10*time.Millisecond
	fwd, err := forward.New(fcfg, ledger{st, cn}, kek, forward.Options{Leading: cn.Leading,
		Now: func() time.Time { return time.Now().Add(time.Duration(r.now.Load())) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fwd.Close)
	r.fwd = fwd
	core.UseForwarder(fwd)
	r.waitFor("the issuer connection", func() bool { c := fwd.Client("demo-issuer"); return c != nil && c.Ready() })
	if err := issuer.SetBehavior(behavior); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) waitFor(what string, ok func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			r.t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) intent(stan int, amount int64) payment.Intent {
	pan, err := card.ParsePAN(testPAN)
	if err != nil {
		r.t.Fatal(err)
	}
	key := fmt.Sprintf("100001|%06d", stan)
	return payment.Intent{Kind: payment.KindPurchase, Origin: payment.Origin{Lane: "demo"}, Acquirer: "100001", PAN: pan,
		Terminal: "TERM0001", Amount: amount, Currency: "USD",
		Ref:            store.Ref{MTI: "0200", STAN: fmt.Sprintf("%06d", stan), RRN: fmt.Sprintf("%012d", stan)},
		IdempotencyKey: key, OriginalRef: key, Fingerprint: []string{"purchase", fmt.Sprint(amount), payment.FingerprintPAN}}
}

func (r *rig) buy(stan int, amount int64) (payment.Outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.core.Submit(ctx, r.intent(stan, amount))
}

func (r *rig) account(id string) store.Account {
	r.t.Helper()
	a, err := r.st.Account(id)
	if err != nil {
		r.t.Fatal(err)
	}
	return a
}

// An off-us purchase is approved by the host: the partner gets the
// host's approval code, the ledger posts the amount from the
// destination's settlement account to the partner's, the card number is
// sealed in the record (never in clear), and a repeat is answered from
// the record without a second message to the host.
func TestForwardApproved(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	out, err := r.buy(1, 1234)
	if err != nil {
		t.Fatalf("purchase: %v", err)
	}
	if len(out.AuthCode) != 6 || out.Result.TransferID == "" {
		t.Fatalf("outcome %+v", out)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 1234 {
		t.Fatalf("issuer position %+v", a)
	}
	fw, err := r.st.Forward("demo-acquirer|100001|000001")
	if err != nil || fw.State != store.ForwardApproved || fw.AuthCode != out.AuthCode || fw.MaskedPAN != "400000******0002" {
		t.Fatalf("forward %+v %v", fw, err)
	}
	if bytes.Contains(fw.PAN, []byte(testPAN)) || len(fw.PAN) == 0 {
		t.Fatal("the card number is not sealed in the forward record")
	}
	again, err := r.buy(1, 1234)
	if err != nil || again.AuthCode != out.AuthCode || !again.Result.Replayed {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	if n := r.issuer.Stats().Messages["0200"]["approved"]; n != 1 {
		t.Fatalf("host saw %d purchases, want 1", n)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 1234 {
		t.Fatalf("the repeat posted again: %+v", a)
	}
	// The pebble files hold no card number in clear.
	r.st.Close()
	filepath.Walk(r.data, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(testPAN)) {
				t.Errorf("%s holds the card number in clear", p)
			}
		}
		return nil
	})
}

// A host decline reaches the partner with the host's code; nothing is
// posted.
func TestForwardDeclined(t *testing.T) {
	r := newRig(t, sim.Behavior{Mode: sim.ModeDecline, LateDelay: sim.Duration(time.Second)})
	_, err := r.buy(2, 500)
	var hd *outcome.HostDecline
	if !errors.As(err, &hd) || outcome.Code(err) != "05" {
		t.Fatalf("decline: %v (%s)", err, outcome.Code(err))
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 0 {
		t.Fatalf("a decline posted: %+v", a)
	}
}

// The host does not answer: the partner gets 91, a 0420 is queued in the
// same command, and once the host answers again the SAF sender delivers
// it, once (the simulator counts advices by original).
func TestForwardTimeoutThenSAF(t *testing.T) {
	r := newRig(t, sim.Behavior{Mode: sim.ModeTimeout, LateDelay: sim.Duration(time.Second)})
	_, err := r.buy(3, 700)
	if outcome.Code(err) != "91" {
		t.Fatalf("timeout: %v (%s)", err, outcome.Code(err))
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000003")
	if fw.State != store.ForwardTimedOut || fw.SAF == "" {
		t.Fatalf("forward %+v", fw)
	}
	e, err := r.st.SAFEntry(fw.SAF)
	if err != nil || e.MTI != "0420" || !strings.HasPrefix(e.Fields[90], "0200"+fw.STAN()) {
		t.Fatalf("SAF entry %+v %v", e, err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 0 {
		t.Fatalf("a timeout posted: %+v", a)
	}
	if err := r.issuer.SetBehavior(sim.DefaultBehavior()); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the advice delivered", func() bool { e, _ := r.st.SAFEntry(fw.SAF); return e.State == store.SAFDelivered })
	adv := r.issuer.Stats().Advices
	if adv.Distinct != 1 {
		t.Fatalf("advices %+v", adv)
	}
	if q, _ := r.st.SAFQueue("demo-issuer", 10); len(q) != 0 {
		t.Fatalf("queue not empty: %+v", q)
	}
}

// A host that is down: 91 at once, nothing recorded, nothing queued.
func TestForwardHostDown(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if err := r.issuer.SetBehavior(sim.Behavior{Mode: sim.ModeDown, LateDelay: sim.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the connection to drop", func() bool { return !r.fwd.Client("demo-issuer").Ready() })
	start := time.Now()
	_, err := r.buy(4, 100)
	if outcome.Code(err) != "91" || !errors.Is(err, outcome.ErrDestinationUnavailable) {
		t.Fatalf("down: %v", err)
	}
	if d := time.Since(start); d > 250*time.Millisecond {
		t.Logf("91 took %s with the host down", d) // not a timing assertion: the record check below is the test
	}
	if _, err := r.st.Forward("demo-acquirer|100001|000004"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a request to a dead host was recorded: %v", err)
	}
	if q, _ := r.st.SAFQueue("demo-issuer", 10); len(q) != 0 {
		t.Fatalf("queued: %+v", q)
	}
}

// An approval that comes after the timeout is kept on the record as a
// late answer, never posted; the reversal covers it.
func TestForwardLateApproval(t *testing.T) {
	r := newRig(t, sim.Behavior{Mode: sim.ModeLate, LateDelay: sim.Duration(600 * time.Millisecond)})
	if _, err := r.buy(5, 900); outcome.Code(err) != "91" {
		t.Fatalf("late: %v", err)
	}
	r.waitFor("the late answer recorded", func() bool {
		fw, _ := r.st.Forward("demo-acquirer|100001|000005")
		return fw.Late != nil
	})
	fw, _ := r.st.Forward("demo-acquirer|100001|000005")
	if fw.State != store.ForwardTimedOut || fw.Late.Outcome != store.OutcomeApproved || fw.TransferID != "" {
		t.Fatalf("forward %+v", fw)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 0 {
		t.Fatalf("the late approval posted: %+v", a)
	}
}

// A forward whose node died between recording and answering is found by
// the sweeper past its deadline and timed out: its reversal is queued.
func TestSweepTimesOutAbandonedForwards(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	in := r.intent(6, 300)
	ctx := context.Background()
	// What the node that died had recorded: OpForward only.
	res, err := r.cn.Propose(ctx, store.Command{Op: store.OpForward, Key: "demo-acquirer|" + in.IdempotencyKey, Fingerprint: "fp",
		Time: time.Now().UnixNano(), Partner: "demo-acquirer", Amount: 300, Currency: "USD",
		Forward: &store.ForwardCommand{Request: &store.ForwardRequest{Destination: "demo-issuer", Debit: "demo-issuer-settlement",
			Credit: "demo-acquirer-settlement", MTI: "0200", Fields: map[int]string{3: "000000", 4: "000000000300", 7: "1202080000", 32: "100001", 49: "840"},
			TimeoutAt: time.Now().Add(100 * time.Millisecond).UnixNano()}}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatal(res, err)
	}
	r.waitFor("the sweeper", func() bool {
		fw, _ := r.st.Forward("demo-acquirer|" + in.IdempotencyKey)
		return fw.State == store.ForwardTimedOut && fw.Reason == "deadline" && fw.SAF != ""
	})
}

// refusingLedger refuses every proposal, as a node that lost its quorum.
type refusingLedger struct{ ledger }

func (refusingLedger) Propose(context.Context, store.Command) (store.Result, error) {
	return store.Result{}, errors.New("no leader")
}

// A sweep retries a result until its outcome is known, but not for ever:
// Close stops a forwarder whose sweep cannot get its timeout recorded (it
// waited for it for good, and so did a node's shutdown under faults).
func TestCloseStopsASweepThatCannotRecord(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	key := "demo-acquirer|100001|stuck"
	now := time.Now().UnixNano()
	res, err := r.cn.Propose(ctx, store.Command{Op: store.OpForward, Key: key, Fingerprint: key, Time: now, Partner: "demo-acquirer",
		Amount: 1, Currency: "USD", Ref: store.Ref{MTI: "0200", STAN: "000777", RRN: "000000000777"},
		Forward: &store.ForwardCommand{Request: &store.ForwardRequest{Destination: "demo-issuer", Debit: "demo-issuer-settlement",
			Credit: "demo-acquirer-settlement", MTI: "0200", MaskedPAN: "400000******0002", TimeoutAt: now + int64(time.Minute),
			Fields: map[int]string{3: "000000", 4: "000000000001", 7: "1202120000", 32: "100001", 49: "840"}}}})
	if err != nil || res.Status != store.StatusOK {
		t.Fatalf("forward: %+v %v", res, err)
	}
	cfg := forward.DefaultConfig()
	cfg.SweepInterval = 20 * time.Millisecond
	later := func() time.Time { return time.Now().Add(time.Hour) } // the forward is past its deadline for this one
	f, err := forward.New(cfg, refusingLedger{ledger{r.st, r.cn}}, nil, forward.Options{Leading: func() bool { return true }, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // sweeping, its proposals refused
	closed := make(chan struct{})
	go func() { f.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a sweep retrying a refused result")
	}
	if fw, err := r.st.Forward(key); err != nil || fw.State != store.ForwardPending {
		t.Fatalf("forward %+v %v", fw, err)
	}
}

// refund is the partner's refund (processing code 20) to off-us card
// testPAN.
func (r *rig) refund(stan int, amount int64) (payment.Outcome, error) {
	in := r.intent(stan, amount)
	in.Kind, in.Ref.ProcCode = payment.KindRefund, "200000"
	in.Fingerprint = []string{"refund", fmt.Sprint(amount), payment.FingerprintPAN}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.core.Submit(ctx, in)
}

// A merchant's refund to a card of another issuer goes to that issuer
// (0200, processing code 20) and posts the other way from a purchase:
// the partner's account gives the money, the issuer's position gets it.
// Unanswered, it is 91 with its 0420 queued, nothing posted.
func TestForwardRefund(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	out, err := r.refund(51, 650)
	if err != nil || out.AuthCode == "" {
		t.Fatalf("refund: %+v %v", out, err)
	}
	if a := r.account("demo-issuer-settlement"); a.CreditsPosted != 650 || a.DebitsPosted != 0 {
		t.Fatalf("issuer position %+v", a)
	}
	if a := r.account("demo-acquirer-settlement"); a.DebitsPosted != 650 {
		t.Fatalf("partner position %+v", a)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000051")
	if fw.State != store.ForwardApproved || fw.Fields[3] != "200000" || fw.MTI != "0200" {
		t.Fatalf("forward %+v", fw)
	}
	if err := r.issuer.SetBehavior(sim.Behavior{Mode: sim.ModeTimeout, LateDelay: sim.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.refund(52, 300); outcome.Code(err) != "91" {
		t.Fatalf("unanswered refund: %v (%s)", err, outcome.Code(err))
	}
	fw, _ = r.st.Forward("demo-acquirer|100001|000052")
	e, err := r.st.SAFEntry(fw.SAF)
	if fw.State != store.ForwardTimedOut || err != nil || e.MTI != "0420" || e.Fields[3] != "200000" {
		t.Fatalf("forward %+v, advice %+v %v", fw, e, err)
	}
	if a := r.account("demo-issuer-settlement"); a.CreditsPosted != 650 {
		t.Fatalf("the unanswered refund posted: %+v", a)
	}
}
