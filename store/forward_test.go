package store

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// forwardFixture: adminFixture plus destination "iss" (BIN 400000,
// settling to "issuer", an unlimited settlement account).
func forwardFixture(t *testing.T) *Store {
	t.Helper()
	s := adminFixture(t)
	iss := acct("issuer", KindSettlement, "USD")
	iss.Unlimited = true
	mustOK(t, s, createCmd(iss), putDestCmd("d-iss", Destination{ID: "iss", Kind: DestinationKindISO8583, SettlementAccount: "issuer",
		BINs: []string{"400000"}, ISO8583: &HostDestination{Addrs: []string{"127.0.0.1:9583"}, Dialect: "iso87ascii", Header: "binary2", PoolSize: 1, TimeoutMs: 1000}}))
	return s
}

func fwdCmd(key string, amt int64) Command {
	return Command{Op: OpForward, Key: key, Fingerprint: "fp-" + key, Time: t0, Partner: "p1", Amount: amt, Currency: "USD",
		Ref: Ref{MTI: "0200", STAN: "000123", RRN: "000000000123"}, PayerType: PayerBankCustomer,
		Forward: &ForwardCommand{Request: &ForwardRequest{Destination: "iss", Debit: "issuer", Credit: "settle", MTI: "0200",
			Fields: map[int]string{3: "000000", 4: "000000001000", 7: "1202080000", 32: "1001", 41: "TERM0001", 49: "840"},
			PAN:    []byte("wrapped-pan-bytes"), MaskedPAN: "400000******0002", TimeoutAt: t0 + 5e9, OriginalRef: "p1|ref-" + key}}}
}

func fwdResult(key, outcome, rc, auth string, at int64) Command {
	return Command{Op: OpForwardResult, Key: "fwd|" + outcome + "|" + key, Fingerprint: "fp-" + outcome + rc + auth, Time: at,
		Forward: &ForwardCommand{Result: &ForwardResult{Key: key, Outcome: outcome, RC: rc, AuthCode: auth, SAFExpiresAt: at + 24*hour, Reason: "timeout"}}}
}

func getForward(t *testing.T, s *Store, key string) Forward {
	t.Helper()
	f, err := s.Forward(key)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// An approved forward posts one transfer from the destination's
// settlement account to the partner's, with the host's approval code;
// its reference then names that transfer.
func TestForwardApproved(t *testing.T) {
	s := forwardFixture(t)
	r := mustOK(t, s, fwdCmd("p1|k1", 1000))[0]
	if r.TransferID != "F00000000000001" || r.AuthCode != "" {
		t.Fatalf("forward: %+v", r)
	}
	f := getForward(t, s, "p1|k1")
	if f.State != ForwardPending || f.STAN() != "000001" || f.RRN() != "000000000001" || !bytes.Equal(f.PAN, []byte("wrapped-pan-bytes")) {
		t.Fatalf("pending forward: %+v", f)
	}
	if due, _ := s.DueForwards(t0+5e9, 10); len(due) != 1 {
		t.Fatalf("due forwards at the deadline: %d", len(due))
	}
	wantBal(t, s, "issuer", bal{})
	ar := mustOK(t, s, fwdResult("p1|k1", OutcomeApproved, "00", "A1B2C3", t0+1))[0]
	if ar.AuthCode != "A1B2C3" || ar.TransferID == "" {
		t.Fatalf("approval: %+v", ar)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000})
	wantBal(t, s, "settle", bal{cPost: 1000})
	f = getForward(t, s, "p1|k1")
	if f.State != ForwardApproved || f.TransferID != ar.TransferID || f.AuthCode != "A1B2C3" {
		t.Fatalf("approved forward: %+v", f)
	}
	if got := getXfer(t, s, ar.TransferID); got.Debit != "issuer" || got.Credit != "settle" || got.Partner != "p1" || got.Amount != 1000 {
		t.Fatalf("transfer: %+v", got)
	}
	if due, _ := s.DueForwards(t0+10e9, 10); len(due) != 0 {
		t.Fatalf("a decided forward is still due: %+v", due)
	}
	// The replay of the partner's request finds the forward; a second
	// approval changes nothing.
	if rr := run1(t, s, fwdCmd("p1|k1", 1000)); !rr.Replayed || rr.TransferID != "F00000000000001" {
		t.Fatalf("replayed forward: %+v", rr)
	}
	if again := run1(t, s, fwdResult("p1|k1", OutcomeApproved, "00", "A1B2C3", t0+2)); !again.Replayed || again.AuthCode != "A1B2C3" {
		t.Fatalf("approval again: %+v", again)
	}
	wantBal(t, s, "issuer", bal{dPost: 1000})
	if tid := s.mustOrigRef(t, "p1|ref-p1|k1"); tid != ar.TransferID {
		t.Fatalf("reference names %q, want %q", tid, ar.TransferID)
	}
	checkInvariants(t, s)
}

func (s *Store) mustOrigRef(t *testing.T, ref string) string {
	t.Helper()
	var id string
	err := s.read(func(db *pebble.DB) error {
		v, closer, err := db.Get(key1(pfxOrigRef, ref))
		if err != nil {
			return err
		}
		id = string(v)
		return closer.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// A declined forward posts nothing and keeps the host's code.
func TestForwardDeclined(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdCmd("p1|k2", 1000), fwdResult("p1|k2", OutcomeDeclined, "51", "", t0+1))
	f := getForward(t, s, "p1|k2")
	if f.State != ForwardDeclined || f.RC != "51" || f.TransferID != "" {
		t.Fatalf("declined: %+v", f)
	}
	wantBal(t, s, "issuer", bal{})
}

// A timeout queues one 0420 in the same apply: field 90 names the
// original, 11 and 37 are the original's; an approval arriving later is
// kept as a late answer and never posted.
func TestForwardTimeoutQueuesReversal(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdCmd("p1|k3", 1000), fwdResult("p1|k3", OutcomeTimeout, "", "", t0+2e9))
	f := getForward(t, s, "p1|k3")
	if f.State != ForwardTimedOut || f.SAF != "S00000000000001" {
		t.Fatalf("timed out: %+v", f)
	}
	q, err := s.SAFQueue("iss", 10)
	if err != nil || len(q) != 1 {
		t.Fatalf("queue: %v %+v", err, q)
	}
	e := q[0]
	if e.MTI != "0420" || e.Fields[11] != "000001" || e.Fields[37] != "000000000001" || e.Fields[4] != "000000001000" ||
		e.Fields[90] != "0200"+"000001"+"1202080000"+"00000001001"+"00000000000" || e.State != SAFQueued || !bytes.Equal(e.PAN, f.PAN) {
		t.Fatalf("entry: %+v", e)
	}
	late := mustOK(t, s, fwdResult("p1|k3", OutcomeApproved, "00", "LATE01", t0+3e9))[0]
	if late.TransferID != "" {
		t.Fatalf("late approval posted: %+v", late)
	}
	f = getForward(t, s, "p1|k3")
	if f.State != ForwardTimedOut || f.Late == nil || f.Late.AuthCode != "LATE01" {
		t.Fatalf("late answer not kept: %+v", f)
	}
	wantBal(t, s, "issuer", bal{})
	wantBal(t, s, "settle", bal{})
	if q, _ := s.SAFQueue("iss", 10); len(q) != 1 {
		t.Fatalf("late approval changed the queue: %+v", q)
	}
}

// The SAF entry's life: attempts (only some count), delivery; expiry
// only after its time; drop and retry only as audited ops changes.
func TestSAFUpdates(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdCmd("p1|k4", 1000), fwdResult("p1|k4", OutcomeTimeout, "", "", t0+2e9),
		fwdCmd("p1|k5", 500), fwdResult("p1|k5", OutcomeTimeout, "", "", t0+2e9))
	upd := func(key, id, action string, counts bool, at int64, adm *Admin) Command {
		return Command{Op: OpSAFUpdate, Key: key, Fingerprint: "fp-" + key, Time: at, Admin: adm,
			Forward: &ForwardCommand{SAF: &SAFUpdate{ID: id, Action: action, Counts: counts, Error: "timeout", NextAt: at + 1e9}}}
	}
	mustOK(t, s, upd("a1", "S00000000000001", SAFActionAttempt, true, t0+3e9, nil),
		upd("a2", "S00000000000001", SAFActionAttempt, false, t0+4e9, nil))
	e, _ := s.SAFEntry("S00000000000001")
	if e.Sends != 2 || e.Attempts != 1 || e.NextAt != t0+5e9 {
		t.Fatalf("after attempts: %+v", e)
	}
	mustOK(t, s, upd("d1", "S00000000000001", SAFActionDelivered, false, t0+6e9, nil))
	if q, _ := s.SAFQueue("iss", 10); len(q) != 1 || q[0].ID != "S00000000000002" {
		t.Fatalf("queue after delivery: %+v", q)
	}
	if r := run1(t, s, upd("d2", "S00000000000001", SAFActionAttempt, true, t0+7e9, nil)); r.Status != StatusAlreadyFinal {
		t.Fatalf("attempt on a delivered entry: %+v", r)
	}
	if r := run1(t, s, upd("x1", "S00000000000002", SAFActionExpire, false, t0+7e9, nil)); r.Status != StatusInvalidChange {
		t.Fatalf("early expiry: %+v", r)
	}
	if r := run1(t, s, upd("x2", "S00000000000002", SAFActionDrop, false, t0+7e9, nil)); r.Status != StatusInvalidChange {
		t.Fatalf("drop without an actor: %+v", r)
	}
	head, _ := s.Audit(AuditFilter{Limit: 1000})
	mustOK(t, s, upd("x3", "S00000000000002", SAFActionDrop, false, t0+7e9, &Admin{Actor: "alice", Reason: "host confirmed by phone"}))
	if q, _ := s.SAFQueue("iss", 10); len(q) != 0 {
		t.Fatalf("queue after drop: %+v", q)
	}
	mustOK(t, s, upd("x4", "S00000000000002", SAFActionRetry, false, t0+8e9, &Admin{Actor: "alice", Reason: "send it after all"}))
	if q, _ := s.SAFQueue("iss", 10); len(q) != 1 || q[0].State != SAFQueued {
		t.Fatalf("queue after retry: %+v", q)
	}
	after, _ := s.Audit(AuditFilter{Limit: 1000})
	if len(after) != len(head)+2 || after[len(after)-2].Action != "saf.drop" || after[len(after)-1].Object != "saf/S00000000000002" {
		t.Fatalf("audit: %+v", after[len(head):])
	}
	mustOK(t, s, upd("x5", "S00000000000002", SAFActionExpire, false, t0+30*hour, nil))
	if e, _ := s.SAFEntry("S00000000000002"); e.State != SAFExpired {
		t.Fatalf("expired: %+v", e)
	}
	all, _ := s.SAFEntries("", 10)
	if len(all) != 2 {
		t.Fatalf("entries: %+v", all)
	}
	s2 := reopen(t, s)
	if all2, _ := s2.SAFEntries("", 10); !reflect.DeepEqual(all, all2) {
		t.Fatal("SAF entries differ after reopen")
	}
}

// Refusals: bad forwards store nothing.
func TestForwardRefusals(t *testing.T) {
	s := forwardFixture(t)
	for name, change := range map[string]func(*Command){
		"no destination":  func(c *Command) { c.Forward.Request.Destination = "nope" },
		"same legs":       func(c *Command) { c.Forward.Request.Credit = "issuer" },
		"field 11":        func(c *Command) { c.Forward.Request.Fields[11] = "000001" },
		"field 2":         func(c *Command) { c.Forward.Request.Fields[2] = "4000000000000002" },
		"deadline passed": func(c *Command) { c.Forward.Request.TimeoutAt = c.Time },
		"zero amount":     func(c *Command) { c.Amount = 0 },
		"no partner":      func(c *Command) { c.Partner = "" },
		"unknown account": func(c *Command) { c.Forward.Request.Debit = "nope" },
	} {
		c := fwdCmd("p1|bad-"+strings.ReplaceAll(name, " ", "-"), 100)
		change(&c)
		if r := run1(t, s, c); r.Status == StatusOK {
			t.Errorf("%s: accepted", name)
		}
		if _, err := s.Forward(c.Key); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s: stored (%v)", name, err)
		}
	}
	if r := run1(t, s, fwdResult("p1|none", OutcomeApproved, "00", "X", t0)); r.Status != StatusNotFound {
		t.Errorf("result for no forward: %+v", r)
	}
}

func TestForwardEncodingRoundTrip(t *testing.T) {
	cmds := []Command{fwdCmd("p1|k", 5), fwdResult("p1|k", OutcomeTimeout, "", "", t0),
		{Op: OpSAFUpdate, Key: "u", Time: 1, Forward: &ForwardCommand{SAF: &SAFUpdate{ID: "S1", Action: SAFActionAttempt, NextAt: 2}}}}
	data, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBatch(data)
	if err != nil || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip: %v\n got %+v\nwant %+v", err, got, cmds)
	}
	for i := 0; i < len(data); i++ {
		if _, err := DecodeBatch(data[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated at %d: %v", i, err)
		}
	}
	// The layout written before the payload was binary (the JSON
	// extension's "forward" member) is still read strictly.
	e := enc{}
	e.byte(batchVersion)
	e.uvar(1)
	e.commandExt(&cmds[0], &cmdExt{Forward: cmds[0].Forward}, nil)
	if _, err := DecodeBatch(e.b); err != nil {
		t.Fatalf("legacy layout: %v", err)
	}
	bad := bytes.Replace(e.b, []byte(`{"forward"`), []byte(`{"forwardx"`), 1)
	if _, err := DecodeBatch(bad); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown member: %v", err)
	}
}

// A claim marks the unsent, unclaimed queued entries it names, and only
// those: one already sent, claimed by another sender, or done keeps what
// it has; a claim without a name or entries is refused.
func TestSAFClaim(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdCmd("p1|k4", 1000), fwdResult("p1|k4", OutcomeTimeout, "", "", t0+2e9),
		fwdCmd("p1|k5", 500), fwdResult("p1|k5", OutcomeTimeout, "", "", t0+2e9),
		fwdCmd("p1|k6", 700), fwdResult("p1|k6", OutcomeTimeout, "", "", t0+2e9))
	claim := func(key, name string, at int64, ids ...string) Command {
		return Command{Op: OpSAFUpdate, Key: key, Fingerprint: "fp-" + key, Time: at,
			Forward: &ForwardCommand{SAF: &SAFUpdate{Action: SAFActionClaim, IDs: ids, Claim: name}}}
	}
	// Entry 1 was sent (an unanswered attempt) before any claim.
	mustOK(t, s, Command{Op: OpSAFUpdate, Key: "a1", Fingerprint: "a1", Time: t0 + 3e9,
		Forward: &ForwardCommand{SAF: &SAFUpdate{ID: "S00000000000001", Action: SAFActionAttempt, Error: "timeout", NextAt: t0 + 4e9}}})
	mustOK(t, s, claim("c1", "leader-a", t0+3e9, "S00000000000001", "S00000000000002"))
	mustOK(t, s, claim("c2", "leader-b", t0+4e9, "S00000000000002", "S00000000000003", "S00000000000099"))
	for id, want := range map[string]string{"S00000000000001": "", "S00000000000002": "leader-a", "S00000000000003": "leader-b"} {
		if e, _ := s.SAFEntry(id); e.Claim != want {
			t.Fatalf("%s claimed by %q, want %q", id, e.Claim, want)
		}
	}
	for _, c := range []Command{claim("c3", "", t0+5e9, "S00000000000002"), claim("c4", "leader-c", t0+5e9)} {
		if r := run1(t, s, c); r.Status != StatusInvalidCommand {
			t.Fatalf("claim %+v: %+v", c.Forward.SAF, r)
		}
	}
}

// A result says the forward's state and code after it, so the proposer
// answers without reading the record back; a repeat (Replayed) gets the
// same, and a later, different result says the state the first decided.
func TestForwardResultSaysState(t *testing.T) {
	s := forwardFixture(t)
	mustOK(t, s, fwdCmd("p1|a", 100), fwdCmd("p1|d", 100), fwdCmd("p1|t", 100))
	for _, c := range []struct {
		key, outcome, rc, state string
	}{{"p1|a", OutcomeApproved, "00", ForwardApproved}, {"p1|d", OutcomeDeclined, "05", ForwardDeclined}, {"p1|t", OutcomeTimeout, "", ForwardTimedOut}} {
		r := run1(t, s, fwdResult(c.key, c.outcome, c.rc, "A1", t0+1))
		if r.Status != StatusOK || r.ForwardState != c.state || r.ForwardRC != c.rc {
			t.Errorf("%s: %+v", c.key, r)
		}
		if c.state == ForwardApproved && (r.TransferID == "" || r.TransferID != getForward(t, s, c.key).TransferID) {
			t.Errorf("%s: transfer %q, record %+v", c.key, r.TransferID, getForward(t, s, c.key))
		}
		if again := run1(t, s, fwdResult(c.key, c.outcome, c.rc, "A1", t0+2)); !again.Replayed || again.ForwardState != c.state || again.TransferID != r.TransferID {
			t.Errorf("%s repeated: %+v", c.key, again)
		}
	}
	late := run1(t, s, fwdResult("p1|t", OutcomeApproved, "00", "LATE01", t0+3))
	if late.Status != StatusOK || late.ForwardState != ForwardTimedOut || late.TransferID != "" {
		t.Errorf("late approval: %+v", late)
	}
}

// A bill payment to a biller is paid from the payer's account (Card), its
// funds checked when it is recorded; the approval posts payer → the
// destination's account. Card with an explicit Debit, or without a body
// (a card purchase is the issuer's to pay), is refused.
func TestForwardPaidByPayer(t *testing.T) {
	s := forwardFixture(t) // card1 (hash h1) holds 100.00
	bill := func(key string, amt int64) Command {
		c := fwdCmd(key, amt)
		c.Card = "h1"
		q := c.Forward.Request
		q.Debit, q.Credit, q.MTI, q.Fields, q.PAN, q.MaskedPAN = "", "issuer", "", nil, nil, ""
		q.Body = `{"bill_type":"WATER"}`
		return c
	}
	if r := run1(t, s, bill("p1|over", 10001)); r.Status != StatusInsufficientFunds {
		t.Fatalf("over the balance: %+v", r)
	}
	unknown := bill("p1|nocard", 100)
	unknown.Card = "h-none"
	if r := run1(t, s, unknown); r.Status != StatusUnknownAccount {
		t.Fatalf("unknown payer: %+v", r)
	}
	both := bill("p1|both", 100)
	both.Forward.Request.Debit = "settle"
	noBody := bill("p1|nobody", 100)
	noBody.Forward.Request.Body = ""
	for _, c := range []Command{both, noBody} {
		if r := run1(t, s, c); r.Status != StatusInvalidCommand {
			t.Errorf("%s: %+v", c.Key, r)
		}
	}
	mustOK(t, s, bill("p1|b1", 2500), fwdResult("p1|b1", OutcomeApproved, "00", "BP0001", t0+1))
	if f := getForward(t, s, "p1|b1"); f.Debit != "card1" || f.Credit != "issuer" || f.State != ForwardApproved {
		t.Fatalf("forward %+v", f)
	}
	wantBal(t, s, "card1", bal{dPost: 2500, cPost: 10000})

	// Funds checked when recorded are not held: spent before the biller
	// approves, the approval is refused by the ledger (the biller is told
	// to cancel), and a repeat of that approval gets the same refusal,
	// never a late answer.
	mustOK(t, s, bill("p1|b2", 7000))
	mustOK(t, s, postCmd("spend", "card1", "settle", 1000))
	for i := range 2 {
		if r := run1(t, s, fwdResult("p1|b2", OutcomeApproved, "00", "BP0002", t0+2+int64(i))); r.Status != StatusInsufficientFunds {
			t.Fatalf("approval %d of a payment the payer can no longer pay: %+v", i, r)
		}
	}
	if f := getForward(t, s, "p1|b2"); f.State != ForwardTimedOut || f.Reason != "ledger_insufficient_funds" || f.Late != nil || f.SAF == "" {
		t.Fatalf("forward %+v", f)
	}
	wantBal(t, s, "card1", bal{dPost: 3500, cPost: 10000})
	checkInvariants(t, s)
}
