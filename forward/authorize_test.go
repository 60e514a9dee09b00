package forward_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// authorize is the partner's 0100 for the off-us card.
func (r *rig) authorize(stan int, amount int64) (payment.Outcome, error) {
	in := r.intent(stan, amount)
	in.Kind, in.Ref.MTI = payment.KindAuthorize, "0100"
	in.Fingerprint = []string{"authorize", fmt.Sprint(amount), payment.FingerprintPAN}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.core.Submit(ctx, in)
}

// complete is the partner's 0220 completion of authorization stan, for
// card pan.
func (r *rig) complete(stan, cstan int, amount int64, final bool, pan string) (payment.Outcome, error) {
	in := r.intent(cstan, amount)
	p, err := card.ParsePAN(pan)
	if err != nil {
		r.t.Fatal(err)
	}
	in.Kind, in.Ref.MTI, in.PAN, in.Final = payment.KindCompletion, "0220", p, final
	in.Original, in.OriginalRef = fmt.Sprintf("100001|%06d", stan), ""
	in.Fingerprint = []string{"completion", fmt.Sprint(amount), payment.FingerprintPAN}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.core.Submit(ctx, in)
}

// The partner's authorization of an off-us card goes to its issuer as an
// 0100; the approval holds (nothing posted). Its completion, with the
// same card, posts what it captured and reaches the issuer as one 0220
// (the approval code, the authorization's data elements); a completion
// with another card is refused and sends nothing.
func TestForwardAuthorizeAndComplete(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	out, err := r.authorize(61, 1200)
	if err != nil || out.AuthCode == "" {
		t.Fatalf("authorization: %+v %v", out, err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPending != 1200 || a.DebitsPosted != 0 {
		t.Fatalf("issuer position after the authorization %+v", a)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000061")
	if fw.State != store.ForwardApproved || fw.MTI != "0100" || !fw.IsAuthorization() || fw.CardHash == "" {
		t.Fatalf("forward %+v", fw)
	}
	if m := r.issuer.Stats().Messages; m["0100"]["approved"] != 1 || m["0200"]["approved"] != 0 {
		t.Fatalf("host messages %+v", m)
	}

	if _, err := r.complete(61, 62, 800, false, "4000000000000010"); outcome.Code(err) != "25" {
		t.Fatalf("a completion with another card: %v (%s), want 25 (no such original)", err, outcome.Code(err))
	}
	if q, _ := r.st.SAFEntries("", 10); len(q) != 0 {
		t.Fatalf("a refused completion queued %+v", q)
	}
	done, err := r.complete(61, 63, 800, true, testPAN)
	if err != nil || done.Result.TransferID == "" {
		t.Fatalf("completion: %+v %v", done, err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPending != 0 || a.DebitsPosted != 800 {
		t.Fatalf("issuer position after the completion %+v", a)
	}
	if a := r.account("demo-acquirer-settlement"); a.CreditsPending != 0 || a.CreditsPosted != 800 {
		t.Fatalf("partner position after the completion %+v", a)
	}
	q, _ := r.st.SAFEntries("", 10)
	if len(q) != 1 || q[0].MTI != "0220" || q[0].Fields[4] != "000000000800" || q[0].Fields[38] != fw.AuthCode || q[0].Fields[90][:4] != "0100" {
		t.Fatalf("the host's completion advice %+v", q)
	}
	r.waitFor("the 0220 delivered", func() bool { e, _ := r.st.SAFEntry(q[0].ID); return e.State == store.SAFDelivered })
	if m := r.issuer.Stats().Messages; m["0220"]["approved"] != 1 || m["0221"]["approved"] != 0 {
		t.Fatalf("host messages %+v", m)
	}
	if again, err := r.complete(61, 63, 800, true, testPAN); err != nil || !again.Result.Replayed {
		t.Fatalf("repeat of the completion: %+v %v", again, err)
	}
	if q, _ := r.st.SAFEntries("", 10); len(q) != 1 {
		t.Fatalf("the repeat queued again: %+v", q)
	}
}

// The partner reverses an authorization it will not complete: the hold
// is voided and the issuer gets one 0420. An authorization the issuer
// does not answer is 91 with its 0420 queued and nothing held.
func TestForwardAuthorizeReversedAndUnanswered(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if _, err := r.authorize(71, 500); err != nil {
		t.Fatal(err)
	}
	if _, err := r.reverse(71, 72, 500); err != nil {
		t.Fatalf("reversal: %v", err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPending != 0 || a.DebitsPosted != 0 {
		t.Fatalf("issuer position after the reversal %+v", a)
	}
	fw, _ := r.st.Forward("demo-acquirer|100001|000071")
	r.waitFor("the 0420 delivered", func() bool { e, _ := r.st.SAFEntry(fw.SAF); return fw.SAF != "" && e.State == store.SAFDelivered })
	if adv := r.issuer.Stats().Advices; adv.Distinct != 1 || adv.NewTwice != 0 {
		t.Fatalf("host advices %+v", adv)
	}

	if err := r.issuer.SetBehavior(sim.Behavior{Mode: sim.ModeTimeout, LateDelay: sim.Duration(time.Second)}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.authorize(73, 300); outcome.Code(err) != "91" {
		t.Fatalf("unanswered authorization: %v (%s)", err, outcome.Code(err))
	}
	fw, _ = r.st.Forward("demo-acquirer|100001|000073")
	e, err := r.st.SAFEntry(fw.SAF)
	if fw.State != store.ForwardTimedOut || err != nil || e.MTI != "0420" || e.Fields[90][:4] != "0100" {
		t.Fatalf("forward %+v, advice %+v %v", fw, e, err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPending != 0 || a.DebitsPosted != 0 {
		t.Fatalf("the unanswered authorization held: %+v", a)
	}
}
