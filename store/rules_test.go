package store

import (
	"errors"
	"regexp"
	"testing"

	"github.com/hashicorp/raft"
)

type ruleCase struct {
	name  string
	cfg   func(*Config)
	setup []Command // each must succeed (status OK), one log entry each
	cmd   Command
	want  Status
	check func(t *testing.T, s *Store, r Result)
}

// holdID is the transfer id of the first transfer after the fixture (the
// fixture's funding post is T…001).
const firstID = "T00000000000002"
const secondID = "T00000000000003"
const thirdID = "T00000000000004"

func noChange(before map[string]bal) func(t *testing.T, s *Store, r Result) {
	return func(t *testing.T, s *Store, r Result) {
		for id, b := range before {
			wantBal(t, s, id, b)
		}
	}
}

var authCodeRE = regexp.MustCompile(`^[0-9A-Z]{6}$`)

func ruleCases() []ruleCase {
	fixtureBal := map[string]bal{
		"card1": {0, 0, 0, 10000}, "card2": {}, "merch": {}, "fund": {0, 10000, 0, 0}, "settle": {},
	}
	withFP := func(c Command, fp string) Command { c.Fingerprint = fp; return c }
	noKey := func(c Command) Command { c.Key = ""; return c }
	set := func(c Command, f func(*Command)) Command { f(&c); return c }
	return []ruleCase{
		// Idempotency.
		{name: "missing key is invalid and not stored", cmd: noKey(postCmd("", "fund", "merch", 5)),
			want: StatusInvalidCommand, check: noChange(fixtureBal)},
		{name: "repeat with same fingerprint replays", setup: []Command{postCardCmd("k1", "h1", "merch", 300, "")},
			cmd: postCardCmd("k1", "h1", "merch", 300, ""), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				if !r.Replayed || r.TransferID != firstID || r.Posted != 9700 || r.Available != 9700 || r.Currency != "USD" {
					t.Errorf("replay = %+v", r)
				}
				wantBal(t, s, "card1", bal{0, 300, 0, 10000})
				if _, err := s.Transfer(secondID); !errors.Is(err, ErrNotFound) {
					t.Errorf("repeat made a transfer: %v", err)
				}
			}},
		{name: "repeat with other fingerprint is rejected and changes nothing",
			setup: []Command{postCardCmd("k1", "h1", "merch", 300, "")},
			cmd:   withFP(postCardCmd("k1", "h1", "merch", 500, ""), "other"), want: StatusFingerprintMismatch,
			check: func(t *testing.T, s *Store, r Result) {
				wantBal(t, s, "card1", bal{0, 300, 0, 10000})
				if r.TransferID != "" || r.Replayed {
					t.Errorf("mismatch result = %+v", r)
				}
				// The stored record is still the first one.
				r2 := run1(t, s, postCardCmd("k1", "h1", "merch", 300, ""))
				if !r2.Replayed || r2.TransferID != firstID {
					t.Errorf("original replay after mismatch = %+v", r2)
				}
			}},
		{name: "declines are stored: a repeat of 51 stays 51 after funding",
			setup: []Command{}, cmd: authCmd("k51", "h1", "merch", 20000, ""), want: StatusInsufficientFunds,
			check: func(t *testing.T, s *Store, r Result) {
				if r.Available != 10000 || r.Posted != 10000 {
					t.Errorf("decline balances = %+v", r)
				}
				mustOK(t, s, postCmd("fund-more", "fund", "card1", 50000))
				r2 := run1(t, s, authCmd("k51", "h1", "merch", 20000, ""))
				if r2.Status != StatusInsufficientFunds || !r2.Replayed || r2.Available != 10000 {
					t.Errorf("repeat = %+v", r2)
				}
				wantBal(t, s, "card1", bal{0, 0, 0, 60000})
			}},
		{name: "invalid command is not stored: the key stays free",
			cmd: postCardCmd("kinv", "h1", "", 100, ""), want: StatusInvalidCommand,
			check: func(t *testing.T, s *Store, r Result) {
				r2 := run1(t, s, withFP(postCardCmd("kinv", "h1", "merch", 100, ""), "fixed"))
				if r2.Status != StatusOK || r2.Replayed {
					t.Errorf("corrected command = %+v", r2)
				}
			}},
		{name: "unknown op is invalid", cmd: set(postCmd("kop", "fund", "merch", 1), func(c *Command) { c.Op = 99 }),
			want: StatusInvalidCommand},
		{name: "key too long is invalid", cmd: postCmd(string(make([]byte, keyBytesMax+1)), "fund", "merch", 1),
			want: StatusInvalidCommand},

		// Accounts.
		{name: "account id taken under another key", cmd: set(createCmd(acct("merch", KindBiller, "USD")),
			func(c *Command) { c.Key = "other-key" }), want: StatusAccountExists},
		{name: "card hash taken", cmd: set(createCmd(acct("card9", KindCardholder, "USD")),
			func(c *Command) { c.Account.CardHash = "h1" }), want: StatusAccountExists,
			check: func(t *testing.T, s *Store, r Result) {
				if _, err := s.Account("card9"); !errors.Is(err, ErrNotFound) {
					t.Errorf("account created: %v", err)
				}
			}},
		{name: "account without currency", cmd: createCmd(acct("x1", KindBiller, "")), want: StatusInvalidCommand},
		{name: "account with lowercase currency", cmd: createCmd(acct("x1", KindBiller, "usd")), want: StatusInvalidCommand},
		{name: "account without kind", cmd: createCmd(acct("x1", "", "USD")), want: StatusInvalidCommand},
		{name: "account without id", cmd: createCmd(acct("", KindBiller, "USD")), want: StatusInvalidCommand},
		{name: "account id with separator byte", cmd: createCmd(acct("a\x00b", KindBiller, "USD")), want: StatusInvalidCommand},
		{name: "account born with a balance", cmd: set(createCmd(acct("x1", KindBiller, "USD")),
			func(c *Command) { c.Account.CreditsPosted = 5 }), want: StatusInvalidCommand},
		{name: "create without account", cmd: Command{Op: OpCreateAccount, Key: "c0", Time: t0}, want: StatusInvalidCommand},
		{name: "account by card", cmd: postCardCmd("k", "h1", "merch", 1, ""), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				a, err := s.AccountByCard("h1")
				if err != nil || a.ID != "card1" || a.MaskedPAN != "411111******1111" || a.Posted() != 9999 {
					t.Errorf("by card = %+v, %v", a, err)
				}
				if _, err := s.AccountByCard("nope"); !errors.Is(err, ErrNotFound) {
					t.Errorf("unknown card: %v", err)
				}
			}},

		// Movement rules.
		{name: "post over available is 51", cmd: postCardCmd("k", "h1", "merch", 10001, ""),
			want: StatusInsufficientFunds, check: func(t *testing.T, s *Store, r Result) {
				noChange(fixtureBal)(t, s, r)
				if r.Available != 10000 || r.TransferID != "" || r.AuthCode != "" {
					t.Errorf("result = %+v", r)
				}
			}},
		{name: "post down to the floor exactly", cmd: postCardCmd("k", "h1", "merch", 10000, ""), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				if r.Available != 0 || r.Posted != 0 {
					t.Errorf("result = %+v", r)
				}
				wantBal(t, s, "merch", bal{0, 0, 0, 10000})
			}},
		{name: "negative floor: to the floor", cmd: postCmd("k", "settle", "merch", 5000), want: StatusOK},
		{name: "negative floor: past it", cmd: postCmd("k", "settle", "merch", 5001), want: StatusInsufficientFunds},
		{name: "unlimited has no floor", cmd: postCmd("k", "fund", "merch", amountMax), want: StatusOK},
		{name: "amount over the limit", cmd: postCmd("k", "fund", "merch", amountMax+1), want: StatusInvalidAmount},
		{name: "zero amount", cmd: postCmd("k", "fund", "merch", 0), want: StatusInvalidAmount},
		{name: "negative amount", cmd: postCardCmd("k", "h1", "merch", -5, ""), want: StatusInvalidAmount,
			check: noChange(fixtureBal)},
		{name: "unknown debit", cmd: postCmd("k", "nobody", "merch", 5), want: StatusUnknownAccount},
		{name: "unknown credit", cmd: postCmd("k", "fund", "nobody", 5), want: StatusUnknownAccount},
		{name: "unknown card", cmd: authCmd("k", "h-unknown", "merch", 5, ""), want: StatusUnknownAccount},
		{name: "card currency differs", cmd: authCmd("k", "h3", "merch", 5, ""), want: StatusCurrencyMismatch},
		{name: "command currency differs", cmd: set(postCmd("k", "fund", "merch", 5), func(c *Command) { c.Currency = "EUR" }),
			want: StatusCurrencyMismatch},
		{name: "same account both sides", cmd: postCardCmd("k", "h1", "card1", 5, ""), want: StatusInvalidCommand},
		{name: "post without credit", cmd: postCmd("k", "fund", "", 5), want: StatusInvalidCommand},
		{name: "refund without card", cmd: set(refundCmd("k", "merch", "", 5), func(c *Command) {}), want: StatusInvalidCommand},
		{name: "hold expiring at its own time", cmd: set(authCmd("k", "h1", "merch", 5, ""), func(c *Command) { c.HoldExpiry = c.Time }),
			want: StatusInvalidCommand},
		{name: "authorize without card", cmd: authCmd("k", "", "merch", 5, ""), want: StatusInvalidCommand},
		{name: "holds count against available", setup: []Command{authCmd("a1", "h1", "merch", 6000, "")},
			cmd: postCardCmd("k", "h1", "merch", 4001, ""), want: StatusInsufficientFunds,
			check: func(t *testing.T, s *Store, r Result) {
				if r.Available != 4000 || r.Posted != 10000 {
					t.Errorf("result = %+v", r)
				}
			}},

		// Authorize.
		{name: "authorize places a hold", cmd: authCmd("a1", "h1", "merch", 6000, "ref-a1"), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				if r.TransferID != firstID || r.Posted != 10000 || r.Available != 4000 || r.Currency != "USD" {
					t.Errorf("result = %+v", r)
				}
				if !authCodeRE.MatchString(r.AuthCode) || r.AuthCode != authCode(r.TransferID) {
					t.Errorf("auth code %q", r.AuthCode)
				}
				wantBal(t, s, "card1", bal{6000, 0, 0, 10000})
				wantBal(t, s, "merch", bal{0, 0, 6000, 0})
				tr := getXfer(t, s, firstID)
				if tr.Status != TransferPending || tr.Held != 6000 || tr.Expiry != t0+hour || tr.Debit != "card1" ||
					tr.Credit != "merch" || tr.Op != OpAuthorize || tr.Partner != "p1" || tr.BusinessDay != "2026-03-02" {
					t.Errorf("hold = %+v", tr)
				}
			}},

		// Post.
		{name: "refund credits the card", cmd: refundCmd("r1", "merch", "h2", 700), want: StatusOK,
			setup: []Command{postCmd("fund-merch", "fund", "merch", 1000)},
			check: func(t *testing.T, s *Store, r Result) {
				if r.Posted != 700 || r.Available != 700 {
					t.Errorf("result = %+v", r)
				}
				wantBal(t, s, "card2", bal{0, 0, 0, 700})
				wantBal(t, s, "merch", bal{0, 700, 0, 1000})
			}},
		{name: "refund over the merchant's available", cmd: refundCmd("r1", "merch", "h2", 700), want: StatusInsufficientFunds},

		// Complete.
		{name: "full completion", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1")},
			cmd: completeCmd("c1", "A1", 6000, false, ""), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				hold, capt := getXfer(t, s, firstID), getXfer(t, s, secondID)
				if hold.Status != TransferCompleted || hold.Held != 0 || hold.Captured != 6000 {
					t.Errorf("hold = %+v", hold)
				}
				if capt.Status != TransferPosted || capt.Original != firstID || capt.Amount != 6000 || capt.Op != OpComplete {
					t.Errorf("capture = %+v", capt)
				}
				wantBal(t, s, "card1", bal{0, 6000, 0, 10000})
				wantBal(t, s, "merch", bal{0, 0, 0, 6000})
			}},
		{name: "partial completions up to the held amount",
			setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1"), completeCmd("c1", "A1", 2000, false, ""),
				completeCmd("c2", "A1", 3000, false, "")},
			cmd: completeCmd("c3", "A1", 1001, false, ""), want: StatusExceedsOriginal,
			check: func(t *testing.T, s *Store, r Result) {
				hold := getXfer(t, s, firstID)
				if hold.Status != TransferPending || hold.Held != 1000 || hold.Captured != 5000 {
					t.Errorf("hold = %+v", hold)
				}
				wantBal(t, s, "card1", bal{1000, 5000, 0, 10000})
				mustOK(t, s, completeCmd("c4", "A1", 1000, false, ""))
				if h := getXfer(t, s, firstID); h.Status != TransferCompleted {
					t.Errorf("hold after last capture = %+v", h)
				}
				wantBal(t, s, "merch", bal{0, 0, 0, 6000})
			}},
		{name: "final completion releases the rest", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1")},
			cmd: completeCmd("c1", "A1", 2000, true, ""), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				hold := getXfer(t, s, firstID)
				if hold.Status != TransferCompleted || hold.Held != 0 || hold.Captured != 2000 {
					t.Errorf("hold = %+v", hold)
				}
				wantBal(t, s, "card1", bal{0, 2000, 0, 10000})
				wantBal(t, s, "merch", bal{0, 0, 0, 2000})
			}},
		{name: "complete unknown original", cmd: completeCmd("c1", "nope", 1, false, ""), want: StatusUnknownOriginal},
		{name: "complete a posted transfer", setup: []Command{postCardCmd("p1", "h1", "merch", 100, "P1")},
			cmd: completeCmd("c1", "P1", 100, false, ""), want: StatusAlreadyFinal},
		{name: "complete in another currency", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1")},
			cmd: set(completeCmd("c1", "A1", 100, false, ""), func(c *Command) { c.Currency = "EUR" }), want: StatusCurrencyMismatch},
		{name: "complete an expired hold", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1"), expireCmd(t0+hour, 0)},
			cmd: completeCmd("c1", "A1", 100, false, ""), want: StatusAlreadyFinal},
		{name: "complete with zero amount", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1")},
			cmd: completeCmd("c1", "A1", 0, false, ""), want: StatusInvalidAmount},

		// Reverse.
		{name: "void a hold", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1")},
			cmd: reverseCmd("v1", "A1", 6000), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				hold := getXfer(t, s, firstID)
				if hold.Status != TransferVoided || hold.Held != 0 || hold.Reversed != 6000 || r.TransferID != firstID {
					t.Errorf("hold = %+v, result %+v", hold, r)
				}
				noChange(fixtureBal)(t, s, r)
			}},
		{name: "reverse more than held voids", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1")},
			cmd: reverseCmd("v1", "A1", 9000), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				if h := getXfer(t, s, firstID); h.Status != TransferVoided || h.Reversed != 6000 {
					t.Errorf("hold = %+v", h)
				}
				noChange(fixtureBal)(t, s, r)
			}},
		{name: "partial reversal of a hold", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1")},
			cmd: reverseCmd("v1", "A1", 1000), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				hold := getXfer(t, s, firstID)
				if hold.Status != TransferPending || hold.Held != 5000 || hold.Reversed != 1000 {
					t.Errorf("hold = %+v", hold)
				}
				wantBal(t, s, "card1", bal{5000, 0, 0, 10000})
				wantBal(t, s, "merch", bal{0, 0, 5000, 0})
			}},
		{name: "reverse a posted transfer in parts", setup: []Command{postCardCmd("p1", "h1", "merch", 3000, "P1"),
			reverseCmd("v1", "P1", 1000)},
			cmd: reverseCmd("v2", "P1", 2001), want: StatusExceedsOriginal,
			check: func(t *testing.T, s *Store, r Result) {
				comp := getXfer(t, s, secondID)
				if comp.Debit != "merch" || comp.Credit != "card1" || comp.Amount != 1000 || comp.Original != firstID ||
					comp.Status != TransferPosted || comp.Op != OpReverse {
					t.Errorf("compensation = %+v", comp)
				}
				if o := getXfer(t, s, firstID); o.Reversed != 1000 || o.Status != TransferPosted {
					t.Errorf("original = %+v", o)
				}
				wantBal(t, s, "card1", bal{0, 3000, 0, 11000})
				mustOK(t, s, reverseCmd("v3", "P1", 2000))
				wantBal(t, s, "card1", bal{0, 3000, 0, 13000})
				wantBal(t, s, "merch", bal{0, 3000, 0, 3000})
				if r := run1(t, s, reverseCmd("v4", "P1", 1)); r.Status != StatusExceedsOriginal {
					t.Errorf("reverse past the original: %v", r.Status)
				}
			}},
		{name: "reversal is floor-checked on the credited side",
			setup: []Command{postCardCmd("p1", "h1", "merch", 3000, "P1"), postCmd("out", "merch", "card2", 2500)},
			cmd:   reverseCmd("v1", "P1", 3000), want: StatusInsufficientFunds,
			check: func(t *testing.T, s *Store, r Result) {
				wantBal(t, s, "merch", bal{0, 2500, 0, 3000})
			}},
		{name: "reverse a voided hold", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1"), reverseCmd("v1", "A1", 6000)},
			cmd: reverseCmd("v2", "A1", 1), want: StatusAlreadyFinal},
		{name: "reverse an expired hold", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1"), expireCmd(t0+hour, 0)},
			cmd: reverseCmd("v2", "A1", 1), want: StatusAlreadyFinal},
		{name: "reverse a completed hold", setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1"), completeCmd("c1", "A1", 6000, false, "")},
			cmd: reverseCmd("v2", "A1", 1), want: StatusAlreadyFinal},
		{name: "reverse a completion by its own reference",
			setup: []Command{authCmd("a1", "h1", "merch", 6000, "A1"), completeCmd("c1", "A1", 6000, false, "C1")},
			cmd:   reverseCmd("v1", "C1", 6000), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				wantBal(t, s, "card1", bal{0, 6000, 0, 16000})
				if c := getXfer(t, s, thirdID); c.Original != secondID {
					t.Errorf("compensation = %+v", c)
				}
			}},
		{name: "reverse unknown original", cmd: reverseCmd("v1", "nope", 1), want: StatusUnknownOriginal},
		{name: "a taken reference keeps its first transfer",
			setup: []Command{postCardCmd("p1", "h1", "merch", 100, "R")},
			cmd:   reverseCmd("v1", "R", 150), want: StatusExceedsOriginal},
		{name: "a completion naming another card finds no original",
			setup: []Command{authCmd("a1", "h1", "merch", 1000, "A1")},
			cmd:   set(completeCmd("c1", "A1", 500, true, ""), func(c *Command) { c.Card = "h2" }), want: StatusUnknownOriginal,
			check: func(t *testing.T, s *Store, r Result) {
				wantBal(t, s, "card1", bal{1000, 0, 0, 10000}) // the hold is untouched
			}},
		{name: "a reversal naming the original's own card applies",
			setup: []Command{authCmd("a1", "h1", "merch", 1000, "A1")},
			cmd:   set(reverseCmd("v1", "A1", 1000), func(c *Command) { c.Card = "h1" }), want: StatusOK},
		{name: "a new key reusing a taken reference is declined",
			setup: []Command{postCardCmd("p1", "h1", "merch", 100, "R")},
			cmd:   postCardCmd("p2", "h1", "merch", 200, "R"), want: StatusDuplicateReference,
			check: func(t *testing.T, s *Store, r Result) {
				wantBal(t, s, "merch", bal{0, 0, 0, 100}) // only the first posted
				if again := run1(t, s, postCardCmd("p2", "h1", "merch", 200, "R")); again.Status != StatusDuplicateReference || !again.Replayed {
					t.Errorf("repeat of the declined command = %+v", again)
				}
			}},

		// Expire.
		{name: "expire releases lapsed holds only",
			setup: []Command{authCmd("a1", "h1", "merch", 1000, "A1"),
				set(authCmd("a2", "h1", "merch", 2000, "A2"), func(c *Command) { c.HoldExpiry = t0 + 2*hour })},
			cmd: expireCmd(t0+hour, 0), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				if r.Expired != 1 || r.Pruned != 0 {
					t.Errorf("result = %+v", r)
				}
				if h := getXfer(t, s, firstID); h.Status != TransferExpired || h.Held != 0 {
					t.Errorf("expired hold = %+v", h)
				}
				if h := getXfer(t, s, secondID); h.Status != TransferPending {
					t.Errorf("live hold = %+v", h)
				}
				wantBal(t, s, "card1", bal{2000, 0, 0, 10000})
				wantBal(t, s, "merch", bal{0, 0, 2000, 0})
				if r := run1(t, s, expireCmd(t0+hour, 0)); r.Expired != 0 {
					t.Errorf("second expire = %+v", r)
				}
			}},
		{name: "expire is bounded per command", cfg: func(c *Config) { c.ExpireBatchMax = 2 },
			setup: []Command{authCmd("a1", "h1", "merch", 1, ""), authCmd("a2", "h1", "merch", 1, ""),
				authCmd("a3", "h1", "merch", 1, ""), authCmd("a4", "h1", "merch", 1, ""), authCmd("a5", "h1", "merch", 1, "")},
			cmd: expireCmd(t0+hour, t0+1), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				if r.Expired != 2 || r.Pruned != 2 {
					t.Errorf("first = %+v", r)
				}
				if r := run1(t, s, expireCmd(t0+hour, t0+1)); r.Expired != 2 || r.Pruned != 2 {
					t.Errorf("second = %+v", r)
				}
				if r := run1(t, s, expireCmd(t0+hour, t0+1)); r.Expired != 1 || r.Pruned != 2 {
					t.Errorf("third = %+v", r)
				}
				wantBal(t, s, "card1", bal{0, 0, 0, 10000})
			}},
		{name: "prune drops old idempotency records only",
			setup: []Command{postCardCmd("old", "h1", "merch", 10, ""),
				set(postCardCmd("new", "h1", "merch", 20, ""), func(c *Command) { c.Time = t0 + 10 })},
			cmd: expireCmd(t0+20, t0+10), want: StatusOK,
			check: func(t *testing.T, s *Store, r Result) {
				// The fixture's 7 records (time t0) and "old" go; "new" stays.
				if r.Pruned != 8 {
					t.Errorf("pruned %d, want 8", r.Pruned)
				}
				if r := run1(t, s, set(postCardCmd("new", "h1", "merch", 20, ""), func(c *Command) { c.Time = t0 + 10 })); !r.Replayed {
					t.Errorf("kept record not replayed: %+v", r)
				}
				// A pruned key is new again: it posts a second time.
				if r := run1(t, s, postCardCmd("old", "h1", "merch", 10, "")); r.Replayed || r.Status != StatusOK {
					t.Errorf("pruned key = %+v", r)
				}
				wantBal(t, s, "card1", bal{0, 40, 0, 10000})
			}},
	}
}

func TestRules(t *testing.T) {
	for _, tc := range ruleCases() {
		t.Run(tc.name, func(t *testing.T) {
			var s *Store
			if tc.cfg != nil {
				cfg := testConfig(t)
				tc.cfg(&cfg)
				s = openCfg(t, cfg)
				fixtureInto(t, s)
			} else {
				s = fixture(t)
			}
			for _, c := range tc.setup {
				mustOK(t, s, c)
			}
			r := run1(t, s, tc.cmd)
			if r.Status != tc.want {
				t.Fatalf("status = %v (%v), want %v (%v)", r.Status, r.Status.Err(), tc.want, tc.want.Err())
			}
			if tc.check != nil {
				tc.check(t, s, r)
			}
			checkInvariants(t, s)
		})
	}
}

// TestBatchSeesEarlierCommands: commands of one entry, and entries of one
// ApplyBatch, see each other's writes before anything is committed.
func TestBatchSeesEarlierCommands(t *testing.T) {
	s := openTest(t)
	c := acct("c", KindCardholder, "USD")
	c.CardHash = "hc"
	f := acct("f", KindFunding, "USD")
	f.Unlimited = true
	hold := authCmd("a", "hc", "f", 40, "A")
	hold.HoldExpiry = t0 + 5
	out := s.ApplyBatch([]*raft.Log{
		logEntry(t, 1, createCmd(c), createCmd(f), postCmd("fund", "f", "c", 100), hold),
		logEntry(t, 2, completeCmd("cap", "A", 10, false, ""), authCmd("b", "hc", "f", 61, ""),
			expireCmd(t0+5, 0), authCmd("b2", "hc", "f", 60, "")),
	})
	want := [][]Status{{0, 0, 0, 0}, {StatusOK, StatusInsufficientFunds, StatusOK, StatusOK}}
	for i, o := range out {
		rs := o.([]Result)
		for j, r := range rs {
			if r.Status != want[i][j] {
				t.Errorf("entry %d command %d: %v, want %v", i, j, r.Status, want[i][j])
			}
		}
	}
	if r := out[1].([]Result)[2]; r.Expired != 1 {
		t.Errorf("expire in batch = %+v", r)
	}
	wantBal(t, s, "c", bal{60, 10, 0, 100})
	if s.AppliedIndex() != 2 {
		t.Errorf("applied %d", s.AppliedIndex())
	}
}

func TestReplaySkipsAppliedEntries(t *testing.T) {
	s := fixture(t)
	idx := s.AppliedIndex()
	e := logEntry(t, idx+1, postCardCmd("k", "h1", "merch", 5, ""))
	if _, ok := s.Apply(e).([]Result); !ok {
		t.Fatal("first apply")
	}
	_, before, _ := s.StateHash()
	out := s.ApplyBatch([]*raft.Log{logEntry(t, idx, postCardCmd("k2", "h1", "merch", 5, "")), e})
	if out[0] != nil || out[1] != nil {
		t.Errorf("replayed entries answered %v", out)
	}
	_, after, _ := s.StateHash()
	if before != after || s.AppliedIndex() != idx+1 {
		t.Errorf("replay changed state")
	}
	wantBal(t, s, "card1", bal{0, 5, 0, 10000})
}

func TestCorruptAndConfigEntriesAdvanceIndex(t *testing.T) {
	s := fixture(t)
	idx := s.AppliedIndex()
	out := s.ApplyBatch([]*raft.Log{
		{Index: idx + 1, Type: raft.LogCommand, Data: []byte{batchVersion, 5, 1}},
		{Index: idx + 2, Type: raft.LogConfiguration, Data: []byte("whatever")},
		{Index: idx + 3, Type: raft.LogCommand, Data: nil},
	})
	if err, ok := out[0].(error); !ok || !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt entry answered %v", out[0])
	}
	if out[1] != nil {
		t.Errorf("configuration entry answered %v", out[1])
	}
	if err, ok := out[2].(error); !ok || !errors.Is(err, ErrCorrupt) {
		t.Errorf("empty entry answered %v", out[2])
	}
	if s.AppliedIndex() != idx+3 {
		t.Errorf("applied = %d, want %d", s.AppliedIndex(), idx+3)
	}
	s2 := reopen(t, s)
	if s2.AppliedIndex() != idx+3 {
		t.Errorf("applied after reopen = %d", s2.AppliedIndex())
	}
}

// reopen closes s and opens its directory again.
func reopen(t *testing.T, s *Store) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openCfg(t, s.cfg)
}

func TestTransferIDsAndAuthCodes(t *testing.T) {
	if got := formatTransferID(1); got != "T00000000000001" {
		t.Errorf("id = %q", got)
	}
	if formatTransferID(9) >= formatTransferID(10) {
		t.Error("ids do not sort by creation")
	}
	seen := map[string]bool{}
	for i := uint64(1); i <= 1000; i++ {
		c := authCode(formatTransferID(i))
		if !authCodeRE.MatchString(c) {
			t.Fatalf("auth code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 995 { // 36^6 codes: collisions among 1000 are rare
		t.Errorf("only %d distinct codes of 1000", len(seen))
	}
}
