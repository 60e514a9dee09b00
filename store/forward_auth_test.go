package store

import (
	"testing"
)

// fwdAuthCmd is fwdCmd as an authorization (0100) of card hash "hx": its
// approval holds until t0+hour.
func fwdAuthCmd(key string, amt int64) Command {
	c := fwdCmd(key, amt)
	c.HoldExpiry, c.Ref.MTI = t0+hour, "0100"
	c.Forward.Request.MTI, c.Forward.Request.CardHash = "0100", "hx"
	return c
}

// completeOf and reverseOf are the partner's completion and reversal of
// forward key's authorization, naming card hash card.
func completeOf(key, fwd, card string, amt int64, final bool, at int64) Command {
	c := completeCmd(key, "p1|ref-"+fwd, amt, final, "")
	c.Card, c.Time = card, at
	return c
}

func reverseOf(key, fwd, card string, amt int64, at int64) Command {
	c := reverseCmd(key, "p1|ref-"+fwd, amt)
	c.Card, c.Time = card, at
	return c
}

// An approved authorization holds on the destination's settlement
// account: nothing is posted until the partner completes. Each
// completion posts what it captured and queues the host's 0220 in the
// same apply (field 4 the amount captured, 38 the approval, 90 the
// authorization, a STAN of its own); a completion naming another card is
// refused and queues nothing; the reversal of what is left voids the hold
// and queues one 0420 saying what stands (field 95); a second reversal is
// refused.
func TestForwardedAuthorizationHolds(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdAuthCmd("p1|a1", 1000))
	ar := mustOK(t, s, fwdResult("p1|a1", OutcomeApproved, "00", "A1B2C3", t0+1))[0]
	if ar.AuthCode != "A1B2C3" || ar.TransferID == "" {
		t.Fatalf("approval: %+v", ar)
	}
	h := getXfer(t, s, ar.TransferID)
	if h.Op != OpAuthorize || h.Status != TransferPending || h.Held != 1000 || h.Expiry != t0+hour || h.Debit != "issuer" || h.Credit != "settle" {
		t.Fatalf("hold: %+v", h)
	}
	wantBal(t, s, "issuer", bal{dPend: 1000})
	wantBal(t, s, "settle", bal{cPend: 1000})
	if q, _ := s.SAFQueue("iss", 10); len(q) != 0 {
		t.Fatalf("an approval queued advices: %+v", q)
	}

	if r := run1(t, s, completeOf("c0", "p1|a1", "hy", 400, false, t0+2)); r.Status != StatusUnknownOriginal {
		t.Fatalf("completion naming another card: %+v", r)
	}
	if r := run1(t, s, reverseOf("r0", "p1|a1", "hy", 1000, t0+2)); r.Status != StatusUnknownOriginal {
		t.Fatalf("reversal naming another card: %+v", r)
	}
	if q, _ := s.SAFQueue("iss", 10); len(q) != 0 {
		t.Fatalf("refused requests queued advices: %+v", q)
	}

	mustOK(t, s, completeOf("c1", "p1|a1", "hx", 400, false, t0+3), completeOf("c2", "p1|a1", "hx", 200, false, t0+4))
	wantBal(t, s, "issuer", bal{dPend: 400, dPost: 600})
	wantBal(t, s, "settle", bal{cPend: 400, cPost: 600})
	q, err := s.SAFQueue("iss", 10)
	if err != nil || len(q) != 2 {
		t.Fatalf("queue after two completions: %v %+v", err, q)
	}
	f := getForward(t, s, "p1|a1")
	wantOrig := "0100" + f.STAN() + "1202080000" + "00000001001" + "00000000000"
	for i, want := range []int64{400, 200} {
		e := q[i]
		if e.MTI != "0220" || e.Amount != want || e.Fields[4] != formatAmount12(want) || e.Fields[38] != "A1B2C3" ||
			e.Fields[90] != wantOrig || e.Fields[37] != f.RRN() || len(e.Fields[11]) != 6 || e.Fields[11] == f.STAN() ||
			e.Fields[3] != "000000" || e.Fields[41] != "TERM0001" || len(e.PAN) == 0 {
			t.Fatalf("completion advice %d: %+v", i, e)
		}
	}
	// Each completion's STAN is the next forward number's: the next
	// forward's STAN is past both.
	mustOK(t, s, fwdCmd("p1|after", 100))
	next := getForward(t, s, "p1|after")
	if q[0].Fields[11] != "000002" || q[1].Fields[11] != "000003" || next.STAN() != "000004" {
		t.Fatalf("STANs: completions %s %s, next forward %s", q[0].Fields[11], q[1].Fields[11], next.STAN())
	}

	mustOK(t, s, reverseOf("r1", "p1|a1", "hx", 400, t0+5))
	if h := getXfer(t, s, ar.TransferID); h.Status != TransferVoided || h.Held != 0 || h.Captured != 600 {
		t.Fatalf("hold after the reversal: %+v", h)
	}
	wantBal(t, s, "issuer", bal{dPost: 600})
	wantBal(t, s, "settle", bal{cPost: 600})
	f = getForward(t, s, "p1|a1")
	e, err := s.SAFEntry(f.SAF)
	if err != nil || e.MTI != "0420" || e.Fields[95] != ReplacementAmounts(600) || e.Fields[4] != "000000001000" || f.Reason != "partner_partial_reversal" {
		t.Fatalf("reversal advice %+v %v (forward %+v)", e, err, f)
	}
	if r := run1(t, s, reverseOf("r2", "p1|a1", "hx", 100, t0+6)); r.Status == StatusOK {
		t.Fatalf("a second reversal: %+v", r)
	}
	if q, _ := s.SAFQueue("iss", 10); len(q) != 3 {
		t.Fatalf("queue: %+v", q)
	}
	checkInvariants(t, s)
}

func formatAmount12(n int64) string {
	b := []byte("000000000000")
	for i := len(b) - 1; n > 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b)
}

// A final completion captures and releases the rest; the authorization's
// full reversal (no completion) is an 0420 without field 95; an
// authorization left alone expires with its hold released and nothing
// sent (the issuer's authorization lapses on its own clock).
func TestForwardedAuthorizationEnds(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdAuthCmd("p1|a2", 1000), fwdResult("p1|a2", OutcomeApproved, "00", "AUTH02", t0+1))
	mustOK(t, s, completeOf("c1", "p1|a2", "hx", 700, true, t0+2))
	wantBal(t, s, "issuer", bal{dPost: 700})
	if r := run1(t, s, completeOf("c2", "p1|a2", "hx", 100, false, t0+3)); r.Status != StatusAlreadyFinal {
		t.Fatalf("completion after the final one: %+v", r)
	}
	if q, _ := s.SAFQueue("iss", 10); len(q) != 1 || q[0].Fields[4] != "000000000700" {
		t.Fatalf("queue: %+v", q)
	}

	mustOK(t, s, fwdAuthCmd("p1|a3", 500), fwdResult("p1|a3", OutcomeApproved, "00", "AUTH03", t0+1))
	mustOK(t, s, reverseOf("r3", "p1|a3", "hx", 500, t0+2))
	f := getForward(t, s, "p1|a3")
	if e, err := s.SAFEntry(f.SAF); err != nil || e.MTI != "0420" || e.Fields[95] != "" || f.Reason != "partner_reversal" {
		t.Fatalf("reversal advice %+v %v", e, err)
	}
	if h := getXfer(t, s, f.TransferID); h.Status != TransferVoided || h.Held != 0 {
		t.Fatalf("voided hold %+v", h)
	}

	mustOK(t, s, fwdAuthCmd("p1|a4", 300), fwdResult("p1|a4", OutcomeApproved, "00", "AUTH04", t0+1))
	mustOK(t, s, expireCmd(t0+hour+1, 0))
	f = getForward(t, s, "p1|a4")
	if h := getXfer(t, s, f.TransferID); h.Status != TransferExpired || h.Held != 0 {
		t.Fatalf("expired hold %+v", h)
	}
	wantBal(t, s, "issuer", bal{dPost: 700})
	if q, _ := s.SAFQueue("iss", 10); len(q) != 2 || f.SAF != "" {
		t.Fatalf("expiry sent something: %+v (forward %+v)", q, f)
	}
	checkInvariants(t, s)
}

// An authorization is a card's: one paid by a payer, one whose hold
// would lapse before it is made, a hold on a purchase, or an 0100
// without a hold is refused and stores nothing. A declined or unanswered
// authorization holds nothing; the unanswered one queues its 0420.
func TestForwardedAuthorizationRefusals(t *testing.T) {
	s := forwardFixture(t)
	for name, change := range map[string]func(*Command){
		"no hold":        func(c *Command) { c.HoldExpiry = 0 },
		"expired hold":   func(c *Command) { c.HoldExpiry = c.Time },
		"hold on a 0200": func(c *Command) { c.Forward.Request.MTI = "0200" },
		"payer pays":     func(c *Command) { c.Card = "h1"; c.Forward.Request.Debit = "" },
		"card hash sep":  func(c *Command) { c.Forward.Request.CardHash = "h\x00x" },
	} {
		c := fwdAuthCmd("p1|bad-"+name, 100)
		change(&c)
		if r := run1(t, s, c); r.Status == StatusOK {
			t.Errorf("%s: accepted %+v", name, r)
		}
	}
	mustOK(t, s, fwdAuthCmd("p1|d1", 100), fwdResult("p1|d1", OutcomeDeclined, "51", "", t0+1))
	mustOK(t, s, fwdAuthCmd("p1|t1", 100), fwdResult("p1|t1", OutcomeTimeout, "", "", t0+1))
	wantBal(t, s, "issuer", bal{})
	wantBal(t, s, "settle", bal{})
	if q, _ := s.SAFQueue("iss", 10); len(q) != 1 || q[0].MTI != "0420" || q[0].Fields[90][:4] != "0100" {
		t.Fatalf("queue: %+v", q)
	}
	// The unanswered authorization's reversal by the partner is taken
	// (the 0420 is already queued) and posts nothing.
	if r := run1(t, s, reverseOf("rt1", "p1|t1", "hx", 100, t0+2)); r.Status != StatusOK {
		t.Fatalf("reversal of the unanswered authorization: %+v", r)
	}
	if r := run1(t, s, reverseOf("rt2", "p1|t1", "hy", 100, t0+2)); r.Status == StatusOK {
		t.Fatalf("reversal of it naming another card: %+v", r)
	}
	wantBal(t, s, "issuer", bal{})
	checkInvariants(t, s)
}

// The issuer reverses an authorization (its 0420): what is held is
// released and the partner is told (payment.reversed); what the partner
// had captured stands. Once the hold is closed there is nothing to
// release.
func TestHostReversesAuthorization(t *testing.T) {
	s := forwardFixture(t)
	fr := mustOK(t, s, fwdAuthCmd("p1|a5", 1000))[0]
	ar := mustOK(t, s, fwdResult("p1|a5", OutcomeApproved, "00", "AUTH05", t0+1))[0]
	mustOK(t, s, completeOf("c1", "p1|a5", "hx", 300, false, t0+2))
	r := mustOK(t, s, hostRevCmd("hrev|iss|e1", "iss", fr.TransferID, "e1", "2026-03-02", t0+3))[0]
	if r.Detail != HostReversalHoldVoided || r.TransferID != "" {
		t.Fatalf("host reversal of a hold: %+v", r)
	}
	if h := getXfer(t, s, ar.TransferID); h.Status != TransferVoided || h.Held != 0 || h.Captured != 300 || h.Reversed != 700 {
		t.Fatalf("hold %+v", h)
	}
	wantBal(t, s, "issuer", bal{dPost: 300})
	wantBal(t, s, "settle", bal{cPost: 300})
	if rec, err := s.HostReversal(fr.TransferID); err != nil || rec.Amount != 700 {
		t.Fatalf("record %+v %v", rec, err)
	}

	fr = mustOK(t, s, fwdAuthCmd("p1|a6", 400))[0]
	mustOK(t, s, fwdResult("p1|a6", OutcomeApproved, "00", "AUTH06", t0+1), completeOf("c2", "p1|a6", "hx", 400, true, t0+2))
	r = mustOK(t, s, hostRevCmd("hrev|iss|e2", "iss", fr.TransferID, "e2", "2026-03-02", t0+3))[0]
	if r.Detail != HostReversalHoldClosed || r.TransferID != "" {
		t.Fatalf("host reversal of a completed hold: %+v", r)
	}
	wantBal(t, s, "issuer", bal{dPost: 700})
	checkInvariants(t, s)
}

// The issuer approves an authorization our ledger cannot hold (the
// destination's settlement account is not unlimited and has nothing to
// owe from): the partner is declined with the ledger's status, nothing is
// held, and the approval is reversed at the issuer through the SAF queue
// (one 0420), as for a purchase; a repeat of the approval gets the same
// refusal.
func TestForwardedAuthorizationHoldRefused(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, createCmd(acct("iss-lim", KindSettlement, "USD")), putDestCmd("d-iss2", Destination{ID: "iss2", Kind: DestinationKindISO8583, SettlementAccount: "iss-lim",
		BINs: []string{"500000"}, ISO8583: &HostDestination{Addrs: []string{"127.0.0.1:9584"}, Dialect: "iso87ascii", Header: "binary2", PoolSize: 1, TimeoutMs: 1000}}))
	c := fwdAuthCmd("p1|a9", 1000)
	c.Forward.Request.Destination, c.Forward.Request.Debit = "iss2", "iss-lim"
	mustOK(t, s, c)
	for i := range 2 {
		if r := run1(t, s, fwdResult("p1|a9", OutcomeApproved, "00", "A9A9A9", t0+1+int64(i))); r.Status != StatusInsufficientFunds || r.TransferID != "" {
			t.Fatalf("approval %d of a hold the ledger refuses: %+v", i, r)
		}
	}
	f := getForward(t, s, "p1|a9")
	if f.State != ForwardTimedOut || f.Reason != "ledger_insufficient_funds" || f.TransferID != "" || f.SAF == "" {
		t.Fatalf("forward %+v", f)
	}
	wantBal(t, s, "iss-lim", bal{})
	wantBal(t, s, "settle", bal{})
	q, err := s.SAFQueue("iss2", 10)
	if err != nil || len(q) != 1 || q[0].MTI != "0420" || q[0].ID != f.SAF {
		t.Fatalf("queue %+v %v, want the approval's one 0420", q, err)
	}
	if ts, _ := s.Transfers(TransferFilter{Account: "iss-lim"}); len(ts) != 0 {
		t.Fatalf("transfers %+v", ts)
	}
	checkInvariants(t, s)
}
