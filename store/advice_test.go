package store

import (
	"bytes"
	"errors"
	"testing"
)

// TestAgentOfflineAdvice: an agent's offline advices count against its
// offline limit, not its cash limit; a repeat is one posting; an advice
// beyond the limit (or from an agent with none) is refused and changes
// nothing; a settlement frees offline limit first.
func TestAgentOfflineAdvice(t *testing.T) {
	s := adminFixture(t)
	id := AgentID("ag", "T1")
	mustOK(t, s, adminCmd(OpPutAgent, "ag1", &Admin{Agent: &Agent{Partner: "ag", Terminal: "T1", Currency: "USD", CashLimit: 1000}}))
	advice := func(key string, amt int64) Command {
		c := postCardCmd(key, "h1", "merch", amt, "")
		c.Partner, c.PayerType, c.Agent, c.Offline = "ag", PayerOTCAgent, id, true
		return c
	}
	// No offline limit (the default): every advice is refused.
	before := getAcct(t, s, "merch")
	if r := run1(t, s, advice("a0", 1)); r.Status != StatusOfflineLimit || r.TransferID != "" {
		t.Fatalf("advice without an offline limit: %+v", r)
	}
	if a, _ := s.Agent(id); a.CashHeld != 0 || a.OfflineHeld != 0 {
		t.Fatalf("refused advice changed the agent: %+v", a)
	}
	if balOf(getAcct(t, s, "merch")) != balOf(before) {
		t.Fatal("refused advice moved money")
	}

	mustOK(t, s, adminCmd(OpPutAgent, "ag2", &Admin{Agent: &Agent{Partner: "ag", Terminal: "T1", Currency: "USD", CashLimit: 1000, OfflineLimit: 500}}))
	r := mustOK(t, s, advice("a1", 300))[0]
	if again := run1(t, s, advice("a1", 300)); !again.Replayed || again.TransferID != r.TransferID {
		t.Fatalf("repeat of an advice: %+v, first %+v", again, r)
	}
	a, _ := s.Agent(id)
	if a.CashHeld != 300 || a.OfflineHeld != 300 {
		t.Fatalf("after one advice (and its repeat): %+v", a)
	}
	if x := getXfer(t, s, r.TransferID); x.Op != OpPost || x.Agent != id || x.Amount != 300 {
		t.Fatalf("advice transfer: %+v", x)
	}

	// 201 more would make 501 offline: refused, nothing moved, and the
	// decline is what its repeat gets.
	before, card := getAcct(t, s, "merch"), getAcct(t, s, "card1")
	if r := run1(t, s, advice("a2", 201)); r.Status != StatusOfflineLimit {
		t.Fatalf("advice beyond the offline limit: %+v", r)
	}
	if r := run1(t, s, advice("a2", 201)); r.Status != StatusOfflineLimit || !r.Replayed {
		t.Fatalf("repeat of a refused advice: %+v", r)
	}
	if balOf(getAcct(t, s, "merch")) != balOf(before) || balOf(getAcct(t, s, "card1")) != balOf(card) {
		t.Fatal("refused advice moved money")
	}
	if got, _ := s.Agent(id); got != a {
		t.Fatalf("refused advice changed the agent: %+v, was %+v", got, a)
	}
	mustOK(t, s, advice("a3", 200)) // exactly to the limit

	// Online cash and offline cash share CashHeld: the cash limit sees both.
	online := postCardCmd("o1", "h1", "merch", 501, "")
	online.Partner, online.PayerType, online.Agent = "ag", PayerOTCAgent, id
	if r := run1(t, s, online); r.Status != StatusAgentLimit {
		t.Fatalf("online posting over the cash limit with offline cash held: %+v", r)
	}

	// Handing 300 in frees 300 of offline limit.
	mustOK(t, s, adminCmd(OpSettleAgent, "s1", &Admin{Settlement: &AgentSettlement{Agent: id, Amount: 300, Currency: "USD", Reference: "s1"}}))
	if a, _ := s.Agent(id); a.CashHeld != 200 || a.OfflineHeld != 200 {
		t.Fatalf("after settling 300: %+v", a)
	}
	mustOK(t, s, advice("a4", 300))
	if r := run1(t, s, advice("a5", 1)); r.Status != StatusOfflineLimit {
		t.Fatalf("limit not used up again: %+v", r)
	}
	// A put keeps what is held, and validates the limit.
	mustOK(t, s, adminCmd(OpPutAgent, "ag3", &Admin{Agent: &Agent{Partner: "ag", Terminal: "T1", Currency: "USD", CashLimit: 1000, OfflineLimit: 600}}))
	if a, _ := s.Agent(id); a.OfflineHeld != 500 || a.OfflineLimit != 600 {
		t.Fatalf("after a put: %+v", a)
	}
	if r := run1(t, s, adminCmd(OpPutAgent, "ag4", &Admin{Agent: &Agent{Partner: "ag", Terminal: "T1", Currency: "USD", OfflineLimit: -1}})); r.Status != StatusInvalidChange {
		t.Fatalf("negative offline limit: %+v", r)
	}
}

// TestOfflineOnlyForAgentPostings: Offline on anything but an agent's
// OpPost is an invalid command, not stored, nothing moved.
func TestOfflineOnlyForAgentPostings(t *testing.T) {
	s := adminFixture(t)
	before := getAcct(t, s, "merch")
	c := postCardCmd("x1", "h1", "merch", 1, "")
	c.Offline = true
	if r := run1(t, s, c); r.Status != StatusInvalidCommand {
		t.Fatalf("offline posting without an agent: %+v", r)
	}
	if balOf(getAcct(t, s, "merch")) != balOf(before) {
		t.Fatal("invalid offline posting moved money")
	}
}

func adviceFwdCmd(key string, amt int64) Command {
	c := fwdCmd(key, amt)
	c.Op, c.Ref.MTI = OpForwardAdvice, "0220"
	q := c.Forward.Request
	q.MTI, q.TimeoutAt, q.OriginalRef = "0220", t0+24*hour, ""
	c.OriginalRef = "p1|ref-" + key
	return c
}

// A partner's advice for an off-us card posts at once (destination →
// partner), is recorded as a forward and queued as a 0220 with our STAN
// and RRN; its repeat is answered from the record and queues nothing more.
func TestForwardAdviceQueued(t *testing.T) {
	s := forwardFixture(t)
	r := mustOK(t, s, adviceFwdCmd("p1|a1", 1000))[0]
	if r.TransferID == "" || r.AuthCode == "" {
		t.Fatalf("advice: %+v", r)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000})
	wantBal(t, s, "settle", bal{cPost: 1000})
	if again := run1(t, s, adviceFwdCmd("p1|a1", 1000)); !again.Replayed || again.TransferID != r.TransferID {
		t.Fatalf("repeat: %+v", again)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000})
	q, err := s.SAFQueue("iss", 10)
	if err != nil || len(q) != 1 {
		t.Fatalf("SAF queue: %+v, %v", q, err)
	}
	e := q[0]
	f := getForward(t, s, "p1|a1")
	if e.MTI != "0220" || e.Forward != "p1|a1" || e.Fields[11] != f.STAN() || e.Fields[37] != f.RRN() || e.Fields[90] != "" ||
		!bytes.Equal(e.PAN, []byte("wrapped-pan-bytes")) || e.ExpiresAt != t0+24*hour || e.State != SAFQueued {
		t.Fatalf("SAF entry: %+v", e)
	}
	if f.State != ForwardAdvised || f.TransferID != r.TransferID || f.SAF != e.ID {
		t.Fatalf("forward: %+v", f)
	}
	if due, _ := s.DueForwards(t0+48*hour, 10); len(due) != 0 {
		t.Fatalf("an advice is never swept: %+v", due)
	}
	// Delivered: out of the queue; the posting stands.
	mustOK(t, s, Command{Op: OpSAFUpdate, Key: "saf|d", Fingerprint: "d", Time: t0 + 1,
		Forward: &ForwardCommand{SAF: &SAFUpdate{ID: e.ID, Action: SAFActionDelivered, RC: "00"}}})
	if q, _ := s.SAFQueue("iss", 10); len(q) != 0 {
		t.Fatalf("queue after delivery: %+v", q)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000})
}

// An advice the ledger cannot post (the destination's settlement account
// at its floor) is declined and queues nothing; a malformed one is
// invalid and not stored.
func TestForwardAdviceRefused(t *testing.T) {
	s := forwardFixture(t)
	tight := acct("tight", KindSettlement, "USD")
	mustOK(t, s, createCmd(tight), putDestCmd("d-t", Destination{ID: "tight", Kind: DestinationKindISO8583, SettlementAccount: "tight",
		BINs: []string{"410000"}, ISO8583: &HostDestination{Addrs: []string{"127.0.0.1:9584"}, Dialect: "iso87ascii", Header: "binary2", PoolSize: 1, TimeoutMs: 1000}}))
	c := adviceFwdCmd("p1|a2", 1000)
	c.Forward.Request.Destination, c.Forward.Request.Debit = "tight", "tight"
	if r := run1(t, s, c); r.Status != StatusInsufficientFunds {
		t.Fatalf("advice over the floor: %+v", r)
	}
	wantBal(t, s, "tight", bal{})
	wantBal(t, s, "settle", bal{})
	if q, _ := s.SAFQueue("tight", 10); len(q) != 0 {
		t.Fatalf("refused advice queued: %+v", q)
	}
	if _, err := s.Forward("p1|a2"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("refused advice recorded as a forward: %v", err)
	}
	bad := adviceFwdCmd("p1|a3", 1000)
	bad.Forward.Request.MTI = "0200"
	if r := run1(t, s, bad); r.Status != StatusInvalidCommand {
		t.Fatalf("advice of MTI 0200: %+v", r)
	}
	bad = adviceFwdCmd("p1|a4", 1000)
	bad.Forward.Request.PAN = nil
	if r := run1(t, s, bad); r.Status != StatusInvalidCommand {
		t.Fatalf("advice without the card: %+v", r)
	}
	wantBal(t, s, "settle", bal{})
}
