package payment_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/switchd/switchd/card"
	"github.com/switchd/switchd/config"
	"github.com/switchd/switchd/outcome"
	"github.com/switchd/switchd/payment"
	"github.com/switchd/switchd/store"
)

// A message may refine its partner's payer type only to one the partner
// lists: demo-acquirer's mfs_user is served (and routed by payer type),
// otc_agent is refused with 57 and posts nothing.
func TestPayerTypeRefinement(t *testing.T) {
	n := newTestNode(t, nil)
	in := intent(t, payment.KindPurchase, "demo", "100001", panRich, 1000, 1)
	out, err := n.submit(in)
	if err != nil || out.PayerType != store.PayerBankCustomer || out.Route != "default" || out.AuthCode == "" {
		t.Fatalf("default payer type: %+v %v", out, err)
	}
	in = intent(t, payment.KindPurchase, "demo", "100001", panRich, 2000, 2)
	in.PayerType = store.PayerMFSUser
	out, err = n.submit(in)
	if err != nil || out.PayerType != store.PayerMFSUser || out.Route != "mfs" {
		t.Fatalf("refined to mfs_user: %+v %v", out, err)
	}
	if got := n.posted("mfs-settlement"); got != 2000 {
		t.Fatalf("mfs_user purchase credited mfs-settlement %d, want 2000 (payer type route)", got)
	}
	ts, err := n.st.Transfers(store.TransferFilter{Account: "mfs-settlement", Limit: 10})
	if err != nil || len(ts) != 1 || ts[0].PayerType != store.PayerMFSUser {
		t.Fatalf("transfer not stamped with the payer type: %+v %v", ts, err)
	}

	before, count := n.account("card-4111"), n.transfers("card-4111")
	in = intent(t, payment.KindPurchase, "demo", "100001", panRich, 3000, 3)
	in.PayerType = store.PayerOTCAgent
	out, err = n.submit(in)
	if !errors.Is(err, outcome.ErrNotPermitted) || outcome.Code(err) != "57" || out.Partner != "demo-acquirer" {
		t.Fatalf("refinement the partner does not list: %+v %v, want 57", out, err)
	}
	if after := n.account("card-4111"); after != before || n.transfers("card-4111") != count {
		t.Fatalf("refused refinement posted: %+v → %+v", before, after)
	}
}

// A suspended partner is refused (62) on every lane it uses, with nothing
// posted, while another partner on the same lanes is served; resumed, it
// is served again. The change comes through the store, as ops makes it.
func TestSuspendedPartnerRefusedOnEveryLane(t *testing.T) {
	n := newTestNode(t, nil)
	n.setSuspended("demo-acquirer", true)
	before, count := n.account("card-4111"), n.transfers("card-4111")
	stan := 10
	for _, lane := range []string{"demo", "east"} {
		for _, kind := range []payment.Kind{payment.KindPurchase, payment.KindAuthorize, payment.KindBalanceInquiry} {
			stan++
			_, err := n.submit(intent(t, kind, lane, "100001", panRich, 500, stan))
			if !errors.Is(err, outcome.ErrPartnerSuspended) || outcome.Code(err) != "62" {
				t.Fatalf("%s on lane %s from a suspended partner: %v, want 62", kind, lane, err)
			}
		}
		stan++
		if out, err := n.submit(intent(t, payment.KindPurchase, lane, "200001", panRich, 100, stan)); err != nil || out.Partner != "bank-b" {
			t.Fatalf("bank-b on lane %s while demo-acquirer is suspended: %+v %v", lane, out, err)
		}
	}
	if got := n.account("card-4111"); got.Posted() != before.Posted()-200 || got.DebitsPending != 0 || n.transfers("card-4111") != count+2 {
		t.Fatalf("the suspended partner's requests moved money: %+v → %+v", before, got)
	}
	if got := n.posted("demo-acquirer-settlement"); got != 0 {
		t.Fatalf("suspended partner's settlement account credited %d", got)
	}
	n.setSuspended("demo-acquirer", false)
	if _, err := n.submit(intent(t, payment.KindPurchase, "east", "100001", panRich, 500, 99)); err != nil {
		t.Fatalf("resumed partner: %v", err)
	}
}

// A partner may use only its own lanes: demo-agents (lanes [demo]) is
// refused on east like an unknown acquirer (05), and nothing is posted.
func TestLaneCheck(t *testing.T) {
	n := newTestNode(t, nil)
	count := n.transfers("card-cust")
	in := intent(t, payment.KindPurchase, "east", "100002", panAgent, 100, 1)
	in.Terminal = "AGENT001"
	if _, err := n.submit(in); !errors.Is(err, outcome.ErrUnknownPartner) || outcome.Code(err) != "05" {
		t.Fatalf("partner off its lanes: %v, want 05", err)
	}
	if _, err := n.submit(intent(t, payment.KindPurchase, "demo", "999999", panRich, 100, 2)); !errors.Is(err, outcome.ErrUnknownPartner) {
		t.Fatalf("unknown acquirer: %v", err)
	}
	if _, err := n.core.Admit(context.Background(), payment.Origin{Lane: "east"}, "100002"); !errors.Is(err, outcome.ErrUnknownPartner) {
		t.Fatalf("Admit off the lanes: %v", err)
	}
	if p, err := n.core.Admit(context.Background(), payment.Origin{Lane: "demo"}, "00100002"); err != nil || p.ID != "demo-agents" {
		t.Fatalf("Admit with leading zeros: %v %v", p, err)
	}
	in.Lane = "demo"
	if _, err := n.submit(in); err != nil {
		t.Fatalf("same request on the partner's lane: %v", err)
	}
	if got := n.transfers("card-cust"); got != count+1 {
		t.Fatalf("card-cust has %d transfers, want %d", got, count+1)
	}
}

// An OTC agent posts up to its cash limit; the next posting is refused
// with 61 and posts nothing; once the agent settles (hands cash in) it is
// served again. Holds from agents are refused: their completion would not
// count against the limit.
func TestAgentCashLimit(t *testing.T) {
	n := newTestNode(t, nil)
	const agentID = "demo-agents:AGENT001"
	agentReq := func(kind payment.Kind, amount int64, stan int) payment.Intent {
		in := intent(t, kind, "demo", "100002", panAgent, amount, stan)
		in.Terminal = "AGENT001"
		return in
	}
	bill := agentReq(payment.KindBillPayment, 60000, 1)
	bill.BillType = "ELEC"
	out, err := n.submit(bill)
	if err != nil || out.PayerType != store.PayerOTCAgent || out.Route != "elec" {
		t.Fatalf("agent bill payment: %+v %v", out, err)
	}
	if _, err := n.submit(agentReq(payment.KindPurchase, 40000, 2)); err != nil {
		t.Fatalf("agent purchase up to the limit: %v", err)
	}
	if a, err := n.st.Agent(agentID); err != nil || a.CashHeld != 100000 {
		t.Fatalf("agent after 1000.00: %+v %v", a, err)
	}
	before, count := n.account("card-cust"), n.transfers("card-cust")
	_, err = n.submit(agentReq(payment.KindPurchase, 1, 3))
	if !errors.Is(err, store.ErrAgentLimit) || outcome.Code(err) != "61" {
		t.Fatalf("agent above its limit: %v, want 61", err)
	}
	if _, err := n.submit(agentReq(payment.KindAuthorize, 1, 4)); !errors.Is(err, outcome.ErrNotPermitted) {
		t.Fatalf("hold by an agent: %v, want 57", err)
	}
	// An agent collects cash; paying it out (refund, withdrawal) is not
	// what its limit tracks, so it is refused before anything is posted.
	for i, k := range []payment.Kind{payment.KindRefund, payment.KindCashWithdrawal} {
		if _, err := n.submit(agentReq(k, 1, 5+i)); !errors.Is(err, outcome.ErrNotPermitted) {
			t.Fatalf("%s by an agent: %v, want 57", k, err)
		}
	}
	if after := n.account("card-cust"); after != before || n.transfers("card-cust") != count {
		t.Fatalf("refused agent postings moved money: %+v → %+v", before, after)
	}
	if a, _ := n.st.Agent(agentID); a.CashHeld != 100000 {
		t.Fatalf("refused posting counted: cash held %d", a.CashHeld)
	}
	n.admin(store.OpSettleAgent, "test|settle|1", store.Admin{Settlement: &store.AgentSettlement{
		Agent: agentID, Amount: 50000, Currency: "USD", Reference: "HANDIN-1"}})
	if _, err := n.submit(agentReq(payment.KindPurchase, 30000, 5)); err != nil {
		t.Fatalf("agent after settling: %v", err)
	}
	if a, _ := n.st.Agent(agentID); a.CashHeld != 80000 || a.Settled != 50000 {
		t.Fatalf("agent after settling and posting: %+v", a)
	}
	ts, err := n.st.Transfers(store.TransferFilter{Account: "card-cust", Limit: 100})
	if err != nil || ts[len(ts)-1].Agent != agentID || ts[len(ts)-1].PayerType != store.PayerOTCAgent {
		t.Fatalf("agent transfer not stamped: %+v %v", ts, err)
	}
}

// A route change applied through the store routes the very next request:
// the core reads the directory per request, nothing is cached.
func TestRouteChangeTakesEffectAtOnce(t *testing.T) {
	n := newTestNode(t, nil)
	bill := func(stan int) (payment.Outcome, error) {
		in := intent(t, payment.KindBillPayment, "demo", "100001", panRich, 700, stan)
		in.BillType = "GAS"
		return n.submit(in)
	}
	if out, err := bill(1); err != nil || out.Route != "default" {
		t.Fatalf("GAS before the change: %+v %v", out, err)
	}
	n.admin(store.OpPutRoute, "test|route|gas", store.Admin{Route: &store.Route{ID: "gas", BillType: "GAS",
		Destination: store.DestinationLedger, SettlementAccount: "biller-grid-co"}})
	if out, err := bill(2); err != nil || out.Route != "gas" {
		t.Fatalf("GAS right after the change: %+v %v", out, err)
	}
	if got := n.posted("biller-grid-co"); got != 700 {
		t.Fatalf("biller-grid-co posted %d, want 700", got)
	}
	n.admin(store.OpDeleteRoute, "test|route|default", store.Admin{ID: "default"})
	_, err := n.submit(intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 3))
	if !errors.Is(err, outcome.ErrNoRoute) || outcome.Code(err) != "05" {
		t.Fatalf("purchase after the catch-all rule went: %v, want no route (05)", err)
	}
}

// The partner's withdrawal cap holds for cash withdrawals only.
func TestWithdrawalMax(t *testing.T) {
	n := newTestNode(t, nil)
	if _, err := n.submit(intent(t, payment.KindCashWithdrawal, "demo", "100001", panRich, 50001, 1)); !errors.Is(err, outcome.ErrLimitExceeded) {
		t.Fatalf("withdrawal above the cap: %v", err)
	}
	if _, err := n.submit(intent(t, payment.KindCashWithdrawal, "demo", "100001", panRich, 50000, 2)); err != nil {
		t.Fatalf("withdrawal at the cap: %v", err)
	}
	if _, err := n.submit(intent(t, payment.KindPurchase, "demo", "100001", panAgent, 50001, 3)); err != nil {
		t.Fatalf("purchase above the withdrawal cap: %v", err)
	}
}

// Reads: a balance inquiry and a funds check post nothing; a funds block
// is a hold.
func TestReadsAndFundsBlock(t *testing.T) {
	n := newTestNode(t, nil)
	count := n.transfers("card-4111")
	out, err := n.submit(intent(t, payment.KindBalanceInquiry, "demo", "100001", panRich, 0, 1))
	if err != nil || out.Balance != (payment.Balance{Posted: 100000, Available: 100000, Currency: "USD"}) {
		t.Fatalf("balance inquiry: %+v %v", out, err)
	}
	if out, err := n.submit(intent(t, payment.KindFundsCheck, "demo", "100001", panRich, 100000, 2)); err != nil || out.Balance.Available != 100000 {
		t.Fatalf("funds check for all of it: %+v %v", out, err)
	}
	if _, err := n.submit(intent(t, payment.KindFundsCheck, "demo", "100001", panRich, 100001, 3)); !errors.Is(err, store.ErrInsufficientFunds) {
		t.Fatalf("funds check for more: %v", err)
	}
	fc := intent(t, payment.KindFundsCheck, "demo", "100001", panRich, 1, 4)
	fc.Currency = "EUR"
	if _, err := n.submit(fc); !errors.Is(err, store.ErrCurrencyMismatch) {
		t.Fatalf("funds check in another currency: %v", err)
	}
	if _, err := n.submit(intent(t, payment.KindBalanceInquiry, "demo", "100001", "4000000000000002", 0, 5)); !errors.Is(err, store.ErrUnknownAccount) {
		t.Fatalf("inquiry for an unknown card: %v", err)
	}
	if n.transfers("card-4111") != count {
		t.Fatal("reads posted")
	}
	if _, err := n.submit(intent(t, payment.KindFundsBlock, "demo", "100001", panRich, 2500, 6)); err != nil {
		t.Fatalf("funds block: %v", err)
	}
	if a := n.account("card-4111"); a.DebitsPending != 2500 || a.Available() != 97500 {
		t.Fatalf("funds block is no hold: %+v", a)
	}
	if _, err := n.submit(payment.Intent{Origin: payment.Origin{Lane: "demo"}, Acquirer: "100001"}); !errors.Is(err, outcome.ErrUnsupported) {
		t.Fatalf("unknown kind: %v", err)
	}
}

// Keys are scoped by partner: bank-b reusing demo-acquirer's key and
// original reference makes its own transfer, and cannot reverse the
// other's.
func TestKeysScopedByPartner(t *testing.T) {
	n := newTestNode(t, nil)
	a := intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 1)
	b := a
	b.Acquirer = "200001"
	ra, err1 := n.submit(a)
	rb, err2 := n.submit(b)
	if err1 != nil || err2 != nil || ra.Result.TransferID == rb.Result.TransferID || rb.Result.Replayed {
		t.Fatalf("same key, two partners: %+v %v / %+v %v", ra, err1, rb, err2)
	}
	rev := intent(t, payment.KindReversal, "demo", "200001", panRich, 100, 2)
	rev.Original, rev.OriginalRef = "no-such-original", ""
	if _, err := n.submit(rev); !errors.Is(err, store.ErrUnknownOriginal) {
		t.Fatalf("reversal of an unknown original: %v", err)
	}
}

// A PAN never prints: not through fmt, JSON or slog, not inside an
// Intent, and the fingerprint parts carry a placeholder.
func TestPANNeverPrints(t *testing.T) {
	in := intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 1)
	var sb strings.Builder
	logger := slog.New(slog.NewJSONHandler(&sb, nil))
	logger.Info("intent", "intent", in, "pan", in.PAN)
	slog.New(slog.NewTextHandler(&sb, nil)).Info("intent", "intent", in)
	j, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmt.Sprint(in), fmt.Sprintf("%+v", in), fmt.Sprintf("%#v", in), fmt.Sprintf("%x", in.PAN),
		fmt.Sprintf("%q", in.PAN), string(j), sb.String()} {
		if strings.Contains(s, panRich) {
			t.Fatalf("PAN printed: %s", s)
		}
	}
	if !strings.Contains(fmt.Sprint(in.PAN), "411111******1111") {
		t.Fatalf("masked form: %s", in.PAN)
	}
	if _, err := payment.ParsePAN("4111111111111112"); !errors.Is(err, card.ErrInvalidPAN) || strings.Contains(err.Error(), "4111111111111112") {
		t.Fatalf("bad Luhn: %v", err)
	}
}

// A node that has applied nothing (restarted alone, before it hears from
// a leader) must not refuse a partner the cluster knows: the refusal is
// confirmed by a ReadIndex, whose failure is the answer (96).
func TestRefusalsAreConfirmed(t *testing.T) {
	n := newTestNode(t, nil)
	empty := store.NewDirectory(nil, nil)
	core, err := payment.NewCore(n.cfg.Switch.Config, n.gate, n.st, func() *store.Directory { return empty }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n.gate.down.Store(true)
	in := intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 1)
	if _, err := core.Submit(context.Background(), in); outcome.Code(err) != "96" {
		t.Fatalf("stale directory, no leader: %v (%s), want 96", err, outcome.Code(err))
	}
	n.gate.down.Store(false)
	// With a leader the fresh directory is the stand-in's still: refused.
	if _, err := core.Submit(context.Background(), in); !errors.Is(err, outcome.ErrUnknownPartner) {
		t.Fatalf("after the read: %v", err)
	}
	if _, err := n.core.Submit(context.Background(), in); err != nil {
		t.Fatalf("the store's directory: %v", err)
	}
}

// BenchmarkSubmit is the core's own cost per purchase: the directory
// decision, keys, hashes and the command, over a ledger that answers at
// once (the raft round trip is the cluster's benchmark, not this one).
func BenchmarkSubmit(b *testing.B) {
	cfg := payment.DefaultConfig()
	cfg.CardKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	dir := store.NewDirectory([]store.Partner{{ID: "p", AcquirerIDs: []string{"100001"}, Lanes: []string{"demo"},
		SettlementAccount: "p-settle", PayerType: store.PayerBankCustomer}},
		[]store.Route{{ID: "elec", BillType: "ELEC", PayerType: "*", Partner: "*", Destination: store.DestinationLedger, SettlementAccount: "biller"},
			{ID: "default", BillType: "*", PayerType: "*", Partner: "*", Destination: store.DestinationLedger}})
	core, err := payment.NewCore(cfg, okLedger{}, nil, func() *store.Directory { return dir }, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	in := intent(b, payment.KindPurchase, "demo", "100001", panRich, 1234, 1)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := core.Submit(ctx, in); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSubmitOneNode is Submit through a real one-node cluster
// (pebble, raft log fsync'd per batch), one request at a time.
func BenchmarkSubmitOneNode(b *testing.B) {
	n := newTestNode(b, func(f *config.File) {
		for i := range f.Accounts {
			if f.Accounts[i].ID == "card-4111" {
				f.Accounts[i].Opening = "1000000000.00"
			}
		}
	})
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		if _, err := n.submit(intent(b, payment.KindPurchase, "demo", "100001", panRich, 1, i)); err != nil {
			b.Fatal(err)
		}
	}
}

type okLedger struct{}

func (okLedger) Propose(context.Context, store.Command) (store.Result, error) {
	return store.Result{Status: store.StatusOK, TransferID: "T00000000000001", AuthCode: "ABC123"}, nil
}
func (okLedger) ReadIndex(context.Context) error { return nil }

// CardHash is hex HMAC-SHA256(card key, digits), as stored on accounts
// by every version: a pooled hash must be reset between uses.
func TestCardHash(t *testing.T) {
	cfg := payment.DefaultConfig()
	cfg.CardKey = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	core, err := payment.NewCore(cfg, okLedger{}, nil, func() *store.Directory { return store.NewDirectory(nil, nil) }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := hex.DecodeString(string(cfg.CardKey))
	for _, s := range []string{"4111111111111111", "5500000000000004", "378282246310005"} {
		mac := hmac.New(sha256.New, key)
		mac.Write([]byte(s))
		want := hex.EncodeToString(mac.Sum(nil))
		for i := 0; i < 3; i++ {
			if got := core.CardHash(mustPAN(t, s)); got != want {
				t.Fatalf("%s: %s, want %s", mustPAN(t, s), got, want)
			}
		}
	}
}

// A partner with an allowlist of its own is refused (63, security
// violation) from any other source, and nothing is posted; from a listed
// one it is served. A partner without one is served from anywhere its
// lane lets in.
func TestPartnerSourceAllowlist(t *testing.T) {
	n := newTestNode(t, nil)
	p, _ := n.st.Directory().Partner("demo-acquirer")
	listed := *p
	listed.Allow = []string{"10.20.0.0/16", "2001:db8::1"}
	n.admin(store.OpPutPartner, "allow", store.Admin{Actor: "t", Reason: "partner networks", Partner: &listed})
	before, count := n.account("card-4111"), n.transfers("card-4111")
	for i, src := range []string{"10.30.0.1", "127.0.0.1", "2001:db8::2"} {
		in := intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 40+i)
		in.Source = netip.MustParseAddr(src)
		if _, err := n.submit(in); !errors.Is(err, outcome.ErrSourceNotAllowed) || outcome.Code(err) != "63" {
			t.Fatalf("from %s: %v, want 63", src, err)
		}
	}
	if got := n.account("card-4111"); got != before || n.transfers("card-4111") != count {
		t.Fatalf("refused requests moved money: %+v → %+v", before, got)
	}
	for i, src := range []string{"10.20.3.4", "2001:db8::1", "::ffff:10.20.0.9"} {
		in := intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 50+i)
		in.Source = netip.MustParseAddr(src)
		if _, err := n.submit(in); err != nil {
			t.Fatalf("from listed %s: %v", src, err)
		}
	}
	// Another partner has no list: any source its lane lets in.
	in := intent(t, payment.KindPurchase, "demo", "200001", panRich, 100, 60)
	in.Source = netip.MustParseAddr("192.0.2.1")
	if _, err := n.submit(in); err != nil {
		t.Fatalf("partner without a list: %v", err)
	}
	bad := listed
	bad.Allow = []string{"10.20.0.1/16"}
	if res, err := n.node.Propose(context.Background(), store.Command{Op: store.OpPutPartner, Key: "bad-allow", Time: 1,
		Admin: &store.Admin{Actor: "t", Reason: "typo", Partner: &bad}}); err != nil || res.Status != store.StatusInvalidChange ||
		!strings.Contains(res.Detail, "partner.allow") {
		t.Fatalf("allowlist with host bits: %+v %v", res, err)
	}
}

// A delegated request (the SCA confirmation reserving the partner's
// authorization from the customer's browser) is not held to the
// partner's source allowlist, but still to its lane and suspension; a
// request that is not delegated from the same source is refused.
func TestDelegatedOrigin(t *testing.T) {
	n := newTestNode(t, nil)
	p, _ := n.st.Directory().Partner("demo-acquirer")
	listed := *p
	listed.Allow = []string{"10.20.0.0/16"}
	n.admin(store.OpPutPartner, "allow-d", store.Admin{Actor: "t", Reason: "partner networks", Partner: &listed})
	in := intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 70)
	in.Source = netip.MustParseAddr("192.0.2.7")
	if _, err := n.submit(in); !errors.Is(err, outcome.ErrSourceNotAllowed) {
		t.Fatalf("not delegated: %v", err)
	}
	in.Delegated = true
	if _, err := n.submit(in); err != nil {
		t.Fatalf("delegated: %v", err)
	}
	off := intent(t, payment.KindPurchase, "nowhere", "100001", panRich, 100, 71)
	off.Delegated = true
	if _, err := n.submit(off); !errors.Is(err, outcome.ErrUnknownPartner) {
		t.Fatalf("delegated on another lane: %v", err)
	}
	n.setSuspended("demo-acquirer", true)
	in = intent(t, payment.KindPurchase, "demo", "100001", panRich, 100, 72)
	in.Delegated = true
	if _, err := n.submit(in); !errors.Is(err, outcome.ErrPartnerSuspended) {
		t.Fatalf("delegated for a suspended partner: %v", err)
	}
	if _, err := n.core.ProposeAuthorization(context.Background(), "demo-acquirer", "k", nil, store.AuthorizationChange{}); !errors.Is(err, outcome.ErrPartnerSuspended) {
		t.Fatalf("an SCA change of a suspended partner: %v", err)
	}
	if _, err := n.core.ProposeAuthorization(context.Background(), "nobody", "k", nil, store.AuthorizationChange{}); !errors.Is(err, outcome.ErrUnknownPartner) {
		t.Fatalf("an SCA change of an unknown partner: %v", err)
	}
}
