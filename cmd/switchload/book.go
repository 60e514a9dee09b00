package main

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/switchd/switchd/codec"
	"github.com/switchd/switchd/currency"
)

// Pool limits. The pools hold what later requests can refer to; past the
// limit an approval is simply not offered for follow-ups (its hold stays
// open in the ledger and in the model, which is still exact).
const (
	holdPoolMax     = 65536
	purchasePoolMax = 65536
	// repeatPoolMax bounds the answered requests kept for repeats; each
	// holds a whole message (~2 KiB).
	repeatPoolMax = 4096
	// stanModulus and rrnSeqModulus: STAN is 6 digits, the RRN's counter 7.
	stanModulus   = 1_000_000
	rrnSeqModulus = 10_000_000
)

// Fixed card acceptor fields of every load request.
const (
	loadTerminal = "SWLOAD01"        // field 41, 8 characters
	loadMerchant = "SWITCHLOAD00001" // field 42, 15 characters
)

// request is one ISO 8583 request of the run and everything needed to
// judge its answer.
type request struct {
	kind kind
	mti  string // MTI as first sent; msg.MTI turns into the repeat MTI on resends
	msg  codec.Message
	key  string // field 11 + field 7: how answers are matched
	card *card

	amount   int64 // what it moves: purchase/auth/capture amount, amount reversed
	final    bool  // completion: releases the rest of the hold
	hold     *hold
	purchase *purchase
	orig     *request // kindRepeat: the answered request it repeats

	intended time.Time // when it should go out: latency is measured from here

	// Wire state, owned by the connection (under conn.mu).
	sends  int       // times written to the wire
	onWire bool      // written and waiting for an answer
	queued bool      // waiting in the connection's resend queue
	due    time.Time // onWire: answer deadline; otherwise when to resend

	// The final answer, set once by the book.
	rc       string
	authCode string
}

// changesState reports whether the request may move money: these are the
// ones whose outcome the verification needs, and the ones worth repeating.
func (r *request) changesState() bool {
	switch r.kind {
	case kindPurchase, kindAuth, kindCompletion, kindReversal:
		return true
	}
	return false
}

// repeatMTI is the repeat form of a request MTI: 0200 → 0201, 0220 → 0221,
// 0420 → 0421 (the last digit is the origin/repeat flag).
func repeatMTI(mti string) string { return mti[:3] + "1" }

// book builds the requests of the run and keeps the ledger model: which
// holds and purchases exist, what every card should hold afterwards.
type book struct {
	acquirer string
	ccy      currency.Currency
	unit     int64 // one major unit in minor units: 10^exponent
	mix      mix
	mixTotal int
	runID    string // 5 characters that make this run's RRNs unique

	mu         sync.Mutex // protects everything below, and the cards' expectations
	rng        *rand.Rand
	cards      []*card
	holds      []*hold     // open holds nobody is working on
	purchases  []*purchase // reversible purchases nobody is working on
	answered   []*request  // state-changing requests with a definite answer
	seq        uint64      // requests built so far: drives STAN and RRN
	stanBase   uint64
	nFallbacks int64 // a kind was drawn that had nothing to work on
}

// newBook prepares the requests of one run. runID goes into every RRN;
// stanBase is where the run's STANs start: random per run, never from the
// seed, since two runs with one seed must still not share STANs (see
// engine.load for why that matters).
func newBook(cfg Config, ccy currency.Currency, cards []*card, runID string, stanBase uint64, seed int64) *book {
	unit := int64(1)
	for range ccy.Exponent {
		unit *= 10
	}
	rng := rand.New(rand.NewPCG(uint64(seed), uint64(seed)>>32|0x5eed))
	return &book{
		acquirer: cfg.Acquirer,
		ccy:      ccy,
		unit:     unit,
		mix:      cfg.Mix,
		mixTotal: cfg.Mix.total(),
		runID:    runID,
		rng:      rng,
		cards:    cards,
		stanBase: stanBase % stanModulus,
	}
}

// take removes and returns a random element of *s.
func take[T any](s *[]T, rng *rand.Rand) T {
	i := rng.IntN(len(*s))
	last := len(*s) - 1
	x := (*s)[i]
	(*s)[i] = (*s)[last]
	var zero T
	(*s)[last] = zero
	*s = (*s)[:last]
	return x
}

// amount draws a transaction amount between 1 and 200 major units.
func (b *book) amount() int64 {
	return b.unit + b.rng.Int64N(199*b.unit+1)
}

// next builds the next new request. now stamps fields 7, 12 and 13;
// intended is when the schedule wanted it sent.
func (b *book) next(now, intended time.Time) *request {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := b.mix.pick(b.rng.IntN(b.mixTotal))
	switch {
	case k == kindCompletion && len(b.holds) == 0:
		k = kindAuth // builds the holds that completions need
		b.nFallbacks++
	case k == kindReversal && len(b.holds) == 0 && len(b.purchases) == 0:
		k = kindPurchase
		b.nFallbacks++
	case k == kindRepeat && len(b.answered) == 0:
		k = kindPurchase
		b.nFallbacks++
	}
	var r *request
	switch k {
	case kindRepeat:
		r = b.repeat(take(&b.answered, b.rng))
	case kindCompletion:
		r = b.completion(take(&b.holds, b.rng), now)
	case kindReversal:
		if len(b.purchases) == 0 || (len(b.holds) > 0 && b.rng.IntN(2) == 0) {
			r = b.reverseHold(take(&b.holds, b.rng), now)
		} else {
			r = b.reversePurchase(take(&b.purchases, b.rng), now)
		}
	default:
		c := b.cards[b.rng.IntN(len(b.cards))]
		r = b.fresh(k, c, now)
	}
	r.intended = intended
	return r
}

// stamp gives r a new STAN, field 7 and local time, and its match key.
func (b *book) stamp(r *request, now time.Time) {
	stan := fmt.Sprintf("%06d", (b.stanBase+b.seq)%stanModulus)
	b.seq++
	utc := now.UTC()
	f7 := utc.Format("0102150405")
	r.msg.Set(7, f7)
	r.msg.Set(11, stan)
	r.msg.Set(12, utc.Format("150405"))
	r.msg.Set(13, utc.Format("0102"))
	r.msg.Set(32, b.acquirer)
	r.msg.Set(41, loadTerminal)
	r.msg.Set(42, loadMerchant)
	r.msg.Set(49, b.ccy.Numeric)
	r.key = stan + f7
}

// rrn is unique per run (run id) and within it (counter).
func (b *book) rrn() string { return fmt.Sprintf("%s%07d", b.runID, b.seq%rrnSeqModulus) }

func amount12(v int64) string { return fmt.Sprintf("%012d", v) }

// fresh builds a purchase (0200), authorization (0100) or balance inquiry
// (0200, processing code 31).
func (b *book) fresh(k kind, c *card, now time.Time) *request {
	r := &request{kind: k, card: c}
	r.mti = "0200"
	pc := "000000"
	switch k {
	case kindAuth:
		r.mti = "0100"
		r.amount = b.amount()
	case kindBalance:
		pc = "310000"
	default:
		r.amount = b.amount()
	}
	r.msg.MTI = r.mti
	r.msg.Set(2, c.pan)
	r.msg.Set(3, pc)
	r.msg.Set(4, amount12(r.amount))
	r.msg.Set(37, b.rrn())
	b.stamp(r, now)
	return r
}

// follow builds the common part of a completion or reversal of original o:
// same card, the original's RRN (as acquirers send it), field 90.
func (b *book) follow(k kind, mti string, c *card, o ref, now time.Time) *request {
	r := &request{kind: k, mti: mti, card: c}
	r.msg.MTI = mti
	r.msg.Set(2, c.pan)
	r.msg.Set(3, "000000")
	r.msg.Set(37, o.rrn)
	r.msg.Set(90, field90(o, b.acquirer))
	b.stamp(r, now)
	return r
}

// completion captures part or all of h. A hold planned for n captures gets
// n-1 partial ones marked CS=kknn and a final one; the final one sometimes
// takes less than what is held, releasing the rest.
func (b *book) completion(h *hold, now time.Time) *request {
	seq := h.done + 1
	if h.held < 2 {
		h.captures = seq // nothing left to split
	}
	var amt int64
	final := seq >= h.captures
	switch {
	case !final:
		// 20–50 % of what is held, at least 1, leaving at least 1.
		amt = max(1, h.held*int64(20+b.rng.IntN(31))/100)
		amt = min(amt, h.held-1)
	case h.held >= 2 && b.rng.IntN(4) == 0:
		amt = 1 + b.rng.Int64N(h.held-1)
	default:
		amt = h.held
	}
	r := b.follow(kindCompletion, "0220", h.card, h.ref, now)
	r.msg.Set(4, amount12(amt))
	if h.captures > 1 {
		r.msg.Set(48, fmt.Sprintf("CS=%02d%02d", seq, h.captures))
	}
	r.amount, r.final, r.hold = amt, final, h
	return r
}

// reversal builds a reversal (0400, or a 0420 advice one time in four) of
// amt out of outstanding: field 4 carries what stands before, field 95
// what stands after when that is not zero (a partial reversal).
func (b *book) reversal(c *card, o ref, outstanding, amt int64, now time.Time) *request {
	mti := "0400"
	if b.rng.IntN(4) == 0 {
		mti = "0420"
	}
	r := b.follow(kindReversal, mti, c, o, now)
	r.msg.Set(4, amount12(outstanding))
	if amt < outstanding {
		r.msg.Set(95, field95(outstanding-amt))
	}
	r.amount = amt
	return r
}

// reverseAmount is all of outstanding, or (three times in ten) a part.
func (b *book) reverseAmount(outstanding int64) int64 {
	if outstanding >= 2 && b.rng.IntN(10) < 3 {
		return 1 + b.rng.Int64N(outstanding-1)
	}
	return outstanding
}

func (b *book) reverseHold(h *hold, now time.Time) *request {
	r := b.reversal(h.card, h.ref, h.held, b.reverseAmount(h.held), now)
	r.hold = h
	return r
}

func (b *book) reversePurchase(p *purchase, now time.Time) *request {
	out := p.outstanding()
	r := b.reversal(p.card, p.ref, out, b.reverseAmount(out), now)
	r.purchase = p
	return r
}

// repeat re-sends answered request o, field for field, with the repeat
// MTI: the switch must give the same 39 and 38.
func (b *book) repeat(o *request) *request {
	r := &request{kind: kindRepeat, mti: repeatMTI(o.mti), msg: o.msg, key: o.key, card: o.card, orig: o}
	r.msg.MTI = r.mti
	return r
}

// verdict is what settle learnt from an answer beyond its code.
type verdict struct {
	approved       bool
	repeatChecked  bool
	repeatMismatch *RepeatMismatch
	balanceChecked bool
	balanceError   string
}

// settle takes r's final answer (rc, field 38, field 54) into the model and
// the pools. A 96 is not final in itself: it reaches settle only after
// every resend also got 96, and then the outcome is unknown.
func (b *book) settle(r *request, rc, authCode, f54 string) verdict {
	b.mu.Lock()
	defer b.mu.Unlock()
	r.rc, r.authCode = rc, authCode
	v := verdict{approved: rc == "00"}
	if rc == "96" {
		b.unknownLocked(r)
		return v
	}
	switch r.kind {
	case kindPurchase:
		if v.approved {
			r.card.purchased(r.amount)
			if len(b.purchases) < purchasePoolMax {
				b.purchases = append(b.purchases, &purchase{card: r.card, ref: r.ref(), amount: r.amount})
			}
		}
	case kindAuth:
		if v.approved {
			h := r.card.authorized(r.ref(), r.amount, b.captures())
			if len(b.holds) < holdPoolMax {
				b.holds = append(b.holds, h)
			}
		}
	case kindCompletion:
		if v.approved {
			r.hold.completed(r.amount, r.final)
			b.offerHold(r.hold)
		}
	case kindReversal:
		switch {
		case !v.approved:
		case r.hold != nil:
			r.hold.reversedBy(r.amount)
			b.offerHold(r.hold)
		default:
			r.purchase.reversedBy(r.amount)
			if r.purchase.outstanding() > 0 && len(b.purchases) < purchasePoolMax {
				b.purchases = append(b.purchases, r.purchase)
			}
		}
	case kindRepeat:
		v.repeatChecked = true
		if rc != r.orig.rc || authCode != r.orig.authCode {
			v.repeatMismatch = &RepeatMismatch{
				MTI: r.mti, STAN: r.msg.Get(11), TransmissionTime: r.msg.Get(7), RRN: r.msg.Get(37),
				WantRC: r.orig.rc, GotRC: rc, WantAuthCode: r.orig.authCode, GotAuthCode: authCode,
			}
		}
	case kindBalance:
		if v.approved {
			v.balanceChecked = true
			v.balanceError = b.checkBalances(f54)
		}
	}
	// A declined follow-up drops its hold or purchase from the pools: the
	// decline means we and the switch disagree about it, and retrying would
	// only repeat the disagreement (the verification reports it).
	if r.changesState() {
		b.offerRepeat(r)
	}
	return v
}

// unknown records that r never got a definite answer.
func (b *book) unknown(r *request) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.unknownLocked(r)
}

func (b *book) unknownLocked(r *request) {
	// A repeat of an answered request cannot move money (the switch
	// replays the stored answer), so only the others make a card
	// uncertain. The hold or purchase stays out of the pools: its state
	// is unknown too.
	if r.changesState() {
		r.card.uncertain = true
	}
}

func (r *request) ref() ref {
	return ref{mti: r.mti, stan: r.msg.Get(11), f7: r.msg.Get(7), rrn: r.msg.Get(37)}
}

// captures draws how many completions a new hold gets: mostly one, some
// split shipments.
func (b *book) captures() int {
	switch n := b.rng.IntN(10); {
	case n < 7:
		return 1
	case n < 9:
		return 2
	default:
		return 3
	}
}

func (b *book) offerHold(h *hold) {
	if !h.closed && len(b.holds) < holdPoolMax {
		b.holds = append(b.holds, h)
	}
}

// offerRepeat keeps r as a repeat candidate; when the pool is full a random
// old one makes room, so repeats reach back over the whole run.
func (b *book) offerRepeat(r *request) {
	if len(b.answered) < repeatPoolMax {
		b.answered = append(b.answered, r)
		return
	}
	b.answered[b.rng.IntN(len(b.answered))] = r
}

// checkBalances checks field 54 of an approved balance inquiry: it parses,
// has ledger (01) and available (02) entries in our currency, and available
// is not above ledger (holds only lower it). The values themselves move
// under the load, so they are not compared with the model.
func (b *book) checkBalances(f54 string) string {
	bals, err := codec.ParseBalances(f54)
	if err != nil {
		return err.Error()
	}
	var ledger, avail *codec.Balance
	for i := range bals {
		switch bals[i].AmountType {
		case codec.AmountTypeLedger:
			ledger = &bals[i]
		case codec.AmountTypeAvailable:
			avail = &bals[i]
		}
	}
	switch {
	case ledger == nil || avail == nil:
		return "field 54 lacks the ledger or available entry"
	case ledger.Currency.Code != b.ccy.Code || avail.Currency.Code != b.ccy.Code:
		return "field 54 is in another currency"
	case avail.Minor > ledger.Minor:
		return "field 54 available balance above ledger balance"
	}
	return ""
}

// fallbacks returns how many draws found nothing to work on and became
// another kind.
func (b *book) fallbacks() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.nFallbacks
}
