package store

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// The model is a second, deliberately naive implementation of the ledger
// rules over Go maps. The randomized test runs the same commands through
// it and through the Store and demands the same Result for every command
// and the same balances and transfers at the end.

type mAcct struct {
	Account
}

type mIdem struct {
	fp   string
	time int64
	res  Result
}

type model struct {
	expireMax int
	accts     map[string]*Account
	cards     map[string]string
	xfers     []*Transfer // id n is xfers[n-1]
	refs      map[string]string
	idem      map[string]mIdem
	days      mDays                 // business days (day_model_test.go)
	breaks    map[string]BreakState // recon\x00break → state (recon_model_test.go)
}

func newModel(expireMax int) *model {
	return &model{expireMax: expireMax, accts: map[string]*Account{}, cards: map[string]string{},
		refs: map[string]string{}, idem: map[string]mIdem{}}
}

func (m *model) xfer(id string) *Transfer {
	var n int
	fmt.Sscanf(id, "T%d", &n)
	return m.xfers[n-1]
}

func (m *model) add(t Transfer) string {
	t.ID = formatTransferID(uint64(len(m.xfers) + 1))
	m.xfers = append(m.xfers, &t)
	return t.ID
}

func (m *model) apply(c Command) Result {
	if c.Op == OpExpire {
		return m.expire(c)
	}
	if c.Op == OpOpenDay || c.Op == OpCloseDay {
		return m.dayOp(c)
	}
	if c.Key == "" || len(c.Key) > keyBytesMax {
		return Result{Status: StatusInvalidCommand}
	}
	if rec, ok := m.idem[c.Key]; ok {
		if rec.fp != c.Fingerprint {
			return Result{Status: StatusFingerprintMismatch}
		}
		r := rec.res
		r.Replayed = true
		return r
	}
	if _, taken := m.refs[c.OriginalRef]; c.OriginalRef != "" && c.Op != OpCreateAccount && taken {
		r := Result{Status: StatusDuplicateReference}
		m.idem[c.Key] = mIdem{c.Fingerprint, c.Time, r}
		return r
	}
	m.stampDay(&c)
	var r Result
	switch c.Op {
	case OpCreateAccount:
		r = m.create(c)
	case OpAuthorize, OpPost:
		r = m.move(c)
	case OpComplete:
		r = m.complete(c)
	case OpReverse:
		r = m.reverse(c)
	case OpBreak:
		r = m.breakOp(c)
	default:
		r = Result{Status: StatusInvalidCommand}
	}
	if r.Status == StatusInvalidCommand {
		return r
	}
	if r.Status == StatusOK && r.TransferID != "" {
		r.AuthCode = authCode(r.TransferID)
		if c.OriginalRef != "" {
			m.refs[c.OriginalRef] = r.TransferID
		}
	}
	m.idem[c.Key] = mIdem{c.Fingerprint, c.Time, r}
	return r
}

func (m *model) create(c Command) Result {
	a := *c.Account
	if m.accts[a.ID] != nil {
		return Result{Status: StatusAccountExists}
	}
	if _, ok := m.cards[a.CardHash]; a.CardHash != "" && ok {
		return Result{Status: StatusAccountExists}
	}
	m.accts[a.ID] = &a
	if a.CardHash != "" {
		m.cards[a.CardHash] = a.ID
	}
	return Result{}
}

func (m *model) card(hash string) *Account {
	if id, ok := m.cards[hash]; ok {
		return m.accts[id]
	}
	return nil
}

func report(r Result, card *Account) Result {
	if card != nil {
		r.Posted, r.Available, r.Currency = card.Posted(), card.Available(), card.Currency
	}
	return r
}

func (m *model) move(c Command) Result {
	if c.Op == OpAuthorize && (c.Card == "" || c.CreditCard || c.HoldExpiry <= c.Time) {
		return Result{Status: StatusInvalidCommand}
	}
	var card, dr, cr *Account
	card = m.card(c.Card)
	switch {
	case c.CreditCard:
		dr, cr = m.accts[c.Debit], card
	case c.Card != "":
		dr, cr = card, m.accts[c.Credit]
	default:
		dr, cr = m.accts[c.Debit], m.accts[c.Credit]
	}
	if c.Amount <= 0 || c.Amount > amountMax {
		return report(Result{Status: StatusInvalidAmount}, card)
	}
	if st := m.legs(c, dr, cr); st != StatusOK {
		return report(Result{Status: st}, card)
	}
	t := Transfer{Op: c.Op, Debit: dr.ID, Credit: cr.ID, Amount: c.Amount, Currency: c.Currency, Time: c.Time,
		BusinessDay: c.BusinessDay, Partner: c.Partner, Ref: c.Ref}
	if c.Op == OpAuthorize {
		t.Status, t.Held, t.Expiry = TransferPending, c.Amount, c.HoldExpiry
		dr.DebitsPending += c.Amount
		cr.CreditsPending += c.Amount
	} else {
		t.Status = TransferPosted
		dr.DebitsPosted += c.Amount
		cr.CreditsPosted += c.Amount
	}
	return report(Result{TransferID: m.add(t)}, card)
}

func (m *model) legs(c Command, dr, cr *Account) Status {
	switch {
	case dr == nil || cr == nil:
		return StatusUnknownAccount
	case dr == cr:
		return StatusInvalidCommand
	case dr.Currency != c.Currency || cr.Currency != c.Currency:
		return StatusCurrencyMismatch
	case !dr.Unlimited && dr.Available()-c.Amount < dr.Floor:
		return StatusInsufficientFunds
	}
	return StatusOK
}

func (m *model) original(c Command) (*Transfer, Status) {
	if c.Amount <= 0 || c.Amount > amountMax {
		return nil, StatusInvalidAmount
	}
	id, ok := m.refs[c.Original]
	if !ok {
		return nil, StatusUnknownOriginal
	}
	o := m.xfer(id)
	if o.Currency != c.Currency {
		return nil, StatusCurrencyMismatch
	}
	if c.Card != "" {
		if card := m.card(c.Card); card == nil || (card.ID != o.Debit && card.ID != o.Credit) {
			return nil, StatusUnknownOriginal
		}
	}
	return o, StatusOK
}

func (m *model) complete(c Command) Result {
	o, st := m.original(c)
	if st != StatusOK {
		return Result{Status: st}
	}
	card := m.card(c.Card)
	if o.Status != TransferPending {
		return report(Result{Status: StatusAlreadyFinal}, card)
	}
	if c.Amount > o.Held {
		return report(Result{Status: StatusExceedsOriginal}, card)
	}
	dr, cr := m.accts[o.Debit], m.accts[o.Credit]
	rest := o.Held - c.Amount
	if !c.Final && rest > 0 {
		rest = 0
	}
	dr.DebitsPending -= c.Amount + rest
	cr.CreditsPending -= c.Amount + rest
	dr.DebitsPosted += c.Amount
	cr.CreditsPosted += c.Amount
	o.Held -= c.Amount + rest
	o.Captured += c.Amount
	if o.Held == 0 {
		o.Status = TransferCompleted
	}
	id := m.add(Transfer{Op: OpComplete, Status: TransferPosted, Debit: o.Debit, Credit: o.Credit, Amount: c.Amount,
		Currency: c.Currency, Time: c.Time, BusinessDay: c.BusinessDay, Partner: c.Partner, Original: o.ID, Ref: c.Ref})
	return report(Result{TransferID: id}, card)
}

func (m *model) reverse(c Command) Result {
	o, st := m.original(c)
	if st != StatusOK {
		return Result{Status: st}
	}
	card := m.card(c.Card)
	dr, cr := m.accts[o.Debit], m.accts[o.Credit]
	switch o.Status {
	case TransferPending:
		amt := min(c.Amount, o.Held)
		dr.DebitsPending -= amt
		cr.CreditsPending -= amt
		o.Held -= amt
		o.Reversed += amt
		if o.Held == 0 {
			o.Status = TransferVoided
		}
		return report(Result{TransferID: o.ID}, card)
	case TransferPosted:
		if c.Amount > o.Amount-o.Reversed {
			return report(Result{Status: StatusExceedsOriginal}, card)
		}
		if st := m.legs(c, cr, dr); st != StatusOK {
			return report(Result{Status: st}, card)
		}
		cr.DebitsPosted += c.Amount
		dr.CreditsPosted += c.Amount
		o.Reversed += c.Amount
		id := m.add(Transfer{Op: OpReverse, Status: TransferPosted, Debit: o.Credit, Credit: o.Debit, Amount: c.Amount,
			Currency: c.Currency, Time: c.Time, BusinessDay: c.BusinessDay, Partner: c.Partner, Original: o.ID, Ref: c.Ref})
		return report(Result{TransferID: id}, card)
	}
	return report(Result{Status: StatusAlreadyFinal}, card)
}

func (m *model) expire(c Command) Result {
	var r Result
	var lapsed []*Transfer
	for _, t := range m.xfers {
		if t.Status == TransferPending && t.Expiry <= c.Time {
			lapsed = append(lapsed, t)
		}
	}
	slices.SortStableFunc(lapsed, func(a, b *Transfer) int { return cmp.Compare(a.Expiry, b.Expiry) })
	for _, t := range lapsed[:min(len(lapsed), m.expireMax)] {
		m.accts[t.Debit].DebitsPending -= t.Held
		m.accts[t.Credit].CreditsPending -= t.Held
		t.Held = 0
		t.Status = TransferExpired
		r.Expired++
	}
	type kt struct {
		k string
		t int64
	}
	var old []kt
	for k, rec := range m.idem {
		if rec.time < c.RetainAfter {
			old = append(old, kt{k, rec.time})
		}
	}
	slices.SortFunc(old, func(a, b kt) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.k, b.k)) })
	for _, o := range old[:min(len(old), m.expireMax)] {
		delete(m.idem, o.k)
		r.Pruned++
	}
	return r
}

// gen makes a random but plausible command stream.
type gen struct {
	rng       *rand.Rand
	now       int64
	n         int
	cards     []string // card hashes, USD then EUR
	ccy       map[string]string
	merch     []string
	auths     []string          // original refs of authorizations
	issuedAmt map[string]int64  // original ref → amount it was issued with
	refCard   map[string]string // original ref → card hash it was issued with
	refs      []string          // every original ref
	issued    []Command
	daysShut  int // business days the generator has closed
}

func newGen(seed uint64) (*gen, []Command) {
	g := &gen{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), now: t0, ccy: map[string]string{},
		issuedAmt: map[string]int64{}, refCard: map[string]string{}}
	var setup []Command
	add := func(a *Account) { setup = append(setup, createCmd(a)) }
	for _, ccy := range []string{"USD", "EUR"} {
		f := acct("fund-"+ccy, KindFunding, ccy)
		f.Unlimited = true
		add(f)
		st := acct("settle-"+ccy, KindSettlement, ccy)
		st.Floor = -200_000
		add(st)
		for i := 0; i < 8; i++ {
			id := fmt.Sprintf("merch-%s-%d", ccy, i)
			add(acct(id, KindBiller, ccy))
			g.merch = append(g.merch, id)
			g.ccy[id] = ccy
		}
		for i := 0; i < 40; i++ {
			a := acct(fmt.Sprintf("card-%s-%02d", ccy, i), KindCardholder, ccy)
			a.CardHash = fmt.Sprintf("hash-%s-%02d", ccy, i)
			add(a)
			g.cards = append(g.cards, a.CardHash)
			g.ccy[a.CardHash] = ccy
			setup = append(setup, postCmd("fund-"+a.ID, "fund-"+ccy, a.ID, int64(g.rng.IntN(200_000))))
			setup[len(setup)-1].Currency = ccy
		}
	}
	return g, setup
}

func (g *gen) pick(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return s[g.rng.IntN(len(s))]
}

func (g *gen) amount() int64 {
	switch g.rng.IntN(100) {
	case 0:
		return 0
	case 1:
		return -int64(g.rng.IntN(100))
	}
	return 1 + int64(g.rng.IntN(3000))
}

func (g *gen) next() Command {
	g.now += int64(g.rng.IntN(2_000_000_000)) // up to 2 s between commands
	g.n++
	key := fmt.Sprintf("k%07d", g.n)
	c := Command{Key: key, Fingerprint: "fp" + key, Time: g.now, BusinessDay: "2026-03-02",
		Partner: fmt.Sprintf("p%d", g.rng.IntN(3))}
	card := g.pick(g.cards)
	merch := g.pick(g.merch)
	for g.ccy[merch] != g.ccy[card] && g.rng.IntN(20) != 0 {
		merch = g.pick(g.merch)
	}
	c.Currency = g.ccy[card]
	if g.rng.IntN(33) == 0 {
		c.Currency = map[string]string{"USD": "EUR", "EUR": "USD"}[c.Currency]
	}
	if g.rng.IntN(50) == 0 {
		card = "hash-unknown"
	}
	ref := "R" + key
	reused := false // this command reuses an earlier reference
	switch p := g.rng.IntN(100); {
	case p < 25:
		c.Op, c.Card, c.Credit, c.Amount = OpAuthorize, card, merch, g.amount()
		c.HoldExpiry = g.now + int64(1+g.rng.IntN(600))*1e9
		if g.rng.IntN(50) == 0 {
			c.HoldExpiry = g.now
		}
		c.OriginalRef = ref
		g.auths = append(g.auths, ref)
		g.refs = append(g.refs, ref)
	case p < 48:
		c.Op, c.Card, c.Credit, c.Amount, c.OriginalRef = OpPost, card, merch, g.amount(), ref
		g.refs = append(g.refs, ref)
	case p < 53:
		c.Op, c.Card, c.CreditCard, c.Debit, c.Amount, c.OriginalRef = OpPost, card, true, merch, g.amount(), ref
		g.refs = append(g.refs, ref)
	case p < 55:
		c.Op, c.Debit, c.Credit, c.Amount = OpPost, "settle-"+g.ccy[merch], merch, g.amount()*20
		c.Currency = g.ccy[merch]
	case p < 56 && len(g.refs) > 0:
		// A new key reusing a reference (an acquirer's repeated STAN and
		// time): declined when the reference was taken by an approval.
		c.Op, c.Card, c.Credit, c.Amount, c.OriginalRef = OpPost, card, merch, g.amount(), g.pick(g.refs[max(0, len(g.refs)-80):])
		reused = true
	case p < 70:
		c.Op, c.Original, c.Amount, c.Final = OpComplete, g.pick(g.auths[max(0, len(g.auths)-50):]), g.amount(), g.rng.IntN(3) == 0
		c.Amount = g.portion(c.Original, c.Amount)
		c.Currency = g.ccy[card]
		if g.rng.IntN(3) == 0 {
			c.OriginalRef = ref
			g.refs = append(g.refs, ref)
		}
		switch g.rng.IntN(10) {
		case 0:
			c.Card = card // usually another card's: no such original for it
		case 1, 2, 3, 4, 5:
			c.Card = g.refCard[c.Original] // the original's own card
		}
	case p < 82:
		c.Op, c.Original, c.Amount = OpReverse, g.pick(g.refs[max(0, len(g.refs)-80):]), g.amount()
		c.Amount = g.portion(c.Original, c.Amount)
		c.Currency = g.ccy[card]
		if g.rng.IntN(4) == 0 {
			c.Original = "R-unknown"
		}
	case p < 86:
		c = Command{Op: OpExpire, Time: g.now, RetainAfter: g.now - int64(g.rng.IntN(900))*1e9}
	case p < 87:
		c = g.dayCmd()
	case p < 88:
		c.Op, c.Break = OpBreak, g.breakUpdate()
	case p < 94 && len(g.issued) > 0:
		c = g.issued[g.rng.IntN(len(g.issued))] // exact repeat
	case p < 97 && len(g.issued) > 0:
		c = g.issued[g.rng.IntN(len(g.issued))]
		c.Fingerprint += "-changed"
	case p < 98:
		c.Op = OpPost // no key
		c.Key, c.Debit, c.Credit, c.Amount = "", "fund-USD", merch, 5
	default:
		c.Op, c.Account = OpCreateAccount, acct(g.pick(g.merch), KindBiller, "USD")
	}
	if c.Op != OpExpire && c.Key != "" {
		g.issued = append(g.issued, c)
	}
	if c.OriginalRef != "" && !reused {
		g.refCard[c.OriginalRef] = c.Card
		g.issuedAmt[c.OriginalRef] = c.Amount
	}
	return c
}

// portion often turns a random amount into all or a simple part of what
// the original was issued with, so full captures, exact voids and
// reversals to the last unit happen often.
func (g *gen) portion(ref string, amt int64) int64 {
	orig, ok := g.issuedAmt[ref]
	if !ok || orig <= 0 {
		return amt
	}
	switch g.rng.IntN(4) {
	case 0:
		return orig
	case 1:
		return max(1, orig/2)
	case 2:
		return max(1, orig-orig/2)
	}
	return amt
}

// hashExceptApplied hashes every pair but the applied index: stores that
// cut the same commands into different raft entries end at different
// indexes but must otherwise be byte-identical.
func hashExceptApplied(t testing.TB, s *Store) [32]byte {
	t.Helper()
	h := sha256.New()
	err := s.read(func(db *pebble.DB) error {
		it, err := db.NewIter(nil)
		if err != nil {
			return err
		}
		defer it.Close()
		for ok := it.First(); ok; ok = it.Next() {
			if string(it.Key()) == string(keyApplied) {
				continue
			}
			h.Write(binary.AppendUvarint(nil, uint64(len(it.Key()))))
			h.Write(it.Key())
			h.Write(binary.AppendUvarint(nil, uint64(len(it.Value()))))
			h.Write(it.Value())
		}
		return it.Error()
	})
	if err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// split cuts cmds into raft entries of 1..maxSize commands.
func split(t testing.TB, rng *rand.Rand, cmds []Command, maxSize int, first uint64) []*raft.Log {
	var logs []*raft.Log
	for len(cmds) > 0 {
		n := min(len(cmds), 1+rng.IntN(maxSize))
		logs = append(logs, logEntry(t, first+uint64(len(logs)), cmds[:n]...))
		cmds = cmds[n:]
	}
	return logs
}

// applyGrouped applies logs in ApplyBatch calls of 1..maxGroup entries and
// returns every command's result in order.
func applyGrouped(t testing.TB, s *Store, rng *rand.Rand, logs []*raft.Log, maxGroup int, every func()) []Result {
	var out []Result
	for len(logs) > 0 {
		n := min(len(logs), 1+rng.IntN(maxGroup))
		for i, o := range s.ApplyBatch(logs[:n]) {
			rs, ok := o.([]Result)
			if !ok {
				t.Fatalf("entry %d: %v", logs[i].Index, o)
			}
			out = append(out, rs...)
		}
		logs = logs[n:]
		if every != nil {
			every()
		}
	}
	return out
}

func TestModelRandomized(t *testing.T) {
	ops := 30_000
	if testing.Short() || raceEnabled {
		ops = 4_000
	}
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { modelRun(t, seed, ops) })
	}
}

func modelRun(t *testing.T, seed uint64, ops int) {
	g, setup := newGen(seed)
	cmds := append([]Command(nil), setup...)
	for i := 0; i < ops; i++ {
		cmds = append(cmds, g.next())
	}
	// The model's answers.
	const expireMax = 25 // small, so the bound is exercised
	m := newModel(expireMax)
	want := make([]Result, len(cmds))
	statuses := map[Status]int{}
	for i, c := range cmds {
		want[i] = m.apply(c)
		statuses[want[i].Status]++
	}
	t.Logf("seed %d: %d commands, statuses %v", seed, len(cmds), statuses)
	for _, st := range []Status{StatusOK, StatusInsufficientFunds, StatusUnknownAccount, StatusUnknownOriginal,
		StatusFingerprintMismatch, StatusInvalidAmount, StatusCurrencyMismatch, StatusExceedsOriginal,
		StatusAlreadyFinal, StatusAccountExists, StatusInvalidCommand, StatusDuplicateReference, StatusDayMismatch} {
		if statuses[st] == 0 {
			t.Errorf("generator never produced status %v", st)
		}
	}

	rng := rand.New(rand.NewPCG(seed, 7))
	open := func(accountCacheMax int) *Store {
		cfg := testConfig(t)
		cfg.ExpireBatchMax = expireMax
		cfg.AccountCacheMax = accountCacheMax
		return openCfg(t, cfg)
	}
	logs := split(t, rng, cmds, 64, 1)

	// A: random ApplyBatch groups, invariants checked as it goes.
	a := open(DefaultConfig().AccountCacheMax)
	calls := 0
	gotA := applyGrouped(t, a, rng, logs, 16, func() {
		if calls++; calls%25 == 0 {
			checkInvariants(t, a)
		}
	})
	compareResults(t, "grouped", gotA, want)
	checkInvariants(t, a)
	compareState(t, a, m)
	compareBreaks(t, a, m)

	// B: the same entries, one per ApplyBatch, with an account cache so
	// small it evicts all the time: the same hash.
	b := open(3)
	compareResults(t, "one by one", applyGrouped(t, b, rng, logs, 1, nil), want)
	ia, ha, _ := a.StateHash()
	ib, hb, _ := b.StateHash()
	if ia != ib || ha != hb {
		t.Errorf("state hash differs between ApplyBatch splits: %d %x vs %d %x", ia, ha, ib, hb)
	}

	// C: the same commands cut into other entries, no account cache.
	c := open(0)
	compareResults(t, "other entries", applyGrouped(t, c, rng, split(t, rng, cmds, 500, 1), 4, nil), want)
	if hashExceptApplied(t, a) != hashExceptApplied(t, c) {
		t.Error("state differs between entry splits")
	}

	// Replaying every entry is a no-op.
	for _, o := range a.ApplyBatch(logs) {
		if o != nil {
			t.Fatalf("replayed entry answered %v", o)
		}
	}
	if _, h, _ := a.StateHash(); h != ha {
		t.Error("replay changed the state")
	}
}

func compareResults(t *testing.T, what string, got, want []Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d results, want %d", what, len(got), len(want))
	}
	bad := 0
	for i := range got {
		if got[i] != want[i] {
			if bad++; bad <= 5 {
				t.Errorf("%s: command %d: got %+v, model %+v", what, i, got[i], want[i])
			}
		}
	}
	if bad > 5 {
		t.Errorf("%s: %d results differ", what, bad)
	}
}

func compareState(t *testing.T, s *Store, m *model) {
	t.Helper()
	for id, ma := range m.accts {
		if a := getAcct(t, s, id); a != *ma {
			t.Errorf("account %s: store %+v, model %+v", id, a, *ma)
		}
	}
	for _, mt := range m.xfers {
		if tr := getXfer(t, s, mt.ID); tr != *mt {
			t.Errorf("transfer %s: store %+v, model %+v", mt.ID, tr, *mt)
		}
	}
	if _, err := s.Transfer(formatTransferID(uint64(len(m.xfers) + 1))); err == nil {
		t.Error("store has more transfers than the model")
	}
}
