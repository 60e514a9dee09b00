package forward_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// reverse is the partner's 0400 of purchase stan (its original reference).
func (r *rig) reverse(stan, rstan int, amount int64) (payment.Outcome, error) {
	in := r.intent(rstan, amount)
	in.Kind, in.Ref.MTI = payment.KindReversal, "0400"
	in.Original, in.OriginalRef = fmt.Sprintf("100001|%06d", stan), ""
	in.Fingerprint = []string{"reversal", fmt.Sprint(amount), payment.FingerprintPAN}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.core.Submit(ctx, in)
}

// A partner reverses an approved off-us purchase: the ledger gives the
// money back and, in the same apply, the host's 0420 is queued; it is
// delivered once, and a repeat of the reversal changes nothing.
func TestPartnerReversesApprovedForward(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if _, err := r.buy(21, 900); err != nil {
		t.Fatal(err)
	}
	if _, err := r.reverse(21, 23, 900); err != nil {
		t.Fatalf("reversal: %v", err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 900 || a.CreditsPosted != 900 {
		t.Fatalf("issuer position after the reversal %+v", a)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000021")
	if fw.State != store.ForwardApproved || fw.SAF == "" || fw.Reason != "partner_reversal" {
		t.Fatalf("forward %+v", fw)
	}
	r.waitFor("the 0420 delivered", func() bool { e, _ := r.st.SAFEntry(fw.SAF); return e.State == store.SAFDelivered })
	if out, err := r.reverse(21, 23, 900); err != nil || !out.Result.Replayed {
		t.Fatalf("repeat of the reversal: %+v %v", out, err)
	}
	if adv := r.issuer.Stats().Advices; adv.Distinct != 1 || adv.NewTwice != 0 {
		t.Fatalf("host advices %+v", adv)
	}
	if a := r.account("demo-issuer-settlement"); a.CreditsPosted != 900 {
		t.Fatalf("the repeat posted again: %+v", a)
	}
}

// A partner's reversal of an off-us purchase whose card number is no
// longer kept (older than the idempotency retention, scrubbed by the
// housekeeping command) is refused with 12: nothing given back, no 0420
// at the host.
func TestPartnerReversalPastRetentionRefused(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if _, err := r.buy(31, 700); err != nil {
		t.Fatal(err)
	}
	now := time.Now().Add(time.Hour).UnixNano()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The leader's housekeeping, an hour on with a retention it has passed.
	if res, err := r.cn.Propose(ctx, store.Command{Op: store.OpExpire, Time: now, RetainAfter: now}); err != nil || res.Scrubbed != 1 {
		t.Fatalf("housekeeping: %+v %v", res, err)
	}
	_, err := r.reverse(31, 33, 700)
	if !errors.Is(err, store.ErrReversalWindowClosed) || outcome.Code(err) != outcome.InvalidTransaction {
		t.Fatalf("reversal past the retention: %v (code %s)", err, outcome.Code(err))
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 700 || a.CreditsPosted != 0 {
		t.Fatalf("issuer position after the refused reversal %+v", a)
	}
	if fw, _ := r.st.Forward("demo-acquirer|100001|000031"); fw.SAF != "" {
		t.Fatalf("0420 queued: %+v", fw)
	}
	if adv := r.issuer.Stats().Advices; adv.Distinct != 0 {
		t.Fatalf("host advices %+v", adv)
	}
}

// A partner reverses part of an approved off-us purchase (the pump
// dispensed less): the ledger gives back the part, and the host's 0420
// keeps field 4, the original amount, with field 95 saying what stands;
// it is delivered once. A second reversal of the same purchase is refused
// and posts nothing: the host has been told what stands.
func TestPartnerPartlyReversesApprovedForward(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if _, err := r.buy(41, 900); err != nil {
		t.Fatal(err)
	}
	if _, err := r.reverse(41, 42, 300); err != nil {
		t.Fatalf("partial reversal: %v", err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 900 || a.CreditsPosted != 300 {
		t.Fatalf("issuer position after the partial reversal %+v", a)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000041")
	if fw.State != store.ForwardApproved || fw.SAF == "" || fw.Reason != "partner_partial_reversal" {
		t.Fatalf("forward %+v", fw)
	}
	e, err := r.st.SAFEntry(fw.SAF)
	if err != nil || e.MTI != "0420" || e.Fields[4] != "000000000900" || e.Fields[95] != store.ReplacementAmounts(600) ||
		len(e.Fields[95]) != 42 || e.Fields[90] == "" {
		t.Fatalf("the host's advice %+v %v", e, err)
	}
	r.waitFor("the 0420 delivered", func() bool { e, _ := r.st.SAFEntry(fw.SAF); return e.State == store.SAFDelivered })
	if _, err := r.reverse(41, 43, 600); err == nil {
		t.Fatal("a second reversal of a forwarded purchase was taken")
	}
	if a := r.account("demo-issuer-settlement"); a.CreditsPosted != 300 {
		t.Fatalf("the refused second reversal posted: %+v", a)
	}
	if adv := r.issuer.Stats().Advices; adv.Distinct != 1 || adv.NewTwice != 0 {
		t.Fatalf("host advices %+v", adv)
	}
}

// A partner gives up before the host answers and reverses: the forward is
// timed out by the reversal itself and its 0420 queued; the host's
// approval, when it comes, is late and never posted; a reversal of a
// timed-out forward needs nothing more.
func TestPartnerReversesPendingForward(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	late := r.issuer.Behavior()
	late.Mode, late.LateDelay = sim.ModeLate, sim.Duration(150*time.Millisecond) // inside the rig's 300 ms timeout
	if err := r.issuer.SetBehavior(late); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := r.buy(31, 500); done <- err }()
	r.waitFor("the forward recorded", func() bool { _, err := r.st.Forward("demo-acquirer|100001|000031"); return err == nil })
	if _, err := r.reverse(31, 32, 500); err != nil {
		t.Fatalf("reversal of a pending forward: %v", err)
	}
	if err := <-done; err == nil {
		t.Fatal("the purchase was approved after its reversal")
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000031")
	if fw.State != store.ForwardTimedOut || fw.Reason != "partner_reversal" || fw.SAF == "" {
		t.Fatalf("forward %+v", fw)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 0 {
		t.Fatalf("posted after the reversal: %+v", a)
	}
	if _, err := r.reverse(31, 33, 500); err != nil {
		t.Fatalf("second reversal (another STAN) of the timed-out forward: %v", err)
	}
	if q, _ := r.st.SAFEntries("", 100); len(q) != 1 {
		t.Fatalf("SAF entries %+v, want the one 0420", q)
	}
}
