package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// fwdCmdAt is fwdCmd recorded at time at (its deadline 5 s later).
func fwdCmdAt(key string, amt, at int64) Command {
	c := fwdCmd(key, amt)
	c.Time, c.Forward.Request.TimeoutAt = at, at+5e9
	return c
}

// A forward's sealed card number is dropped by OpExpire once the forward
// is older than the retention and final, walking forwards in the order
// they were made: an open hold (a completion could still need the card
// for its 0220) stops the walk until it closes, a forward within the
// retention stops it too, and a second run scrubs nothing more. The SAF
// entry of a timeout keeps its own copy until the host has it.
func TestExpireScrubsForwardCards(t *testing.T) {
	const minute = int64(time.Minute)
	s := forwardFixture(t)
	k3 := fwdCmdAt("p1|k3", 300, t0+20*minute)
	mustOK(t, s, fwdCmd("p1|k1", 100), fwdResult("p1|k1", OutcomeApproved, "00", "AAAAAA", t0+1),
		fwdCmd("p1|k2", 200), fwdResult("p1|k2", OutcomeTimeout, "", "", t0+2),
		fwdAuthCmd("p1|a1", 1000), fwdResult("p1|a1", OutcomeApproved, "00", "BBBBBB", t0+3),
		k3, fwdResult("p1|k3", OutcomeApproved, "00", "CCCCCC", k3.Time+1))
	pans := func() map[string]bool {
		out := map[string]bool{}
		for _, k := range []string{"p1|k1", "p1|k2", "p1|a1", "p1|k3"} {
			out[k] = len(getForward(t, s, k).PAN) > 0
		}
		return out
	}
	want := func(step string, scrubbed int, r Result, sealed map[string]bool) {
		t.Helper()
		if r.Scrubbed != scrubbed {
			t.Fatalf("%s: scrubbed %d, want %d", step, r.Scrubbed, scrubbed)
		}
		got := pans()
		for k, v := range sealed {
			if got[k] != v {
				t.Fatalf("%s: %s holds a card number: %v, want %v (%v)", step, k, got[k], v, got)
			}
		}
	}

	// Before the hold's expiry: k1 and k2 go, a1's open hold stops the walk.
	r := mustOK(t, s, expireCmd(t0+30*minute, t0+10*minute))[0]
	want("open hold", 2, r, map[string]bool{"p1|k1": false, "p1|k2": false, "p1|a1": true, "p1|k3": true})
	q, err := s.SAFQueue("iss", 10)
	if err != nil || len(q) != 1 || len(q[0].PAN) == 0 || q[0].MaskedPAN == "" {
		t.Fatalf("k2's reversal lost its card number with the forward's: %+v %v", q, err)
	}
	// The hold lapses (same command): a1 goes; k3 is within the retention.
	r = mustOK(t, s, expireCmd(t0+2*hour, t0+10*minute))[0]
	if r.Expired != 1 {
		t.Fatalf("hold not expired: %+v", r)
	}
	want("hold lapsed", 1, r, map[string]bool{"p1|a1": false, "p1|k3": true})
	r = mustOK(t, s, expireCmd(t0+3*hour, t0+hour))[0]
	want("k3 past retention", 1, r, map[string]bool{"p1|k3": false})
	r = mustOK(t, s, expireCmd(t0+4*hour, t0+2*hour))[0]
	want("again", 0, r, nil)
	// A scrubbed forward still answers for itself: state, code, masked card.
	if f := getForward(t, s, "p1|k1"); f.State != ForwardApproved || f.AuthCode != "AAAAAA" || f.MaskedPAN == "" || f.TransferID == "" {
		t.Fatalf("scrubbed forward %+v", f)
	}
}

// The SAF entry's sealed card number goes when the host has the advice;
// an ops drop keeps it (a retry may send it again) but its audit record
// never holds it.
func TestSAFCardDroppedOnDelivery(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdCmd("p1|k1", 100), fwdResult("p1|k1", OutcomeTimeout, "", "", t0+1),
		fwdCmd("p1|k2", 200), fwdResult("p1|k2", OutcomeTimeout, "", "", t0+2))
	upd := func(key, id, action string, adm *Admin) Command {
		return Command{Op: OpSAFUpdate, Key: key, Fingerprint: "fp-" + key, Time: t0 + 3e9, Admin: adm,
			Forward: &ForwardCommand{SAF: &SAFUpdate{ID: id, Action: action, RC: "00"}}}
	}
	mustOK(t, s, upd("d1", "S00000000000001", SAFActionDelivered, nil),
		upd("x1", "S00000000000002", SAFActionDrop, &Admin{Actor: "alice", Reason: "host confirmed by phone"}))
	if e, err := s.SAFEntry("S00000000000001"); err != nil || e.State != SAFDelivered || len(e.PAN) != 0 || e.MaskedPAN == "" {
		t.Fatalf("delivered entry %+v %v", e, err)
	}
	if e, err := s.SAFEntry("S00000000000002"); err != nil || e.State != SAFDropped || len(e.PAN) == 0 {
		t.Fatalf("dropped entry %+v %v", e, err)
	}
	recs, err := s.Audit(AuditFilter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, a := range recs {
		if a.Action != "saf."+SAFActionDrop {
			continue
		}
		found = true
		if strings.Contains(string(a.Before)+string(a.After), `"pan"`) {
			t.Fatalf("the audit of a drop holds the sealed card number: %s / %s", a.Before, a.After)
		}
	}
	if !found {
		t.Fatalf("no audit of the drop in %+v", recs)
	}
}

// The walk reads the forwards in steps (scrubStep) and goes on past a
// step's end: every forward past the retention is scrubbed in one run.
func TestExpireScrubsInSteps(t *testing.T) {
	s := forwardFixture(t)
	const n = 2*scrubStep + 3
	for i := range n {
		k := fmt.Sprintf("p1|s%03d", i)
		mustOK(t, s, fwdCmd(k, 10), fwdResult(k, OutcomeApproved, "00", "AAAAAA", t0+1))
	}
	if r := mustOK(t, s, expireCmd(t0+hour, t0+1))[0]; r.Scrubbed != n {
		t.Fatalf("scrubbed %d of %d", r.Scrubbed, n)
	}
	if f := getForward(t, s, fmt.Sprintf("p1|s%03d", n-1)); len(f.PAN) != 0 {
		t.Fatalf("the last forward kept its card: %+v", f)
	}
}

// Once a forwarded card purchase's number is scrubbed, the partner's
// reversal of it is refused (StatusReversalWindowClosed, stored for its
// repeat): nothing is reversed and no 0420 goes to the host without its
// field 2. A forward within the retention reverses as before.
func TestReversalRefusedOnceCardScrubbed(t *testing.T) {
	const minute = int64(time.Minute)
	s := forwardFixture(t)
	k3 := fwdCmdAt("p1|k3", 300, t0+20*minute)
	r1 := mustOK(t, s, fwdCmd("p1|k1", 100), fwdResult("p1|k1", OutcomeApproved, "00", "AAAAAA", t0+1),
		k3, fwdResult("p1|k3", OutcomeApproved, "00", "CCCCCC", k3.Time+1))
	if r := mustOK(t, s, expireCmd(t0+30*minute, t0+10*minute))[0]; r.Scrubbed != 1 {
		t.Fatalf("scrub: %+v", r)
	}
	accounts := func() (out []Account) {
		for _, id := range []string{"issuer", "settle"} {
			a, err := s.Account(id)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, a)
		}
		return out
	}
	before := accounts()

	late := reverseCmd("p1|rev-k1", "p1|ref-p1|k1", 100)
	late.Time = t0 + 31*minute
	for _, try := range []string{"reversal", "its repeat"} {
		if r := run1(t, s, late); r.Status != StatusReversalWindowClosed || r.TransferID != "" {
			t.Fatalf("%s of a scrubbed forward: %+v", try, r)
		}
	}
	if !errors.Is(StatusReversalWindowClosed.Err(), ErrReversalWindowClosed) {
		t.Fatal("no sentinel error")
	}
	if x := getXfer(t, s, r1[1].TransferID); x.Reversed != 0 || x.Status != TransferPosted {
		t.Fatalf("original changed: %+v", x)
	}
	if after := accounts(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("balances moved:\n%+v\n%+v", before, after)
	}
	if q, err := s.SAFQueue("iss", 10); err != nil || len(q) != 0 {
		t.Fatalf("advice queued for a refused reversal: %+v %v", q, err)
	}
	if f := getForward(t, s, "p1|k1"); f.SAF != "" || strings.HasPrefix(f.Reason, "partner") {
		t.Fatalf("forward marked: %+v", f)
	}

	// Within the retention: reversed, and its 0420 carries the card.
	ok := reverseCmd("p1|rev-k3", "p1|ref-p1|k3", 300)
	ok.Time = t0 + 31*minute
	if r := run1(t, s, ok); r.Status != StatusOK || r.TransferID == "" {
		t.Fatalf("reversal within the retention: %+v", r)
	}
	if q, err := s.SAFQueue("iss", 10); err != nil || len(q) != 1 || q[0].MTI != "0420" || len(q[0].PAN) == 0 {
		t.Fatalf("0420 of the reversal within the retention: %+v %v", q, err)
	}
}
