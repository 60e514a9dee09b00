package forward_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/sim"
	"github.com/switchd/switchd/store"
)

// advise submits a partner's advice (0220 without an original) for the
// off-us card.
func (r *rig) advise(stan int, amount int64) (payment.Outcome, error) {
	in := r.intent(stan, amount)
	in.Advice, in.Ref.MTI = true, "0220"
	in.IdempotencyKey += "|022"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return r.core.Submit(ctx, in)
}

// A partner's advice for an off-us card is taken at once while the host
// does not answer: posted (destination → partner), its repeat answered
// from the record (one posting, one SAF entry), the card sealed in the
// queue. The SAF sender's first 0220 goes unanswered, so the host gets
// the advice again as 0221 once it answers, and takes it exactly once.
func TestPartnerAdviceThroughSAF(t *testing.T) {
	r := newRig(t, sim.Behavior{Mode: sim.ModeTimeout, LateDelay: sim.Duration(time.Second)})
	out, err := r.advise(11, 2500)
	if err != nil || out.Result.TransferID == "" {
		t.Fatalf("advice: %+v %v", out, err)
	}
	again, err := r.advise(11, 2500)
	if err != nil || !again.Result.Replayed || again.Result.TransferID != out.Result.TransferID {
		t.Fatalf("repeat: %+v %v", again, err)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 2500 {
		t.Fatalf("issuer position %+v", a)
	}
	if a := r.account("demo-acquirer-settlement"); a.CreditsPosted != 2500 {
		t.Fatalf("partner position %+v", a)
	}
	fw, err := r.st.Forward("demo-acquirer|100001|000011|022")
	if err != nil || fw.State != store.ForwardAdvised || fw.TransferID != out.Result.TransferID || fw.SAF == "" {
		t.Fatalf("forward %+v %v", fw, err)
	}
	e, err := r.st.SAFEntry(fw.SAF)
	if err != nil || e.MTI != "0220" || e.Fields[11] != fw.STAN() || len(e.PAN) == 0 || bytes.Contains(e.PAN, []byte(testPAN)) {
		t.Fatalf("SAF entry %+v %v", e, err)
	}
	if all, _ := r.st.SAFEntries("", 10); len(all) != 1 {
		t.Fatalf("SAF entries after an advice and its repeat: %d", len(all))
	}
	r.waitFor("the first send unanswered", func() bool { e, _ := r.st.SAFEntry(fw.SAF); return e.Sends >= 1 })
	if e, _ := r.st.SAFEntry(fw.SAF); e.Attempts != 0 || e.State != store.SAFQueued {
		t.Fatalf("a timeout counted as an attempt: %+v", e)
	}
	if err := r.issuer.SetBehavior(sim.DefaultBehavior()); err != nil {
		t.Fatal(err)
	}
	r.waitFor("the advice delivered", func() bool { e, _ := r.st.SAFEntry(fw.SAF); return e.State == store.SAFDelivered })
	m := r.issuer.Stats().Messages
	if m["0220"]["approved"] != 0 || m["0221"]["approved"] != 1 || m["0220"]["unanswered"] < 1 {
		t.Fatalf("host messages %+v", m)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 2500 {
		t.Fatalf("delivery posted again: %+v", a)
	}
}

// With the host answering, the advice goes once as 0220 and is delivered;
// an authorization advice (0120) goes on as one.
func TestPartnerAdviceDelivered(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	if _, err := r.advise(12, 100); err != nil {
		t.Fatal(err)
	}
	in := r.intent(13, 200)
	in.Advice, in.Ref.MTI, in.IdempotencyKey = true, "0120", in.IdempotencyKey+"|012"
	if _, err := r.core.Submit(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	r.waitFor("both delivered", func() bool { q, _ := r.st.SAFQueue("demo-issuer", 10); return len(q) == 0 })
	m := r.issuer.Stats().Messages
	if m["0220"]["approved"] != 1 || m["0120"]["approved"] != 1 || m["0221"]["approved"] != 0 {
		t.Fatalf("host messages %+v", m)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 300 {
		t.Fatalf("issuer position %+v", a)
	}
}

// An advice the ledger refuses queues nothing: a refund advice is not
// taken for an off-us card (only purchases and cash are forwarded), and
// the advice of a node without a KEK is 91 with nothing recorded.
func TestPartnerAdviceRefused(t *testing.T) {
	r := newRig(t, sim.DefaultBehavior())
	in := r.intent(14, 100)
	in.Kind, in.Advice, in.Ref.MTI, in.IdempotencyKey = payment.KindRefund, true, "0220", in.IdempotencyKey+"|022"
	if _, err := r.core.Submit(context.Background(), in); outcome.Code(err) != outcome.InvalidTransaction {
		t.Fatalf("refund advice: %v (%s)", err, outcome.Code(err))
	}
	if all, _ := r.st.SAFEntries("", 10); len(all) != 0 {
		t.Fatalf("a refused advice was queued: %+v", all)
	}
	if a := r.account("demo-issuer-settlement"); a.DebitsPosted != 0 || a.CreditsPosted != 0 {
		t.Fatalf("a refused advice posted: %+v", a)
	}
}
