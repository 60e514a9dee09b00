package store

import (
	"errors"
	"testing"
)

func hostRevCmd(key, dest, fwd, event string, day string, at int64) Command {
	return Command{Op: OpHostReversal, Key: key, Fingerprint: fwd, Time: at, BusinessDay: day,
		HostReversal: &HostReversal{Destination: dest, Forward: fwd, Source: HostReversalWebhook, Event: event}}
}

// A host reverses an approved forward on a later business day: one
// compensating transfer on that day, the original marked reversed, one
// payment.reversed outbox row; a retry of the same event and a second
// event about the same payment change nothing.
func TestHostReversal(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1", EventPaymentReversed), 0))
	fr := mustOK(t, s, fwdCmd("p1|k1", 1000))[0]
	ar := mustOK(t, s, fwdResult("p1|k1", OutcomeApproved, "00", "A1B2C3", t0+1))[0]
	// The biller reverses it the next business day.
	day := "2026-03-02" // the fixture's open day
	if rs := run(t, s, closeDayCmd(day, "2026-03-03")); rs[0].Status != StatusOK {
		t.Fatalf("close %s: %+v", day, rs)
	}

	r := mustOK(t, s, hostRevCmd("hrev|iss|wh1", "iss", fr.TransferID, "wh1", "2026-03-03", t0+24*hour))[0]
	if r.TransferID == "" || r.Detail != "" {
		t.Fatalf("reversal: %+v", r)
	}
	rev := getXfer(t, s, r.TransferID)
	if rev.Debit != "settle" || rev.Credit != "issuer" || rev.Amount != 1000 || rev.Partner != "p1" ||
		rev.Original != ar.TransferID || rev.BusinessDay != "2026-03-03" || rev.Op != OpReverse {
		t.Fatalf("compensating transfer: %+v", rev)
	}
	if o := getXfer(t, s, ar.TransferID); o.Reversed != 1000 {
		t.Fatalf("original not marked reversed: %+v", o)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000, cPost: 1000})
	wantBal(t, s, "settle", bal{cPost: 1000, dPost: 1000})

	// The same webhook again: a replay. Another webhook id for the same
	// payment: the first reversal, nothing new.
	if rr := run1(t, s, hostRevCmd("hrev|iss|wh1", "iss", fr.TransferID, "wh1", "2026-03-03", t0+25*hour)); !rr.Replayed || rr.TransferID != r.TransferID {
		t.Fatalf("retry: %+v", rr)
	}
	if rr := mustOK(t, s, hostRevCmd("hrev|iss|wh2", "iss", fr.TransferID, "wh2", "2026-03-03", t0+26*hour))[0]; rr.TransferID != r.TransferID || rr.Detail != HostReversalAlready {
		t.Fatalf("second event: %+v", rr)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000, cPost: 1000})
	ds := deliveries(t, s, "ep1")
	if len(ds) != 1 || ds[0].Type != EventPaymentReversed || ds[0].Transfer != ar.TransferID {
		t.Fatalf("outbox: %+v", ds)
	}
	rec, err := s.HostReversal(fr.TransferID)
	if err != nil || rec.Transfer != r.TransferID || rec.Event != "wh1" || rec.Day != "2026-03-03" {
		t.Fatalf("record %+v %v", rec, err)
	}
}

// Refusals change nothing: an unknown forward, another destination's
// forward, a malformed request; a declined forward has nothing to reverse.
func TestHostReversalRefusals(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, endpointCmd("we1", WebhookCreate, testEndpoint("ep1"), 0))
	fr := mustOK(t, s, fwdCmd("p1|k1", 1000))[0]
	mustOK(t, s, fwdResult("p1|k1", OutcomeApproved, "00", "A1B2C3", t0+1))
	d2 := mustOK(t, s, fwdCmd("p1|k2", 500))[0]
	mustOK(t, s, fwdResult("p1|k2", OutcomeDeclined, "05", "", t0+1))
	before := len(deliveries(t, s, "ep1"))

	if r := run1(t, s, hostRevCmd("x1", "iss", "F00000000000099", "e", "2026-03-03", t0+hour)); r.Status != StatusUnknownOriginal {
		t.Fatalf("unknown forward: %+v", r)
	}
	if r := run1(t, s, hostRevCmd("x2", "other", fr.TransferID, "e", "2026-03-03", t0+hour)); r.Status != StatusUnknownOriginal {
		t.Fatalf("another destination's forward: %+v", r)
	}
	bad := hostRevCmd("x3", "iss", fr.TransferID, "e", "2026-03-03", t0+hour)
	bad.HostReversal.Source = "email"
	if r := run1(t, s, bad); r.Status != StatusInvalidCommand {
		t.Fatalf("bad source: %+v", r)
	}
	if r := mustOK(t, s, hostRevCmd("x4", "iss", d2.TransferID, "e", "2026-03-03", t0+hour))[0]; r.Detail != HostReversalNotApproved || r.TransferID != "" {
		t.Fatalf("declined forward: %+v", r)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000})
	if _, err := s.HostReversal(fr.TransferID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a refused reversal left a record: %v", err)
	}
	if n := len(deliveries(t, s, "ep1")); n != before {
		t.Fatalf("a refused reversal wrote %d outbox rows", n-before)
	}
}
