package store

import "testing"

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
