package main

import (
	"fmt"
	"strings"
)

// Test card numbers: a 6-digit BIN that no issuer uses (999999 by default),
// a 9-digit sequence and the Luhn check digit: 16 digits, valid for the
// switch, recognisably synthetic for anyone reading a masked form.
const (
	binDigits = 6
	seqDigits = 9
)

// testPAN returns the card number for sequence seq (1-based) under bin.
func testPAN(bin string, seq int) string {
	body := fmt.Sprintf("%s%0*d", bin, seqDigits, seq)
	return body + string(rune('0'+luhnCheckDigit(body)))
}

// luhnCheckDigit is the digit that makes body+digit pass the Luhn check:
// doubling every second digit counted from the check digit's left.
func luhnCheckDigit(body string) int {
	sum := 0
	double := true // the rightmost body digit is doubled once the check digit is appended
	for i := len(body) - 1; i >= 0; i-- {
		d := int(body[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}

// cardID is the ops account id of load card seq.
func cardID(bin string, seq int) string { return fmt.Sprintf("load-%s-%06d", bin, seq) }

// card is one load-test cardholder account and what this run expects of
// it. The expectation fields are owned by the book (under its mutex).
type card struct {
	id     string
	pan    string // full digits, for field 2 only: never printed (use masked)
	masked string
	// postedDelta and pendingDelta are the change of the account's posted
	// balance and pending debits (holds) that our own approved answers
	// imply, minor units.
	postedDelta  int64
	pendingDelta int64
	// uncertain is set when a request that could change this account never
	// got a definite answer: its expected balance is then unknown.
	uncertain bool
}

// ref names an approved request so that a later completion or reversal can
// point at it in field 90.
type ref struct {
	mti  string // as first sent: 0100 or 0200
	stan string
	f7   string
	rrn  string
}

// field90 builds ISO 8583 field 90 (original data elements, n42): original
// MTI, STAN, transmission date-time, acquirer right-justified and
// zero-filled to 11 digits, and a zero forwarding institution.
func field90(r ref, acquirer string) string {
	var b strings.Builder
	b.Grow(42)
	b.WriteString(r.mti)
	b.WriteString(r.stan)
	b.WriteString(r.f7)
	b.WriteString(strings.Repeat("0", 11-len(acquirer)))
	b.WriteString(acquirer)
	b.WriteString("00000000000")
	return b.String()
}

// field95 builds field 95 (replacement amounts, an42) for a partial
// reversal: the actual amount that stands (12 digits), then zero
// settlement amount and fees.
func field95(actual int64) string {
	return fmt.Sprintf("%012d%s", actual, "000000000000C00000000C00000000")
}

// hold is an approved authorization and what is left of it, as the switch
// must see it given our approved answers (store.complete, store.reverse).
type hold struct {
	card   *card
	ref    ref
	amount int64 // authorized
	held   int64 // still held
	// captures is how many completions this hold is planned to get (1–3);
	// done how many were approved.
	captures int
	done     int
	closed   bool
}

// purchase is an approved 0200 that a reversal may take back, in part or
// in whole.
type purchase struct {
	card     *card
	ref      ref
	amount   int64
	reversed int64
}

// The model: how each approved answer moves a card's balances. It mirrors
// the ledger rules (DESIGN.md invariant 4) from the outside, so the
// verification compares two independent computations.

// purchased records an approved 0200 purchase: it posts at once.
func (c *card) purchased(amt int64) { c.postedDelta -= amt }

// authorized records an approved 0100: a hold; posted does not move.
func (c *card) authorized(r ref, amt int64, captures int) *hold {
	c.pendingDelta += amt
	return &hold{card: c, ref: r, amount: amt, held: amt, captures: captures}
}

// completed records an approved 0220: amt of the hold is posted; a final
// one (or one that takes the last of it) releases whatever is still held.
func (h *hold) completed(amt int64, final bool) {
	h.card.postedDelta -= amt
	h.card.pendingDelta -= amt
	h.held -= amt
	h.done++
	if final || h.held == 0 {
		h.card.pendingDelta -= h.held
		h.held = 0
		h.closed = true
	}
}

// reversedBy records an approved reversal of the hold: up to amt of what is
// still held is released (the switch takes min(amt, held)).
func (h *hold) reversedBy(amt int64) {
	r := min(amt, h.held)
	h.card.pendingDelta -= r
	h.held -= r
	if h.held == 0 {
		h.closed = true
	}
}

// outstanding is what a reversal of the purchase can still take back.
func (p *purchase) outstanding() int64 { return p.amount - p.reversed }

// reversedBy records an approved reversal of the purchase: a compensating
// transfer credits the card with amt.
func (p *purchase) reversedBy(amt int64) {
	p.card.postedDelta += amt
	p.reversed += amt
}
