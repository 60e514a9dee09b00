package store

import (
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the fixed command time of the tests (no clock in the FSM).
var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC).UnixNano()

const hour = int64(time.Hour)

func testConfig(t testing.TB) Config {
	return testConfigIn(t.TempDir() + "/db")
}

// testConfigIn is testConfig in dir, for a test that owns its directory
// (the disk-full child exits without cleanups: a t.TempDir would be left).
func testConfigIn(dir string) Config {
	cfg := DefaultConfig()
	cfg.Dir = dir
	cfg.CacheBytes = 32 << 20
	cfg.MemTableBytes = memTableBytesMin
	return cfg
}

func openTest(t testing.TB) *Store {
	t.Helper()
	return openCfg(t, testConfig(t))
}

func openCfg(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// logEntry encodes cmds as the raft log entry at index.
func logEntry(t testing.TB, index uint64, cmds ...Command) *raft.Log {
	t.Helper()
	data, err := EncodeBatch(cmds)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
}

// run applies cmds as one new log entry and returns their results.
func run(t testing.TB, s *Store, cmds ...Command) []Result {
	t.Helper()
	out := s.Apply(logEntry(t, s.AppliedIndex()+1, cmds...))
	rs, ok := out.([]Result)
	if !ok {
		t.Fatalf("apply returned %T %v", out, out)
	}
	return rs
}

func run1(t testing.TB, s *Store, c Command) Result {
	t.Helper()
	return run(t, s, c)[0]
}

func mustOK(t testing.TB, s *Store, cmds ...Command) []Result {
	t.Helper()
	rs := run(t, s, cmds...)
	for i, r := range rs {
		if r.Status != StatusOK {
			t.Fatalf("command %d (%s %s): status %v", i, cmds[i].Op, cmds[i].Key, r.Status)
		}
	}
	return rs
}

func acct(id string, kind AccountKind, ccy string) *Account {
	return &Account{ID: id, Kind: kind, Currency: ccy}
}

func createCmd(a *Account) Command {
	return Command{Op: OpCreateAccount, Key: "create-" + a.ID, Fingerprint: "fp-" + a.ID, Time: t0, Account: a}
}

// Command builders; the fingerprint follows the key unless a test sets it.
func authCmd(key, card, credit string, amt int64, oref string) Command {
	return Command{Op: OpAuthorize, Key: key, Fingerprint: "fp-" + key, Time: t0, BusinessDay: "2026-03-02",
		Partner: "p1", Card: card, Credit: credit, Amount: amt, Currency: "USD", HoldExpiry: t0 + hour, OriginalRef: oref}
}

func postCmd(key, debit, credit string, amt int64) Command {
	return Command{Op: OpPost, Key: key, Fingerprint: "fp-" + key, Time: t0, BusinessDay: "2026-03-02",
		Partner: "p1", Debit: debit, Credit: credit, Amount: amt, Currency: "USD"}
}

func postCardCmd(key, card, credit string, amt int64, oref string) Command {
	c := postCmd(key, "", credit, amt)
	c.Card, c.OriginalRef = card, oref
	return c
}

func refundCmd(key, debit, card string, amt int64) Command {
	c := postCmd(key, debit, "", amt)
	c.Card, c.CreditCard = card, true
	return c
}

func completeCmd(key, orig string, amt int64, final bool, oref string) Command {
	return Command{Op: OpComplete, Key: key, Fingerprint: "fp-" + key, Time: t0 + 1, BusinessDay: "2026-03-02",
		Partner: "p1", Original: orig, Amount: amt, Currency: "USD", Final: final, OriginalRef: oref}
}

func reverseCmd(key, orig string, amt int64) Command {
	return Command{Op: OpReverse, Key: key, Fingerprint: "fp-" + key, Time: t0 + 2, BusinessDay: "2026-03-02",
		Partner: "p1", Original: orig, Amount: amt, Currency: "USD"}
}

func expireCmd(at, retainAfter int64) Command {
	return Command{Op: OpExpire, Time: at, RetainAfter: retainAfter}
}

// fixture accounts: card1 (hash h1) funded with 10000 USD, card2 (h2)
// empty, merch (biller), fund (unlimited), settle (floor -5000), eur1 (EUR,
// card h3).
func fixture(t testing.TB) *Store {
	t.Helper()
	s := openTest(t)
	fixtureInto(t, s)
	return s
}

func getAcct(t testing.TB, s *Store, id string) Account {
	t.Helper()
	a, err := s.Account(id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func getXfer(t testing.TB, s *Store, id string) Transfer {
	t.Helper()
	tr, err := s.Transfer(id)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// bal is an account's four balance counters, for compact assertions.
type bal struct{ dPend, dPost, cPend, cPost int64 }

func balOf(a Account) bal {
	return bal{a.DebitsPending, a.DebitsPosted, a.CreditsPending, a.CreditsPosted}
}

func wantBal(t testing.TB, s *Store, id string, want bal) {
	t.Helper()
	if got := balOf(getAcct(t, s, id)); got != want {
		t.Errorf("%s balances = %+v, want %+v", id, got, want)
	}
}

func keyN(prefix string, i int) string { return fmt.Sprintf("%s-%06d", prefix, i) }

func fixtureInto(t testing.TB, s *Store) {
	t.Helper()
	card1 := acct("card1", KindCardholder, "USD")
	card1.CardHash, card1.MaskedPAN = "h1", "411111******1111"
	card2 := acct("card2", KindCardholder, "USD")
	card2.CardHash = "h2"
	fund := acct("fund", KindFunding, "USD")
	fund.Unlimited = true
	settle := acct("settle", KindSettlement, "USD")
	settle.Floor = -5000
	eur := acct("eur1", KindCardholder, "EUR")
	eur.CardHash = "h3"
	mustOK(t, s, createCmd(card1), createCmd(card2), createCmd(acct("merch", KindBiller, "USD")),
		createCmd(fund), createCmd(settle), createCmd(eur))
	mustOK(t, s, postCmd("fund-card1", "fund", "card1", 10000))
}

// checkInvariants asserts double entry and floors over every account.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	posted := map[string]int64{}
	var dPend, cPend int64
	after := ""
	for {
		page, err := s.Accounts(after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range page {
			posted[a.Currency] += a.Posted()
			dPend += a.DebitsPending
			cPend += a.CreditsPending
			if !a.Unlimited && a.Available() < a.Floor {
				t.Errorf("account %s below floor: available %d floor %d", a.ID, a.Available(), a.Floor)
			}
			if a.DebitsPending < 0 || a.CreditsPending < 0 {
				t.Errorf("account %s negative pending %+v", a.ID, a)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	for ccy, p := range posted {
		if p != 0 {
			t.Errorf("sum of posted %s = %d, want 0", ccy, p)
		}
	}
	if dPend != cPend {
		t.Errorf("debits pending %d != credits pending %d", dPend, cPend)
	}
}

// raftLog builds a raft.Log for fuzzers that need no encoding step.
type raftLog struct {
	Index uint64
	Data  []byte
}

func (l raftLog) log() *raft.Log {
	return &raft.Log{Index: l.Index, Term: 1, Type: raft.LogCommand, Data: l.Data}
}
